//! Box overlap, the one IoU of the project: triplet NMS (f32, as the reference runs it)
//! and the benchmarks' matching (f64) both use [`iou`].

use std::ops::{Add, Div, Mul, Sub};

/// Which overlap test decides that two boxes do not intersect. Both count pixels
/// inclusively (`width = x2 - x1 + 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// ho-rcnn `VOCevaldet_bboxpair.m` (and the reference triplet NMS, where a
    /// non-positive width gives an empty intersection): intersecting when
    /// `min x2 - max x1 + 1 > 0`.
    Matlab,
    /// GEN-VLKT `compute_IOU`: intersecting only when `min x2 > max x1` (boxes that touch
    /// within one pixel do not overlap).
    Strict,
}

/// A box coordinate type: `f32` or `f64`.
pub trait Coord:
    Copy
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + From<u8>
{
}

impl Coord for f32 {}
impl Coord for f64 {}

fn max<F: Coord>(a: F, b: F) -> F {
    if b > a { b } else { a }
}

fn min<F: Coord>(a: F, b: F) -> F {
    if b < a { b } else { a }
}

/// Intersection over union of `[x1, y1, x2, y2]` boxes with the inclusive-pixel
/// convention of the reference code and the benchmarks.
pub fn iou<F: Coord>(a: &[F; 4], b: &[F; 4], rule: Overlap) -> F {
    let (zero, one) = (F::from(0), F::from(1));
    let (x1, y1) = (max(a[0], b[0]), max(a[1], b[1]));
    let (x2, y2) = (min(a[2], b[2]), min(a[3], b[3]));
    let (iw, ih) = (x2 - x1 + one, y2 - y1 + one);
    let disjoint = match rule {
        Overlap::Matlab => iw <= zero || ih <= zero,
        Overlap::Strict => x2 <= x1 || y2 <= y1,
    };
    if disjoint {
        return zero;
    }
    let area = |r: &[F; 4]| (r[2] - r[0] + one) * (r[3] - r[1] + one);
    let inter = iw * ih;
    inter / (area(a) + area(b) - inter)
}

#[cfg(test)]
mod tests {
    use super::{Overlap, iou};

    #[test]
    fn overlap_rules_and_precisions() {
        let a = [0.0f64, 0.0, 9.0, 9.0];
        assert_eq!(iou(&a, &a, Overlap::Matlab), 1.0);
        // 10x10 boxes sharing a 5x10 strip: 50 / 150.
        let b = [5.0, 0.0, 14.0, 9.0];
        assert!((iou(&a, &b, Overlap::Strict) - 1.0 / 3.0).abs() < 1e-12);
        // Touching within a pixel: one overlapping column for MATLAB, none for strict.
        let c = [9.0, 0.0, 18.0, 9.0];
        assert!(iou(&a, &c, Overlap::Matlab) > 0.0);
        assert_eq!(iou(&a, &c, Overlap::Strict), 0.0);
        let far = [20.0f32, 20.0, 30.0, 30.0];
        assert_eq!(iou(&[0.0f32, 0.0, 9.0, 9.0], &far, Overlap::Matlab), 0.0);
    }
}
