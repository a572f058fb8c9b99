//! Draws detections on an image: each human-object pair's two boxes and a line between
//! their centres in the pair's colour, and its labels ("verb object score", best first)
//! in DejaVu Sans at a size that follows the image, on the pair's colour, placed so that
//! no label covers another.

use ab_glyph::{Font, FontRef, PxScale, ScaleFont, point};
use image::{Rgb, RgbImage};

/// DejaVu Sans (Bitstream Vera licence, assets/fonts/DejaVuSans-LICENSE.txt).
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Distinct colours, dark enough for white text.
const PALETTE: [[u8; 3]; 10] = [
    [230, 25, 75],
    [40, 150, 60],
    [0, 110, 190],
    [220, 110, 20],
    [145, 30, 180],
    [0, 140, 140],
    [200, 40, 200],
    [120, 80, 20],
    [90, 90, 90],
    [0, 0, 128],
];

/// Labels a pair shows at most (the rest are summarised).
const MAX_LINES: usize = 3;

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

fn fill(img: &mut RgbImage, area: Area, color: Rgb<u8>) {
    for y in area.y..area.y + area.h {
        for x in area.x..area.x + area.w {
            put(img, x, y, color);
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

/// A rectangle of pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Area {
    x: i64,
    y: i64,
    w: i64,
    h: i64,
}

impl Area {
    fn overlaps(&self, o: &Area) -> bool {
        self.x < o.x + o.w && o.x < self.x + self.w && self.y < o.y + o.h && o.y < self.y + self.h
    }
}

/// Text in one font at one size.
struct Pen<'f> {
    font: ab_glyph::PxScaleFont<&'f FontRef<'f>>,
}

impl<'f> Pen<'f> {
    fn width(&self, s: &str) -> f32 {
        s.chars()
            .map(|c| self.font.h_advance(self.font.glyph_id(c)))
            .sum()
    }

    fn height(&self) -> f32 {
        self.font.ascent() - self.font.descent()
    }

    /// Draws `s` with its top left at (x, y), blending `color` over the image.
    fn write(&self, img: &mut RgbImage, x: f32, y: f32, s: &str, color: Rgb<u8>) {
        let mut caret = x;
        let baseline = y + self.font.ascent();
        for c in s.chars() {
            let id = self.font.glyph_id(c);
            let glyph = id.with_scale_and_position(self.font.scale(), point(caret, baseline));
            caret += self.font.h_advance(id);
            let Some(outline) = self.font.outline_glyph(glyph) else {
                continue;
            };
            let bounds = outline.px_bounds();
            outline.draw(|gx, gy, coverage| {
                let (px, py) = (
                    bounds.min.x as i64 + gx as i64,
                    bounds.min.y as i64 + gy as i64,
                );
                if px < 0 || py < 0 || px >= i64::from(img.width()) || py >= i64::from(img.height())
                {
                    return;
                }
                let under = img.get_pixel(px as u32, py as u32).0;
                let mixed = std::array::from_fn(|k| {
                    (f32::from(under[k]) * (1.0 - coverage) + f32::from(color.0[k]) * coverage)
                        .round() as u8
                });
                img.put_pixel(px as u32, py as u32, Rgb(mixed));
            });
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

/// Pairs with the same boxes, in order of first appearance: one colour and one label
/// block each, its captions in the given order.
fn group(pairs: &[Pair]) -> Vec<(&Pair, Vec<&str>)> {
    let mut groups: Vec<(&Pair, Vec<&str>)> = Vec::new();
    for p in pairs {
        match groups
            .iter_mut()
            .find(|(g, _)| g.human == p.human && g.object == p.object)
        {
            Some((_, captions)) => captions.push(&p.caption),
            None => groups.push((p, vec![&p.caption])),
        }
    }
    groups
}

/// Where a label block goes: above the human box's top left if there is room, else just
/// inside it, moved down past every block already placed that it would cover, and kept
/// inside the image.
fn place(anchor: [f32; 4], w: i64, h: i64, image: (u32, u32), placed: &[Area]) -> Area {
    let (iw, ih) = (i64::from(image.0), i64::from(image.1));
    let x = (anchor[0].round() as i64).clamp(0, (iw - w).max(0));
    let top = anchor[1].round() as i64;
    let mut area = Area {
        x,
        y: if top - h >= 0 { top - h } else { top.max(0) },
        w,
        h,
    };
    while let Some(hit) = placed.iter().find(|p| p.overlaps(&area)) {
        area.y = hit.y + hit.h;
    }
    if area.y + h > ih {
        // No free room below: the lowest free place above instead.
        area.y = (ih - h).max(0);
        while let Some(hit) = placed.iter().find(|p| p.overlaps(&area)) {
            if hit.y - h < 0 {
                break;
            }
            area.y = hit.y - h;
        }
    }
    area
}

/// A copy of `image` with `pairs` drawn on it.
pub fn render(image: &RgbImage, pairs: &[Pair]) -> RgbImage {
    let mut out = image.clone();
    let Ok(font) = FontRef::try_from_slice(FONT) else {
        return out;
    };
    let short = image.width().min(image.height()) as f32;
    // About 1/30 of the short side: 16 px at 480, 27 px at 800; never under 11.
    let pen = Pen {
        font: font.as_scaled(PxScale::from((short / 30.0).max(11.0))),
    };
    let thickness = ((short / 300.0).round() as i64).max(1);
    let pad = (pen.height() / 6.0).ceil() as i64;
    let line_h = pen.height().ceil() as i64 + pad;
    let white = Rgb([255, 255, 255]);
    let groups = group(pairs);
    // Boxes first, then every label on top of them.
    for (i, (p, _)) in groups.iter().enumerate() {
        let color = Rgb(PALETTE[i % PALETTE.len()]);
        rect(&mut out, p.human, color, thickness + 1);
        rect(&mut out, p.object, color, thickness);
        let centre = |b: [f32; 4]| ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
        line(&mut out, centre(p.human), centre(p.object), color);
    }
    let mut placed: Vec<Area> = Vec::new();
    for (i, (p, captions)) in groups.iter().enumerate() {
        let color = Rgb(PALETTE[i % PALETTE.len()]);
        let mut lines: Vec<String> = captions
            .iter()
            .take(MAX_LINES)
            .map(|c| c.to_string())
            .collect();
        if captions.len() > MAX_LINES {
            lines.push(format!("+{} more", captions.len() - MAX_LINES));
        }
        let w = lines
            .iter()
            .map(|l| pen.width(l).ceil() as i64)
            .max()
            .unwrap_or(0)
            + 2 * pad;
        let h = line_h * lines.len() as i64 + pad;
        let area = place(p.human, w, h, image.dimensions(), &placed);
        fill(&mut out, area, color);
        for (k, l) in lines.iter().enumerate() {
            let y = area.y + pad + k as i64 * line_h;
            pen.write(&mut out, (area.x + pad) as f32, y as f32, l, white);
        }
        placed.push(area);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(x: f32, caption: &str) -> Pair {
        Pair {
            human: [x, 100.0, x + 80.0, 300.0],
            object: [x + 40.0, 150.0, x + 120.0, 250.0],
            caption: caption.into(),
        }
    }

    #[test]
    fn labels_of_close_pairs_do_not_cover_each_other() {
        let pairs = [
            pair(50.0, "ride bicycle 0.91"),
            pair(60.0, "hold bicycle 0.88"),
            pair(55.0, "push bicycle 0.70"),
        ];
        let mut placed = Vec::new();
        for p in &pairs {
            let area = place(p.human, 150, 30, (640, 480), &placed);
            assert!(
                placed.iter().all(|q: &Area| !q.overlaps(&area)),
                "{area:?} covers {placed:?}"
            );
            assert!(area.x >= 0 && area.y >= 0 && area.x + area.w <= 640 && area.y + area.h <= 480);
            placed.push(area);
        }
    }

    #[test]
    fn triplets_of_one_pair_share_a_label_block() {
        let same = [
            pair(50.0, "ride bicycle 0.91"),
            pair(50.0, "hold bicycle 0.80"),
            pair(300.0, "kick ball 0.5"),
        ];
        let groups = group(&same);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].1, vec!["ride bicycle 0.91", "hold bicycle 0.80"]);
    }

    #[test]
    fn labels_are_drawn_in_white_on_the_pairs_colour() {
        let image = RgbImage::from_pixel(640, 480, Rgb([0, 0, 0]));
        let out = render(&image, &[pair(50.0, "ride bicycle 0.91")]);
        let colour = Rgb(PALETTE[0]);
        let painted = out.pixels().filter(|p| **p == colour).count();
        let white = out
            .pixels()
            .filter(|p| p.0.iter().all(|&v| v > 200))
            .count();
        assert!(
            painted > 1000,
            "label background and boxes: {painted} pixels"
        );
        // Glyphs at a readable size: over a hundred solid white pixels for 17 characters.
        assert!(white > 100, "text pixels: {white}");
        // The label sits above the human box (top at y = 100).
        let row = 100 - 5;
        assert!((50..200).any(|x| *out.get_pixel(x, row) == colour));
    }
}
