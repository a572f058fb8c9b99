//! CLIP (OpenAI layout): the vision tower HOICLIP reads, the text tower that builds
//! classifiers, and the BPE tokenizer. Field names mirror the checkpoint keys under
//! `clip_model.` so loading needs no per-tensor remapping.

pub mod tokenizer;
pub mod transformer;
pub mod vision;

use burn::module::Param;
use burn::nn::{Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig};
use burn::prelude::*;

use crate::model::kernels::ModelBackend;
use transformer::{ClipTransformer, ClipTransformerConfig};
use vision::{VisionOutput, VisionTransformer, VisionTransformerConfig};

/// Errors from running the text tower on token ids.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClipTextError {
    #[error("prompt {index} has {len} tokens; the text tower takes at most {max}")]
    TooLong {
        index: usize,
        len: usize,
        max: usize,
    },
    #[error("prompt {index} is empty (no tokens)")]
    Empty { index: usize },
    #[error("prompt {index} has token id {id}, outside the vocabulary of {vocab}")]
    TokenOutOfRange { index: usize, id: u32, vocab: usize },
}

/// Every size of a CLIP model. `vit_b_32()` is the model inside HOICLIP checkpoints.
#[derive(Config, Debug, PartialEq)]
pub struct ClipConfig {
    /// Joint embedding size (512 for ViT-B/32).
    pub embed_dim: usize,
    pub image_resolution: usize,
    pub vision_patch_size: usize,
    pub vision_width: usize,
    pub vision_layers: usize,
    pub vision_heads: usize,
    pub context_length: usize,
    pub vocab_size: usize,
    pub text_width: usize,
    pub text_layers: usize,
    pub text_heads: usize,
}

impl ClipConfig {
    /// OpenAI ViT-B/32 at 224 pixels.
    pub fn vit_b_32() -> Self {
        Self {
            embed_dim: 512,
            image_resolution: 224,
            vision_patch_size: 32,
            vision_width: 768,
            vision_layers: 12,
            vision_heads: 12,
            context_length: 77,
            vocab_size: 49408,
            text_width: 512,
            text_layers: 12,
            text_heads: 8,
        }
    }

    pub fn vision(&self) -> VisionTransformerConfig {
        VisionTransformerConfig::new(
            self.image_resolution,
            self.vision_patch_size,
            self.vision_width,
            self.vision_layers,
            self.vision_heads,
            self.embed_dim,
        )
    }

    /// Randomly initialised model (CLIP's own init scales); load weights on top of it.
    pub fn init<B: ModelBackend>(&self, device: &B::Device) -> Clip<B> {
        let w = self.text_width;
        let normal = |std: f64| Initializer::Normal { mean: 0.0, std };
        Clip {
            visual: self.vision().init(device),
            transformer: ClipTransformerConfig::new(w, self.text_layers, self.text_heads)
                .init(device),
            token_embedding: EmbeddingConfig::new(self.vocab_size, w)
                .with_initializer(normal(0.02))
                .init(device),
            positional_embedding: normal(0.01).init([self.context_length, w], device),
            ln_final: LayerNormConfig::new(w).init(device),
            text_projection: normal((w as f64).powf(-0.5)).init([w, self.embed_dim], device),
            logit_scale: Initializer::Constant {
                value: (1.0f64 / 0.07).ln(),
            }
            .init([1], device),
        }
    }
}

/// CLIP with OpenAI's key layout (`visual.*`, `transformer.*`, `token_embedding`, ...).
#[derive(Module, Debug)]
pub struct Clip<B: ModelBackend> {
    pub visual: VisionTransformer<B>,
    pub transformer: ClipTransformer<B>,
    pub token_embedding: Embedding<B>,
    pub positional_embedding: Param<Tensor<B, 2>>,
    pub ln_final: LayerNorm<B>,
    pub text_projection: Param<Tensor<B, 2>>,
    /// Stored as a scalar in PyTorch; `[1]` here.
    pub logit_scale: Param<Tensor<B, 1>>,
}

impl<B: ModelBackend> Clip<B> {
    pub fn context_length(&self) -> usize {
        self.positional_embedding.dims()[0]
    }

    pub fn vocab_size(&self) -> usize {
        self.token_embedding.weight.dims()[0]
    }

    /// Image tower: projected CLS embedding and the full `ln_post` token map.
    pub fn encode_image(&self, images: Tensor<B, 4>) -> VisionOutput<B> {
        self.visual.forward(images)
    }

    /// Text tower on tokenised prompts (each with its start and end tokens), `[N, embed_dim]`,
    /// not normalised. Each prompt is pooled at its first maximal token id, as OpenAI's
    /// `argmax` does (the end-of-text id is the largest in the vocabulary).
    ///
    /// The tower is causal and pools at the end token, so nothing after it can change the
    /// result: the batch is cut to its longest prompt instead of padded to 77 positions.
    pub fn encode_text(&self, prompts: &[Vec<u32>]) -> Result<Tensor<B, 2>, ClipTextError> {
        let device = self.positional_embedding.device();
        let max = self.context_length();
        let vocab = self.vocab_size();
        let mut len = 0;
        for (index, ids) in prompts.iter().enumerate() {
            if ids.is_empty() {
                return Err(ClipTextError::Empty { index });
            }
            if ids.len() > max {
                return Err(ClipTextError::TooLong {
                    index,
                    len: ids.len(),
                    max,
                });
            }
            if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab) {
                return Err(ClipTextError::TokenOutOfRange { index, id, vocab });
            }
            len = len.max(ids.len());
        }
        let n = prompts.len();
        if n == 0 {
            return Ok(Tensor::zeros([0, self.text_projection.dims()[1]], &device));
        }
        let mut flat = Vec::with_capacity(n * len);
        let mut pool_rows = Vec::with_capacity(n);
        for (row, ids) in prompts.iter().enumerate() {
            let mut eot = 0;
            for (pos, &id) in ids.iter().enumerate() {
                if id > ids[eot] {
                    eot = pos;
                }
            }
            pool_rows.push((row * len + eot) as i64);
            flat.extend(ids.iter().map(|&id| id as i64));
            flat.extend(std::iter::repeat_n(0i64, len - ids.len()));
        }
        let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(flat, [n, len]), &device);
        let x = self.token_embedding.forward(tokens);
        let width = x.dims()[2];
        let x = x + self
            .positional_embedding
            .val()
            .narrow(0, 0, len)
            .unsqueeze::<3>();
        let x = self.transformer.forward(x, true);
        let x = self.ln_final.forward(x).reshape([n * len, width]);
        let rows = Tensor::<B, 1, Int>::from_data(TensorData::new(pool_rows, [n]), &device);
        Ok(x.select(0, rows).matmul(self.text_projection.val()))
    }
}

/// L2-normalises the rows of `x` (CLIP's `x / x.norm(dim=-1)`).
pub fn l2_normalize<B: ModelBackend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let norm = x.clone().powi_scalar(2).sum_dim(D - 1).sqrt();
    x / norm
}

/// Where CLIP's tensors sit in a weights file: under `clip_model.` in a HOICLIP checkpoint,
/// at the top level in a plain CLIP state dict. `attn_mask` buffers (open_clip) are not
/// parameters.
pub fn load_plan(ckpt: &crate::model::weights::Checkpoint) -> crate::model::weights::LoadPlan {
    let prefix = if ckpt.keys().any(|k| k.starts_with(HOICLIP_PREFIX)) {
        HOICLIP_PREFIX
    } else {
        ""
    };
    crate::model::weights::LoadPlan {
        prefix: prefix.to_string(),
        known_unused: vec![r"(^|\.)attn_mask$".into()],
        remap: Vec::new(),
        native: false,
    }
}

/// Key prefix of CLIP inside an official HOICLIP checkpoint.
pub const HOICLIP_PREFIX: &str = "clip_model.";
