//! Linear layers applied as one 2-D matmul.
//!
//! Burn's `Linear` on a `[B, L, d]` input is a broadcast batch matmul, which CPU backends
//! run as B small GEMMs; flattening to `[B*L, d]` makes it one large GEMM (several times
//! faster for text batches), run by the backend's [`ModelBackend::matmul_bias`].

use burn::nn::Linear;
use burn::prelude::*;

use crate::model::kernels::ModelBackend;

/// `linear.forward(x)` for rank-3 `x`, computed as a single 2-D matmul.
pub fn forward3<B: ModelBackend>(linear: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [b, l, d] = x.dims();
    let y = B::matmul_bias(
        x.reshape([b * l, d]),
        linear.weight.val(),
        linear.bias.as_ref().map(|b| b.val()),
    );
    let out = y.dims()[1];
    y.reshape([b, l, out])
}
