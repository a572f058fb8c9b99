//! From raw predictions to triplets, as the official evaluations do. Both start from
//! score = sigmoid(HOI logit) [+ training-free enhancement] + sigmoid(object logit)^2:
//! - HICO-DET ([`Output::Interactions`]): top-k over all (query, HOI class) pairs, then
//!   pairwise triplet NMS per HOI class;
//! - V-COCO ([`Output::Verbs`]): per (query, verb) the best of the verb's HOI classes,
//!   times the verb's validity for the query's predicted object label, top-k, no NMS.
//!
//! Boxes are in the original image's pixels.

use serde::Serialize;

/// What a triplet is about: an HOI class (HICO-DET's evaluation) or a verb with the
/// predicted object (V-COCO's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Output {
    #[default]
    Interactions,
    Verbs,
}

/// Candidates the official post-processing keeps per image before triplet NMS
/// (HICO-DET) or as its verb-level top-k (V-COCO).
pub const OFFICIAL_CANDIDATES: usize = 100;

/// Post-processing settings (official defaults).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, Serialize)]
pub struct PostprocessConfig {
    pub output: Output,
    /// Candidates kept before NMS (100).
    pub top_k: usize,
    /// Triplet NMS on or off (`use_nms_filter`; HICO-DET only, V-COCO never applies it).
    pub nms: bool,
    /// Triplet NMS threshold on IoU_h^alpha * IoU_o^beta (0.7).
    pub nms_threshold: f32,
    pub nms_alpha: f32,
    pub nms_beta: f32,
    /// Training-free enhancement: add sigmoid of CLIP's top-K image-HOI cosines (K=10 for
    /// the paper's 34.69; `None` = off).
    pub tfe_top_k: Option<usize>,
}

impl Default for PostprocessConfig {
    fn default() -> Self {
        Self {
            output: Output::Interactions,
            top_k: OFFICIAL_CANDIDATES,
            nms: true,
            nms_threshold: 0.7,
            nms_alpha: 1.0,
            nms_beta: 0.5,
            tfe_top_k: None,
        }
    }
}

/// One image's raw predictions, row-major host copies.
#[derive(Debug, Clone)]
pub struct ImagePredictions<'a> {
    /// `[Nq, C]`
    pub hoi_logits: &'a [f32],
    /// `[Nq, K+1]`
    pub obj_logits: &'a [f32],
    /// `[Nq, 4]` normalised (cx, cy, w, h)
    pub sub_boxes: &'a [f32],
    pub obj_boxes: &'a [f32],
    /// `[C]` raw cosines (only read for the enhancement)
    pub clip_logits: &'a [f32],
    /// Original (width, height).
    pub size: (u32, u32),
}

/// A detected interaction. Boxes are `[x1, y1, x2, y2]` in original pixels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Triplet {
    pub query: usize,
    /// The HOI class (verb-level output: the verb's best class for this query).
    pub hoi: usize,
    pub score: f32,
    pub human_box: [f32; 4],
    pub object_box: [f32; 4],
    /// Verb-level output: the query's predicted object row (argmax over every object row
    /// but the last, "no object"), which the triplet is labelled with.
    pub object_row: Option<usize>,
}

/// What verb-level post-processing needs to know of a classifier set.
#[derive(Debug, Clone, Copy)]
pub struct VerbLayout<'a> {
    /// Verb row of each HOI class.
    pub hoi_verb: &'a [usize],
    pub verbs: usize,
    /// `valid[v * objects + k]`: verb `v` goes with object row `k` (V-COCO's
    /// `correct_mat`, a column of ones for "no object" appended).
    pub valid: &'a [bool],
    /// Object rows, the trailing "no object" row included.
    pub objects: usize,
    /// Rows that may be a query's predicted label.
    pub label_rows: &'a [bool],
}

/// What one triplet's score is made of: score = `interaction` + `tfe` (when on) +
/// `object`, and for verb-level output 0 when the verb does not go with the predicted
/// object.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ScoreTerms {
    /// The HOI text term of the logit: logit scale x (cosine with the interaction's row +
    /// its bias).
    pub text_logit: f32,
    /// The verb term: verb weight x logit scale x the cosine with the verb's row, mapped
    /// to the interaction by verb2hoi.
    pub verb_logit: f32,
    /// sigmoid(text_logit + verb_logit).
    pub interaction: f32,
    /// Training-free enhancement: sigmoid of CLIP's image-level cosine (top-K classes;
    /// sigmoid(0) for the others).
    pub tfe: Option<f32>,
    /// The object classifier's logit for the interaction's object.
    pub object_logit: f32,
    /// sigmoid(object_logit)^2.
    pub object: f32,
}

/// The terms of each triplet's score, from the predictions they came from and the HOI
/// text term alone (`text_logits`, `[Nq, C]`).
pub fn score_terms(
    p: &ImagePredictions<'_>,
    text_logits: &[f32],
    hoi_object: &[usize],
    triplets: &[Triplet],
    config: &PostprocessConfig,
) -> Vec<ScoreTerms> {
    let c = hoi_object.len();
    let nq = p.hoi_logits.len().checked_div(c).unwrap_or(0);
    let k1 = p.obj_logits.len().checked_div(nq).unwrap_or(0);
    let tfe = config.tfe_top_k.map(|k| tfe_scores(&p.clip_logits[..c], k));
    triplets
        .iter()
        .map(|t| {
            let at = t.query * c + t.hoi;
            let logit = p.hoi_logits[at];
            let text = text_logits[at];
            let object_logit = p.obj_logits[t.query * k1 + hoi_object[t.hoi]];
            ScoreTerms {
                text_logit: text,
                verb_logit: logit - text,
                interaction: sigmoid(logit),
                tfe: tfe.as_ref().map(|g| g[t.hoi]),
                object_logit,
                object: sigmoid(object_logit).powi(2),
            }
        })
        .collect()
}

/// Training-free enhancement: sigmoid of CLIP's cosine for the top-K classes, sigmoid(0)
/// for the rest (the reference zeroes the other cosines before the sigmoid).
fn tfe_scores(clip_logits: &[f32], k: usize) -> Vec<f32> {
    let mut order: Vec<usize> = (0..clip_logits.len()).collect();
    order.sort_by(|&a, &b| clip_logits[b].total_cmp(&clip_logits[a]));
    let mut g = vec![0f32; clip_logits.len()];
    for &i in order.iter().take(k) {
        g[i] = clip_logits[i];
    }
    g.into_iter().map(sigmoid).collect()
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn to_xyxy(b: &[f32], (w, h): (u32, u32)) -> [f32; 4] {
    let (w, h) = (w as f32, h as f32);
    let (cx, cy, bw, bh) = (b[0], b[1], b[2], b[3]);
    [
        (cx - 0.5 * bw) * w,
        (cy - 0.5 * bh) * h,
        (cx + 0.5 * bw) * w,
        (cy + 0.5 * bh) * h,
    ]
}

/// IoU with the "+1 pixel" convention of the reference NMS.
fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    crate::boxes::iou(a, b, crate::boxes::Overlap::Matlab)
}

/// Triplets of one image, highest score first (ties: lower query, then lower class).
/// `hoi_object[c]` is the object class of HOI class `c`; `allowed[c] == false` leaves
/// class `c` out (a request restricted to some interactions).
pub fn triplets(
    p: &ImagePredictions<'_>,
    hoi_object: &[usize],
    verbs: Option<VerbLayout<'_>>,
    allowed: Option<&[bool]>,
    config: &PostprocessConfig,
) -> Vec<Triplet> {
    match (config.output, verbs) {
        (Output::Verbs, Some(layout)) => verb_triplets(p, hoi_object, layout, allowed, config),
        _ => hoi_triplets(p, hoi_object, allowed, config),
    }
}

/// `score[q * C + c]` for every query and allowed class (`None`: left out).
fn class_scores(
    p: &ImagePredictions<'_>,
    hoi_object: &[usize],
    allowed: Option<&[bool]>,
    config: &PostprocessConfig,
) -> Vec<Option<f32>> {
    let c = hoi_object.len();
    let nq = p.hoi_logits.len() / c;
    let k1 = p.obj_logits.len().checked_div(nq).unwrap_or(0);
    let tfe: Option<Vec<f32>> = config.tfe_top_k.map(|k| tfe_scores(&p.clip_logits[..c], k));
    let mut scores = vec![None; nq * c];
    for q in 0..nq {
        for (cls, &obj) in hoi_object.iter().enumerate() {
            if allowed.is_some_and(|a| !a.get(cls).copied().unwrap_or(false)) {
                continue;
            }
            let mut hoi = sigmoid(p.hoi_logits[q * c + cls]);
            if let Some(t) = &tfe {
                hoi += t[cls];
            }
            let o = sigmoid(p.obj_logits[q * k1 + obj]);
            scores[q * c + cls] = Some(hoi + o * o);
        }
    }
    scores
}

fn hoi_triplets(
    p: &ImagePredictions<'_>,
    hoi_object: &[usize],
    allowed: Option<&[bool]>,
    config: &PostprocessConfig,
) -> Vec<Triplet> {
    let c = hoi_object.len();
    if c == 0 {
        return Vec::new();
    }
    let mut scored: Vec<(f32, usize)> = class_scores(p, hoi_object, allowed, config)
        .into_iter()
        .enumerate()
        .filter_map(|(flat, s)| s.map(|s| (s, flat)))
        .collect();
    // Stable sort: equal scores keep index order (the reference's first-occurrence rule).
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.truncate(config.top_k);
    let candidates: Vec<Triplet> = scored
        .into_iter()
        .map(|(score, flat)| {
            let (q, hoi) = (flat / c, flat % c);
            Triplet {
                query: q,
                hoi,
                score,
                human_box: to_xyxy(&p.sub_boxes[q * 4..q * 4 + 4], p.size),
                object_box: to_xyxy(&p.obj_boxes[q * 4..q * 4 + 4], p.size),
                object_row: None,
            }
        })
        .collect();
    let mut kept = if config.nms {
        nms(candidates, c, config)
    } else {
        candidates
    };
    kept.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.query.cmp(&b.query))
            .then(a.hoi.cmp(&b.hoi))
    });
    kept
}

/// V-COCO's evaluation: per (query, verb) the best allowed class of the verb, times the
/// verb's validity for the query's predicted object label; top-k, no NMS.
fn verb_triplets(
    p: &ImagePredictions<'_>,
    hoi_object: &[usize],
    layout: VerbLayout<'_>,
    allowed: Option<&[bool]>,
    config: &PostprocessConfig,
) -> Vec<Triplet> {
    let c = hoi_object.len();
    if c == 0 || layout.verbs == 0 {
        return Vec::new();
    }
    let nq = p.hoi_logits.len() / c;
    let k1 = p.obj_logits.len().checked_div(nq).unwrap_or(0);
    let scores = class_scores(p, hoi_object, allowed, config);
    // (score, query, best class of the verb, predicted object row)
    let mut scored: Vec<(f32, usize, usize, usize)> = Vec::with_capacity(nq * layout.verbs);
    for q in 0..nq {
        // Predicted label: the best object row but the last ("no object"), as the
        // reference labels boxes (softmax is monotonic, so logits decide alike).
        let row = &p.obj_logits[q * k1..(q + 1) * k1];
        let label = (0..k1.saturating_sub(1))
            .filter(|&k| layout.label_rows.get(k).copied().unwrap_or(false))
            .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
            .unwrap_or(0);
        let mut best: Vec<Option<(f32, usize)>> = vec![None; layout.verbs];
        for (cls, &v) in layout.hoi_verb.iter().enumerate() {
            let Some(s) = scores[q * c + cls] else {
                continue;
            };
            if let Some(slot) = best.get_mut(v)
                && slot.is_none_or(|(b, _)| s > b)
            {
                *slot = Some((s, cls));
            }
        }
        for (v, slot) in best.into_iter().enumerate() {
            let Some((s, cls)) = slot else { continue };
            let valid = label < layout.objects
                && layout
                    .valid
                    .get(v * layout.objects + label)
                    .copied()
                    .unwrap_or(false);
            scored.push((if valid { s } else { 0.0 }, q, cls, label));
        }
    }
    // Stable sort: ties keep (query, verb) order.
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.truncate(config.top_k);
    scored
        .into_iter()
        .map(|(score, q, hoi, label)| Triplet {
            query: q,
            hoi,
            score,
            human_box: to_xyxy(&p.sub_boxes[q * 4..q * 4 + 4], p.size),
            object_box: to_xyxy(&p.obj_boxes[q * 4..q * 4 + 4], p.size),
            object_row: Some(label),
        })
        .collect()
}

/// Pairwise NMS within each HOI class.
fn nms(candidates: Vec<Triplet>, classes: usize, config: &PostprocessConfig) -> Vec<Triplet> {
    let mut by_class: Vec<Vec<Triplet>> = vec![Vec::new(); classes];
    for t in candidates {
        by_class[t.hoi].push(t);
    }
    let mut kept = Vec::new();
    for mut group in by_class {
        group.sort_by(|a, b| b.score.total_cmp(&a.score));
        while !group.is_empty() {
            let best = group.remove(0);
            group.retain(|t| {
                let overlap = iou(&best.human_box, &t.human_box).powf(config.nms_alpha)
                    * iou(&best.object_box, &t.object_box).powf(config.nms_beta);
                overlap <= config.nms_threshold
            });
            kept.push(best);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_one_pixel_iou() {
        let a = [0.0, 0.0, 9.0, 9.0]; // 10x10 with +1
        assert!((iou(&a, &a) - 1.0).abs() < 1e-6);
        let b = [5.0, 0.0, 14.0, 9.0]; // overlap 5x10 = 50, union 150
        assert!((iou(&a, &b) - 50.0 / 150.0).abs() < 1e-6);
    }

    /// V-COCO's rule by hand: 2 queries, 3 HOI classes (verb 0 with object 0, verb 0 with
    /// object 1, verb 1 with object 0), object rows 0, 1 and "no object".
    #[test]
    fn verb_level_takes_the_best_class_per_verb_times_validity_without_nms() {
        let logit = |p: f32| (p / (1.0 - p)).ln();
        // hoi sigmoids: q0 [0.9, 0.6, 0.3], q1 [0.2, 0.8, 0.7]
        let hoi = [0.9, 0.6, 0.3, 0.2, 0.8, 0.7].map(logit);
        // object sigmoids: q0 [0.5, 0.1, 0.0+] (label 0), q1 [0.2, 0.6, 0.1] (label 1)
        let obj = [0.5, 0.1, 0.01, 0.2, 0.6, 0.1].map(logit);
        let boxes = [0.5, 0.5, 0.2, 0.2, 0.5, 0.5, 0.2, 0.2];
        let p = ImagePredictions {
            hoi_logits: &hoi,
            obj_logits: &obj,
            sub_boxes: &boxes,
            obj_boxes: &boxes,
            clip_logits: &[0.0; 3],
            size: (100, 100),
        };
        let hoi_object = [0, 1, 0];
        // verb 0 valid with objects 0 and 1; verb 1 only with object 0.
        let valid = [true, true, true, true, false, true];
        let layout = VerbLayout {
            hoi_verb: &[0, 0, 1],
            verbs: 2,
            valid: &valid,
            objects: 3,
            label_rows: &[true, true, false],
        };
        let config = PostprocessConfig {
            output: Output::Verbs,
            ..PostprocessConfig::default()
        };
        let got = triplets(&p, &hoi_object, Some(layout), None, &config);
        let s = |h: f32, o: f32| h + o * o;
        // q0 verb 0: max(0.9 + 0.5², 0.6 + 0.1²) = 1.15 (class 0); verb 1: 0.3 + 0.5² = 0.55.
        // q1 verb 0: max(0.2 + 0.2², 0.8 + 0.6²) = 1.16 (class 1); verb 1: label 1 is not
        // valid for verb 1, so 0.
        let expect = [
            (1, 1, s(0.8, 0.6)),
            (0, 0, s(0.9, 0.5)),
            (0, 2, s(0.3, 0.5)),
            (1, 2, 0.0),
        ];
        assert_eq!(got.len(), expect.len());
        for (t, (q, hoi, score)) in got.iter().zip(expect) {
            assert_eq!((t.query, t.hoi), (q, hoi));
            assert!((t.score - score).abs() < 1e-5, "{} vs {score}", t.score);
        }
        assert_eq!(got[0].object_row, Some(1));
        assert_eq!(got[1].object_row, Some(0));
        // Restricting to class 1 leaves verb 0 only, scored by class 1 alone.
        let allowed = [false, true, false];
        let got = triplets(&p, &hoi_object, Some(layout), Some(&allowed), &config);
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|t| t.hoi == 1));
    }

    #[test]
    fn nms_suppresses_overlapping_pairs_of_the_same_class_only() {
        let t = |q, hoi, score, x: f32| Triplet {
            query: q,
            hoi,
            score,
            human_box: [x, 0.0, x + 10.0, 10.0],
            object_box: [x, 0.0, x + 10.0, 10.0],
            object_row: None,
        };
        let config = PostprocessConfig::default();
        let kept = nms(
            vec![
                t(0, 0, 0.9, 0.0),
                t(1, 0, 0.8, 0.5),
                t(2, 1, 0.7, 0.5),
                t(3, 0, 0.6, 50.0),
            ],
            2,
            &config,
        );
        let ids: Vec<usize> = kept.iter().map(|t| t.query).collect();
        assert_eq!(ids, vec![0, 3, 2]);
    }
}
