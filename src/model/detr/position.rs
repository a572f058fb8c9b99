//! DETR's padding mask at feature resolution and its normalised sine position encoding,
//! computed on the host (they depend only on image sizes) and uploaded once per batch.

/// Padding mask and position encoding for a batch at feature size `h x w`.
#[derive(Debug, Clone, PartialEq)]
pub struct PositionInputs {
    /// `[B, h*w]`, `true` on padding.
    pub mask: Vec<bool>,
    /// `[B, 2*num_pos_feats, h, w]` (y channels first, then x).
    pub pos: Vec<f32>,
}

/// Each image's padding mask at feature size `h x w`: `true` outside its own `valid_feat`
/// (h, w) of the feature map. The backbone computes those exactly (every stride-2 layer
/// maps a size `s` to `ceil(s / 2)`), so a padded image's valid features, mask and
/// position encoding are those of the image alone. (The official code down-samples the
/// pixel mask by nearest sampling instead, which can mark a valid feature row as padding
/// or the reverse when the padded size is not a multiple of 32; it evaluates single
/// images, where both agree.)
pub fn feature_mask(valid_feat: &[(usize, usize)], feat: (usize, usize)) -> Vec<bool> {
    let (h, w) = feat;
    let mut mask = Vec::with_capacity(valid_feat.len() * h * w);
    for &(vh, vw) in valid_feat {
        for i in 0..h {
            for j in 0..w {
                mask.push(i >= vh || j >= vw);
            }
        }
    }
    mask
}

/// DETR `PositionEmbeddingSine(num_pos_feats, temperature=10000, normalize=True, scale=2π)`.
pub fn sine_encoding(
    mask: &[bool],
    batch: usize,
    h: usize,
    w: usize,
    num_pos_feats: usize,
) -> Vec<f32> {
    let scale = 2.0 * std::f32::consts::PI;
    let eps = 1e-6f32;
    let dim_t: Vec<f32> = (0..num_pos_feats)
        .map(|i| 10000f32.powf((2 * (i / 2)) as f32 / num_pos_feats as f32))
        .collect();
    let channels = 2 * num_pos_feats;
    let mut out = vec![0f32; batch * channels * h * w];
    for b in 0..batch {
        let m = &mask[b * h * w..(b + 1) * h * w];
        // Cumulative sums of not-mask along rows (y) and columns (x).
        let mut y = vec![0f32; h * w];
        let mut x = vec![0f32; h * w];
        for i in 0..h {
            for j in 0..w {
                let v = if m[i * w + j] { 0.0 } else { 1.0 };
                y[i * w + j] = v + if i > 0 { y[(i - 1) * w + j] } else { 0.0 };
                x[i * w + j] = v + if j > 0 { x[i * w + j - 1] } else { 0.0 };
            }
        }
        for i in 0..h {
            for j in 0..w {
                let ye = y[i * w + j] / (y[(h - 1) * w + j] + eps) * scale;
                let xe = x[i * w + j] / (x[i * w + w - 1] + eps) * scale;
                for (k, &d) in dim_t.iter().enumerate() {
                    let (py, px) = if k % 2 == 0 {
                        ((ye / d).sin(), (xe / d).sin())
                    } else {
                        ((ye / d).cos(), (xe / d).cos())
                    };
                    out[((b * channels + k) * h + i) * w + j] = py;
                    out[((b * channels + num_pos_feats + k) * h + i) * w + j] = px;
                }
            }
        }
    }
    out
}

/// Mask and encoding for a batch whose images have `valid_feat` (h, w) valid features in a
/// feature map of size `feat` (h, w).
pub fn position_inputs(
    valid_feat: &[(usize, usize)],
    feat: (usize, usize),
    num_pos_feats: usize,
) -> PositionInputs {
    let mask = feature_mask(valid_feat, feat);
    let pos = sine_encoding(&mask, valid_feat.len(), feat.0, feat.1, num_pos_feats);
    PositionInputs { mask, pos }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_covers_exactly_what_lies_outside_each_image() {
        let m = feature_mask(&[(2, 3), (3, 1)], (3, 3));
        assert_eq!(
            m,
            vec![
                false, false, false, false, false, false, true, true, true, //
                false, true, true, false, true, true, false, true, true,
            ]
        );
    }

    /// A padded image's valid positions get the encoding of the image alone.
    #[test]
    fn padding_leaves_the_valid_positions_encoding_unchanged() {
        let alone = position_inputs(&[(2, 3)], (2, 3), 4);
        let padded = position_inputs(&[(2, 3)], (4, 5), 4);
        for k in 0..8 {
            for i in 0..2 {
                for j in 0..3 {
                    assert_eq!(
                        alone.pos[(k * 2 + i) * 3 + j],
                        padded.pos[(k * 4 + i) * 5 + j],
                        "channel {k} at ({i}, {j})"
                    );
                }
            }
        }
    }

    #[test]
    fn unmasked_encoding_ends_at_two_pi() {
        let pos = sine_encoding(&[false; 4], 1, 2, 2, 2);
        // channel 0 = sin(y_embed), last row: y_embed = 2/(2+eps)*2π ≈ 2π -> sin ≈ 0
        assert!(pos[2].abs() < 1e-4 && pos[3].abs() < 1e-4);
        // channel 1 = cos(y_embed / 10000^(0)) at row 0: cos(π) = -1
        assert!((pos[4] + 1.0).abs() < 1e-4);
    }
}
