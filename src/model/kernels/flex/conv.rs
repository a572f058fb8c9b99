//! 2-D convolution on the flex CPU backend, for the shapes burn-flex sends down its
//! generic path (im2col + GEMM): the ResNet stem, every 3x3 and the strided 1x1s.
//!
//! burn-flex spends much of that path outside the GEMM, on one thread: it transposes the
//! whole input to NHWC, re-lays the weight out to `[out, kh, kw, in]` on every call, and
//! scatters each tile's `[out, tile]` result into the NCHW output element by element.
//! Here the transposes run on every thread and each tile's GEMM writes straight into the
//! output (its row stride is the output plane). The arithmetic is left exactly as
//! burn-flex's: the same patch layout, the same tiles, the same GEMM sizes and threading,
//! so every output is bit-identical and the parity tolerances need no slack.

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Bytes, DType, TensorPrimitive};
use burn_flex::{FlexTensor, Layout};
use rayon::prelude::*;

use super::DisjointWrites;

/// Output positions per im2col tile: burn-flex's, so the GEMMs (and their rounding) match.
const TILE: usize = 512;
/// burn-flex lets the gemm crate thread a tile's GEMM from this many multiply-adds on.
const THREADED_GEMM: usize = 192 * 192 * 192;
/// burn-flex's own direct kernel takes at most this many input and output channels.
const SMALL_CHANNELS: (usize, usize) = (4, 16);

/// [`ModelBackend::convolution`](crate::model::kernels::ModelBackend) on flex.
pub(super) fn conv2d(
    x: Tensor<Flex, 4>,
    weight: Tensor<Flex, 4>,
    bias: Option<Tensor<Flex, 1>>,
    options: ConvOptions<2>,
) -> Tensor<Flex, 4> {
    let Some(shape) = Shape2d::of(&x, &weight, bias.as_ref(), &options) else {
        return burn::tensor::module::conv2d(x, weight, bias, options);
    };
    let x = x.into_primitive().tensor().to_contiguous();
    let w = weight.into_primitive().tensor().to_contiguous();
    let nhwc = to_nhwc(x.storage::<f32>(), shape.c_in, shape.h * shape.w);
    let w_flat = patch_major(w.storage::<f32>(), shape.c_in, shape.kh * shape.kw);
    let mut out = vec![0.0f32; shape.batch * shape.c_out * shape.spatial_out()];
    shape.im2col_gemm(&nhwc, &w_flat, &mut out);
    if let Some(bias) = bias {
        let bias = bias.into_primitive().tensor().to_contiguous();
        let bias = bias.storage::<f32>();
        let plane = shape.spatial_out().max(1);
        out.par_chunks_mut(plane)
            .enumerate()
            .for_each(|(i, plane)| plane.iter_mut().for_each(|v| *v += bias[i % shape.c_out]));
    }
    let dims = [shape.batch, shape.c_out, shape.out_h, shape.out_w];
    let out = FlexTensor::new(
        Bytes::from_elems(out),
        Layout::contiguous(dims.into()),
        DType::F32,
    );
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// The sizes of a convolution this module takes: f32, one group, no dilation, and not one
/// of burn-flex's special paths (pointwise, depthwise, few channels, 1-D), which stay
/// burn-flex's.
#[derive(Clone, Copy, Debug)]
struct Shape2d {
    batch: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
    stride: [usize; 2],
    pad: [usize; 2],
    out_h: usize,
    out_w: usize,
}

impl Shape2d {
    fn of(
        x: &Tensor<Flex, 4>,
        weight: &Tensor<Flex, 4>,
        bias: Option<&Tensor<Flex, 1>>,
        options: &ConvOptions<2>,
    ) -> Option<Self> {
        let [batch, c_in, h, w] = x.dims();
        let [c_out, c_per_group, kh, kw] = weight.dims();
        let f32s = x.dtype() == DType::F32
            && weight.dtype() == DType::F32
            && bias.is_none_or(|b| b.dtype() == DType::F32 && b.dims()[0] == c_out);
        let pointwise = kh == 1 && kw == 1 && options.stride == [1, 1] && options.padding == [0, 0];
        let few_channels = c_in <= SMALL_CHANNELS.0 && c_out <= SMALL_CHANNELS.1;
        let one_d = kh == 1 && h == 1 && options.padding == [0, 0];
        let plain = options.groups == 1
            && options.dilation == [1, 1]
            && c_per_group == c_in
            && options.stride.iter().all(|&s| s > 0)
            && h + 2 * options.padding[0] >= kh
            && w + 2 * options.padding[1] >= kw
            && batch * c_out * c_in * kh * kw > 0;
        if !f32s || !plain || pointwise || few_channels || one_d {
            return None;
        }
        let [sh, sw] = options.stride;
        let [ph, pw] = options.padding;
        Some(Self {
            batch,
            c_in,
            h,
            w,
            c_out,
            kh,
            kw,
            stride: options.stride,
            pad: options.padding,
            out_h: (h + 2 * ph - kh) / sh + 1,
            out_w: (w + 2 * pw - kw) / sw + 1,
        })
    }

    fn spatial_out(&self) -> usize {
        self.out_h * self.out_w
    }

    /// Patch length: one row of the im2col matrix.
    fn patch(&self) -> usize {
        self.kh * self.kw * self.c_in
    }

    /// Every (image, tile) is one task: its patches gathered into `[tile, patch]`, then
    /// `w_flat [c_out, patch]` times their transpose written into the output's columns.
    fn im2col_gemm(&self, nhwc: &[f32], w_flat: &[f32], out: &mut [f32]) {
        let spatial = self.spatial_out();
        let tiles = spatial.div_ceil(TILE);
        let patch = self.patch();
        let out_ptr = DisjointWrites::new(out);
        (0..self.batch * tiles).into_par_iter().for_each_init(
            || vec![0.0f32; TILE * patch],
            |cols, task| {
                let (b, tile) = (task / tiles, task % tiles);
                let start = tile * TILE;
                let len = TILE.min(spatial - start);
                let cols = &mut cols[..len * patch];
                self.gather(nhwc, b, start, cols);
                let parallelism = if self.c_out * len * patch >= THREADED_GEMM {
                    gemm::Parallelism::Rayon(0)
                } else {
                    gemm::Parallelism::None
                };
                // SAFETY: `dst` addresses rows c of image b, columns start..start+len,
                // all inside `out` (b < batch, start + len <= spatial); tasks write
                // disjoint column ranges and nothing reads `out` until all are done.
                // lhs is `[c_out, patch]` and rhs `[patch, len]` read through the
                // `[len, patch]` slice `cols`, both in bounds.
                unsafe {
                    let dst = out_ptr.at(b * self.c_out * spatial + start);
                    gemm::gemm(
                        self.c_out,
                        len,
                        patch,
                        dst,
                        1,
                        spatial as isize,
                        false,
                        w_flat.as_ptr(),
                        1,
                        patch as isize,
                        cols.as_ptr(),
                        patch as isize,
                        1,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        parallelism,
                    );
                }
            },
        );
    }

    /// The patches of output positions `start..start + len` of image `b`, each
    /// `[kh, kw, c_in]` from the NHWC input, zeros where the window leaves it.
    fn gather(&self, nhwc: &[f32], b: usize, start: usize, cols: &mut [f32]) {
        let image = &nhwc[b * self.h * self.w * self.c_in..][..self.h * self.w * self.c_in];
        let c = self.c_in;
        for (i, row) in cols.chunks_exact_mut(self.patch()).enumerate() {
            let (oy, ox) = ((start + i) / self.out_w, (start + i) % self.out_w);
            for (ky, row) in row.chunks_exact_mut(self.kw * c).enumerate() {
                let iy = (oy * self.stride[0] + ky).checked_sub(self.pad[0]);
                let Some(iy) = iy.filter(|&iy| iy < self.h) else {
                    row.fill(0.0);
                    continue;
                };
                for (kx, taps) in row.chunks_exact_mut(c).enumerate() {
                    match (ox * self.stride[1] + kx).checked_sub(self.pad[1]) {
                        Some(ix) if ix < self.w => {
                            taps.copy_from_slice(&image[(iy * self.w + ix) * c..][..c])
                        }
                        _ => taps.fill(0.0),
                    }
                }
            }
        }
    }
}

/// `[batch, channels, plane]` to `[batch, plane, channels]`, one task per block of rows.
fn to_nhwc(x: &[f32], channels: usize, plane: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    if x.is_empty() {
        return out;
    }
    // Blocks of positions small enough that the channel rows being read stay in cache.
    const BLOCK: usize = 64;
    out.par_chunks_mut(plane * channels)
        .zip(x.par_chunks(plane * channels))
        .for_each(|(out, x)| {
            out.par_chunks_mut(BLOCK * channels)
                .enumerate()
                .for_each(|(blk, out)| {
                    let p0 = blk * BLOCK;
                    for (c, src) in x.chunks_exact(plane).enumerate() {
                        for (i, &v) in src[p0..p0 + out.len() / channels].iter().enumerate() {
                            out[i * channels + c] = v;
                        }
                    }
                });
        });
    out
}

/// The weight `[c_out, c_in, kh, kw]` re-laid as `[c_out, kh, kw, c_in]`, the patch order.
fn patch_major(w: &[f32], c_in: usize, taps: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; w.len()];
    out.par_chunks_mut(c_in * taps)
        .zip(w.par_chunks(c_in * taps))
        .for_each(|(out, w)| {
            for (ci, src) in w.chunks_exact(taps).enumerate() {
                for (t, &v) in src.iter().enumerate() {
                    out[t * c_in + ci] = v;
                }
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    /// Bit-identical to Burn's op on the ResNet-50 shapes this module takes (stem, 3x3
    /// with and without stride, strided 1x1) at small spatial sizes, odd so tiles and
    /// windows meet the edges, with and without bias, batch 1 and 2; and shapes it leaves
    /// to Burn still come back right.
    #[test]
    fn equals_burns_conv2d() {
        // (input, weight, stride, padding, bias)
        let cases = [
            ([1, 3, 45, 37], [64, 3, 7, 7], 2, 3, false),
            ([2, 64, 23, 29], [64, 64, 3, 3], 1, 1, false),
            ([1, 128, 31, 27], [128, 128, 3, 3], 2, 1, false),
            ([2, 256, 13, 17], [512, 256, 1, 1], 2, 0, false),
            ([1, 512, 9, 11], [512, 512, 3, 3], 1, 1, true),
            ([1, 16, 40, 40], [24, 16, 3, 3], 1, 0, true),
            ([1, 8, 5, 6], [8, 8, 1, 1], 1, 0, true),
            ([1, 3, 9, 9], [8, 3, 3, 3], 1, 1, false),
        ];
        for (x_dims, w_dims, stride, pad, with_bias) in cases {
            let device = Default::default();
            <Flex as Backend>::seed(&device, 11);
            let x = Tensor::<Flex, 4>::random(x_dims, Distribution::Normal(0.0, 1.0), &device);
            let w = Tensor::<Flex, 4>::random(w_dims, Distribution::Normal(0.0, 0.1), &device);
            let b = with_bias.then(|| {
                Tensor::<Flex, 1>::random([w_dims[0]], Distribution::Normal(0.0, 1.0), &device)
            });
            let options = ConvOptions::new([stride; 2], [pad; 2], [1, 1], 1);
            let want =
                burn::tensor::module::conv2d(x.clone(), w.clone(), b.clone(), options.clone());
            let got = conv2d(x, w, b, options);
            assert_eq!(
                got.into_data(),
                want.into_data(),
                "x {x_dims:?} w {w_dims:?} s{stride} p{pad}"
            );
        }
    }
}
