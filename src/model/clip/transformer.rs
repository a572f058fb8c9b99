//! CLIP's residual attention blocks (pre-norm, QuickGELU), shared by both towers.
//! Field names mirror OpenAI's checkpoint keys (`resblocks.N.attn`, `ln_1`, `mlp.c_fc`, ...).

use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::sigmoid;

use crate::model::attention::{MultiheadAttention, MultiheadAttentionConfig};
use crate::model::kernels::ModelBackend;
use crate::model::linear::forward3;

/// CLIP's activation: `x * sigmoid(1.702 x)` (not the exact GELU).
pub fn quick_gelu<B: ModelBackend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    x.clone() * sigmoid(x * 1.702)
}

#[derive(Module, Debug)]
pub struct Mlp<B: ModelBackend> {
    pub c_fc: Linear<B>,
    pub c_proj: Linear<B>,
}

impl<B: ModelBackend> Mlp<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        forward3(&self.c_proj, quick_gelu(forward3(&self.c_fc, x)))
    }
}

#[derive(Module, Debug)]
pub struct ResidualAttentionBlock<B: ModelBackend> {
    pub attn: MultiheadAttention<B>,
    pub ln_1: LayerNorm<B>,
    pub mlp: Mlp<B>,
    pub ln_2: LayerNorm<B>,
}

impl<B: ModelBackend> ResidualAttentionBlock<B> {
    pub fn forward(&self, x: Tensor<B, 3>, causal: bool) -> Tensor<B, 3> {
        let x = x.clone() + self.attn.forward_self(self.ln_1.forward(x), causal);
        x.clone() + self.mlp.forward(self.ln_2.forward(x))
    }
}

/// Shape of a CLIP transformer stack.
#[derive(Config, Debug)]
pub struct ClipTransformerConfig {
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
}

#[derive(Module, Debug)]
pub struct ClipTransformer<B: ModelBackend> {
    pub resblocks: Vec<ResidualAttentionBlock<B>>,
}

impl ClipTransformerConfig {
    pub fn init<B: ModelBackend>(&self, device: &B::Device) -> ClipTransformer<B> {
        let w = self.width;
        let resblocks = (0..self.layers)
            .map(|_| ResidualAttentionBlock {
                attn: MultiheadAttentionConfig::new(w, self.heads).init(device),
                ln_1: LayerNormConfig::new(w).init(device),
                mlp: Mlp {
                    c_fc: LinearConfig::new(w, 4 * w).init(device),
                    c_proj: LinearConfig::new(4 * w, w).init(device),
                },
                ln_2: LayerNormConfig::new(w).init(device),
            })
            .collect();
        ClipTransformer { resblocks }
    }
}

impl<B: ModelBackend> ClipTransformer<B> {
    /// `x` is batch-first `[B, L, width]`.
    pub fn forward(&self, mut x: Tensor<B, 3>, causal: bool) -> Tensor<B, 3> {
        for block in &self.resblocks {
            x = block.forward(x, causal);
        }
        x
    }
}
