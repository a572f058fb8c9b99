//! Full-size CLIP ViT-B/32 (random weights) on each compiled-in CPU backend:
//! ms per image (batch 1, the HOICLIP vision variant) and ms for the 600 HICO-DET prompts.
//! Run through `benches/clip.sh`, which also times PyTorch on the same machine and threads.
//!
//!     cargo bench --bench clip --features ndarray,candle -- [--iters N] [--skip-text]

use std::time::Instant;

use burn::prelude::*;
use hoiclip::model::clip::ClipConfig;
use hoiclip::model::clip::tokenizer::ClipTokenizer;
use hoiclip::model::kernels::ModelBackend;

fn prompts() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/vocab/hico-det.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("hico-det.json")).expect("json");
    json["interactions"]
        .as_array()
        .expect("interactions")
        .iter()
        .map(|i| i["prompt"].as_str().expect("prompt").to_string())
        .collect()
}

fn bench<Bk: ModelBackend>(name: &str, iters: usize, text: bool) {
    let device = Default::default();
    let clip = ClipConfig::vit_b_32().init::<Bk>(&device);
    let image = Tensor::<Bk, 4>::random(
        [1, 3, 224, 224],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let run = || {
        let out = clip.encode_image(image.clone());
        let _ = out.tokens.into_data();
    };
    run(); // warm-up
    let start = Instant::now();
    for _ in 0..iters {
        run();
    }
    let image_ms = start.elapsed().as_secs_f64() * 1000.0 / iters as f64;
    let mut text_ms = f64::NAN;
    if text {
        let tok = ClipTokenizer::new().expect("tokenizer");
        let ids: Vec<Vec<u32>> = prompts()
            .iter()
            .map(|p| tok.encode(p).expect("tokens"))
            .collect();
        let _ = clip.encode_text(&ids[..8]).expect("warm-up").into_data();
        let start = Instant::now();
        for chunk in ids.chunks(100) {
            let _ = clip.encode_text(chunk).expect("text").into_data();
        }
        text_ms = start.elapsed().as_secs_f64() * 1000.0;
    }
    println!(
        "{}",
        serde_json::json!({"impl": format!("burn-{name}"), "image_ms": image_ms, "text600_ms": text_ms})
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let iters = args
        .iter()
        .position(|a| a == "--iters")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let text = !args.iter().any(|a| a == "--skip-text");
    #[cfg(feature = "flex")]
    bench::<burn::backend::Flex>("flex", iters, text);
    #[cfg(feature = "ndarray")]
    bench::<burn::backend::NdArray<f32>>("ndarray", iters, text);
    #[cfg(feature = "candle")]
    bench::<burn::backend::Candle<f32, i64>>("candle", iters, text);
}
