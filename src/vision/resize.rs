//! Pillow-compatible resampling of 8-bit RGB images (`Image.resize` with BILINEAR or
//! BICUBIC, no reducing gap): separable convolution whose support grows with the
//! down-scaling factor (antialiasing), 22-bit fixed-point coefficients, horizontal pass
//! first. Matching Pillow bit for bit is what makes the model's inputs equal the
//! reference's.

use image::RgbImage;

/// Resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Bilinear,
    Bicubic,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output position: first input index, and fixed-point weights.
struct Coefficients {
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
    ksize: usize,
}

fn coefficients(in_size: usize, out_size: usize, filter: Filter) -> Coefficients {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C casts truncate toward zero; negative starts clamp to 0 either way.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin);
        let mut total = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(n) {
            let w = filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss);
            *kx = w;
            total += w;
        }
        for (x, kx) in k.iter().enumerate().take(n) {
            let w = if total != 0.0 { kx / total } else { *kx };
            let fixed = w * f64::from(1u32 << PRECISION_BITS);
            weights[xx * ksize + x] = if w < 0.0 {
                (fixed - 0.5) as i32
            } else {
                (fixed + 0.5) as i32
            };
        }
        bounds.push((xmin, n));
    }
    Coefficients {
        bounds,
        weights,
        ksize,
    }
}

fn clip8(v: i64) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes to exactly `width x height` as Pillow's `Image.resize((width, height), filter)`.
pub fn resize(src: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    let (w0, h0) = (src.width() as usize, src.height() as usize);
    let (w1, h1) = (width as usize, height as usize);
    if w0 == w1 && h0 == h1 || w1 == 0 || h1 == 0 || w0 == 0 || h0 == 0 {
        return image::imageops::resize(src, width, height, image::imageops::FilterType::Nearest);
    }
    let horiz = coefficients(w0, w1, filter);
    let vert = coefficients(h0, h1, filter);
    let data = src.as_raw();
    // Horizontal pass over the rows the vertical pass will read.
    let first_row = vert.bounds.first().map(|b| b.0).unwrap_or(0);
    let last_row = vert.bounds.last().map(|b| b.0 + b.1).unwrap_or(h0);
    let (tmp, tmp_first) = if w1 != w0 {
        let rows = last_row - first_row;
        let mut tmp = vec![0u8; rows * w1 * 3];
        for y in 0..rows {
            let row = &data[(y + first_row) * w0 * 3..(y + first_row + 1) * w0 * 3];
            for (xx, &(xmin, n)) in horiz.bounds.iter().enumerate() {
                let k = &horiz.weights[xx * horiz.ksize..xx * horiz.ksize + n];
                for c in 0..3 {
                    let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                    for (x, &kx) in k.iter().enumerate() {
                        ss += i64::from(row[(xmin + x) * 3 + c]) * i64::from(kx);
                    }
                    tmp[(y * w1 + xx) * 3 + c] = clip8(ss);
                }
            }
        }
        (tmp, first_row)
    } else {
        (data.clone(), 0)
    };
    if h1 == h0 {
        return RgbImage::from_raw(width, height, tmp).unwrap_or_default();
    }
    let mut out = vec![0u8; h1 * w1 * 3];
    for (yy, &(ymin, n)) in vert.bounds.iter().enumerate() {
        let k = &vert.weights[yy * vert.ksize..yy * vert.ksize + n];
        for xx in 0..w1 {
            for c in 0..3 {
                let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                for (y, &ky) in k.iter().enumerate() {
                    ss +=
                        i64::from(tmp[((ymin - tmp_first + y) * w1 + xx) * 3 + c]) * i64::from(ky);
                }
                out[(yy * w1 + xx) * 3 + c] = clip8(ss);
            }
        }
    }
    RgbImage::from_raw(width, height, out).unwrap_or_default()
}
