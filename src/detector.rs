//! One object that turns images into interaction triplets: model + classifier +
//! vocabulary + pre/post-processing. The engine's worker runs it (for the server, the CLI
//! and evaluation alike); only `prepare` (host work) is called from elsewhere.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::prelude::*;
use image::RgbImage;

use crate::classifier::{ClassRow, ClassifierSet};
use crate::model::clip::ClipConfig;
use crate::model::clip::tokenizer::{ClipTokenizer, TokenizerError};
use crate::model::hoiclip::{self, Classifier, Hoiclip, HoiclipConfig};
use crate::model::kernels::ModelBackend;
use crate::model::weights::WeightsError;
pub use crate::postprocess::ScoreTerms;
use crate::postprocess::{
    ImagePredictions, PostprocessConfig, Triplet, VerbLayout, score_terms, triplets,
};
use crate::vision::preprocess::{Prepared, PreprocessConfig, batch_in_bucket, prepare};
use crate::vocab::Pack;

#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Classifier(#[from] crate::classifier::ClassifierError),
    #[error(
        "the checkpoint has {classes} HOI classes; known vocabularies have 600 (HICO-DET) or 263 (V-COCO)"
    )]
    UnknownVocabulary { classes: usize },
    #[error(
        "the checkpoint has {objects} object classes; its {vocabulary} vocabulary needs at least {needed}"
    )]
    TooFewObjectClasses {
        objects: usize,
        needed: usize,
        vocabulary: String,
    },
    /// The device's outputs could not be read back: an error, never "no detections".
    #[error("cannot read the model's outputs back from the device: {0}")]
    ReadBack(String),
}

/// What model is running, for responses and `/info`.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// "hoiclip-hico-det" for official weights, "hoiclip-demo" otherwise.
    pub name: String,
    /// False for the demo model: random weights, meaningless detections.
    pub trained: bool,
    pub weights: Option<PathBuf>,
    pub vocabulary: String,
    /// The scoring settings in use and where they came from.
    pub scoring: Scoring,
    /// Set for a checkpoint trained for a zero-shot split.
    pub zero_shot: Option<ZeroShot>,
}

/// A checkpoint trained for a zero-shot split (reference 1.7 and 5): its trained
/// classifier has only the seen classes; it scores with the evaluation classifier over all
/// classes (CLIP text rows), as the official evaluation does.
#[derive(Debug, Clone, PartialEq)]
pub struct ZeroShot {
    /// The saved `args.zero_shot_type` (`rare_first`, `unseen_verb`, ...), if any.
    pub split: Option<String>,
    /// Rows of the trained classifier, and of the evaluation one.
    pub seen_classes: usize,
    pub classes: usize,
    /// The interactions (0-based, the vocabulary's order) unseen in training: the split's
    /// list where the split is known and agrees with the checkpoint's shapes.
    pub unseen: Option<Vec<usize>>,
}

impl ZeroShot {
    /// What `config` and the saved split name say, checked against `pack`'s splits.
    fn read(config: &HoiclipConfig, pack: &Pack, split: Option<&str>) -> Option<Self> {
        let seen_classes = config.seen_hoi_classes?;
        let classes = config.num_hoi_classes;
        let split = split.filter(|s| *s != "default").map(str::to_string);
        let unseen = split.as_ref().and_then(|name| {
            let list = pack.zero_shot.get(name)?;
            // With --del_unseen the trained classifier lacks exactly the unseen classes.
            let agrees = seen_classes == classes || list.len() == classes - seen_classes;
            if !agrees {
                tracing::warn!(
                    split = name.as_str(),
                    unseen = list.len(),
                    seen_classes,
                    classes,
                    "the checkpoint's zero-shot split does not match its classifier's size; unseen classes unknown"
                );
            }
            agrees.then(|| list.clone())
        });
        Some(Self {
            split,
            seen_classes,
            classes,
            unseen,
        })
    }
}

/// How raw outputs become scores and triplets: from the checkpoint's saved training
/// arguments when it has them, else the dataset's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Scoring {
    /// Weight of the verb branch in the HOI logits (HICO-DET 0.5, V-COCO 0.1).
    pub verb_weight: f64,
    /// `interactions` (HICO-DET: one triplet per HOI class, triplet NMS) or `verbs`
    /// (V-COCO: one per verb with the predicted object, validity matrix, no NMS).
    pub output: crate::postprocess::Output,
    /// Triplet NMS: applied to interactions output only, so always false for verbs.
    pub nms: bool,
    pub nms_threshold: f32,
    pub nms_alpha: f32,
    pub nms_beta: f32,
    /// `checkpoint args` or `dataset defaults`.
    pub source: String,
}

impl Scoring {
    /// The settings for a checkpoint of `vocabulary` with `verb_weight`, overridden by its
    /// saved `args` where present.
    pub fn from_args(
        vocabulary: &str,
        verb_weight: f64,
        arg: impl Fn(&str) -> Option<f64>,
    ) -> (Self, PostprocessConfig) {
        let defaults = PostprocessConfig::default();
        let output = if vocabulary == "v-coco" {
            crate::postprocess::Output::Verbs
        } else {
            crate::postprocess::Output::Interactions
        };
        let finite = |name: &str| arg(name).filter(|v| v.is_finite());
        let found = [
            "verb_weight",
            "use_nms_filter",
            "thres_nms",
            "nms_alpha",
            "nms_beta",
        ]
        .iter()
        .any(|n| finite(n).is_some());
        let config = PostprocessConfig {
            output,
            // V-COCO's evaluation never applies triplet NMS, whatever the saved args say.
            nms: output == crate::postprocess::Output::Interactions
                && finite("use_nms_filter").map_or(defaults.nms, |v| v != 0.0),
            nms_threshold: finite("thres_nms").map_or(defaults.nms_threshold, |v| v as f32),
            nms_alpha: finite("nms_alpha").map_or(defaults.nms_alpha, |v| v as f32),
            nms_beta: finite("nms_beta").map_or(defaults.nms_beta, |v| v as f32),
            ..defaults
        };
        let scoring = Self {
            verb_weight,
            output,
            nms: config.nms,
            nms_threshold: config.nms_threshold,
            nms_alpha: config.nms_alpha,
            nms_beta: config.nms_beta,
            source: if found {
                "checkpoint args"
            } else {
                "dataset defaults"
            }
            .into(),
        };
        (scoring, config)
    }
}

/// Triplets an answer carries unless asked otherwise.
pub const DEFAULT_TOP_K: usize = 100;

/// Per-call options.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectOptions {
    /// Drop triplets scoring below this.
    pub score_threshold: f32,
    /// Return at most this many triplets per image (after NMS).
    pub max_results: usize,
    /// Candidates kept before NMS, or as the verb-level top-k (the official 100).
    pub candidates: usize,
    /// Training-free enhancement with CLIP's top-K image-level scores (paper: K=10).
    pub tfe_top_k: Option<usize>,
    /// Score only these HOI classes (indices into the classifier's rows); `None`: all.
    pub classes: Option<Vec<usize>>,
    /// Give each detection its score terms ([`ScoreTerms`]).
    pub explain: bool,
}

impl Default for DetectOptions {
    fn default() -> Self {
        Self {
            score_threshold: 0.0,
            max_results: DEFAULT_TOP_K,
            candidates: crate::postprocess::OFFICIAL_CANDIDATES,
            tfe_top_k: None,
            classes: None,
            explain: false,
        }
    }
}

/// A detected person's box.
#[derive(Debug, Clone, PartialEq)]
pub struct HumanBox {
    /// `[x1, y1, x2, y2]` in original pixels.
    pub bbox: [f32; 4],
}

/// A detected object's box and its predicted label.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectBox {
    /// `[x1, y1, x2, y2]` in original pixels.
    pub bbox: [f32; 4],
    pub label: String,
}

/// One detected interaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub human: HumanBox,
    pub object: ObjectBox,
    pub verb: String,
    /// The interaction's prompt text, e.g. "a photo of a person riding a bicycle".
    pub interaction: String,
    /// Index of the interaction in the vocabulary.
    pub interaction_index: usize,
    pub score: f32,
    /// The decoder query (human-object pair) it came from: triplets of one query share
    /// their boxes.
    pub query: usize,
    /// What the score is made of (when asked for).
    pub terms: Option<ScoreTerms>,
}

impl Detection {
    /// What rendering draws for it: both boxes and "verb object score".
    pub fn pair(&self) -> crate::vision::render::Pair {
        crate::vision::render::Pair {
            human: self.human.bbox,
            object: self.object.bbox,
            caption: format!("{} {} {:.2}", self.verb, self.object.label, self.score),
        }
    }

    /// [`Self::pair`] of each detection.
    pub fn pairs(detections: &[Detection]) -> Vec<crate::vision::render::Pair> {
        detections.iter().map(Detection::pair).collect()
    }

    fn new(t: Triplet, verb: &str, label: &str, prompt: &str) -> Self {
        Self {
            human: HumanBox { bbox: t.human_box },
            object: ObjectBox {
                bbox: t.object_box,
                label: label.to_string(),
            },
            verb: verb.to_string(),
            interaction: prompt.to_string(),
            interaction_index: t.hoi,
            score: t.score,
            query: t.query,
            terms: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImageDetections {
    pub width: u32,
    pub height: u32,
    pub detections: Vec<Detection>,
}

pub struct Detector<B: ModelBackend> {
    model: Hoiclip<B>,
    /// The checkpoint's own classifier as a set (version 0) over its pack's rows.
    own: Arc<ClassifierSet<B>>,
    pack: Pack,
    preprocess: PreprocessConfig,
    /// Padded sizes rounded up to multiples of this (0: off).
    size_bucket: usize,
    postprocess: PostprocessConfig,
    info: ModelInfo,
    text_fingerprint: String,
    vision_fingerprint: String,
    device: B::Device,
}

/// One image of a batch: its prepared input, options, and the set that scores it.
pub struct BatchItem<'a, B: ModelBackend> {
    pub input: &'a Prepared,
    pub options: &'a DetectOptions,
    pub set: &'a ClassifierSet<B>,
}
impl HoiclipConfig {
    /// The demo model: the full architecture at a small size (fast on a CPU), HICO-DET's
    /// 600 classes, random weights with a fixed seed. Its detections mean nothing.
    pub fn demo() -> Self {
        let clip = ClipConfig {
            embed_dim: 64,
            image_resolution: 64,
            vision_patch_size: 16,
            vision_width: 64,
            vision_layers: 2,
            vision_heads: 2,
            context_length: 77,
            vocab_size: 49408,
            text_width: 64,
            text_layers: 2,
            text_heads: 2,
        };
        HoiclipConfig::new(clip)
            .with_backbone_layers([1, 1, 1, 1])
            .with_backbone_base_width(16)
            .with_hidden_dim(64)
            .with_nheads(4)
            .with_enc_layers(1)
            .with_dec_layers(2)
            .with_inter_dec_layers(1)
            .with_dim_feedforward(128)
            .with_num_queries(16)
    }
}

/// Seed of the demo model's weights.
pub const DEMO_SEED: u64 = 20_261_127;

impl<B: ModelBackend> Detector<B> {
    /// The clearly labelled demo model (see [`HoiclipConfig::demo`]). Its classifier is
    /// built the way new vocabularies are: HICO-DET prompts through its own text tower.
    pub fn demo(device: &B::Device) -> Result<Self, DetectorError> {
        Self::random(HoiclipConfig::demo(), device)
    }

    /// Any architecture with seeded random weights, labelled like the demo model
    /// (`trained: false`): for benchmarks at full size.
    pub fn random(config: HoiclipConfig, device: &B::Device) -> Result<Self, DetectorError> {
        let model = config
            .init::<B>(device)
            .map(&mut SeededReinit::new(DEMO_SEED));
        let pack = Pack::hico_det();
        let tokenizer = ClipTokenizer::new()?;
        let classifier = text_classifier(&model, &pack, &tokenizer, device)?;
        let (scoring, postprocess) = Scoring::from_args(&pack.name, config.verb_weight, |_| None);
        Self::assemble(
            model,
            classifier,
            pack,
            &config,
            postprocess,
            ModelInfo {
                name: "hoiclip-demo".into(),
                trained: false,
                weights: None,
                vocabulary: "hico-det".into(),
                scoring,
                zero_shot: None,
            },
            device,
        )
    }

    /// An official HOICLIP checkpoint (`.pth`) or a native file from `hoiclip convert`,
    /// with the classifier it was trained with.
    pub fn from_weights(path: &Path, device: &B::Device) -> Result<Self, DetectorError> {
        let checkpoint = crate::model::weights::Checkpoint::open(path)?;
        let (model, config, report) = hoiclip::load_checkpoint::<B>(&checkpoint, device)?;
        tracing::info!(path = %path.display(), loaded = report.applied.len(), ignored = report.ignored.len(), "weights loaded");
        let pack = match config.num_hoi_classes {
            600 => Pack::hico_det(),
            263 => Pack::v_coco(),
            classes => return Err(DetectorError::UnknownVocabulary { classes }),
        };
        // Each HOI class reads its object's logit (the last one: "no object"): a checkpoint
        // with fewer object classes than its vocabulary uses would be read past its end.
        let needed = pack.hoi_object().into_iter().max().unwrap_or(0);
        if needed > config.num_obj_classes {
            return Err(DetectorError::TooFewObjectClasses {
                objects: config.num_obj_classes,
                needed,
                vocabulary: pack.name.clone(),
            });
        }
        let classifier = model.trained_classifier();
        let zero_shot = ZeroShot::read(
            &config,
            &pack,
            checkpoint
                .arg("zero_shot_type")
                .and_then(crate::model::Arg::as_str),
        );
        let name = format!("hoiclip-{}", pack.name);
        let vocabulary = pack.name.clone();
        let (scoring, postprocess) = Scoring::from_args(&pack.name, config.verb_weight, |n| {
            checkpoint.arg(n).and_then(crate::model::Arg::as_f64)
        });
        Self::assemble(
            model,
            classifier,
            pack,
            &config,
            postprocess,
            ModelInfo {
                name,
                trained: true,
                weights: Some(path.to_path_buf()),
                vocabulary,
                scoring,
                zero_shot,
            },
            device,
        )
    }

    fn assemble(
        model: Hoiclip<B>,
        classifier: Classifier<B>,
        pack: Pack,
        config: &HoiclipConfig,
        postprocess: PostprocessConfig,
        info: ModelInfo,
        device: &B::Device,
    ) -> Result<Self, DetectorError> {
        let text_fingerprint = crate::classifier::text_fingerprint(&model.clip_model)?;
        let vision_fingerprint = crate::classifier::vision_fingerprint(&model.clip_model)?;
        let preprocess = PreprocessConfig {
            clip_resolution: config.clip.image_resolution,
            ..PreprocessConfig::default()
        };
        let own = Arc::new(own_set(classifier, &pack));
        Ok(Self {
            model: model.prepare_for_inference(),
            own,
            pack,
            preprocess,
            size_bucket: 0,
            postprocess,
            info,
            text_fingerprint,
            vision_fingerprint,
            device: device.clone(),
        })
    }

    /// Fingerprint of the text tower's weights (keys the embedding cache).
    pub fn text_fingerprint(&self) -> &str {
        &self.text_fingerprint
    }

    /// Fingerprint of the image tower's weights (keys features of example crops).
    pub fn vision_fingerprint(&self) -> &str {
        &self.vision_fingerprint
    }

    /// Side of the square CLIP input (crops are prepared at this size).
    pub fn clip_resolution(&self) -> usize {
        self.preprocess.clip_resolution
    }

    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// The checkpoint's own classifier set (version 0, the pack's rows in order).
    pub fn classes(&self) -> Arc<ClassifierSet<B>> {
        self.own.clone()
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn pack(&self) -> &Pack {
        &self.pack
    }

    pub fn model(&self) -> &Hoiclip<B> {
        &self.model
    }

    /// Detects interactions in each image (one batched forward pass) with the checkpoint's
    /// own classifier and vocabulary.
    pub fn detect(
        &self,
        images: &[RgbImage],
        options: &DetectOptions,
    ) -> Result<Vec<ImageDetections>, DetectorError> {
        self.detect_with_set(images, options, &self.own)
    }

    /// Detects with a classifier set built from the vocabulary store (user interactions
    /// included). The set's version is the one the caller reports.
    pub fn detect_with_set(
        &self,
        images: &[RgbImage],
        options: &DetectOptions,
        set: &ClassifierSet<B>,
    ) -> Result<Vec<ImageDetections>, DetectorError> {
        let prepared: Vec<Prepared> = images.iter().map(|img| self.prepare(img)).collect();
        let items: Vec<BatchItem<'_, B>> = prepared
            .iter()
            .map(|input| BatchItem {
                input,
                options,
                set,
            })
            .collect();
        self.detect_batch(&items)
    }

    /// Resizes and normalises an image for [`Self::detect_batch`] (host work, no tensors).
    pub fn prepare(&self, image: &RgbImage) -> Prepared {
        prepare(image, &self.preprocess)
    }

    /// A blank input of DETR size `size` (h, w), for warm-up passes.
    pub fn blank_input(&self, size: (usize, usize)) -> Prepared {
        let r = self.preprocess.clip_resolution;
        Prepared {
            original: (size.1 as u32, size.0 as u32),
            detr: vec![0.0; 3 * size.0 * size.1],
            detr_size: size,
            clip: vec![0.0; 3 * r * r],
        }
    }

    /// Rounds every batch's padded size up to multiples of `step` (0: off), so a GPU
    /// backend meets few input shapes. Exact: padding changes no answer.
    pub fn set_size_bucket(&mut self, step: usize) {
        self.size_bucket = step;
    }

    pub fn size_bucket(&self) -> usize {
        self.size_bucket
    }

    pub fn preprocess_config(&self) -> &PreprocessConfig {
        &self.preprocess
    }

    /// One forward pass of the trunk over all items (zero-padded to the largest, with
    /// masks), then the heads once per distinct classifier set, then post-processing per
    /// image. Padding is exact: each item gets its answer alone, up to float rounding.
    pub fn detect_batch(
        &self,
        items: &[BatchItem<'_, B>],
    ) -> Result<Vec<ImageDetections>, DetectorError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let inputs: Vec<&Prepared> = items.iter().map(|i| i.input).collect();
        let input = batch_in_bucket::<B>(&inputs, self.size_bucket, &self.device);
        let features = self.model.features(input);
        let mut out: Vec<Option<ImageDetections>> = vec![None; items.len()];
        let mut done = vec![false; items.len()];
        for first in 0..items.len() {
            if done[first] {
                continue;
            }
            let set = items[first].set;
            let members: Vec<usize> = (first..items.len())
                .filter(|&i| !done[i] && std::ptr::eq(items[i].set, set))
                .collect();
            for &i in &members {
                done[i] = true;
            }
            let preds = if members.len() == items.len() {
                self.model.heads(&features, &set.classifier)
            } else {
                let picked = select_features(&features, &members, &self.device);
                self.model.heads(&picked, &set.classifier)
            };
            let results = self.postprocess_group(preds, &members, items, set)?;
            for (i, r) in members.into_iter().zip(results) {
                out[i] = Some(r);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    fn postprocess_group(
        &self,
        preds: hoiclip::Predictions<B>,
        members: &[usize],
        items: &[BatchItem<'_, B>],
        set: &ClassifierSet<B>,
    ) -> Result<Vec<ImageDetections>, DetectorError> {
        let read = |data: TensorData| {
            data.to_vec::<f32>()
                .map_err(|e| DetectorError::ReadBack(format!("{e:?}")))
        };
        let (hoi, obj) = (
            read(preds.hoi_logits.into_data())?,
            read(preds.obj_logits.into_data())?,
        );
        let (sub, objb) = (
            read(preds.sub_boxes.into_data())?,
            read(preds.obj_boxes.into_data())?,
        );
        let clip = read(preds.clip_logits.into_data())?;
        // The text term alone, read back only when some image wants its scores explained.
        let text = match members.iter().any(|&i| items[i].options.explain) {
            true => Some(read(preds.hoi_text_logits.into_data())?),
            false => None,
        };
        let n = members.len();
        let (per_hoi, per_obj, per_box, per_clip) =
            (hoi.len() / n, obj.len() / n, sub.len() / n, clip.len() / n);
        Ok(members
            .iter()
            .enumerate()
            .map(|(j, &i)| {
                let options = items[i].options;
                let size = items[i].input.original;
                let config = PostprocessConfig {
                    tfe_top_k: options.tfe_top_k,
                    top_k: options.candidates,
                    ..self.postprocess
                };
                let allowed = options
                    .classes
                    .as_ref()
                    .map(|classes| class_mask(classes, set.hoi_object.len()));
                let p = ImagePredictions {
                    hoi_logits: &hoi[j * per_hoi..(j + 1) * per_hoi],
                    obj_logits: &obj[j * per_obj..(j + 1) * per_obj],
                    sub_boxes: &sub[j * per_box..(j + 1) * per_box],
                    obj_boxes: &objb[j * per_box..(j + 1) * per_box],
                    clip_logits: &clip[j * per_clip..(j + 1) * per_clip],
                    size,
                };
                let layout = VerbLayout {
                    hoi_verb: &set.hoi_verb,
                    verbs: set.verb_labels.len(),
                    valid: &set.valid,
                    objects: set.object_labels.len(),
                    label_rows: &set.label_rows,
                };
                let text = text
                    .as_ref()
                    .filter(|_| options.explain)
                    .map(|t| &t[j * per_hoi..(j + 1) * per_hoi]);
                let kept: Vec<Triplet> = triplets(
                    &p,
                    &set.hoi_object,
                    Some(layout),
                    allowed.as_deref(),
                    &config,
                )
                .into_iter()
                .filter(|t| t.score >= options.score_threshold)
                .take(options.max_results)
                .collect();
                let terms = match text {
                    Some(text) => score_terms(&p, text, &set.hoi_object, &kept, &config)
                        .into_iter()
                        .map(Some)
                        .collect(),
                    None => vec![None; kept.len()],
                };
                let detections = kept
                    .into_iter()
                    .zip(terms)
                    .map(|(t, terms)| {
                        let row = &set.rows[t.hoi];
                        // Verb-level triplets carry the query's predicted object.
                        let label = t
                            .object_row
                            .and_then(|k| set.object_labels.get(k))
                            .unwrap_or(&row.object);
                        let label = label.clone();
                        Detection {
                            terms,
                            ..Detection::new(t, &row.verb, &label, &row.prompt)
                        }
                    })
                    .collect();
                ImageDetections {
                    width: size.0,
                    height: size.1,
                    detections,
                }
            })
            .collect())
    }

    /// The checkpoint's trained rows, for building classifier sets from the store.
    pub fn trained_rows(&self) -> Option<crate::classifier::TrainedRows<B>> {
        self.info.trained.then(|| crate::classifier::TrainedRows {
            pack: self.pack.name.clone(),
            classifier: self.own.classifier.clone(),
            correct_matrix: self.pack.correct_matrix.clone(),
        })
    }
}

/// Re-draws every randomly initialised float parameter from a private seeded generator,
/// with a scale fixed by the parameter's shape (constants such as norm weights stay).
/// Burn's own RNG is global (shared with anything else initialising at the same time), so
/// it cannot make the demo model reproducible; this can.
struct SeededReinit {
    rng: rand::rngs::StdRng,
    in_embedding: usize,
}

impl SeededReinit {
    fn new(seed: u64) -> Self {
        use rand::SeedableRng;
        Self {
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            in_embedding: 0,
        }
    }
}

impl<B: ModelBackend> burn::module::ModuleMapper<B> for SeededReinit {
    fn enter_module(&mut self, _name: &str, container_type: &str) {
        if container_type == "Struct:Embedding" {
            self.in_embedding += 1;
        }
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        if container_type == "Struct:Embedding" {
            self.in_embedding -= 1;
        }
    }

    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<B, D>>,
    ) -> burn::module::Param<Tensor<B, D>> {
        use rand::Rng;
        let (id, tensor, mapper) = param.consume();
        let dims = tensor.dims();
        let device = tensor.device();
        let values: Vec<f32> = tensor
            .clone()
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap_or_default();
        let constant = values.windows(2).all(|w| w[0] == w[1]);
        if constant {
            return burn::module::Param::from_mapped_value(id, tensor, mapper);
        }
        let bound = match D {
            1 => 0.05,
            2 if self.in_embedding > 0 => 1.0,
            2 => 1.0 / (dims[0] as f32).sqrt(),
            _ => 1.0 / (dims[1..].iter().product::<usize>() as f32).sqrt(),
        };
        let fresh: Vec<f32> = values
            .iter()
            .map(|_| bound * self.rng.random_range(-1.0f32..=1.0))
            .collect();
        let tensor = Tensor::from_data(TensorData::new(fresh, dims), &device);
        burn::module::Param::from_mapped_value(id, tensor, mapper)
    }
}

/// A classifier made from text only: normalised prompt embeddings (bias 0) for the HOI
/// and object rows, the model's verb rows and the pack's verb -> HOI map.
pub fn text_classifier<B: ModelBackend>(
    model: &Hoiclip<B>,
    pack: &Pack,
    tokenizer: &ClipTokenizer,
    device: &B::Device,
) -> Result<Classifier<B>, DetectorError> {
    let embed = |prompts: Vec<String>| -> Result<Tensor<B, 2>, DetectorError> {
        let rows = crate::classifier::embed_prompts(
            &model.clip_model,
            tokenizer,
            &prompts,
            crate::classifier::TEXT_BATCH,
        )?;
        let (n, dim) = (rows.len(), rows.first().map_or(0, Vec::len));
        Ok(Tensor::from_data(
            TensorData::new(rows.concat(), [n, dim]),
            device,
        ))
    };
    let hoi = embed(pack.interactions.iter().map(|i| i.prompt.clone()).collect())?;
    let obj = embed(pack.object_prompts.clone())?;
    let (c, k) = (hoi.dims()[0], obj.dims()[0]);
    let v = pack.verbs.len();
    Ok(Classifier {
        hoi_weight: hoi.transpose(),
        hoi_bias: Tensor::zeros([c], device),
        verb_weight: model.verb_projection.weight.val(),
        verb2hoi: Tensor::from_data(TensorData::new(pack.verb_to_hoi(), [v, c]), device),
        obj_weight: obj.transpose(),
        obj_bias: Tensor::zeros([k], device),
    })
}

/// The checkpoint's classifier with its pack's rows, so one code path scores both.
fn own_set<B: ModelBackend>(classifier: Classifier<B>, pack: &Pack) -> ClassifierSet<B> {
    let rows = pack
        .interactions
        .iter()
        .map(|it| ClassRow {
            interaction_id: it.index as i64,
            pack: pack.name.clone(),
            verb_id: it.verb as i64,
            object_id: None,
            verb: pack.verbs[it.verb].name.clone(),
            object: pack.object_name(it.object).to_string(),
            prompt: it.prompt.clone(),
        })
        .collect();
    let mut object_labels: Vec<String> = pack.objects.iter().map(|o| o.name.clone()).collect();
    // V-COCO's classifier has a trained "no object" role row before DETR's "no object".
    let rows_in_classifier = classifier.obj_bias.dims()[0];
    let role_row = (rows_in_classifier == pack.objects.len() + 2).then_some(pack.objects.len());
    if role_row.is_some() {
        object_labels.push(crate::classifier::NOTHING.to_string());
    }
    object_labels.push(crate::classifier::NOTHING.to_string());
    let hoi_object = pack.hoi_object();
    let hoi_verb = pack.hoi_verb();
    let (v, k) = (pack.verbs.len(), object_labels.len());
    let official = pack
        .correct_matrix
        .as_deref()
        .map(|m| {
            crate::classifier::official_cells(m, Some, |o| (o < pack.objects.len()).then_some(o))
        })
        .unwrap_or_default();
    let valid = crate::classifier::validity(&hoi_verb, &hoi_object, v, k, role_row, &official);
    let mut label_rows = vec![true; k];
    label_rows[k - 1] = false;
    ClassifierSet {
        version: 0,
        classifier,
        rows: Arc::new(rows),
        hoi_object,
        object_labels,
        hoi_verb,
        verb_labels: pack.verbs.iter().map(|v| v.name.clone()).collect(),
        valid,
        label_rows,
        skipped: Vec::new(),
        sources: Arc::default(),
    }
}

/// `allowed[c]` for the listed classes (out-of-range indices are ignored).
fn class_mask(classes: &[usize], n: usize) -> Vec<bool> {
    let mut mask = vec![false; n];
    for &c in classes {
        if let Some(m) = mask.get_mut(c) {
            *m = true;
        }
    }
    mask
}

/// The batch rows `members` of every feature tensor.
fn select_features<B: ModelBackend>(
    f: &hoiclip::Features<B>,
    members: &[usize],
    device: &B::Device,
) -> hoiclip::Features<B> {
    let index = Tensor::<B, 1, Int>::from_data(
        TensorData::new(members.iter().map(|&i| i as i64).collect(), [members.len()]),
        device,
    );
    hoiclip::Features {
        inter_hs: f.inter_hs.clone().select(0, index.clone()),
        obj_feat: f.obj_feat.clone().select(0, index.clone()),
        sub_boxes: f.sub_boxes.clone().select(0, index.clone()),
        obj_boxes: f.obj_boxes.clone().select(0, index.clone()),
        clip_cls: f.clip_cls.clone().select(0, index),
    }
}
