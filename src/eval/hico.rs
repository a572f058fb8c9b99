//! HICO-DET mAP as the official ho-rcnn MATLAB evaluation computes it (the route behind
//! the papers' numbers), with the GEN-VLKT/HOICLIP Python evaluator's conventions as an
//! option.
//!
//! Per HOI class: all detections of the class over the test set, sorted by descending
//! score (stably), are matched one by one to the ground-truth pair of the same class in
//! the same image with the largest `min(IoU_human, IoU_object)`; it is a true positive
//! when that overlap is >= 0.5 and the pair is not matched yet (no fall-back to the next
//! best pair). AP per class, then means over Full / Rare / Non-rare (and Unseen / Seen for
//! a zero-shot split). Known-object keeps only the detections in images that contain the
//! class's object.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ap::{ApMethod, Bbox, Overlap, Thresholds, average_precision, iou, max_recall};
use super::json::{self, Node};
use super::predictions::PredictionFile;
use super::{EvalError, read_text};

/// Number of HICO-DET HOI classes.
pub const CLASSES: usize = 600;

/// Which evaluator's conventions to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// ho-rcnn's MATLAB code as GEN-VLKT/HOICLIP's official route feeds it: boxes rounded
    /// to whole pixels, at most 19,999 detections per class, overlap counted when
    /// `min x2 - max x1 + 1 > 0`, MATLAB's recall thresholds. The papers report this.
    Official,
    /// GEN-VLKT / HOICLIP `hico_eval_triplet.py` (printed during training): boxes as
    /// predicted, no cap, strict overlap test, numpy's thresholds. Default setting only in
    /// the original; Known-object is computed the same way here.
    GenVlkt,
}

/// What a class with ground truth but no detection counts for in the subset means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoDetectionRule {
    /// AP 0 in every mean (GEN-VLKT's fixed evaluator; the MATLAB code does the same).
    #[default]
    GenVlkt,
    /// Left out of the Rare / Non-rare and Unseen / Seen means (kept in Full), as
    /// HOICLIP's copy of the evaluator does: reproduces its tables exactly.
    Hoiclip,
}

/// The official route keeps this many detections per class (`covert_annot_for_official_eval.py`).
const OFFICIAL_CAP: usize = 19_999;

/// The 600 classes' (verb, object) pairs, the COCO id of each object, the rare list and
/// the zero-shot splits, from the HICO-DET vocabulary shipped in models/vocab.
pub struct HicoVocabulary {
    /// Object index of each HOI class.
    pub object_of: Vec<usize>,
    class_of: HashMap<(usize, usize), usize>,
    object_of_coco: HashMap<u64, usize>,
    pub rare: HashSet<usize>,
    pub zero_shot: HashMap<String, HashSet<usize>>,
    pub prompts: Vec<String>,
}

#[derive(Deserialize)]
struct VocabFile {
    objects: Vec<VocabObject>,
    interactions: Vec<VocabInteraction>,
    rare: Vec<usize>,
    zero_shot: HashMap<String, Vec<usize>>,
}

#[derive(Deserialize)]
struct VocabObject {
    index: usize,
    coco_id: u64,
}

#[derive(Deserialize)]
struct VocabInteraction {
    verb: usize,
    object: usize,
    prompt: String,
}

impl HicoVocabulary {
    /// The embedded HICO-DET vocabulary.
    pub fn official() -> Self {
        let file: VocabFile = serde_json::from_str(crate::vocab::pack::HICO_DET_JSON)
            .expect("the embedded HICO-DET vocabulary is valid");
        Self {
            object_of: file.interactions.iter().map(|i| i.object).collect(),
            class_of: file
                .interactions
                .iter()
                .enumerate()
                .map(|(c, i)| ((i.verb, i.object), c))
                .collect(),
            object_of_coco: file.objects.iter().map(|o| (o.coco_id, o.index)).collect(),
            rare: file.rare.into_iter().collect(),
            zero_shot: file
                .zero_shot
                .into_iter()
                .map(|(k, v)| (k, v.into_iter().collect()))
                .collect(),
            prompts: file.interactions.into_iter().map(|i| i.prompt).collect(),
        }
    }

    /// The unseen classes of a zero-shot split; an unknown name is an error listing the
    /// known ones.
    pub fn zero_shot_split(&self, name: &str) -> Result<&HashSet<usize>, EvalError> {
        self.zero_shot.get(name).ok_or_else(|| {
            EvalError::invalid(
                "--zero-shot",
                name,
                format!(
                    "unknown split; known: {}",
                    self.zero_shot_names().join(", ")
                ),
            )
        })
    }

    /// Names of the zero-shot splits (`rare_first`, `unseen_verb`, ...).
    pub fn zero_shot_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.zero_shot.keys().cloned().collect();
        names.sort();
        names
    }
}

/// One ground-truth human-object pair.
#[derive(Debug, Clone, PartialEq)]
pub struct GtPair {
    pub class: usize,
    pub human: Bbox,
    pub object: Bbox,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HicoImage {
    pub file_name: String,
    pub pairs: Vec<GtPair>,
}

/// A PPDM-style `test_hico.json`: per image `file_name`, `annotations` (boxes with COCO
/// `category_id`) and `hoi_annotation` (`subject_id`, `object_id` into `annotations`,
/// `category_id` = HICO-DET verb id 1..117).
#[derive(Debug, Clone)]
pub struct HicoAnnotations {
    pub images: Vec<HicoImage>,
}

impl HicoAnnotations {
    pub fn load(path: &Path, vocab: &HicoVocabulary) -> Result<Self, EvalError> {
        Self::parse(&read_text(path)?, &path.display().to_string(), vocab)
    }

    pub fn parse(text: &str, path: &str, vocab: &HicoVocabulary) -> Result<Self, EvalError> {
        let root = json::parse(path, text)?;
        let list = Node::root(path, &root).items()?;
        let mut images = Vec::with_capacity(list.len());
        let mut seen = HashSet::new();
        for entry in &list {
            let image = parse_image(entry, vocab)?;
            if !seen.insert(image.file_name.clone()) {
                return Err(entry
                    .get("file_name")
                    .invalid(format!("`{}` appears twice", image.file_name)));
            }
            images.push(image);
        }
        Ok(Self { images })
    }
}

fn parse_image(entry: &Node, vocab: &HicoVocabulary) -> Result<HicoImage, EvalError> {
    let file_name = entry.get("file_name").string()?;
    let boxes = entry.get("annotations").items()?;
    let mut parsed = Vec::with_capacity(boxes.len());
    for b in &boxes {
        let bbox = b.get("bbox").bbox()?;
        let category = b.get("category_id");
        let coco = category.uint()?;
        let object = *vocab.object_of_coco.get(&coco).ok_or_else(|| {
            category.invalid(format!("{coco} is not one of the 80 COCO object ids"))
        })?;
        parsed.push((bbox, object));
    }
    let hois = entry.get("hoi_annotation").items()?;
    let mut pairs = Vec::with_capacity(hois.len());
    for h in &hois {
        let box_at = |key: &str| -> Result<(Bbox, usize), EvalError> {
            let field = h.get(key);
            let k = field.uint()? as usize;
            parsed.get(k).copied().ok_or_else(|| {
                field.invalid(format!(
                    "{k} is out of range ({} boxes in this image)",
                    parsed.len()
                ))
            })
        };
        let (human, _) = box_at("subject_id")?;
        let (object, object_index) = box_at("object_id")?;
        let verb_field = h.get("category_id");
        let verb_id = verb_field.uint()?;
        let class = verb_id
            .checked_sub(1)
            .and_then(|verb| vocab.class_of.get(&(verb as usize, object_index)))
            .copied()
            .ok_or_else(|| {
                verb_field.invalid(format!(
                    "verb {verb_id} with object {object_index} is not one of the 600 HICO-DET interactions"
                ))
            })?;
        pairs.push(GtPair {
            class,
            human,
            object,
        });
    }
    Ok(HicoImage { file_name, pairs })
}

/// What to compute.
#[derive(Debug, Clone)]
pub struct HicoOptions {
    pub protocol: Protocol,
    pub ap: ApMethod,
    pub no_detection: NoDetectionRule,
    /// A zero-shot split name (its classes are "unseen").
    pub zero_shot: Option<String>,
}

/// One class's result.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassAp {
    pub class: usize,
    pub interaction: String,
    /// Ground-truth pairs.
    pub npos: usize,
    /// Detections scored (after the Known-object filter and the official cap).
    pub detections: usize,
    pub ap: f64,
    pub max_recall: f64,
}

/// A mean AP over a set of classes (those with ground truth).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct MeanAp {
    /// `None` when no class of the set has ground truth.
    pub map: Option<f64>,
    pub classes: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SettingReport {
    pub full: MeanAp,
    pub rare: MeanAp,
    pub non_rare: MeanAp,
    /// Zero-shot split only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unseen: Option<MeanAp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seen: Option<MeanAp>,
    pub per_class: Vec<ClassAp>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HicoReport {
    pub dataset: &'static str,
    pub protocol: Protocol,
    pub ap_method: ApMethod,
    pub no_detection: NoDetectionRule,
    pub zero_shot: Option<String>,
    pub images: usize,
    pub default: SettingReport,
    pub known_object: SettingReport,
}

/// Scores `predictions` against `gt`. Predictions for images the annotations do not list
/// are an error (a mismatched image folder or annotation file); images without
/// predictions simply have no detections.
pub fn evaluate(
    gt: &HicoAnnotations,
    predictions: &PredictionFile,
    vocab: &HicoVocabulary,
    options: &HicoOptions,
    predictions_path: &str,
) -> Result<HicoReport, EvalError> {
    let unseen = match &options.zero_shot {
        None => None,
        Some(name) => Some(vocab.zero_shot_split(name)?),
    };
    let by_class = detections_by_class(gt, predictions, options.protocol, predictions_path)?;
    let gt_by_class = ground_truth_by_class(gt);
    // Known-object: the images with a ground-truth pair of each object.
    let objects = vocab.object_of.iter().max().map_or(0, |o| o + 1);
    let mut images_with_object: Vec<HashSet<usize>> = vec![HashSet::new(); objects];
    for (i, image) in gt.images.iter().enumerate() {
        for p in &image.pairs {
            if let Some(set) = images_with_object.get_mut(vocab.object_of[p.class]) {
                set.insert(i);
            }
        }
    }
    let setting = |known_object: bool| {
        let per_class: Vec<ClassAp> = (0..CLASSES)
            .filter(|c| gt_by_class[*c].npos > 0)
            .map(|c| {
                let keep = |image: usize| {
                    !known_object || images_with_object[vocab.object_of[c]].contains(&image)
                };
                let dets: Vec<&Detection> = by_class[c].iter().filter(|d| keep(d.image)).collect();
                class_ap(c, &dets, &gt_by_class[c], vocab, options)
            })
            .collect();
        summarize(per_class, vocab, unseen, options.no_detection)
    };
    Ok(HicoReport {
        dataset: "hico-det",
        protocol: options.protocol,
        ap_method: options.ap,
        no_detection: options.no_detection,
        zero_shot: options.zero_shot.clone(),
        images: gt.images.len(),
        default: setting(false),
        known_object: setting(true),
    })
}

struct Detection {
    image: usize,
    score: f64,
    human: Bbox,
    object: Bbox,
}

/// Each class's detections, sorted by descending score; ties keep image order, then the
/// order within the image (MATLAB's `sort` is stable).
fn detections_by_class(
    gt: &HicoAnnotations,
    predictions: &PredictionFile,
    protocol: Protocol,
    path: &str,
) -> Result<Vec<Vec<Detection>>, EvalError> {
    let index: HashMap<&str, usize> = gt
        .images
        .iter()
        .enumerate()
        .map(|(i, image)| (image.file_name.as_str(), i))
        .collect();
    let mut per_image: Vec<Option<usize>> = vec![None; gt.images.len()];
    for (p, image) in predictions.images.iter().enumerate() {
        let field = format!("images[{p}].file_name");
        let i = *index.get(image.file_name.as_str()).ok_or_else(|| {
            EvalError::invalid(
                path,
                field.clone(),
                format!("`{}` is not in the annotations", image.file_name),
            )
        })?;
        if per_image[i].replace(p).is_some() {
            return Err(EvalError::invalid(
                path,
                field,
                format!("`{}` appears twice", image.file_name),
            ));
        }
    }
    let round = |b: &Bbox| match protocol {
        // The official route writes whole-pixel boxes into the .mat files.
        Protocol::Official => b.map(f64::round),
        Protocol::GenVlkt => *b,
    };
    let mut by_class: Vec<Vec<Detection>> = (0..CLASSES).map(|_| Vec::new()).collect();
    for (i, p) in per_image.iter().enumerate() {
        let Some(p) = p else { continue };
        for t in &predictions.images[*p].triplets {
            if let Some(list) = by_class.get_mut(t.hoi) {
                list.push(Detection {
                    image: i,
                    score: t.score,
                    human: round(&t.human),
                    object: round(&t.object),
                });
            }
        }
    }
    for list in &mut by_class {
        list.sort_by(|a, b| b.score.total_cmp(&a.score));
        if protocol == Protocol::Official {
            list.truncate(OFFICIAL_CAP);
        }
    }
    Ok(by_class)
}

#[derive(Default)]
struct ClassTruth {
    npos: usize,
    pairs: HashMap<usize, Vec<(Bbox, Bbox)>>,
}

fn ground_truth_by_class(gt: &HicoAnnotations) -> Vec<ClassTruth> {
    let mut out: Vec<ClassTruth> = (0..CLASSES).map(|_| ClassTruth::default()).collect();
    for (i, image) in gt.images.iter().enumerate() {
        for p in &image.pairs {
            let truth = &mut out[p.class];
            truth.npos += 1;
            truth.pairs.entry(i).or_default().push((p.human, p.object));
        }
    }
    out
}

fn class_ap(
    class: usize,
    detections: &[&Detection],
    truth: &ClassTruth,
    vocab: &HicoVocabulary,
    options: &HicoOptions,
) -> ClassAp {
    let (overlap, thresholds) = match options.protocol {
        Protocol::Official => (Overlap::Matlab, Thresholds::Matlab),
        Protocol::GenVlkt => (Overlap::Strict, Thresholds::Numpy),
    };
    let mut used: HashMap<usize, Vec<bool>> = HashMap::new();
    let hits: Vec<bool> = detections
        .iter()
        .map(|d| {
            let Some(pairs) = truth.pairs.get(&d.image) else {
                return false;
            };
            let mut best: Option<(usize, f64)> = None;
            for (j, (h, o)) in pairs.iter().enumerate() {
                let ov = iou(&d.human, h, overlap).min(iou(&d.object, o, overlap));
                if best.is_none_or(|(_, b)| ov > b) {
                    best = Some((j, ov));
                }
            }
            match best {
                Some((j, ov)) if ov >= 0.5 => {
                    let taken = used
                        .entry(d.image)
                        .or_insert_with(|| vec![false; pairs.len()]);
                    !std::mem::replace(&mut taken[j], true)
                }
                _ => false,
            }
        })
        .collect();
    ClassAp {
        class,
        interaction: vocab.prompts.get(class).cloned().unwrap_or_default(),
        npos: truth.npos,
        detections: detections.len(),
        ap: average_precision(&hits, truth.npos, options.ap, thresholds).unwrap_or(0.0),
        max_recall: max_recall(&hits, truth.npos),
    }
}

fn mean(per_class: &[ClassAp], keep: impl Fn(usize) -> bool) -> MeanAp {
    let aps: Vec<f64> = per_class
        .iter()
        .filter(|c| keep(c.class))
        .map(|c| c.ap)
        .collect();
    MeanAp {
        map: (!aps.is_empty()).then(|| aps.iter().sum::<f64>() / aps.len() as f64),
        classes: aps.len(),
    }
}

fn summarize(
    per_class: Vec<ClassAp>,
    vocab: &HicoVocabulary,
    unseen: Option<&HashSet<usize>>,
    rule: NoDetectionRule,
) -> SettingReport {
    let detected: HashSet<usize> = per_class
        .iter()
        .filter(|c| c.detections > 0)
        .map(|c| c.class)
        .collect();
    let counted = |c: usize| rule == NoDetectionRule::GenVlkt || detected.contains(&c);
    SettingReport {
        full: mean(&per_class, |_| true),
        rare: mean(&per_class, |c| counted(c) && vocab.rare.contains(&c)),
        non_rare: mean(&per_class, |c| counted(c) && !vocab.rare.contains(&c)),
        unseen: unseen.map(|u| mean(&per_class, |c| counted(c) && u.contains(&c))),
        seen: unseen.map(|u| mean(&per_class, |c| counted(c) && !u.contains(&c))),
        per_class,
    }
}

impl std::fmt::Display for HicoReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pct = |m: &MeanAp| match m.map {
            Some(v) => format!("{:>10.2}", v * 100.0),
            None => format!("{:>10}", "-"),
        };
        writeln!(
            f,
            "HICO-DET mAP (%) - protocol {}, {} AP, {} images, {} classes with ground truth",
            value_name(self.protocol),
            value_name(self.ap_method),
            self.images,
            self.default.full.classes
        )?;
        let zero_shot = self.zero_shot.is_some();
        write!(
            f,
            "{:<14}{:>10}{:>10}{:>10}",
            "setting", "full", "rare", "non-rare"
        )?;
        if zero_shot {
            write!(f, "{:>10}{:>10}", "unseen", "seen")?;
        }
        writeln!(f)?;
        for (name, s) in [
            ("default", &self.default),
            ("known object", &self.known_object),
        ] {
            write!(
                f,
                "{:<14}{}{}{}",
                name,
                pct(&s.full),
                pct(&s.rare),
                pct(&s.non_rare)
            )?;
            if let (Some(u), Some(seen)) = (&s.unseen, &s.seen) {
                write!(f, "{}{}", pct(u), pct(seen))?;
            }
            writeln!(f)?;
        }
        if let Some(split) = &self.zero_shot {
            writeln!(
                f,
                "zero-shot split {split}: unseen = its {} classes with ground truth",
                self.default.unseen.map_or(0, |u| u.classes)
            )?;
        }
        Ok(())
    }
}

/// A setting's name as the report and the command line spell it (`gen-vlkt`,
/// `eleven-point`): its kebab-case serde name.
fn value_name(value: impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        other => format!("{other:?}"),
    }
}
