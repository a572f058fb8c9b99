//! Draws detections on an image: human box, object box, a line between their centres, and
//! a "verb object score" label in an 8x8 bitmap font.

use font8x8::UnicodeFonts;
use image::{Rgb, RgbImage};

const PALETTE: [[u8; 3]; 6] = [
    [230, 25, 75],
    [60, 180, 75],
    [0, 130, 200],
    [245, 130, 48],
    [145, 30, 180],
    [70, 240, 240],
];

fn put(img: &mut RgbImage, x: i64, y: i64, color: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, color);
    }
}

fn rect(img: &mut RgbImage, b: [f32; 4], color: Rgb<u8>, thickness: i64) {
    let [x1, y1, x2, y2] = b.map(|v| v.round() as i64);
    for t in 0..thickness {
        for x in x1..=x2 {
            put(img, x, y1 + t, color);
            put(img, x, y2 - t, color);
        }
        for y in y1..=y2 {
            put(img, x1 + t, y, color);
            put(img, x2 - t, y, color);
        }
    }
}

fn line(img: &mut RgbImage, (x0, y0): (f32, f32), (x1, y1): (f32, f32), color: Rgb<u8>) {
    let steps = (x1 - x0).abs().max((y1 - y0).abs()).ceil().max(1.0) as i64;
    for i in 0..=steps {
        let t = i as f32 / steps as f32;
        put(
            img,
            (x0 + t * (x1 - x0)).round() as i64,
            (y0 + t * (y1 - y0)).round() as i64,
            color,
        );
    }
}

fn text(img: &mut RgbImage, x: i64, y: i64, s: &str, color: Rgb<u8>, scale: i64) {
    let background = Rgb([0, 0, 0]);
    for (i, ch) in s.chars().enumerate() {
        let glyph = font8x8::BASIC_FONTS
            .get(ch)
            .or_else(|| font8x8::BASIC_FONTS.get('?'));
        let Some(glyph) = glyph else { continue };
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                let on = bits & (1 << col) != 0;
                for dy in 0..scale {
                    for dx in 0..scale {
                        let px = x + (i as i64 * 8 + col) * scale + dx;
                        let py = y + row as i64 * scale + dy;
                        put(img, px, py, if on { color } else { background });
                    }
                }
            }
        }
    }
}

/// One human-object pair to draw: boxes `[x1, y1, x2, y2]` in the image's pixels and a
/// caption. Rendering knows nothing of detections (vision sits below the detector).
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub human: [f32; 4],
    pub object: [f32; 4],
    pub caption: String,
}

/// A copy of `image` with `pairs` drawn on it.
pub fn render(image: &RgbImage, pairs: &[Pair]) -> RgbImage {
    let mut out = image.clone();
    let scale = ((image.width().min(image.height()) / 400) as i64).max(1);
    for (i, d) in pairs.iter().enumerate() {
        let color = Rgb(PALETTE[i % PALETTE.len()]);
        rect(&mut out, d.human, color, scale + 1);
        rect(&mut out, d.object, color, scale);
        let centre = |b: [f32; 4]| ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
        line(&mut out, centre(d.human), centre(d.object), color);
        let label = &d.caption;
        let [x1, y1, _, _] = d.human.map(|v| v.round() as i64);
        text(
            &mut out,
            x1.max(0),
            (y1 - 8 * scale - 2).max(0),
            label,
            color,
            scale,
        );
    }
    out
}
