//! The flex CPU backend's versions of [`ModelBackend`]'s operations.

mod affine;
mod attention;
mod conv;
mod linear;
mod pool;

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::ops::ConvOptions;

use super::ModelBackend;

impl ModelBackend for Flex {
    fn multi_head_attention(
        q: Tensor<Self, 3>,
        k: Tensor<Self, 3>,
        v: Tensor<Self, 3>,
        heads: usize,
        key_padding_mask: Option<Tensor<Self, 2, Bool>>,
        causal: bool,
    ) -> Tensor<Self, 3> {
        attention::multi_head_attention(q, k, v, heads, key_padding_mask, causal)
    }

    fn matmul_bias(
        x: Tensor<Self, 2>,
        weight: Tensor<Self, 2>,
        bias: Option<Tensor<Self, 1>>,
    ) -> Tensor<Self, 2> {
        linear::matmul_bias(x, weight, bias)
    }

    fn channel_affine(
        x: Tensor<Self, 4>,
        scale: Option<Tensor<Self, 1>>,
        shift: Tensor<Self, 1>,
        residual: Option<Tensor<Self, 4>>,
        relu: bool,
    ) -> Tensor<Self, 4> {
        affine::channel_affine(x, scale, shift, residual, relu)
    }

    fn convolution(
        x: Tensor<Self, 4>,
        weight: Tensor<Self, 4>,
        bias: Option<Tensor<Self, 1>>,
        options: ConvOptions<2>,
    ) -> Tensor<Self, 4> {
        conv::conv2d(x, weight, bias, options)
    }

    fn zero_outside(x: Tensor<Self, 4>, valid: &[(usize, usize)]) -> Tensor<Self, 4> {
        affine::zero_outside(x, valid)
    }

    fn max_pool(
        x: Tensor<Self, 4>,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> Tensor<Self, 4> {
        pool::max_pool2d(x, kernel, stride, padding)
    }
}

/// An output buffer shared by tasks that each write their own elements of it, where the
/// split is interleaved (column blocks of every row) and slices cannot express it.
#[derive(Clone, Copy)]
struct DisjointWrites(*mut f32);

// SAFETY: only a pointer; each user writes through it from tasks whose elements are
// disjoint, while the buffer stays mutably borrowed for the whole parallel section.
unsafe impl Send for DisjointWrites {}
unsafe impl Sync for DisjointWrites {}

impl DisjointWrites {
    fn new(out: &mut [f32]) -> Self {
        Self(out.as_mut_ptr())
    }

    /// The address of element `offset`.
    ///
    /// # Safety
    /// `offset` is inside the buffer, and no other task writes the elements written
    /// through the result.
    unsafe fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: the caller keeps `offset` inside the buffer.
        unsafe { self.0.add(offset) }
    }
}
