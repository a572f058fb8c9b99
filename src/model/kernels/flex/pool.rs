//! Max pooling on the flex CPU backend.
//!
//! burn-flex's max pool took 1.7x PyTorch's time on the ResNet stem's 64x400x600 map
//! (3x3, stride 2), about a third of the stem. Here each (image, channel) plane is one
//! task: for each output row the window's input rows are reduced element by element into
//! one row (contiguous, vectorised), then each output takes the maximum of its columns.

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::{Bytes, DType, TensorPrimitive};
use burn_flex::{FlexTensor, Layout};
use rayon::prelude::*;

/// [`ModelBackend::max_pool`](crate::model::kernels::ModelBackend) on flex.
pub(super) fn max_pool2d(
    x: Tensor<Flex, 4>,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
) -> Tensor<Flex, 4> {
    let [n, c, h, w] = x.dims();
    let [kh, kw] = kernel;
    let [sh, sw] = stride;
    let [ph, pw] = padding;
    // PyTorch's own limits (padding at most half the kernel) keep every window on at
    // least one input; anything else goes to Burn's op.
    let supported = x.dtype() == DType::F32
        && kh > 0
        && kw > 0
        && sh > 0
        && sw > 0
        && 2 * ph <= kh
        && 2 * pw <= kw
        && h + 2 * ph >= kh
        && w + 2 * pw >= kw;
    if !supported {
        return burn::tensor::module::max_pool2d(x, kernel, stride, padding, [1, 1], false);
    }
    let (oh, ow) = ((h + 2 * ph - kh) / sh + 1, (w + 2 * pw - kw) / sw + 1);
    let x = x.into_primitive().tensor().to_contiguous();
    let data = x.storage::<f32>();
    let mut out = vec![0.0f32; n * c * oh * ow];
    if !out.is_empty() {
        out.par_chunks_mut(oh * ow)
            .zip(data.par_chunks(h * w))
            .for_each_init(
                || vec![0.0f32; w],
                |rows, (out, plane)| {
                    for (oy, out) in out.chunks_exact_mut(ow).enumerate() {
                        let (y0, y1) = window(oy, sh, ph, kh, h);
                        rows.copy_from_slice(&plane[y0 * w..(y0 + 1) * w]);
                        for y in y0 + 1..y1 {
                            let row = &plane[y * w..(y + 1) * w];
                            rows.iter_mut()
                                .zip(row)
                                .for_each(|(m, &v)| *m = if v > *m { v } else { *m });
                        }
                        for (ox, o) in out.iter_mut().enumerate() {
                            let (x0, x1) = window(ox, sw, pw, kw, w);
                            *o = rows[x0 + 1..x1]
                                .iter()
                                .fold(rows[x0], |m, &v| if v > m { v } else { m });
                        }
                    }
                },
            );
    }
    let out = FlexTensor::new(
        Bytes::from_elems(out),
        Layout::contiguous([n, c, oh, ow].into()),
        DType::F32,
    );
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// Input range `[start, end)` of output `o`'s window, clipped to the input: never empty
/// when the padding is at most half the kernel.
fn window(o: usize, stride: usize, pad: usize, kernel: usize, len: usize) -> (usize, usize) {
    let start = (o * stride).saturating_sub(pad);
    let end = (o * stride + kernel).saturating_sub(pad).min(len);
    (start, end)
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    /// Equal to Burn's op, element for element, on the stem's configuration and others,
    /// with odd sizes so windows meet both edges.
    #[test]
    fn equals_burns_max_pool() {
        for (dims, k, s, p) in [
            ([2, 3, 17, 23], [3, 3], [2, 2], [1, 1]),
            ([1, 4, 9, 8], [2, 2], [2, 2], [0, 0]),
            ([1, 2, 10, 11], [3, 2], [1, 3], [1, 1]),
            ([1, 1, 3, 3], [3, 3], [1, 1], [0, 0]),
        ] {
            <Flex as Backend>::seed(&Default::default(), 7);
            let x = Tensor::<Flex, 4>::random(
                dims,
                Distribution::Normal(0.0, 1.0),
                &Default::default(),
            );
            let want = burn::tensor::module::max_pool2d(x.clone(), k, s, p, [1, 1], false);
            let got = max_pool2d(x, k, s, p);
            assert_eq!(
                got.into_data(),
                want.into_data(),
                "{dims:?} k{k:?} s{s:?} p{p:?}"
            );
        }
    }
}
