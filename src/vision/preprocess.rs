//! The two input branches of HOICLIP, from one decoded image.
//!
//! DETR branch: shorter side to 800 (longer at most 1333), PIL bilinear, ImageNet
//! normalisation. CLIP branch: from the *resized* image, shorter side to 224 with PIL
//! bicubic, centre crop, CLIP normalisation. Rounding follows Python's (`round` is
//! round-half-to-even, `int` truncates).

use burn::prelude::*;
use image::RgbImage;

use super::resize::{Filter, resize};
use crate::model::hoiclip::ModelInput;
use crate::model::kernels::ModelBackend;

const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
// Written as in the reference (Python floats rounded to f32 the same way).
#[allow(clippy::excessive_precision)]
const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
#[allow(clippy::excessive_precision)]
const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// Sizes of the two branches.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct PreprocessConfig {
    /// Target of the shorter side (800).
    pub resize_short: usize,
    /// Cap on the longer side (1333).
    pub resize_max: usize,
    /// CLIP input resolution (224).
    pub clip_resolution: usize,
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        Self {
            resize_short: 800,
            resize_max: 1333,
            clip_resolution: 224,
        }
    }
}

/// One image, ready to batch.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Original size (width, height): boxes are reported in these pixels.
    pub original: (u32, u32),
    /// ImageNet-normalised CHW of the resized image.
    pub detr: Vec<f32>,
    /// Resized (height, width).
    pub detr_size: (usize, usize),
    /// CLIP-normalised CHW, `clip_resolution` square.
    pub clip: Vec<f32>,
}

/// Python 3 `round()`: halves go to the even neighbour.
fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - x.signum()
    } else {
        r
    }
}

/// DETR's `get_size_with_aspect_ratio`: the (width, height) after resizing.
pub fn detr_size(width: usize, height: usize, short: usize, max: usize) -> (usize, usize) {
    let (w, h) = (width as f64, height as f64);
    let (mn, mx) = (w.min(h), w.max(h));
    let mut size = short as f64;
    if mx / mn * size > max as f64 {
        size = round_half_even(max as f64 * mn / mx);
    }
    let size_i = size as usize;
    if (width <= height && width == size_i) || (height <= width && height == size_i) {
        return (width, height);
    }
    if width < height {
        (size_i, (size * h / w) as usize)
    } else {
        ((size * w / h) as usize, size_i)
    }
}

fn to_chw(img: &RgbImage, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut out = vec![0f32; 3 * h * w];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * h * w + i] = (f32::from(p[c]) / 255.0 - mean[c]) / std[c];
        }
    }
    out
}

/// The CLIP branch: bicubic resize of the shorter side, then a centre crop.
fn clip_branch(resized: &RgbImage, res: usize) -> RgbImage {
    let (w, h) = (resized.width() as usize, resized.height() as usize);
    // torchvision Resize(int): the shorter side becomes `res`, the longer is truncated.
    let (nw, nh) = if w <= h {
        (res, (res as f64 * h as f64 / w as f64) as usize)
    } else {
        ((res as f64 * w as f64 / h as f64) as usize, res)
    };
    let scaled = resize(resized, nw as u32, nh as u32, Filter::Bicubic);
    let top = round_half_even((nh as f64 - res as f64) / 2.0).max(0.0) as u32;
    let left = round_half_even((nw as f64 - res as f64) / 2.0).max(0.0) as u32;
    image::imageops::crop_imm(&scaled, left, top, res as u32, res as u32).to_image()
}

/// A region of `img` as CLIP sees it, for verb rows made from examples (reference 1.7):
/// Pillow's `Image.crop` (each coordinate rounded half to even; area outside the image
/// black), then CLIP's preprocessing (bicubic resize of the shorter side to `res`, centre
/// crop), CLIP-normalised CHW. Callers keep boxes inside the image and non-empty.
pub fn clip_crop(img: &RgbImage, bbox: [f32; 4], res: usize) -> Vec<f32> {
    let [x0, y0, x1, y1] = bbox.map(|v| round_half_even(f64::from(v)) as i64);
    let (w, h) = ((x1 - x0).max(1), (y1 - y0).max(1));
    let mut crop = RgbImage::new(w as u32, h as u32);
    for (x, y, pixel) in crop.enumerate_pixels_mut() {
        let (sx, sy) = (x0 + i64::from(x), y0 + i64::from(y));
        if sx >= 0 && sy >= 0 && sx < i64::from(img.width()) && sy < i64::from(img.height()) {
            *pixel = *img.get_pixel(sx as u32, sy as u32);
        }
    }
    to_chw(&clip_branch(&crop, res), CLIP_MEAN, CLIP_STD)
}

/// Both branches of one decoded image.
pub fn prepare(img: &RgbImage, config: &PreprocessConfig) -> Prepared {
    let (w0, h0) = (img.width() as usize, img.height() as usize);
    let (w, h) = detr_size(w0, h0, config.resize_short, config.resize_max);
    let resized = resize(img, w as u32, h as u32, Filter::Bilinear);
    let clip = clip_branch(&resized, config.clip_resolution);
    Prepared {
        original: (img.width(), img.height()),
        detr: to_chw(&resized, IMAGENET_MEAN, IMAGENET_STD),
        detr_size: (h, w),
        clip: to_chw(&clip, CLIP_MEAN, CLIP_STD),
    }
}

/// Zero-pads the DETR branches to the largest height and width and stacks both branches.
pub fn batch<B: ModelBackend>(images: &[&Prepared], device: &B::Device) -> ModelInput<B> {
    batch_in_bucket(images, 0, device)
}

/// `size` with each side rounded up to a multiple of `step` (unchanged for 0).
pub fn bucket(size: (usize, usize), step: usize) -> (usize, usize) {
    match step {
        0 => size,
        s => (size.0.div_ceil(s) * s, size.1.div_ceil(s) * s),
    }
}

/// As [`batch`], the padded size rounded up to a multiple of `step` on each side (a size
/// bucket, so that a GPU backend meets few input shapes; padding is exact, so answers do
/// not change).
pub fn batch_in_bucket<B: ModelBackend>(
    images: &[&Prepared],
    step: usize,
    device: &B::Device,
) -> ModelInput<B> {
    let largest = (
        images.iter().map(|p| p.detr_size.0).max().unwrap_or(1),
        images.iter().map(|p| p.detr_size.1).max().unwrap_or(1),
    );
    let (ph, pw) = bucket(largest, step);
    let res2 = images.first().map(|p| p.clip.len() / 3).unwrap_or(1);
    let res = (res2 as f64).sqrt() as usize;
    let n = images.len();
    let mut detr = vec![0f32; n * 3 * ph * pw];
    let mut clip = Vec::with_capacity(n * 3 * res * res);
    for (b, p) in images.iter().enumerate() {
        let (h, w) = p.detr_size;
        for c in 0..3 {
            for y in 0..h {
                let src = &p.detr[(c * h + y) * w..(c * h + y + 1) * w];
                let at = ((b * 3 + c) * ph + y) * pw;
                detr[at..at + w].copy_from_slice(src);
            }
        }
        clip.extend_from_slice(&p.clip);
    }
    ModelInput {
        detr: Tensor::from_data(TensorData::new(detr, [n, 3, ph, pw]), device),
        valid: images.iter().map(|p| p.detr_size).collect(),
        clip: Tensor::from_data(TensorData::new(clip, [n, 3, res, res]), device),
    }
}

/// Every padded (h, w) that images resized by `config`'s rule fall into when sizes are
/// rounded up to multiples of `step` (> 0): the shorter side at `resize_short` with the
/// longer anywhere up to `resize_max`, or the longer side at `resize_max` with the shorter
/// anywhere below, down to images 64 times longer than wide (the most `decode` accepts),
/// whose rounded shorter side can push the longer a little past `resize_max`; both
/// orientations, sorted.
pub fn detr_shapes(config: &PreprocessConfig, step: usize) -> Vec<(usize, usize)> {
    let step = step.max(1);
    let mut shapes = std::collections::BTreeSet::new();
    let (short, long) = (
        config.resize_short,
        config.resize_max.max(config.resize_short),
    );
    let mut add = |s: usize, l: usize| {
        shapes.insert(bucket((s, l), step));
        shapes.insert(bucket((l, s), step));
    };
    // Every multiple of the step plus the extremes covers every bucket in between.
    let mut l = short;
    while l <= long {
        add(short, l);
        l += step.min(long - l).max(1);
    }
    add(short, long);
    // A shorter side `s` is `round(resize_max / ratio)`, so the longer, `s * ratio`, is
    // at most `resize_max * s / (s - 1/2)`.
    let overshoot = |s: usize| (long as f64 * s as f64 / (s as f64 - 0.5)).floor() as usize;
    for s in (long / 64).max(1)..short {
        add(s, long);
        add(s, overshoot(s));
    }
    add(short - 1, long);
    shapes.into_iter().collect()
}

/// The most common photo shapes (1:1, 4:3, 3:2, 16:9, both orientations) as `config`
/// resizes them, rounded up to multiples of `step`.
pub fn common_shapes(config: &PreprocessConfig, step: usize) -> Vec<(usize, usize)> {
    let mut shapes = std::collections::BTreeSet::new();
    for (w, h) in [(1, 1), (4, 3), (3, 2), (16, 9)] {
        for (w, h) in [(w * 1200, h * 1200), (h * 1200, w * 1200)] {
            let (rw, rh) = detr_size(w, h, config.resize_short, config.resize_max);
            shapes.insert(bucket((rh, rw), step));
        }
    }
    shapes.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_rounding() {
        assert_eq!(round_half_even(6.5), 6.0);
        assert_eq!(round_half_even(7.5), 8.0);
        assert_eq!(round_half_even(2.4), 2.0);
        assert_eq!(round_half_even(-0.5), -0.0);
    }

    #[test]
    fn buckets_round_each_side_up() {
        assert_eq!(bucket((800, 1066), 64), (832, 1088));
        assert_eq!(bucket((832, 1088), 64), (832, 1088));
        assert_eq!(bucket((1, 1), 32), (32, 32));
        assert_eq!(bucket((801, 1333), 0), (801, 1333));
    }

    /// Every size DETR's resize gives (shorter side 800, longer at most 1333) to images
    /// up to 64:1, bucketed by 64, is one of the shapes `detr_shapes` lists.
    #[test]
    fn detr_shapes_cover_every_resized_size() {
        let shapes = detr_shapes(&PreprocessConfig::default(), 64);
        for long in (1..=4000usize).step_by(7) {
            for short in (long.div_ceil(64)..=long).step_by(3) {
                for (w, h) in [(long, short), (short, long)] {
                    let (rw, rh) = detr_size(w, h, 800, 1333);
                    assert!(
                        shapes.contains(&bucket((rh, rw), 64)),
                        "{w}x{h} -> {rw}x{rh}"
                    );
                }
            }
        }
        // Landscape: 832 high and 832 to 1344 wide (9), 1344 wide and 64 to 768 high
        // (12), and the strips' 64 x 1408; the same portrait; the square counted once.
        assert_eq!(shapes.len(), 43);
    }

    #[test]
    fn detr_sizes_follow_the_reference_rule() {
        assert_eq!(detr_size(640, 480, 800, 1333), (1066, 800));
        assert_eq!(detr_size(480, 640, 800, 1333), (800, 1066));
        // Very wide: the longer side caps at 1333 and the shorter follows.
        assert_eq!(detr_size(2000, 500, 800, 1333), (1332, 333));
        assert_eq!(detr_size(800, 600, 800, 1333), (1066, 800));
        assert_eq!(detr_size(600, 800, 600, 1333), (600, 800));
    }
}
