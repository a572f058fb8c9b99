//! A server's cold start and its first requests: the time from start to ready (model,
//! vocabulary, warm-up of every input shape the settings ask for), then 50 detections of
//! images of random sizes, one at a time through the engine as `/detect` submits them.
//! The slowest of those against the median shows whether any request still compiled a
//! kernel (on a GPU; issue 27's goal: the slowest within 2x the median). Run it twice with
//! the same `--kernel-cache` to see what a filled cache saves. Then, with `--burst`, the
//! same images submitted all at once (as many clients would), so the batch policy
//! decides how they share passes: images per second and passes. One JSON line on stdout.
//!
//!     cargo bench --bench serve_cold -- [--full] [--device cuda] [--warm-up all|common|none]
//!         [--size-bucket N] [--max-batch-size N] [--kernel-cache DIR] [--images N]
//!         [--policy same-size|pad] [--burst]

use std::time::{Duration, Instant};

use hoiclip::config::{ModelSource, Settings, WarmUp};
use hoiclip::detector::DetectOptions;
use hoiclip::engine::{BatchPolicy, EngineOptions, Request};
use hoiclip::model::hoiclip::HoiclipConfig;
use rand::{Rng, SeedableRng};

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        argv.iter()
            .position(|a| a == flag)
            .and_then(|i| argv.get(i + 1))
            .cloned()
    };
    let full = argv.iter().any(|a| a == "--full");
    let warm_up = value("--warm-up").map(|v| match v.as_str() {
        "all" => WarmUp::All,
        "common" => WarmUp::Common,
        _ => WarmUp::None,
    });
    let settings = Settings {
        model: ModelSource::Random(Box::new(if full {
            HoiclipConfig::hico_det()
        } else {
            HoiclipConfig::demo()
        })),
        database_url: "sqlite::memory:".into(),
        device: value("--device").unwrap_or_else(|| "cpu".into()),
        size_bucket: value("--size-bucket").and_then(|v| v.parse().ok()),
        warm_up,
        kernel_cache: value("--kernel-cache").map(Into::into),
        engine: EngineOptions {
            max_batch_size: value("--max-batch-size")
                .and_then(|v| v.parse().ok())
                .unwrap_or(EngineOptions::default().max_batch_size),
            max_queue: 1024,
            policy: match value("--policy").as_deref() {
                Some("pad") => BatchPolicy::Pad,
                _ => BatchPolicy::SameSize,
            },
            ..EngineOptions::default()
        },
        ..Settings::default()
    };
    let images: usize = value("--images").and_then(|v| v.parse().ok()).unwrap_or(50);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let started = Instant::now();
        let app = hoiclip::app::build(&settings).await.expect("server");
        let ready_s = started.elapsed().as_secs_f64();
        let service = app.service().clone();
        let classes = service.classes().expect("classifier set");
        // Photos as phones and cameras send them: aspect ratios from 1:2.2 to 2.2:1,
        // shorter sides from 300 to 2000 pixels (seeded: every run sees the same sizes).
        let mut rng = rand::rngs::StdRng::seed_from_u64(27);
        let mut latencies = Vec::with_capacity(images);
        let mut sizes = std::collections::HashSet::new();
        for _ in 0..images {
            let short = rng.random_range(300..2000u32);
            let ratio: f64 = rng.random_range(1.0..2.2);
            let long = (short as f64 * ratio) as u32;
            let (w, h) = if rng.random_bool(0.5) {
                (long, short)
            } else {
                (short, long)
            };
            let image = image::RgbImage::from_pixel(w, h, image::Rgb([120, 110, 100]));
            let t = Instant::now();
            let input = service.prepare(&image);
            sizes.insert(input.detr_size);
            let ticket = service
                .engine()
                .submit(Request {
                    input,
                    options: DetectOptions::default(),
                    classes: classes.clone(),
                    deadline: Instant::now() + Duration::from_secs(600),
                })
                .expect("queue");
            ticket.wait().await.expect("detection");
            latencies.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        // --burst: every image at once; the worker batches what the policy lets share.
        let burst = if argv.iter().any(|a| a == "--burst") {
            let mut rng = rand::rngs::StdRng::seed_from_u64(27);
            let inputs: Vec<_> = (0..images)
                .map(|_| {
                    let short = rng.random_range(300..2000u32);
                    let ratio: f64 = rng.random_range(1.0..2.2);
                    let long = (short as f64 * ratio) as u32;
                    let (w, h) = if rng.random_bool(0.5) {
                        (long, short)
                    } else {
                        (short, long)
                    };
                    service.prepare(&image::RgbImage::from_pixel(
                        w,
                        h,
                        image::Rgb([120, 110, 100]),
                    ))
                })
                .collect();
            let stats = service.engine().stats();
            let passes_before = stats
                .forward_passes
                .load(std::sync::atomic::Ordering::Relaxed);
            let t = Instant::now();
            let tickets: Vec<_> = inputs
                .into_iter()
                .map(|input| {
                    service
                        .engine()
                        .submit(Request {
                            input,
                            options: DetectOptions::default(),
                            classes: classes.clone(),
                            deadline: Instant::now() + Duration::from_secs(600),
                        })
                        .expect("queue")
                })
                .collect();
            for ticket in tickets {
                ticket.wait().await.expect("detection");
            }
            let seconds = t.elapsed().as_secs_f64();
            let passes = stats
                .forward_passes
                .load(std::sync::atomic::Ordering::Relaxed)
                - passes_before;
            Some(serde_json::json!({"images_per_s": images as f64 / seconds, "passes": passes}))
        } else {
            None
        };
        let mut sorted = latencies.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        let slowest = sorted[sorted.len() - 1];
        println!(
            "{}",
            serde_json::json!({
                "serve_cold": if full { "full-size" } else { "demo" },
                "device": service.device(),
                "backend": service.backend(),
                "warm_up_shapes": app.warm_up.len(),
                "kernel_cache": settings.kernel_cache,
                "seconds_to_ready": ready_s,
                "images": images,
                "distinct_input_sizes": sizes.len(),
                "median_ms": median,
                "slowest_ms": slowest,
                "slowest_over_median": slowest / median,
                "first_ms": latencies[0],
                "policy": settings.engine.policy.name(),
                "burst": burst,
            })
        );
    });
}
