//! DETR's post-norm encoder and decoder layers (batch-first tensors).

use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::model::attention::{MultiheadAttention, MultiheadAttentionConfig};
use crate::model::kernels::ModelBackend;
use crate::model::linear::forward3;

/// `linear2(relu(linear1(x)))`.
pub fn ffn<B: ModelBackend>(
    linear1: &Linear<B>,
    linear2: &Linear<B>,
    x: Tensor<B, 3>,
) -> Tensor<B, 3> {
    forward3(linear2, relu(forward3(linear1, x)))
}

#[derive(Config, Debug)]
pub struct LayerConfig {
    pub d_model: usize,
    pub n_heads: usize,
    pub dim_feedforward: usize,
}

impl LayerConfig {
    pub fn encoder<B: ModelBackend>(&self, device: &B::Device) -> EncoderLayer<B> {
        EncoderLayer {
            self_attn: MultiheadAttentionConfig::new(self.d_model, self.n_heads).init(device),
            linear1: LinearConfig::new(self.d_model, self.dim_feedforward).init(device),
            linear2: LinearConfig::new(self.dim_feedforward, self.d_model).init(device),
            norm1: LayerNormConfig::new(self.d_model).init(device),
            norm2: LayerNormConfig::new(self.d_model).init(device),
        }
    }

    pub fn decoder<B: ModelBackend>(&self, device: &B::Device) -> DecoderLayer<B> {
        DecoderLayer {
            self_attn: MultiheadAttentionConfig::new(self.d_model, self.n_heads).init(device),
            multihead_attn: MultiheadAttentionConfig::new(self.d_model, self.n_heads).init(device),
            linear1: LinearConfig::new(self.d_model, self.dim_feedforward).init(device),
            linear2: LinearConfig::new(self.dim_feedforward, self.d_model).init(device),
            norm1: LayerNormConfig::new(self.d_model).init(device),
            norm2: LayerNormConfig::new(self.d_model).init(device),
            norm3: LayerNormConfig::new(self.d_model).init(device),
        }
    }
}

#[derive(Module, Debug)]
pub struct EncoderLayer<B: ModelBackend> {
    pub self_attn: MultiheadAttention<B>,
    pub linear1: Linear<B>,
    pub linear2: Linear<B>,
    pub norm1: LayerNorm<B>,
    pub norm2: LayerNorm<B>,
}

impl<B: ModelBackend> EncoderLayer<B> {
    /// `x`, `pos` `[B, L, d]`; `mask` `[B, L]` true on padding.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        pos: Tensor<B, 3>,
        mask: Tensor<B, 2, Bool>,
    ) -> Tensor<B, 3> {
        let qk = x.clone() + pos;
        let x2 = self
            .self_attn
            .forward(qk.clone(), qk, x.clone(), Some(mask));
        let x = self.norm1.forward(x + x2);
        let x2 = ffn(&self.linear1, &self.linear2, x.clone());
        self.norm2.forward(x + x2)
    }
}

#[derive(Module, Debug)]
pub struct DecoderLayer<B: ModelBackend> {
    pub self_attn: MultiheadAttention<B>,
    pub multihead_attn: MultiheadAttention<B>,
    pub linear1: Linear<B>,
    pub linear2: Linear<B>,
    pub norm1: LayerNorm<B>,
    pub norm2: LayerNorm<B>,
    pub norm3: LayerNorm<B>,
}

impl<B: ModelBackend> DecoderLayer<B> {
    /// `tgt`, `query_pos` `[B, Q, d]`; `memory`, `pos` `[B, L, d]`; `mask` `[B, L]`.
    pub fn forward(
        &self,
        tgt: Tensor<B, 3>,
        query_pos: Tensor<B, 3>,
        memory: Tensor<B, 3>,
        pos: Tensor<B, 3>,
        mask: Tensor<B, 2, Bool>,
    ) -> Tensor<B, 3> {
        let qk = tgt.clone() + query_pos.clone();
        let t2 = self.self_attn.forward(qk.clone(), qk, tgt.clone(), None);
        let tgt = self.norm1.forward(tgt + t2);
        let t2 = self.multihead_attn.forward(
            tgt.clone() + query_pos,
            memory.clone() + pos,
            memory,
            Some(mask),
        );
        let tgt = self.norm2.forward(tgt + t2);
        let t2 = ffn(&self.linear1, &self.linear2, tgt.clone());
        self.norm3.forward(tgt + t2)
    }
}
