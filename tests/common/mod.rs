//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use burn::prelude::*;
use hoiclip::model::weights::Checkpoint;

pub type B = hoiclip::backend::Cpu;

pub fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
}

/// Reads one reference tensor written by a fixture script.
pub fn reference<const D: usize>(file: &Checkpoint, key: &str) -> Tensor<B, D> {
    let data = file.data(key).expect("reference tensor");
    Tensor::from_data(data, &Default::default())
}

/// Largest absolute elementwise difference.
pub fn max_abs_diff<const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    (a - b).abs().max().into_scalar()
}
