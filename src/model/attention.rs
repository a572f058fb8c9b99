//! PyTorch-compatible multi-head attention (`nn.MultiheadAttention` layout).

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use crate::model::kernels::ModelBackend;
use crate::model::linear::forward3;

/// Configuration of [`MultiheadAttention`].
#[derive(Config, Debug)]
pub struct MultiheadAttentionConfig {
    /// Model width `d`.
    pub d_model: usize,
    /// Number of heads; `d_model` must be divisible by it.
    pub n_heads: usize,
}

/// Multi-head attention with PyTorch's packed input projection.
///
/// The checkpoint's `in_proj_weight` `[3d, d]` / `in_proj_bias` `[3d]` are loaded into
/// `in_proj` (the weight loader remaps the names); q, k and v are its three column blocks.
/// Keeping them packed makes self-attention a single matmul.
#[derive(Module, Debug)]
pub struct MultiheadAttention<B: Backend> {
    pub in_proj: Linear<B>,
    pub out_proj: Linear<B>,
    n_heads: usize,
}

impl MultiheadAttentionConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> MultiheadAttention<B> {
        assert!(
            self.d_model.is_multiple_of(self.n_heads),
            "d_model {} is not divisible by n_heads {}",
            self.d_model,
            self.n_heads
        );
        MultiheadAttention {
            in_proj: LinearConfig::new(self.d_model, 3 * self.d_model).init(device),
            out_proj: LinearConfig::new(self.d_model, self.d_model).init(device),
            n_heads: self.n_heads,
        }
    }
}

impl<B: ModelBackend> MultiheadAttention<B> {
    /// Model width.
    pub fn d_model(&self) -> usize {
        self.out_proj.weight.dims()[1]
    }

    /// Self-attention over `x` `[B, L, d]`; `causal` hides later positions (CLIP text tower).
    pub fn forward_self(&self, x: Tensor<B, 3>, causal: bool) -> Tensor<B, 3> {
        let d = self.d_model();
        let qkv = forward3(&self.in_proj, x);
        let q = qkv.clone().narrow(2, 0, d);
        let k = qkv.clone().narrow(2, d, d);
        let v = qkv.narrow(2, 2 * d, d);
        self.attend(q, k, v, None, causal)
    }

    /// General attention: `query` `[B, Lq, d]` attends to `key`/`value` `[B, Lk, d]`.
    /// `key_padding_mask` `[B, Lk]` is `true` on keys to ignore (PyTorch's convention).
    pub fn forward(
        &self,
        query: Tensor<B, 3>,
        key: Tensor<B, 3>,
        value: Tensor<B, 3>,
        key_padding_mask: Option<Tensor<B, 2, Bool>>,
    ) -> Tensor<B, 3> {
        let d = self.d_model();
        let w = self.in_proj.weight.val();
        let b = self.in_proj.bias.as_ref().map(|b| b.val());
        let block = |x: Tensor<B, 3>, i: usize| {
            let [n, l, _] = x.dims();
            B::matmul_bias(
                x.reshape([n * l, d]),
                w.clone().narrow(1, i * d, d),
                b.clone().map(|b| b.narrow(0, i * d, d)),
            )
            .reshape([n, l, d])
        };
        let q = block(query, 0);
        let k = block(key, 1);
        let v = block(value, 2);
        self.attend(q, k, v, key_padding_mask, false)
    }

    fn attend(
        &self,
        q: Tensor<B, 3>,
        k: Tensor<B, 3>,
        v: Tensor<B, 3>,
        key_padding_mask: Option<Tensor<B, 2, Bool>>,
        causal: bool,
    ) -> Tensor<B, 3> {
        let out = B::multi_head_attention(q, k, v, self.n_heads, key_padding_mask, causal);
        forward3(&self.out_proj, out)
    }
}
