//! Full-size HOICLIP (random weights) on the default CPU backend: ms per 800x1200 image
//! (batch 1, trunk + heads) and peak RSS. Run through `benches/detector.sh`, which also
//! times the PyTorch reference on the same machine and threads.
//!
//!     cargo bench --bench detector -- [--iters N]

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::Distribution;
use hoiclip::backend::Cpu;
use hoiclip::model::hoiclip::{HoiclipConfig, ModelInput};

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let iters: usize = args
        .iter()
        .position(|a| a == "--iters")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let device = Default::default();
    let model = HoiclipConfig::hico_det().init::<Cpu>(&device);
    let classifier = model.trained_classifier();
    let input = || ModelInput {
        detr: Tensor::<Cpu, 4>::random([1, 3, 800, 1200], Distribution::Normal(0.0, 1.0), &device),
        valid: vec![(800, 1200)],
        clip: Tensor::<Cpu, 4>::random([1, 3, 224, 224], Distribution::Normal(0.0, 1.0), &device),
    };
    let run = |input: ModelInput<Cpu>| {
        let features = model.features(input);
        let preds = model.heads(&features, &classifier);
        let _ = preds.hoi_logits.into_data();
    };
    run(input()); // warm-up (also materialises the lazily initialised weights)
    let inputs: Vec<_> = (0..iters).map(|_| input()).collect();
    let start = Instant::now();
    for i in inputs {
        run(i);
    }
    let ms = start.elapsed().as_secs_f64() * 1000.0 / iters as f64;
    println!(
        "{}",
        serde_json::json!({"impl": format!("burn-{}", hoiclip::backend::cpu_backend_name()), "ms_per_image": ms, "peak_rss_mb": peak_rss_mb()})
    );
}
