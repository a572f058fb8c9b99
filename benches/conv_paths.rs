//! Every distinct convolution of the full-size detector (ResNet-50 at 800x1200, the
//! input projection, CLIP ViT-B/32's patch embedding) through every convolution path of
//! a backend, on the same inputs in the same run: median ms per call and the largest
//! difference from the reference path, relative to the reference output's largest value.
//! One JSON line per (shape, path) on stdout, then one summary line per path with the
//! time of one whole forward pass's convolutions (each shape times its count).
//!
//!     cargo bench --bench conv_paths -- [--batch N] [--iters N] [--scale S]
//!     cargo bench --features cuda --bench conv_paths -- --device cuda [--batch 8]
//!
//! On the CPU the paths are the backend's own kernel (reference) and the portable
//! im2col + matrix product; on CUDA Burn's direct kernel (reference), `gemm` and
//! `implicit-gemm` (`hoiclip --gpu-conv`). `--scale S` divides the spatial sizes by S
//! (a quick check on a small machine).

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::ops::ConvOptions;
use hoiclip::model::kernels::{ModelBackend, gemm_convolution};

/// (name, count in one forward pass, in channels, out channels, kernel, stride, padding,
/// input height, input width, bias)
type Shape = (
    &'static str,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    bool,
);

const SHAPES: &[Shape] = &[
    ("stem 7x7/2 3->64", 1, 3, 64, 7, 2, 3, 800, 1200, false),
    ("layer1 1x1 64->64", 1, 64, 64, 1, 1, 0, 200, 300, false),
    ("layer1 3x3 64->64", 3, 64, 64, 3, 1, 1, 200, 300, false),
    ("layer1 1x1 64->256", 4, 64, 256, 1, 1, 0, 200, 300, false),
    ("layer1 1x1 256->64", 2, 256, 64, 1, 1, 0, 200, 300, false),
    ("layer2 1x1 256->128", 1, 256, 128, 1, 1, 0, 200, 300, false),
    (
        "layer2 3x3/2 128->128",
        1,
        128,
        128,
        3,
        2,
        1,
        200,
        300,
        false,
    ),
    (
        "layer2 1x1/2 256->512",
        1,
        256,
        512,
        1,
        2,
        0,
        200,
        300,
        false,
    ),
    ("layer2 1x1 128->512", 4, 128, 512, 1, 1, 0, 100, 150, false),
    ("layer2 1x1 512->128", 3, 512, 128, 1, 1, 0, 100, 150, false),
    ("layer2 3x3 128->128", 3, 128, 128, 3, 1, 1, 100, 150, false),
    ("layer3 1x1 512->256", 1, 512, 256, 1, 1, 0, 100, 150, false),
    (
        "layer3 3x3/2 256->256",
        1,
        256,
        256,
        3,
        2,
        1,
        100,
        150,
        false,
    ),
    (
        "layer3 1x1/2 512->1024",
        1,
        512,
        1024,
        1,
        2,
        0,
        100,
        150,
        false,
    ),
    ("layer3 1x1 256->1024", 6, 256, 1024, 1, 1, 0, 50, 75, false),
    ("layer3 1x1 1024->256", 5, 1024, 256, 1, 1, 0, 50, 75, false),
    ("layer3 3x3 256->256", 5, 256, 256, 3, 1, 1, 50, 75, false),
    ("layer4 1x1 1024->512", 1, 1024, 512, 1, 1, 0, 50, 75, false),
    ("layer4 3x3/2 512->512", 1, 512, 512, 3, 2, 1, 50, 75, false),
    (
        "layer4 1x1/2 1024->2048",
        1,
        1024,
        2048,
        1,
        2,
        0,
        50,
        75,
        false,
    ),
    ("layer4 1x1 512->2048", 3, 512, 2048, 1, 1, 0, 25, 38, false),
    ("layer4 1x1 2048->512", 2, 2048, 512, 1, 1, 0, 25, 38, false),
    ("layer4 3x3 512->512", 2, 512, 512, 3, 1, 1, 25, 38, false),
    (
        "input_proj 1x1 2048->256",
        1,
        2048,
        256,
        1,
        1,
        0,
        25,
        38,
        true,
    ),
    (
        "clip patch 32x32/32 3->768",
        1,
        3,
        768,
        32,
        32,
        0,
        224,
        224,
        false,
    ),
];

type ConvFn<B> =
    fn(Tensor<B, 4>, Tensor<B, 4>, Option<Tensor<B, 1>>, ConvOptions<2>) -> Tensor<B, 4>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<usize>().ok())
    };
    let batch = value("--batch").unwrap_or(8);
    let iters = value("--iters").unwrap_or(5);
    let scale = value("--scale").unwrap_or(1).max(1);
    if args
        .windows(2)
        .any(|w| w[0] == "--device" && w[1] == "cuda")
    {
        #[cfg(feature = "cuda")]
        {
            use hoiclip::backend::Cuda;
            use hoiclip::model::kernels::{GpuConv, set_gpu_conv};
            fn via(path: GpuConv) -> ConvFn<Cuda> {
                match path {
                    GpuConv::Direct => |x, w, b, o| {
                        set_gpu_conv(GpuConv::Direct);
                        Cuda::convolution(x, w, b, o)
                    },
                    GpuConv::Gemm => |x, w, b, o| {
                        set_gpu_conv(GpuConv::Gemm);
                        Cuda::convolution(x, w, b, o)
                    },
                    GpuConv::ImplicitGemm => |x, w, b, o| {
                        set_gpu_conv(GpuConv::ImplicitGemm);
                        Cuda::convolution(x, w, b, o)
                    },
                }
            }
            let paths: Vec<(&str, ConvFn<Cuda>)> =
                GpuConv::ALL.iter().map(|&p| (p.name(), via(p))).collect();
            // The reference is Burn's direct kernel: the last of ALL, run first.
            let mut ordered = vec![paths[2]];
            ordered.extend_from_slice(&paths[..2]);
            let device = burn::backend::cuda::CudaDevice::new(0);
            return sweep::<Cuda>(&device, &ordered, batch, iters, scale, "cuda");
        }
        #[cfg(not(feature = "cuda"))]
        panic!("--device cuda needs `--features cuda`");
    }
    type Cpu = hoiclip::backend::Cpu;
    let paths: Vec<(&str, ConvFn<Cpu>)> = vec![
        ("backend", |x, w, b, o| Cpu::convolution(x, w, b, o)),
        ("gemm", |x, w, b, o| gemm_convolution(x, w, b, o)),
    ];
    sweep::<Cpu>(&Default::default(), &paths, batch, iters, scale, "cpu");
}

fn sweep<B: ModelBackend>(
    device: &B::Device,
    paths: &[(&str, ConvFn<B>)],
    batch: usize,
    iters: usize,
    scale: usize,
    device_name: &str,
) {
    let mut totals = vec![0f64; paths.len()];
    let mut worst = vec![0f32; paths.len()];
    for &(name, count, c, o, k, stride, padding, h, w, bias) in SHAPES {
        let (h, w) = ((h / scale).max(k), (w / scale).max(k));
        let x = Tensor::<B, 4>::random([batch, c, h, w], Distribution::Normal(0.0, 1.0), device);
        let weight = Tensor::<B, 4>::random(
            [o, c, k, k],
            Distribution::Normal(0.0, (1.0 / (c * k * k) as f64).sqrt()),
            device,
        );
        let b = bias.then(|| Tensor::<B, 1>::random([o], Distribution::Normal(0.0, 1.0), device));
        let options = ConvOptions::new([stride, stride], [padding, padding], [1, 1], 1);
        let mut reference: Option<Vec<f32>> = None;
        for (i, &(path, conv)) in paths.iter().enumerate() {
            let run = || conv(x.clone(), weight.clone(), b.clone(), options.clone());
            let out: Vec<f32> = run().into_data().to_vec().unwrap_or_default();
            let error = match &reference {
                None => 0.0,
                Some(r) => {
                    let peak = r.iter().fold(1e-12f32, |m, v| m.max(v.abs()));
                    r.iter()
                        .zip(&out)
                        .fold(0f32, |m, (a, b)| m.max((a - b).abs() / peak))
                }
            };
            if reference.is_none() {
                reference = Some(out);
            }
            let mut times: Vec<f64> = (0..iters.max(1))
                .map(|_| {
                    let start = Instant::now();
                    let out = run();
                    let _ = B::sync(device);
                    drop(out);
                    start.elapsed().as_secs_f64() * 1000.0
                })
                .collect();
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            totals[i] += median * count as f64;
            worst[i] = worst[i].max(error);
            println!(
                "{}",
                serde_json::json!({"device": device_name, "shape": name, "path": path,
                    "batch": batch, "input": [h, w], "count": count,
                    "median_ms": median, "max_rel_error": error})
            );
        }
    }
    for (i, (path, _)) in paths.iter().enumerate() {
        println!(
            "{}",
            serde_json::json!({"device": device_name, "path": path, "batch": batch,
                "summary": "all convolutions of one forward pass",
                "ms_per_image": totals[i] / batch as f64, "max_rel_error": worst[i]})
        );
    }
}
