//! CLIP ViT image tower, in HOICLIP's variant that also returns the whole token map.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig};
use burn::prelude::*;

use super::transformer::{ClipTransformer, ClipTransformerConfig};
use crate::model::kernels::ModelBackend;

/// Shape of the vision tower (ViT-B/32 at 224: width 768, 12 layers, 12 heads, patch 32).
#[derive(Config, Debug)]
pub struct VisionTransformerConfig {
    pub image_resolution: usize,
    pub patch_size: usize,
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    /// Joint embedding size (`proj` is `[width, output_dim]`).
    pub output_dim: usize,
}

impl VisionTransformerConfig {
    pub fn grid(&self) -> usize {
        self.image_resolution / self.patch_size
    }

    /// Number of tokens: one per patch plus CLS.
    pub fn num_tokens(&self) -> usize {
        self.grid() * self.grid() + 1
    }

    pub fn init<B: ModelBackend>(&self, device: &B::Device) -> VisionTransformer<B> {
        let scale = (self.width as f64).powf(-0.5);
        let normal = Initializer::Normal {
            mean: 0.0,
            std: scale,
        };
        VisionTransformer {
            conv1: Conv2dConfig::new([3, self.width], [self.patch_size, self.patch_size])
                .with_stride([self.patch_size, self.patch_size])
                .with_bias(false)
                .init(device),
            class_embedding: normal.init([self.width], device),
            positional_embedding: normal.init([self.num_tokens(), self.width], device),
            ln_pre: LayerNormConfig::new(self.width).init(device),
            transformer: ClipTransformerConfig::new(self.width, self.layers, self.heads)
                .init(device),
            ln_post: LayerNormConfig::new(self.width).init(device),
            proj: normal.init([self.width, self.output_dim], device),
        }
    }
}

/// Mirrors `clip_model.visual.*` keys.
#[derive(Module, Debug)]
pub struct VisionTransformer<B: ModelBackend> {
    pub conv1: Conv2d<B>,
    pub class_embedding: Param<Tensor<B, 1>>,
    pub positional_embedding: Param<Tensor<B, 2>>,
    pub ln_pre: LayerNorm<B>,
    pub transformer: ClipTransformer<B>,
    pub ln_post: LayerNorm<B>,
    pub proj: Param<Tensor<B, 2>>,
}

/// What HOICLIP's modified CLIP returns for a batch of images.
#[derive(Debug, Clone)]
pub struct VisionOutput<B: ModelBackend> {
    /// `ln_post(x[:, 0]) @ proj`: the usual CLIP image embedding, `[B, output_dim]`, not normalised.
    pub cls: Tensor<B, 2>,
    /// `ln_post(x)`: every token (CLS first), unprojected, `[B, num_tokens, width]`.
    pub tokens: Tensor<B, 3>,
}

impl<B: ModelBackend> VisionTransformer<B> {
    /// `images` are CLIP-normalised `[B, 3, R, R]`.
    pub fn forward(&self, images: Tensor<B, 4>) -> VisionOutput<B> {
        let [batch, _, _, _] = images.dims();
        let x = self.patch_embed(images); // [B, g*g, width]
        let width = x.dims()[2];
        let cls = self
            .class_embedding
            .val()
            .reshape([1, 1, width])
            .expand([batch, 1, width]);
        let x = Tensor::cat(vec![cls, x], 1);
        let x = x + self.positional_embedding.val().unsqueeze::<3>();
        let x = self.ln_pre.forward(x);
        let x = self.transformer.forward(x, false);
        let tokens = self.ln_post.forward(x);
        let cls = tokens
            .clone()
            .narrow(1, 0, 1)
            .reshape([batch, width])
            .matmul(self.proj.val());
        VisionOutput { cls, tokens }
    }

    /// `conv1` (kernel = stride = patch, no bias) as one matmul over flattened patches:
    /// the same arithmetic as the convolution, without its im2col overhead.
    fn patch_embed(&self, images: Tensor<B, 4>) -> Tensor<B, 3> {
        let [batch, channels, h, w] = images.dims();
        let weight = self.conv1.weight.val(); // [width, 3, p, p]
        let [width, _, p, _] = weight.dims();
        let (gh, gw) = (h / p, w / p);
        let patches = images
            .narrow(2, 0, gh * p)
            .narrow(3, 0, gw * p)
            .reshape([batch, channels, gh, p, gw, p])
            .permute([0, 2, 4, 1, 3, 5]) // [B, gh, gw, C, p, p]
            .reshape([batch * gh * gw, channels * p * p]);
        let weight = weight.reshape([width, channels * p * p]).transpose();
        B::matmul_bias(patches, weight, None).reshape([batch, gh * gw, width])
    }

    /// Projects token features (`[..., width]`) into the joint space, as HOICLIP's
    /// `clip_visual_proj` does for the interaction decoder output.
    pub fn project<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        burn::tensor::module::linear(x, self.proj.val(), None)
    }
}
