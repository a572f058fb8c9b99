//! Linear layers applied as one 2-D matmul.
//!
//! Burn's `Linear` on a `[B, L, d]` input is a broadcast batch matmul, which CPU backends
//! run as B small GEMMs; flattening to `[B*L, d]` makes it one large GEMM (several times
//! faster for text batches).

use burn::nn::Linear;
use burn::prelude::*;

/// `linear.forward(x)` for rank-3 `x`, computed as a single 2-D matmul.
pub fn forward3<B: Backend>(linear: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [b, l, d] = x.dims();
    let y = linear.forward(x.reshape([b * l, d]));
    let out = y.dims()[1];
    y.reshape([b, l, out])
}
