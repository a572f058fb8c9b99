//! Full-size HOICLIP (random weights) on the default CPU backend: ms per 800x1200 image
//! (batch 1, trunk + heads) and peak RSS. Run through `benches/detector.sh`, which also
//! times the PyTorch reference on the same machine and threads.
//!
//!     cargo bench --bench detector -- [--iters N] [--batch N] [--device cuda]
//!         [--gpu-conv gemm|implicit-gemm|direct]   (as `hoiclip --gpu-conv`)
//!         [--release-freed-memory]   (the allocator as `hoiclip --release-freed-memory`)

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::Distribution;
use hoiclip::backend::Cpu;
use hoiclip::model::hoiclip::{HoiclipConfig, ModelInput};
use hoiclip::model::kernels::ModelBackend;

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
    // As the server does, unless told otherwise as the server can be.
    if !args.iter().any(|a| a == "--release-freed-memory") {
        hoiclip::backend::keep_freed_memory();
    }
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<usize>().ok())
    };
    let iters = value("--iters").unwrap_or(3);
    let batch = value("--batch").unwrap_or(1);
    let cuda = args
        .windows(2)
        .any(|w| w[0] == "--device" && w[1] == "cuda");
    if cuda {
        #[cfg(feature = "cuda")]
        {
            let conv: hoiclip::model::kernels::GpuConv = args
                .iter()
                .position(|a| a == "--gpu-conv")
                .and_then(|i| args.get(i + 1))
                .map(|v| {
                    v.parse()
                        .expect("--gpu-conv: gemm, implicit-gemm or direct")
                })
                .unwrap_or_default();
            hoiclip::model::kernels::set_gpu_conv(conv);
            let device = burn::backend::cuda::CudaDevice::new(0);
            let name = format!("burn-cuda-{}", conv.name());
            return bench::<hoiclip::backend::Cuda>(&device, iters, batch, &name);
        }
        #[cfg(not(feature = "cuda"))]
        panic!("--device cuda needs `--features cuda`");
    }
    let name = format!("burn-{}", hoiclip::backend::cpu_backend_name());
    bench::<Cpu>(&Default::default(), iters, batch, &name);
}

/// Full-size trunk + heads on `batch` random 800x1200 images; prints ms per image.
fn bench<B: ModelBackend>(device: &B::Device, iters: usize, batch: usize, name: &str) {
    // As the detector loads it: batch norm factors once (folded on a GPU).
    let model = HoiclipConfig::hico_det()
        .init::<B>(device)
        .prepare_for_inference();
    let classifier = model.trained_classifier();
    let input = || ModelInput {
        detr: Tensor::<B, 4>::random(
            [batch, 3, 800, 1200],
            Distribution::Normal(0.0, 1.0),
            device,
        ),
        valid: vec![(800, 1200); batch],
        clip: Tensor::<B, 4>::random([batch, 3, 224, 224], Distribution::Normal(0.0, 1.0), device),
    };
    let run = |input: ModelInput<B>| {
        let features = model.features(input);
        let preds = model.heads(&features, &classifier);
        // Reading the result back waits for the device.
        let _ = preds.hoi_logits.into_data();
    };
    let start = Instant::now();
    run(input()); // warm-up (also materialises the lazily initialised weights)
    eprintln!(
        "{}",
        serde_json::json!({"impl": name, "cold": "first forward", "batch": batch,
            "size": [800, 1200], "first_ms": start.elapsed().as_secs_f64() * 1000.0})
    );
    let inputs: Vec<_> = (0..iters).map(|_| input()).collect();
    // Make the random inputs now, outside the timed loop (device work is lazy).
    for i in &inputs {
        let _ = i.detr.clone().sum().into_data();
        let _ = i.clip.clone().sum().into_data();
    }
    if std::env::args().any(|a| a == "--stages") {
        stages(&model, &inputs, batch, name);
    }
    if std::env::args().any(|a| a == "--cold") {
        cold(&model, device, name);
    }
    let start = Instant::now();
    for i in inputs {
        run(i);
    }
    let ms = start.elapsed().as_secs_f64() * 1000.0 / (iters * batch) as f64;
    println!(
        "{}",
        serde_json::json!({"impl": name, "batch": batch, "ms_per_image": ms, "images_per_s": 1000.0 / ms, "peak_rss_mb": peak_rss_mb()})
    );
}

/// `--stages`: ms per image of the trunk's parts on their own, each after its own
/// warm-up, to see where time goes: the ResNet-50 stem (7x7/2 convolution, frozen batch
/// norm, ReLU, max pool) and its four stages (each on the previous stage's output), the
/// whole backbone, the CLIP image tower, the whole trunk, and the heads. What the trunk
/// spends beyond backbone and CLIP tower is the transformer (encoder, both decoders, the
/// CLIP fusion layers). One JSON line per stage on stderr, as `detector_torch.py` prints.
fn stages<B: ModelBackend>(
    model: &hoiclip::model::hoiclip::Hoiclip<B>,
    inputs: &[ModelInput<B>],
    batch: usize,
    implementation: &str,
) {
    let classifier = model.trained_classifier();
    let resnet = &model.backbone;
    let stem = |x: Tensor<B, 4>| resnet.stem(x);
    let timed = |name: &str, batch: usize, items: &[Tensor<B, 4>], f: &dyn Fn(&Tensor<B, 4>)| {
        timed(implementation, name, batch, items, f)
    };
    let time = |name: &str, f: &dyn Fn(&ModelInput<B>)| {
        self::timed(implementation, name, batch, inputs, f)
    };
    time("stem", &|i| {
        let _ = stem(i.detr.clone()).sum().into_data();
    });
    // Each ResNet stage runs on the previous stages' output for every timed image.
    let mut xs: Vec<Tensor<B, 4>> = inputs.iter().map(|i| stem(i.detr.clone())).collect();
    for (name, layer) in [
        ("layer1", &resnet.layer1),
        ("layer2", &resnet.layer2),
        ("layer3", &resnet.layer3),
        ("layer4", &resnet.layer4),
    ] {
        let run = |x: &Tensor<B, 4>| layer.iter().fold(x.clone(), |x, block| block.forward(x));
        timed(name, batch, &xs, &|x| {
            let _ = run(x).sum().into_data();
        });
        xs = xs.iter().map(run).collect();
    }
    time("backbone", &|i| {
        let _ = model.backbone.forward(i.detr.clone()).sum().into_data();
    });
    time("clip-image", &|i| {
        let _ = model
            .clip_model
            .encode_image(i.clip.clone())
            .tokens
            .sum()
            .into_data();
    });
    time("trunk", &|i| {
        let _ = model.features(i.clone()).inter_hs.sum().into_data();
    });
    time("forward", &|i| {
        let features = model.features(i.clone());
        let _ = model.heads(&features, &classifier).hoi_logits.into_data();
    });
    let features = model.features(inputs[0].clone());
    time("heads", &|_| {
        let _ = model.heads(&features, &classifier).hoi_logits.into_data();
    });
}

/// `--cold`: the first forward pass at each new input size and batch size (where a GPU
/// backend compiles kernels) against a second one at the same shape, one JSON line each
/// on stderr. Run right after the 800x1200 warm-up, so the first line is a new size.
fn cold<B: ModelBackend>(
    model: &hoiclip::model::hoiclip::Hoiclip<B>,
    device: &B::Device,
    implementation: &str,
) {
    let classifier = model.trained_classifier();
    let forward = |batch: usize, h: usize, w: usize| {
        let input = ModelInput {
            detr: Tensor::<B, 4>::random([batch, 3, h, w], Distribution::Normal(0.0, 1.0), device),
            valid: vec![(h, w); batch],
            clip: Tensor::<B, 4>::random(
                [batch, 3, 224, 224],
                Distribution::Normal(0.0, 1.0),
                device,
            ),
        };
        let _ = B::sync(device);
        let start = Instant::now();
        let features = model.features(input);
        let _ = model.heads(&features, &classifier).hoi_logits.into_data();
        start.elapsed().as_secs_f64() * 1000.0
    };
    for (batch, h, w, what) in [
        (1, 800, 1067, "new size"),
        (1, 800, 1333, "new size"),
        (1, 608, 1333, "new size"),
        (1, 1333, 800, "new size"),
        (2, 800, 1200, "new batch size"),
        (4, 800, 1200, "new batch size"),
        (8, 800, 1200, "new batch size"),
    ] {
        let first = forward(batch, h, w);
        let second = forward(batch, h, w);
        eprintln!(
            "{}",
            serde_json::json!({"impl": implementation, "cold": what, "batch": batch,
                "size": [h, w], "first_ms": first, "second_ms": second})
        );
    }
}

/// Times `f` on every item after one warm-up call; one JSON line on stderr, in ms per image.
fn timed<T>(implementation: &str, name: &str, batch: usize, items: &[T], f: &dyn Fn(&T)) {
    f(&items[0]);
    let start = Instant::now();
    for item in items {
        f(item);
    }
    let ms = start.elapsed().as_secs_f64() * 1000.0 / (items.len() * batch) as f64;
    eprintln!(
        "{}",
        serde_json::json!({"impl": implementation, "stage": name, "ms_per_image": ms, "batch": batch})
    );
}
