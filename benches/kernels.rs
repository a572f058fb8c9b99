//! The model's own CPU kernels against Burn's ops on the same inputs in the same run, at
//! the shapes the full-size detector (800x1200) uses: ms per call and the ratio.
//!
//!     cargo bench --bench kernels -- [--iters N]

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::ops::ConvOptions;
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
    attention(iters);
    convolution(iters);
    max_pool(iters);
}

/// Mean ms per call of `f` over `iters` calls after one warm-up, output read back.
fn time<const D: usize>(iters: usize, f: &dyn Fn() -> Tensor<Cpu, D>) -> f64 {
    let _ = f().into_data();
    let start = Instant::now();
    for _ in 0..iters {
        let _ = f().into_data();
    }
    start.elapsed().as_secs_f64() * 1000.0 / iters as f64
}

fn normal<const D: usize>(dims: [usize; D], std: f64) -> Tensor<Cpu, D> {
    Tensor::random(dims, Distribution::Normal(0.0, std), &Default::default())
}

fn attention(iters: usize) {
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
        let (q, k, v) = (
            normal([batch, lq, d], 1.0),
            normal([batch, lk, d], 1.0),
            normal([batch, lk, d], 1.0),
        );
        let burn = time(iters, &|| {
            portable_attention(q.clone(), k.clone(), v.clone(), heads, None, causal)
        });
        let ours = time(iters, &|| {
            Cpu::multi_head_attention(q.clone(), k.clone(), v.clone(), heads, None, causal)
        });
        println!("| {name} | {burn:.2} | {ours:.2} | {:.2} |", ours / burn);
    }
}

fn convolution(iters: usize) {
    // (name, input [C, H, W] at batch 1, output channels, kernel, stride, padding)
    let shapes = [
        ("stem 7x7/2, 3->64", [3, 800, 1200], 64, 7, 2, 3),
        ("layer1 3x3, 64", [64, 200, 300], 64, 3, 1, 1),
        ("layer2 3x3/2, 128", [128, 200, 300], 128, 3, 2, 1),
        ("layer2 3x3, 128", [128, 100, 150], 128, 3, 1, 1),
        ("layer3 3x3, 256", [256, 50, 75], 256, 3, 1, 1),
        ("layer4 3x3, 512", [512, 25, 38], 512, 3, 1, 1),
        ("layer4 downsample 1x1/2", [1024, 50, 75], 2048, 1, 2, 0),
    ];
    println!("\n| convolution (batch 1) | Burn's op (ms) | ours (ms) | ours / Burn's |");
    println!("|---|---:|---:|---:|");
    for (name, [c, h, w], out, k, s, p) in shapes {
        let x = normal([1, c, h, w], 1.0);
        let weight = normal([out, c, k, k], 0.05);
        let options = ConvOptions::new([s, s], [p, p], [1, 1], 1);
        let burn = time(iters, &|| {
            burn::tensor::module::conv2d(x.clone(), weight.clone(), None, options.clone())
        });
        let ours = time(iters, &|| {
            Cpu::convolution(x.clone(), weight.clone(), None, options.clone())
        });
        println!("| {name} | {burn:.2} | {ours:.2} | {:.2} |", ours / burn);
    }
}

fn max_pool(iters: usize) {
    let x = normal([1, 64, 400, 600], 1.0);
    let burn = time(iters, &|| {
        burn::tensor::module::max_pool2d(x.clone(), [3, 3], [2, 2], [1, 1], [1, 1], false)
    });
    let ours = time(iters, &|| Cpu::max_pool(x.clone(), [3, 3], [2, 2], [1, 1]));
    println!("\n| max pool (batch 1) | Burn's op (ms) | ours (ms) | ours / Burn's |");
    println!("|---|---:|---:|---:|");
    println!(
        "| stem 3x3/2, 64x400x600 | {burn:.2} | {ours:.2} | {:.2} |",
        ours / burn
    );
}
