//! The HOICLIP parity fixture on the CUDA backend (feature `cuda`, a GPU at run time):
//! the padded batch of tests/hoiclip_parity.rs against the same PyTorch reference, with
//! the CUDA tolerance of 1e-3 (GPU reductions and TF32-free f32 GEMMs reorder
//! sums; the CPU test holds 2e-4).
//!
//!     cargo test --release --features cuda --test cuda_parity
#![cfg(feature = "cuda")]

mod common;

use burn::prelude::*;
use common::fixture;
use hoiclip::backend::Cuda;
use hoiclip::model::hoiclip::{self as detector, HoiclipConfig, ModelInput};
use hoiclip::model::weights::Checkpoint;

const TOL: f32 = 1e-3;

fn tensor<const D: usize>(refs: &Checkpoint, key: &str) -> Tensor<Cuda, D> {
    let device = burn::backend::cuda::CudaDevice::new(0);
    Tensor::from_data(refs.data(key).expect("reference tensor"), &device)
}

#[test]
fn padded_batch_matches_the_reference_on_cuda() {
    let device = burn::backend::cuda::CudaDevice::new(0);
    let text = std::fs::read_to_string(fixture("hoiclip/config.json")).unwrap();
    let config: HoiclipConfig = serde_json::from_str(&text).unwrap();
    let refs = Checkpoint::open(fixture("hoiclip/reference.safetensors")).unwrap();
    let ckpt = Checkpoint::open(fixture("hoiclip/checkpoint.pth")).unwrap();
    let (model, report) = detector::load::<Cuda>(&config, &ckpt, &device).unwrap();
    assert!(report.is_clean(), "{report}");
    let valid = (0..2)
        .map(|i| {
            let [_, _, h, w] = tensor::<4>(&refs, &format!("img{i}_detr_input")).dims();
            (h, w)
        })
        .collect();
    let preds = model.forward(ModelInput {
        detr: tensor::<4>(&refs, "batch_detr_input"),
        valid,
        clip: tensor::<4>(&refs, "batch_clip_input"),
    });
    for (name, ours) in [
        ("pred_hoi_logits", preds.hoi_logits),
        ("pred_obj_logits", preds.obj_logits),
        ("pred_sub_boxes", preds.sub_boxes),
        ("pred_obj_boxes", preds.obj_boxes),
    ] {
        let theirs = tensor::<3>(&refs, &format!("batch_{name}"));
        let diff: f32 = (ours - theirs).abs().max().into_scalar();
        eprintln!("{name}: max abs diff {diff:e}");
        assert!(diff <= TOL, "{name} differs by {diff} (tolerance {TOL})");
    }
}
