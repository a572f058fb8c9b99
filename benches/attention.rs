//! The model's attention on the default CPU backend against Burn's own attention op on the
//! same inputs in the same run, at the shapes the detector uses: ms per call and the ratio.
//!
//!     cargo bench --bench attention -- [--iters N]

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::Distribution;
use hoiclip::backend::Cpu;
use hoiclip::model::kernels::{ModelBackend, portable_attention};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let iters = args
        .iter()
        .position(|a| a == "--iters")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(10);
    // (name, batch, queries, keys, width, heads, causal)
    let shapes = [
        ("detr-encoder (800x1200)", 1, 950, 950, 256, 8, false),
        ("detr-encoder batch 4", 4, 950, 950, 256, 8, false),
        ("decoder cross (64 queries)", 1, 64, 950, 256, 8, false),
        ("clip-vit (50 tokens)", 1, 50, 50, 768, 12, false),
        ("clip-text (64 prompts)", 64, 77, 77, 512, 8, true),
    ];
    println!("| attention | Burn's op (ms) | ours (ms) | ours / Burn's |");
    println!("|---|---:|---:|---:|");
    for (name, batch, lq, lk, d, heads, causal) in shapes {
        let device = Default::default();
        let make = |l: usize| {
            Tensor::<Cpu, 3>::random([batch, l, d], Distribution::Normal(0.0, 1.0), &device)
        };
        let (q, k, v) = (make(lq), make(lk), make(lk));
        let time = |f: &dyn Fn() -> Tensor<Cpu, 3>| {
            let _ = f().into_data();
            let start = Instant::now();
            for _ in 0..iters {
                let _ = f().into_data();
            }
            start.elapsed().as_secs_f64() * 1000.0 / iters as f64
        };
        let burn =
            time(&|| portable_attention(q.clone(), k.clone(), v.clone(), heads, None, causal));
        let ours = time(&|| {
            Cpu::multi_head_attention(q.clone(), k.clone(), v.clone(), heads, None, causal)
        });
        println!("| {name} | {burn:.2} | {ours:.2} | {:.2} |", ours / burn);
    }
}
