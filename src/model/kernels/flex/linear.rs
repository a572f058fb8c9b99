//! Linear layers on the flex CPU backend.
//!
//! burn-flex runs `x W` as one GEMM with the gemm crate's own threading, then adds the
//! bias in a second pass. With few rows (a ViT at batch 1 has 50 tokens, a decoder 64
//! queries) that threading gains nothing on two cores: measured 65-110 GFLOP/s with two
//! threads and one alike. Here the output's columns are cut into one block per thread,
//! each a single-threaded GEMM, and the bias is written first and accumulated onto, so
//! it costs no pass of its own.

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::{Bytes, DType, TensorPrimitive};
use burn_flex::{FlexTensor, Layout};
use rayon::prelude::*;

use super::DisjointWrites;

/// Up to this many rows the columns are split between threads; above, the gemm crate's
/// own threading (which splits rows) does better.
const FEW_ROWS: usize = 256;
/// Narrowest column block worth a task of its own.
const MIN_COLUMNS: usize = 64;

/// [`ModelBackend::matmul_bias`](crate::model::kernels::ModelBackend) on flex.
pub(super) fn matmul_bias(
    x: Tensor<Flex, 2>,
    weight: Tensor<Flex, 2>,
    bias: Option<Tensor<Flex, 1>>,
) -> Tensor<Flex, 2> {
    let f32s = x.dtype() == DType::F32
        && weight.dtype() == DType::F32
        && bias.as_ref().is_none_or(|b| b.dtype() == DType::F32);
    let [m, k] = x.dims();
    let [k2, n] = weight.dims();
    if !f32s || k != k2 || bias.as_ref().is_some_and(|b| b.dims()[0] != n) {
        return burn::tensor::module::linear(x, weight, bias);
    }
    let x = Matrix::of(x.into_primitive().tensor());
    let w = Matrix::of(weight.into_primitive().tensor());
    let bias = bias.map(|b| b.into_primitive().tensor().to_contiguous());
    let mut out = vec![0.0f32; m * n];
    if let Some(b) = &bias {
        let b = b.storage::<f32>();
        out.chunks_exact_mut(n.max(1))
            .for_each(|row| row.copy_from_slice(b));
    }
    if m > 0 && n > 0 {
        multiply(&x.view(), &w.view(), bias.is_some(), &mut out, m, n, k);
    }
    let out = FlexTensor::new(
        Bytes::from_elems(out),
        Layout::contiguous([m, n].into()),
        DType::F32,
    );
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// A 2-D tensor whose strides are positive (copied to contiguous otherwise).
struct Matrix(FlexTensor);

impl Matrix {
    fn of(t: FlexTensor) -> Self {
        let positive = t.layout().strides().iter().all(|&s| s > 0);
        Self(if positive { t } else { t.to_contiguous() })
    }

    fn view(&self) -> View<'_> {
        let layout = self.0.layout();
        let s = layout.strides();
        let shape = layout.shape();
        let (rows, cols) = (shape[0], shape[1]);
        let (row_stride, col_stride) = (s[0].unsigned_abs(), s[1].unsigned_abs());
        let start = layout.start_offset();
        let data = self.0.storage::<f32>();
        // The slice from the first element to just past the last: all the GEMM reads.
        let end = if rows == 0 || cols == 0 {
            start
        } else {
            start + (rows - 1) * row_stride + (cols - 1) * col_stride + 1
        };
        View {
            data: &data[start..end],
            row_stride,
            col_stride,
        }
    }
}

struct View<'a> {
    data: &'a [f32],
    row_stride: usize,
    col_stride: usize,
}

/// `out[m, n] (+)= x[m, k] w[k, n]`, adding onto `out` when `accumulate`.
fn multiply(x: &View, w: &View, accumulate: bool, out: &mut [f32], m: usize, n: usize, k: usize) {
    let threads = rayon::current_num_threads();
    let blocks = if m <= FEW_ROWS {
        (n / MIN_COLUMNS).clamp(1, threads)
    } else {
        1
    };
    if blocks == 1 {
        let parallelism = if threads > 1 && m * n * k >= 1 << 18 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: `x.data` and `w.data` end after the last element of their matrices
        // (`Matrix::view`), and `out` holds m * n: the GEMM reads x at
        // (i * row_stride + p * col_stride) for i < m, p < k, w alike for p < k, j < n,
        // and writes out at (i * n + j).
        unsafe {
            gemm_block(
                x,
                w,
                0,
                n,
                accumulate,
                out.as_mut_ptr(),
                m,
                n,
                k,
                parallelism,
            )
        };
        return;
    }
    // Column blocks: block b owns columns [b * width, ...) of every output row.
    let width = n.div_ceil(blocks);
    let base = DisjointWrites::new(out);
    (0..blocks).into_par_iter().for_each(|b| {
        let first = b * width;
        let cols = width.min(n - first);
        // SAFETY: as above for the reads (columns first..first + cols of w); the writes
        // go to out[i * n + first + j] for i < m, j < cols: inside `out`, and no two
        // blocks share a column, while `out` is borrowed mutably for the whole call.
        unsafe {
            gemm_block(
                x,
                w,
                first,
                cols,
                accumulate,
                base.at(first),
                m,
                n,
                k,
                gemm::Parallelism::None,
            )
        };
    });
}

/// One GEMM: `dst[m, cols] (+)= x[m, k] w[k, first..first + cols]`, `dst` with row
/// stride `n`.
///
/// # Safety
/// `dst` must be valid for writes at `i * n + j`, `i < m`, `j < cols`, with no other
/// access to those elements during the call; `first + cols <= n` columns of `w`.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_block(
    x: &View,
    w: &View,
    first: usize,
    cols: usize,
    accumulate: bool,
    dst: *mut f32,
    m: usize,
    n: usize,
    k: usize,
    parallelism: gemm::Parallelism,
) {
    unsafe {
        gemm::gemm(
            m,
            cols,
            k,
            dst,
            1,
            n as isize,
            accumulate,
            x.data.as_ptr(),
            x.col_stride as isize,
            x.row_stride as isize,
            w.data.as_ptr().add(first * w.col_stride),
            w.col_stride as isize,
            w.row_stride as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    fn random<const D: usize>(dims: [usize; D], seed: u64) -> Tensor<Flex, D> {
        <Flex as Backend>::seed(&Default::default(), seed);
        Tensor::random(dims, Distribution::Normal(0.0, 1.0), &Default::default())
    }

    /// Against Burn's own linear on the same inputs, relative to the output's scale.
    fn check(x: Tensor<Flex, 2>, w: Tensor<Flex, 2>, b: Option<Tensor<Flex, 1>>) {
        let want = burn::tensor::module::linear(x.clone(), w.clone(), b.clone());
        let got = matmul_bias(x, w, b);
        assert_eq!(got.dims(), want.dims());
        let scale = want.clone().abs().max().into_scalar().max(1.0);
        let diff = (got - want).abs().max().into_scalar();
        assert!(
            diff <= 1e-5 * scale,
            "max difference {diff} at scale {scale}"
        );
    }

    #[test]
    fn few_rows_split_by_columns_with_and_without_bias() {
        // 50 rows (a ViT at batch 1), 333 columns: blocks of unequal width.
        check(
            random([50, 96], 1),
            random([96, 333], 2),
            Some(random([333], 3)),
        );
        check(random([50, 96], 4), random([96, 333], 5), None);
    }

    #[test]
    fn many_rows_and_views() {
        check(
            random([700, 64], 6),
            random([64, 130], 7),
            Some(random([130], 8)),
        );
        // A column block of a packed weight and a transposed input, as views.
        let w = random([64, 3 * 48], 9).narrow(1, 48, 48);
        let x = random([64, 30], 10).transpose();
        check(x, w, Some(random([48], 11)));
    }

    #[test]
    fn empty_and_narrow_shapes() {
        check(
            random([0, 8], 12),
            random([8, 5], 13),
            Some(random([5], 14)),
        );
        check(random([3, 8], 15), random([8, 1], 16), None);
    }
}
