//! One object that turns images into interaction triplets: model + classifier +
//! vocabulary + pre/post-processing. The engine's worker owns and runs it (for the server,
//! the CLI and evaluation alike). Parts: `info` (what model runs and how it scores),
//! `output` (the triplets it gives), `demo` (the seeded demo model and classifiers from
//! text).

mod demo;
mod info;
mod output;

use demo::SeededReinit;
pub use demo::{DEMO_SEED, text_classifier};
pub use info::{ModelInfo, Scoring, ZeroShot};
pub use output::{Detection, HumanBox, ImageDetections, ObjectBox};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::prelude::*;
use image::RgbImage;

use crate::classifier::{ClassRow, ClassifierSet};
use crate::model::clip::ClipConfig;
use crate::model::clip::tokenizer::{ClipTokenizer, TokenizerError};
use crate::model::hoiclip::{self, ClassifierWeights, Hoiclip, HoiclipConfig};
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
        classifier: ClassifierWeights<B>,
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

/// The checkpoint's classifier with its pack's rows, so one code path scores both.
fn own_set<B: ModelBackend>(classifier: ClassifierWeights<B>, pack: &Pack) -> ClassifierSet<B> {
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
