//! Multi-head attention on the flex CPU backend.
//!
//! burn-flex's own attention runs one head after another on one thread, calls libm's
//! `expf` per score and needs the heads split into a dimension of their own (two copies).
//! Here q, k and v are read in place, heads side by side (a view into the packed
//! in-projection is fine); the work is cut into (batch, head, block of queries) tasks
//! over the rayon pool; each task computes a block of scores with one GEMM, the softmax
//! with a vectorised `exp`, and its block of the output with a second GEMM.

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::{Bytes, DType, TensorPrimitive};
use burn_flex::{FlexTensor, Layout};
use rayon::prelude::*;

use crate::model::kernels::portable_attention;
use crate::model::kernels::vexp::softmax_numerators;

/// Scores a task holds at once (elements): a block of queries against all keys, kept
/// within L2.
const SCORE_BLOCK: usize = 128 * 1024;

/// [`ModelBackend::multi_head_attention`](crate::model::kernels::ModelBackend) on flex.
pub(super) fn multi_head_attention(
    q: Tensor<Flex, 3>,
    k: Tensor<Flex, 3>,
    v: Tensor<Flex, 3>,
    heads: usize,
    key_padding_mask: Option<Tensor<Flex, 2, Bool>>,
    causal: bool,
) -> Tensor<Flex, 3> {
    let [batch, len_q, d] = q.dims();
    let len_k = k.dims()[1];
    let f32s = [&q, &k, &v].iter().all(|t| t.dtype() == DType::F32);
    if !f32s || heads == 0 || !d.is_multiple_of(heads) || v.dims()[2] != d {
        return portable_attention(q, k, v, heads, key_padding_mask, causal);
    }
    let (q, k, v) = (rows(q), rows(k), rows(v));
    // An additive row per batch item (0 or -inf), only when some key is hidden.
    let mask = key_padding_mask.and_then(|m| {
        let hidden: Vec<bool> = m.into_data().iter::<bool>().collect();
        let any = hidden.iter().any(|&h| h);
        any.then(|| {
            hidden
                .iter()
                .map(|&h| if h { f32::NEG_INFINITY } else { 0.0 })
                .collect::<Vec<f32>>()
        })
    });
    let dims = Dims {
        batch,
        heads,
        len_q,
        len_k,
        head_dim: d / heads,
    };
    let out = attend(
        &View::of(&q),
        &View::of(&k),
        &View::of(&v),
        &dims,
        mask.as_deref(),
        causal,
    );
    // [B, heads, Lq, dh] as computed; heads back beside each other.
    let out = FlexTensor::new(
        Bytes::from_elems(out),
        Layout::contiguous([batch, heads, len_q, d / heads].into()),
        DType::F32,
    );
    let out = Tensor::<Flex, 4>::from_primitive(TensorPrimitive::Float(out));
    out.swap_dims(1, 2).reshape([batch, len_q, d])
}

/// The tensor's storage as rows: a view whose last dimension is contiguous and whose
/// other strides are positive is used as it is; anything else is copied first.
fn rows(t: Tensor<Flex, 3>) -> FlexTensor {
    let t = t.into_primitive().tensor();
    let strides = t.layout().strides();
    if strides[2] == 1 && strides[0] >= 0 && strides[1] >= 0 {
        t
    } else {
        t.to_contiguous()
    }
}

struct Dims {
    batch: usize,
    heads: usize,
    len_q: usize,
    len_k: usize,
    head_dim: usize,
}

/// Rows of a `[B, L, d]` tensor in its storage: element `(b, l, c)` is at
/// `offset + b * batch_stride + l * row_stride + c`.
struct View<'a> {
    data: &'a [f32],
    offset: usize,
    batch_stride: usize,
    row_stride: usize,
    dims: [usize; 3],
}

impl<'a> View<'a> {
    fn of(t: &'a FlexTensor) -> Self {
        let layout = t.layout();
        let s = layout.strides();
        let shape = layout.shape();
        Self {
            data: t.storage::<f32>(),
            offset: layout.start_offset(),
            batch_stride: s[0].unsigned_abs(),
            row_stride: s[1].unsigned_abs(),
            dims: [shape[0], shape[1], shape[2]],
        }
    }

    /// The `len` rows from `row` of batch item `b`, columns from `col`, as a slice that
    /// starts at the first and ends after the last element they cover (checked here, so
    /// the GEMMs below read only inside it).
    fn block(&self, b: usize, row: usize, len: usize, col: usize, width: usize) -> &'a [f32] {
        let start = self.offset + b * self.batch_stride + row * self.row_stride + col;
        let end = start + (len - 1) * self.row_stride + width;
        &self.data[start..end]
    }
}

/// Attention into a `[B, heads, Lq, dh]` buffer.
fn attend(q: &View, k: &View, v: &View, s: &Dims, mask: Option<&[f32]>, causal: bool) -> Vec<f32> {
    let dh = s.head_dim;
    let block = (SCORE_BLOCK / s.len_k.max(1))
        .clamp(8, 256)
        .min(s.len_q.max(1));
    let mut out = vec![0.0f32; s.batch * s.heads * s.len_q * dh];
    if s.len_q == 0 || s.len_k == 0 || dh == 0 {
        return out;
    }
    debug_assert_eq!(q.dims, [s.batch, s.len_q, s.heads * dh]);
    debug_assert_eq!(k.dims, [s.batch, s.len_k, s.heads * dh]);
    let scale = 1.0 / (dh as f32).sqrt();
    out.par_chunks_mut(s.len_q * dh)
        .enumerate()
        .for_each(|(pair, out)| {
            let (b, h) = (pair / s.heads, pair % s.heads);
            let keys = k.block(b, 0, s.len_k, h * dh, dh);
            let values = v.block(b, 0, s.len_k, h * dh, dh);
            let mask = mask.map(|m| &m[b * s.len_k..(b + 1) * s.len_k]);
            out.par_chunks_mut(block * dh).enumerate().for_each_init(
                Vec::new,
                |scores, (i, out)| {
                    let first = i * block;
                    let rows = out.len() / dh;
                    let queries = q.block(b, first, rows, h * dh, dh);
                    let task = Task {
                        queries,
                        query_stride: q.row_stride,
                        keys,
                        key_stride: k.row_stride,
                        values,
                        value_stride: v.row_stride,
                        first,
                        rows,
                        len_q: s.len_q,
                        len_k: s.len_k,
                        dh,
                        scale,
                        mask,
                        causal,
                    };
                    task.run(scores, out);
                },
            );
        });
    out
}

/// One block of query rows of one head of one batch item.
struct Task<'a> {
    queries: &'a [f32],
    query_stride: usize,
    keys: &'a [f32],
    key_stride: usize,
    values: &'a [f32],
    value_stride: usize,
    /// Index of the block's first query row (for the causal mask).
    first: usize,
    rows: usize,
    len_q: usize,
    len_k: usize,
    dh: usize,
    scale: f32,
    mask: Option<&'a [f32]>,
    causal: bool,
}

impl Task<'_> {
    /// Writes the block's `[rows, dh]` output (contiguous) into `out`.
    fn run(&self, scores: &mut Vec<f32>, out: &mut [f32]) {
        let (rows, len_k, dh) = (self.rows, self.len_k, self.dh);
        scores.resize(rows * len_k, 0.0);
        // scores = scale * Q Kᵀ: Kᵀ read in place (column j of Kᵀ is row j of K).
        // SAFETY: every pointer is the start of a slice the block's extent was checked
        // against (`View::block`, `resize` above, `out` of rows * dh): the GEMM reads Q
        // at (r * query_stride + c) for r < rows, c < dh, K at (j * key_stride + c) for
        // j < len_k, and writes scores at (r * len_k + j), all inside those slices.
        unsafe {
            gemm::gemm(
                rows,
                len_k,
                dh,
                scores.as_mut_ptr(),
                1,
                len_k as isize,
                false,
                self.queries.as_ptr(),
                1,
                self.query_stride as isize,
                self.keys.as_ptr(),
                self.key_stride as isize,
                1,
                0.0,
                self.scale,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        let mut sums = [0.0f32; 256];
        for (r, row) in scores.chunks_exact_mut(len_k).enumerate() {
            if let Some(mask) = self.mask {
                for (x, m) in row.iter_mut().zip(mask) {
                    *x += m;
                }
            }
            if self.causal {
                // Key j is hidden from query i when j > i + (Lk - Lq).
                let visible = (self.first + r + 1 + len_k).saturating_sub(self.len_q);
                row[visible.min(len_k)..].fill(f32::NEG_INFINITY);
            }
            // Every key hidden leaves a row of zeros: output 0 (PyTorch gives NaN).
            sums[r] = softmax_numerators(row);
        }
        // out = P V, then each row divided by its softmax denominator.
        // SAFETY: as above; V is read at (j * value_stride + c) for j < len_k, c < dh,
        // and out written at (r * dh + c) for r < rows.
        unsafe {
            gemm::gemm(
                rows,
                dh,
                len_k,
                out.as_mut_ptr(),
                1,
                dh as isize,
                false,
                scores.as_ptr(),
                1,
                len_k as isize,
                self.values.as_ptr(),
                1,
                self.value_stride as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        for (row, &sum) in out.chunks_exact_mut(dh).zip(&sums[..rows]) {
            if sum > 0.0 {
                let inv = 1.0 / sum;
                row.iter_mut().for_each(|x| *x *= inv);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;
    use crate::model::kernels::ModelBackend;

    fn random(dims: [usize; 3], seed: u64) -> Tensor<Flex, 3> {
        <Flex as Backend>::seed(&Default::default(), seed);
        Tensor::random(dims, Distribution::Normal(0.0, 1.5), &Default::default())
    }

    fn max_diff(a: Tensor<Flex, 3>, b: Tensor<Flex, 3>) -> f32 {
        assert_eq!(a.dims(), b.dims());
        (a - b).abs().max().into_scalar()
    }

    /// The kernel against Burn's own attention op on the same inputs, to 1e-5.
    fn check(
        q: Tensor<Flex, 3>,
        k: Tensor<Flex, 3>,
        v: Tensor<Flex, 3>,
        heads: usize,
        mask: Option<Tensor<Flex, 2, Bool>>,
        causal: bool,
    ) {
        let want = portable_attention(q.clone(), k.clone(), v.clone(), heads, mask.clone(), causal);
        let got = Flex::multi_head_attention(q, k, v, heads, mask, causal);
        let diff = max_diff(got, want);
        assert!(diff < 1e-5, "max difference {diff}");
    }

    #[test]
    fn self_attention_on_views_of_a_packed_projection() {
        // q, k and v as narrow views of one [B, L, 3d] tensor, as the model passes them.
        let qkv = random([2, 70, 3 * 64], 1);
        let part = |i: usize| qkv.clone().narrow(2, i * 64, 64);
        check(part(0), part(1), part(2), 4, None, false);
    }

    #[test]
    fn cross_attention_with_padding_over_several_query_blocks() {
        // 300 queries at 300 keys make three blocks of queries per head.
        let (q, k, v) = (
            random([2, 300, 32], 2),
            random([2, 300, 32], 3),
            random([2, 300, 32], 4),
        );
        let hidden: Vec<bool> = (0..600)
            .map(|i| (i % 300) >= if i < 300 { 250 } else { 120 })
            .collect();
        let mask = Tensor::<Flex, 1, Bool>::from_data(hidden.as_slice(), &Default::default())
            .reshape([2, 300]);
        check(q, k, v, 8, Some(mask), false);
    }

    #[test]
    fn causal_square_and_with_fewer_queries_than_keys() {
        let (q, k, v) = (
            random([3, 77, 48], 5),
            random([3, 77, 48], 6),
            random([3, 77, 48], 7),
        );
        check(q, k.clone(), v.clone(), 6, None, true);
        let q = random([3, 20, 48], 8);
        check(q, k, v, 6, None, true);
    }

    #[test]
    fn a_mask_that_hides_nothing_and_one_that_hides_everything() {
        let (q, k, v) = (
            random([2, 9, 16], 9),
            random([2, 40, 16], 10),
            random([2, 40, 16], 11),
        );
        let none = Tensor::<Flex, 2, Bool>::from_data([[false; 40]; 2], &Default::default());
        check(q.clone(), k.clone(), v.clone(), 2, Some(none), false);
        // Every key of item 1 hidden: its rows are zeros (PyTorch gives NaN), item 0 as usual.
        let rows: Vec<bool> = (0..80).map(|i| i >= 40).collect();
        let mask = Tensor::<Flex, 1, Bool>::from_data(rows.as_slice(), &Default::default())
            .reshape([2, 40]);
        let got = Flex::multi_head_attention(q.clone(), k.clone(), v.clone(), 2, Some(mask), false);
        let want = portable_attention(q, k, v, 2, None, false);
        let first = |t: Tensor<Flex, 3>| t.narrow(0, 0, 1);
        assert!(max_diff(first(got.clone()), first(want)) < 1e-5);
        assert_eq!(got.narrow(0, 1, 1).abs().max().into_scalar(), 0.0);
    }
}
