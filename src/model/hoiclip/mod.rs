//! The HOICLIP detector: DETR trunk + instance decoder, CLIP vision tower, the knowledge-
//! integration interaction decoder, and the heads (docs/model-reference.md). Field names
//! mirror the official state-dict keys (see `load_plan` for the few remappings). Reading
//! and writing checkpoints is `checkpoint.rs`'s job.

mod checkpoint;

pub use checkpoint::*;

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid};

use super::clip::{Clip, ClipConfig, l2_normalize};
use super::detr::backbone::{ResNet, ResNetConfig, Valid};
use super::detr::position::position_inputs;
use super::detr::transformer::{DecoderLayer, EncoderLayer, LayerConfig, ffn};
use super::linear::forward3;
use super::weights::{Checkpoint, LoadPlan, LoadReport, WeightsError};
use crate::model::kernels::ModelBackend;

/// Sizes of a HOICLIP model. `hico_det()` is the official configuration.
#[derive(Config, Debug)]
pub struct HoiclipConfig {
    pub clip: ClipConfig,
    #[config(default = "[3, 4, 6, 3]")]
    pub backbone_layers: [usize; 4],
    #[config(default = 64)]
    pub backbone_base_width: usize,
    #[config(default = 256)]
    pub hidden_dim: usize,
    #[config(default = 8)]
    pub nheads: usize,
    #[config(default = 6)]
    pub enc_layers: usize,
    #[config(default = 3)]
    pub dec_layers: usize,
    #[config(default = 3)]
    pub inter_dec_layers: usize,
    #[config(default = 2048)]
    pub dim_feedforward: usize,
    /// Human-object query pairs.
    #[config(default = 64)]
    pub num_queries: usize,
    #[config(default = 600)]
    pub num_hoi_classes: usize,
    #[config(default = 117)]
    pub num_verb_classes: usize,
    /// Object classes without "no object" (the classifier has one more row).
    #[config(default = 80)]
    pub num_obj_classes: usize,
    /// Weight of the verb branch in the HOI logits (0.5 HICO-DET, 0.1 V-COCO).
    #[config(default = 0.5)]
    pub verb_weight: f64,
    /// Zero-shot layout (reference 1.7): `visual_projection` and `verb2hoi_proj` hold only
    /// this many seen classes (trained with `--del_unseen`), and `eval_visual_projection`
    /// (no bias) with `verb2hoi_proj_eval` hold all `num_hoi_classes`; inference scores
    /// with the latter two, as the official evaluation does. `None`: the default layout.
    #[config(default = "None")]
    pub seen_hoi_classes: Option<usize>,
}

impl HoiclipConfig {
    /// The official HICO-DET model (ResNet-50, CLIP ViT-B/32, 64 queries, 600 classes).
    pub fn hico_det() -> Self {
        Self::new(ClipConfig::vit_b_32())
    }

    /// Width of the CLIP interaction decoder: CLIP's vision width (768 for ViT-B/32; the
    /// official code hard-codes 768, which is the same number).
    pub fn clip_dim(&self) -> usize {
        self.clip.vision_width
    }

    /// Rows of `visual_projection` (and columns of `verb2hoi_proj`).
    pub fn trained_hoi_classes(&self) -> usize {
        self.seen_hoi_classes.unwrap_or(self.num_hoi_classes)
    }

    pub fn init<B: ModelBackend>(&self, device: &B::Device) -> Hoiclip<B> {
        let d = self.hidden_dim;
        let e = self.clip.embed_dim;
        let cd = self.clip_dim();
        let nq = self.num_queries;
        let backbone = ResNetConfig::new()
            .with_layers(self.backbone_layers)
            .with_base_width(self.backbone_base_width);
        let detr = LayerConfig::new(d, self.nheads, self.dim_feedforward);
        let fusion = LayerConfig::new(cd, self.nheads, self.dim_feedforward);
        let mlp = |i: usize, h: usize, o: usize| Mlp {
            layers: vec![
                LinearConfig::new(i, h).init(device),
                LinearConfig::new(h, h).init(device),
                LinearConfig::new(h, o).init(device),
            ],
        };
        let scalar = |v: f32| Param::from_tensor(Tensor::from_floats([v], device));
        Hoiclip {
            logit_scale: scalar((1.0f32 / 0.07).ln()),
            obj_logit_scale: scalar((1.0f32 / 0.07).ln()),
            verb2hoi_proj: Param::from_tensor(Tensor::zeros(
                [self.num_verb_classes, self.trained_hoi_classes()],
                device,
            )),
            verb2hoi_proj_eval: self.seen_hoi_classes.map(|_| {
                Param::from_tensor(Tensor::zeros(
                    [self.num_verb_classes, self.num_hoi_classes],
                    device,
                ))
            }),
            query_embed_h: EmbeddingConfig::new(nq, d).init(device),
            query_embed_o: EmbeddingConfig::new(nq, d).init(device),
            pos_guided_embedd: EmbeddingConfig::new(nq, d).init(device),
            hum_bbox_embed: mlp(d, d, 4),
            obj_bbox_embed: mlp(d, d, 4),
            inter2verb: mlp(e, e / 2, e),
            input_proj: Conv2dConfig::new([backbone.out_channels(), d], [1, 1]).init(device),
            backbone: backbone.init(device),
            transformer: HoiTransformer {
                encoder: Encoder {
                    layers: (0..self.enc_layers).map(|_| detr.encoder(device)).collect(),
                },
                instance_decoder: Decoder {
                    layers: (0..self.dec_layers).map(|_| detr.decoder(device)).collect(),
                    norm: LayerNormConfig::new(d).init(device),
                },
                clip_interaction_decoder: FusionDecoder {
                    layers: (0..self.inter_dec_layers)
                        .map(|_| fusion.decoder(device))
                        .collect(),
                    norm: LayerNormConfig::new(cd).init(device),
                },
                queries2spacial_proj: LinearConfig::new(d, cd).init(device),
                queries2spacial_proj_norm: LayerNormConfig::new(cd).init(device),
                obj_class_fc: LinearConfig::new(d, cd).init(device),
                obj_class_ln: LayerNormConfig::new(cd).init(device),
            },
            clip_model: self.clip.init(device),
            verb_projection: LinearConfig::new(e, self.num_verb_classes)
                .with_bias(false)
                .init(device),
            visual_projection: LinearConfig::new(e, self.trained_hoi_classes()).init(device),
            eval_visual_projection: self.seen_hoi_classes.map(|_| {
                LinearConfig::new(e, self.num_hoi_classes)
                    .with_bias(false)
                    .init(device)
            }),
            obj_class_fc: ObjClassFc {
                linear: LinearConfig::new(d, e).init(device),
                norm: LayerNormConfig::new(e).init(device),
            },
            obj_visual_projection: LinearConfig::new(e, self.num_obj_classes + 1).init(device),
            num_queries: nq,
            verb_weight: self.verb_weight,
        }
    }
}

/// A 3-layer MLP with ReLU between layers (`*.layers.{0,1,2}`).
#[derive(Module, Debug)]
pub struct Mlp<B: ModelBackend> {
    pub layers: Vec<Linear<B>>,
}

impl<B: ModelBackend> Mlp<B> {
    pub fn forward(&self, mut x: Tensor<B, 3>) -> Tensor<B, 3> {
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            x = forward3(layer, x);
            if i < last {
                x = relu(x);
            }
        }
        x
    }
}

/// The object-classification projection (`obj_class_fc.0` Linear, `obj_class_fc.1` LayerNorm).
#[derive(Module, Debug)]
pub struct ObjClassFc<B: ModelBackend> {
    pub linear: Linear<B>,
    pub norm: LayerNorm<B>,
}

#[derive(Module, Debug)]
pub struct Encoder<B: ModelBackend> {
    pub layers: Vec<EncoderLayer<B>>,
}

#[derive(Module, Debug)]
pub struct Decoder<B: ModelBackend> {
    pub layers: Vec<DecoderLayer<B>>,
    pub norm: LayerNorm<B>,
}

/// One knowledge-integration layer (official `TransformerDecoderFusionLayer`, same
/// parameters as a DETR decoder layer): the same cross-attention and `norm2` read CLIP's
/// tokens and the detection memory, and the two results add. No positional embeddings, as
/// in the official code. `det_padding` masks the memory positions that are padding in a
/// batch of several sizes (the official code has no mask and attends to them; it
/// evaluates single images, which have none).
pub fn fusion_layer<B: ModelBackend>(
    layer: &DecoderLayer<B>,
    t: Tensor<B, 3>,
    clip_tokens: Tensor<B, 3>,
    det_memory: Tensor<B, 3>,
    det_padding: Option<Tensor<B, 2, Bool>>,
) -> Tensor<B, 3> {
    let t2 = layer
        .self_attn
        .forward(t.clone(), t.clone(), t.clone(), None);
    let t = layer.norm1.forward(t + t2);
    let a = layer
        .multihead_attn
        .forward(t.clone(), clip_tokens.clone(), clip_tokens, None);
    let a = layer.norm2.forward(t.clone() + a);
    let b = layer
        .multihead_attn
        .forward(t.clone(), det_memory.clone(), det_memory, det_padding);
    let b = layer.norm2.forward(t + b);
    let t = a + b;
    let t2 = ffn(&layer.linear1, &layer.linear2, t.clone());
    layer.norm3.forward(t + t2)
}

#[derive(Module, Debug)]
pub struct FusionDecoder<B: ModelBackend> {
    pub layers: Vec<DecoderLayer<B>>,
    pub norm: LayerNorm<B>,
}

/// `transformer.*` of the official model.
#[derive(Module, Debug)]
pub struct HoiTransformer<B: ModelBackend> {
    pub encoder: Encoder<B>,
    pub instance_decoder: Decoder<B>,
    pub clip_interaction_decoder: FusionDecoder<B>,
    pub queries2spacial_proj: Linear<B>,
    pub queries2spacial_proj_norm: LayerNorm<B>,
    /// Projects encoder memory into CLIP's width (not the top-level `obj_class_fc`).
    pub obj_class_fc: Linear<B>,
    pub obj_class_ln: LayerNorm<B>,
}

/// The whole model.
#[derive(Module, Debug)]
pub struct Hoiclip<B: ModelBackend> {
    pub logit_scale: Param<Tensor<B, 1>>,
    pub obj_logit_scale: Param<Tensor<B, 1>>,
    pub verb2hoi_proj: Param<Tensor<B, 2>>,
    /// Zero-shot layout only: the verb -> HOI map over all classes.
    pub verb2hoi_proj_eval: Option<Param<Tensor<B, 2>>>,
    pub query_embed_h: Embedding<B>,
    pub query_embed_o: Embedding<B>,
    pub pos_guided_embedd: Embedding<B>,
    pub hum_bbox_embed: Mlp<B>,
    pub obj_bbox_embed: Mlp<B>,
    pub inter2verb: Mlp<B>,
    pub input_proj: Conv2d<B>,
    pub backbone: ResNet<B>,
    pub transformer: HoiTransformer<B>,
    pub clip_model: Clip<B>,
    pub verb_projection: Linear<B>,
    pub visual_projection: Linear<B>,
    /// Zero-shot layout only: normalised text embeddings of every HOI class, no bias.
    pub eval_visual_projection: Option<Linear<B>>,
    pub obj_class_fc: ObjClassFc<B>,
    pub obj_visual_projection: Linear<B>,
    num_queries: usize,
    verb_weight: f64,
}

/// A batch ready for the model (see `crate::vision` for how images become one).
#[derive(Debug, Clone)]
pub struct ModelInput<B: ModelBackend> {
    /// DETR branch, ImageNet-normalised, zero-padded to a common size: `[B, 3, H, W]`.
    pub detr: Tensor<B, 4>,
    /// Each image's unpadded (height, width) inside `detr`.
    pub valid: Vec<(usize, usize)>,
    /// CLIP branch, CLIP-normalised: `[B, 3, R, R]`.
    pub clip: Tensor<B, 4>,
}

/// What the classifier heads read: everything up to the class-specific weights.
#[derive(Debug, Clone)]
pub struct Features<B: ModelBackend> {
    /// Interaction features in CLIP space, last decoder layer: `[B, Nq, E]`.
    pub inter_hs: Tensor<B, 3>,
    /// L2-normalised object features: `[B, Nq, E]`.
    pub obj_feat: Tensor<B, 3>,
    /// Normalised (cx, cy, w, h) relative to the unpadded image: `[B, Nq, 4]`.
    pub sub_boxes: Tensor<B, 3>,
    pub obj_boxes: Tensor<B, 3>,
    /// CLIP image embedding `ln_post(x0) @ proj`, not normalised: `[B, E]`.
    pub clip_cls: Tensor<B, 2>,
}

/// Intermediate tensors, for parity tests and debugging.
#[derive(Debug, Clone)]
pub struct Trace<B: ModelBackend> {
    pub c5: Tensor<B, 4>,
    pub memory: Tensor<B, 3>,
    pub h_hs: Tensor<B, 3>,
    pub o_hs: Tensor<B, 3>,
}

/// The classifier's weights, laid out for matmuls (`[E, classes]`).
#[derive(Debug, Clone)]
pub struct ClassifierWeights<B: ModelBackend> {
    /// Normalised HOI text embeddings `[E, C]` and their bias `[C]`.
    pub hoi_weight: Tensor<B, 2>,
    pub hoi_bias: Tensor<B, 1>,
    /// Verb rows `[E, V]` and the verb -> HOI map `[V, C]`.
    pub verb_weight: Tensor<B, 2>,
    pub verb2hoi: Tensor<B, 2>,
    /// Object rows `[E, K+1]` (last: no object) and bias `[K+1]`.
    pub obj_weight: Tensor<B, 2>,
    pub obj_bias: Tensor<B, 1>,
}

/// Raw predictions, as the official `HOICLIP.forward` returns them (last layer).
#[derive(Debug, Clone)]
pub struct Predictions<B: ModelBackend> {
    pub hoi_logits: Tensor<B, 3>,
    /// The HOI text term of `hoi_logits` alone (the rest is the verb term): read only to
    /// explain a score.
    pub hoi_text_logits: Tensor<B, 3>,
    pub obj_logits: Tensor<B, 3>,
    pub sub_boxes: Tensor<B, 3>,
    pub obj_boxes: Tensor<B, 3>,
    pub clip_cls: Tensor<B, 2>,
    /// Raw cosine of the normalised CLIP image embedding with each HOI row: `[B, C]`.
    pub clip_logits: Tensor<B, 2>,
}

impl<B: ModelBackend> Hoiclip<B> {
    /// The classifier the checkpoint scores with: its trained one, or for a zero-shot
    /// checkpoint the evaluation one over all classes (`eval_visual_projection`, no bias,
    /// and `verb2hoi_proj_eval`), as the official evaluation runs it.
    pub fn trained_classifier(&self) -> ClassifierWeights<B> {
        let device = self.logit_scale.device();
        let k = self.obj_visual_projection.weight.dims()[1];
        let (hoi, verb2hoi) = match (&self.eval_visual_projection, &self.verb2hoi_proj_eval) {
            (Some(eval), Some(map)) => (eval, map),
            _ => (&self.visual_projection, &self.verb2hoi_proj),
        };
        let c = hoi.weight.dims()[1];
        ClassifierWeights {
            hoi_weight: hoi.weight.val(),
            hoi_bias: hoi
                .bias
                .as_ref()
                .map(|b| b.val())
                .unwrap_or_else(|| Tensor::zeros([c], &device)),
            verb_weight: self.verb_projection.weight.val(),
            verb2hoi: verb2hoi.val(),
            obj_weight: self.obj_visual_projection.weight.val(),
            obj_bias: self
                .obj_visual_projection
                .bias
                .as_ref()
                .map(|b| b.val())
                .unwrap_or_else(|| Tensor::zeros([k], &device)),
        }
    }

    /// The same model ready to run on its backend: the backbone's frozen batch norm
    /// factors computed once, and folded into the convolutions' weights where the backend
    /// asks for it ([`ModelBackend::FOLD_BATCH_NORM`]). Done once, at load.
    pub fn prepare_for_inference(mut self) -> Self {
        self.backbone = self.backbone.prepare_batch_norms(B::FOLD_BATCH_NORM);
        self
    }

    /// Trunk up to the class-specific heads, with intermediate tensors.
    pub fn features_traced(&self, input: ModelInput<B>) -> (Features<B>, Trace<B>) {
        let device = self.logit_scale.device();
        let [batch, _, ph, pw] = input.detr.dims();
        // Padding changes no image's answer: the backbone keeps it zero where convolutions
        // look, and every attention over image memory masks it (the CLIP fusion layers
        // too, which the official model leaves unmasked: it evaluates single images).
        let valid = Valid::new(&input.valid, (ph, pw));
        let c5 = self.backbone.forward_padded(input.detr, &valid);
        let [_, _, h, w] = c5.dims();
        let d = self.input_proj.weight.dims()[0];
        let valid_feat = match &valid {
            Valid::Whole => vec![(h, w); batch],
            Valid::Sizes(sizes) => ResNet::<B>::valid_features(sizes),
        };
        let position = position_inputs(&valid_feat, (h, w), d / 2);
        let padded = position.mask.iter().any(|&m| m);
        let mask = Tensor::<B, 2, Bool>::from_data(
            TensorData::new(position.mask, [batch, h * w]),
            &device,
        );
        let pos =
            Tensor::<B, 4>::from_data(TensorData::new(position.pos, [batch, d, h, w]), &device)
                .reshape([batch, d, h * w])
                .swap_dims(1, 2);
        let src = self
            .input_proj
            .forward(c5.clone())
            .reshape([batch, d, h * w])
            .swap_dims(1, 2);

        let mut memory = src;
        for layer in &self.transformer.encoder.layers {
            memory = layer.forward(memory, pos.clone(), mask.clone());
        }

        // Human query i and object query i share the position-guided embedding i.
        let nq = self.num_queries;
        let guided = self.pos_guided_embedd.weight.val();
        let query_pos = Tensor::cat(
            vec![
                self.query_embed_h.weight.val() + guided.clone(),
                self.query_embed_o.weight.val() + guided,
            ],
            0,
        )
        .unsqueeze::<3>()
        .expand([batch, 2 * nq, d]);
        let mut tgt = Tensor::zeros([batch, 2 * nq, d], &device);
        for layer in &self.transformer.instance_decoder.layers {
            tgt = layer.forward(
                tgt,
                query_pos.clone(),
                memory.clone(),
                pos.clone(),
                mask.clone(),
            );
        }
        let hs = self.transformer.instance_decoder.norm.forward(tgt);
        let h_hs = hs.clone().narrow(1, 0, nq);
        let o_hs = hs.narrow(1, nq, nq);

        let clip = self.clip_model.encode_image(input.clip);
        let t = self.transformer.queries2spacial_proj_norm.forward(forward3(
            &self.transformer.queries2spacial_proj,
            (h_hs.clone() + o_hs.clone()) / 2.0,
        ));
        let det_memory = self
            .transformer
            .obj_class_ln
            .forward(forward3(&self.transformer.obj_class_fc, memory.clone()));
        let mut t = t;
        for layer in &self.transformer.clip_interaction_decoder.layers {
            t = fusion_layer(
                layer,
                t,
                clip.tokens.clone(),
                det_memory.clone(),
                padded.then(|| mask.clone()),
            );
        }
        let t = self.transformer.clip_interaction_decoder.norm.forward(t);
        let inter_hs = self.clip_model.visual.project(t);

        let obj = self
            .obj_class_fc
            .norm
            .forward(forward3(&self.obj_class_fc.linear, o_hs.clone()));
        let features = Features {
            inter_hs,
            obj_feat: l2_normalize(obj),
            sub_boxes: sigmoid(self.hum_bbox_embed.forward(h_hs.clone())),
            obj_boxes: sigmoid(self.obj_bbox_embed.forward(o_hs.clone())),
            clip_cls: clip.cls,
        };
        (
            features,
            Trace {
                c5,
                memory,
                h_hs,
                o_hs,
            },
        )
    }

    pub fn features(&self, input: ModelInput<B>) -> Features<B> {
        self.features_traced(input).0
    }

    /// Class logits for `features` under `classifier` (official formulas, last layer).
    pub fn heads(
        &self,
        features: &Features<B>,
        classifier: &ClassifierWeights<B>,
    ) -> Predictions<B> {
        let scale = self.logit_scale.val().exp().reshape([1, 1, 1]);
        let obj_scale = self.obj_logit_scale.val().exp().reshape([1, 1, 1]);
        let matmul3 = |x: Tensor<B, 3>, w: Tensor<B, 2>| {
            let [b, n, e] = x.dims();
            let c = w.dims()[1];
            x.reshape([b * n, e]).matmul(w).reshape([b, n, c])
        };
        let c = classifier.hoi_weight.dims()[1];
        let k = classifier.obj_weight.dims()[1];
        let f = l2_normalize(features.inter_hs.clone());
        let hoi = (matmul3(f, classifier.hoi_weight.clone())
            + classifier.hoi_bias.clone().reshape([1, 1, c]))
            * scale.clone();
        let g = l2_normalize(self.inter2verb.forward(features.inter_hs.clone()));
        let verb = matmul3(g, classifier.verb_weight.clone()) * scale;
        let hoi_logits =
            hoi.clone() + matmul3(verb, classifier.verb2hoi.clone()) * self.verb_weight;
        let obj_logits = (matmul3(features.obj_feat.clone(), classifier.obj_weight.clone())
            + classifier.obj_bias.clone().reshape([1, 1, k]))
            * obj_scale;
        let clip_logits =
            l2_normalize(features.clip_cls.clone()).matmul(classifier.hoi_weight.clone());
        Predictions {
            hoi_logits,
            hoi_text_logits: hoi,
            obj_logits,
            sub_boxes: features.sub_boxes.clone(),
            obj_boxes: features.obj_boxes.clone(),
            clip_cls: features.clip_cls.clone(),
            clip_logits,
        }
    }

    /// Full forward pass with the checkpoint's own classifier.
    pub fn forward(&self, input: ModelInput<B>) -> Predictions<B> {
        let features = self.features(input);
        self.heads(&features, &self.trained_classifier())
    }
}
