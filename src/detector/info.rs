//! What model is running and how its raw outputs become scores.

use super::*;

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
    pub(super) fn read(config: &HoiclipConfig, pack: &Pack, split: Option<&str>) -> Option<Self> {
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
