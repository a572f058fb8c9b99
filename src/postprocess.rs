//! From raw predictions to triplets, as the official HICO-DET evaluation does:
//! score = sigmoid(HOI logit) [+ training-free enhancement] + sigmoid(object logit)^2,
//! top-k over all (query, class) pairs, pairwise triplet NMS per HOI class, boxes in the
//! original image's pixels.

use serde::Serialize;

/// Post-processing settings (official defaults).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, Serialize)]
pub struct PostprocessConfig {
    /// Candidates kept before NMS (100).
    pub top_k: usize,
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
            top_k: 100,
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
    pub hoi: usize,
    pub score: f32,
    pub human_box: [f32; 4],
    pub object_box: [f32; 4],
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
    let area = |r: &[f32; 4]| (r[2] - r[0] + 1.0) * (r[3] - r[1] + 1.0);
    let iw = (a[2].min(b[2]) - a[0].max(b[0]) + 1.0).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1]) + 1.0).max(0.0);
    let inter = iw * ih;
    inter / (area(a) + area(b) - inter)
}

/// Triplets of one image, highest score first (ties: lower query, then lower class).
/// `hoi_object[c]` is the object class of HOI class `c`; `allowed[c] == false` leaves
/// class `c` out (a request restricted to some interactions).
pub fn triplets(
    p: &ImagePredictions<'_>,
    hoi_object: &[usize],
    allowed: Option<&[bool]>,
    config: &PostprocessConfig,
) -> Vec<Triplet> {
    let c = hoi_object.len();
    if c == 0 {
        return Vec::new();
    }
    let nq = p.hoi_logits.len() / c;
    let k1 = p.obj_logits.len().checked_div(nq).unwrap_or(0);
    // Training-free enhancement: sigmoid of CLIP's cosine for the top-K classes, sigmoid(0)
    // for the rest (the reference zeroes the other cosines before the sigmoid).
    let tfe: Option<Vec<f32>> = config.tfe_top_k.map(|k| {
        let mut order: Vec<usize> = (0..c).collect();
        order.sort_by(|&a, &b| p.clip_logits[b].total_cmp(&p.clip_logits[a]));
        let mut g = vec![0f32; c];
        for &i in order.iter().take(k) {
            g[i] = p.clip_logits[i];
        }
        g.into_iter().map(sigmoid).collect()
    });
    let mut scored: Vec<(f32, usize)> = Vec::with_capacity(nq * c);
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
            scored.push((hoi + o * o, q * c + cls));
        }
    }
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
            }
        })
        .collect();
    let mut kept = nms(candidates, c, config);
    kept.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.query.cmp(&b.query))
            .then(a.hoi.cmp(&b.hoi))
    });
    kept
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

    #[test]
    fn nms_suppresses_overlapping_pairs_of_the_same_class_only() {
        let t = |q, hoi, score, x: f32| Triplet {
            query: q,
            hoi,
            score,
            human_box: [x, 0.0, x + 10.0, 10.0],
            object_box: [x, 0.0, x + 10.0, 10.0],
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
