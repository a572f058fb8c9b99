//! Average precision and box overlap, in the variants the HOI benchmarks use.

/// How a precision/recall curve becomes one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApMethod {
    /// PASCAL VOC 2007: the mean of the best precision at recall >= 0, 0.1, ..., 1. Both
    /// the official HICO-DET MATLAB code and the GEN-VLKT/HOICLIP Python evaluator use it.
    ElevenPoint,
    /// PASCAL VOC 2010+: the area under the monotone precision envelope (V-COCO's
    /// `vsrl_eval.py` uses it).
    AllPoint,
}

/// Where the eleven recall thresholds come from. They differ in the last bit, which
/// decides whether a recall of exactly 7/10 reaches the 0.7 threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Thresholds {
    /// MATLAB's `0:0.1:1` builds the range from both ends: `k*0.1` for the first half,
    /// `1 - (10-k)*0.1` for the second.
    Matlab,
    /// numpy's `np.arange(0, 1.1, 0.1)`: `k*0.1` throughout.
    Numpy,
}

fn threshold(k: u32, from: Thresholds) -> f64 {
    match from {
        Thresholds::Matlab if k > 5 => 1.0 - f64::from(10 - k) * 0.1,
        _ => f64::from(k) * 0.1,
    }
}

/// AP of detections already sorted by descending score (`true` = true positive) against
/// `npos` ground-truth instances. `None` when `npos` is 0 (AP is undefined there).
pub fn average_precision(
    hits: &[bool],
    npos: usize,
    method: ApMethod,
    thresholds: Thresholds,
) -> Option<f64> {
    if npos == 0 {
        return None;
    }
    let (recall, precision) = curve(hits, npos);
    Some(match method {
        ApMethod::ElevenPoint => {
            (0..=10)
                .map(|k| {
                    let t = threshold(k, thresholds);
                    recall
                        .iter()
                        .zip(&precision)
                        .filter(|(r, _)| **r >= t)
                        .map(|(_, p)| *p)
                        .fold(0.0, f64::max)
                })
                .sum::<f64>()
                / 11.0
        }
        ApMethod::AllPoint => {
            let mut mrec = vec![0.0];
            mrec.extend(&recall);
            mrec.push(1.0);
            let mut mpre = vec![0.0];
            mpre.extend(&precision);
            mpre.push(0.0);
            for i in (1..mpre.len()).rev() {
                mpre[i - 1] = mpre[i - 1].max(mpre[i]);
            }
            (1..mrec.len())
                .filter(|&i| mrec[i] != mrec[i - 1])
                .map(|i| (mrec[i] - mrec[i - 1]) * mpre[i])
                .sum()
        }
    })
}

/// Cumulative recall and precision after each detection.
fn curve(hits: &[bool], npos: usize) -> (Vec<f64>, Vec<f64>) {
    let mut tp = 0usize;
    let mut recall = Vec::with_capacity(hits.len());
    let mut precision = Vec::with_capacity(hits.len());
    for (i, &hit) in hits.iter().enumerate() {
        tp += usize::from(hit);
        recall.push(tp as f64 / npos as f64);
        precision.push(tp as f64 / (i + 1) as f64);
    }
    (recall, precision)
}

/// Highest recall reached (0 without detections).
pub fn max_recall(hits: &[bool], npos: usize) -> f64 {
    if npos == 0 {
        return 0.0;
    }
    hits.iter().filter(|h| **h).count() as f64 / npos as f64
}

/// `[x1, y1, x2, y2]` in pixels.
pub type Bbox = [f64; 4];

pub use crate::boxes::Overlap;

/// Intersection over union with the inclusive-pixel convention of the benchmarks.
pub fn iou(a: &Bbox, b: &Bbox, rule: Overlap) -> f64 {
    crate::boxes::iou(a, b, rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eleven_point_by_hand() {
        // hits: T F T, npos 4 -> recall .25 .25 .5, precision 1 .5 .667.
        // t=0,.1,.2: best precision with recall>=t is 1; t=.3,.4,.5: 2/3; t>.5: 0.
        let ap = average_precision(
            &[true, false, true],
            4,
            ApMethod::ElevenPoint,
            Thresholds::Matlab,
        )
        .unwrap();
        assert!((ap - (3.0 + 3.0 * 2.0 / 3.0) / 11.0).abs() < 1e-12, "{ap}");
    }

    #[test]
    fn all_point_by_hand() {
        // Envelope: precision 1 up to recall .25, then 2/3 up to .5, then 0.
        // Area = .25*1 + .25*(2/3).
        let ap = average_precision(
            &[true, false, true],
            4,
            ApMethod::AllPoint,
            Thresholds::Numpy,
        )
        .unwrap();
        assert!((ap - (0.25 + 0.25 * 2.0 / 3.0)).abs() < 1e-12, "{ap}");
    }

    #[test]
    fn the_threshold_source_decides_a_recall_of_exactly_seven_tenths() {
        // Seven hits out of ten: recall reaches 0.7 (as a double) and no further.
        let hits = [true; 7];
        let matlab =
            average_precision(&hits, 10, ApMethod::ElevenPoint, Thresholds::Matlab).unwrap();
        let numpy = average_precision(&hits, 10, ApMethod::ElevenPoint, Thresholds::Numpy).unwrap();
        // Precision is 1 throughout, so each threshold that some recall reaches adds 1/11.
        // MATLAB's 0.7 (1 - 3*0.1) is the double nearest 0.7 = 7/10: t = 0..0.7 count (8).
        // numpy's 0.7000000000000001 is above 7/10: t = 0..0.6 count (7).
        assert_eq!(matlab, 8.0 / 11.0);
        assert_eq!(numpy, 7.0 / 11.0);
    }

    #[test]
    fn undefined_without_ground_truth_and_zero_without_detections() {
        assert_eq!(
            average_precision(&[true], 0, ApMethod::ElevenPoint, Thresholds::Matlab),
            None
        );
        assert_eq!(
            average_precision(&[], 3, ApMethod::AllPoint, Thresholds::Matlab),
            Some(0.0)
        );
    }

    #[test]
    fn overlap_rules_differ_only_for_boxes_touching_within_a_pixel() {
        let a = [0.0, 0.0, 9.0, 9.0];
        let b = [9.5, 0.0, 19.0, 9.0];
        // Matlab: iw = 9 - 9.5 + 1 = 0.5 > 0 -> a sliver overlaps; Strict: 9 <= 9.5 -> 0.
        assert!(iou(&a, &b, Overlap::Matlab) > 0.0);
        assert_eq!(iou(&a, &b, Overlap::Strict), 0.0);
        // Identical boxes: 1 under both.
        assert_eq!(iou(&a, &a, Overlap::Matlab), 1.0);
        assert_eq!(iou(&a, &a, Overlap::Strict), 1.0);
    }
}
