//! Operations the model asks of its backend, as Burn's backend-extension pattern has it:
//! [`ModelBackend`] gives every backend a portable version built from Burn's tensor ops,
//! and a backend with a faster kernel of ours overrides it (`flex/`, the default CPU
//! backend). The model code calls the trait and never sees which one runs.

#[cfg(feature = "cuda")]
mod cuda;
#[cfg(feature = "flex")]
mod flex;
mod gemm_conv;
#[cfg(feature = "flex")]
mod vexp;

use std::sync::atomic::{AtomicU8, Ordering};

use burn::prelude::*;
use burn::tensor::module::attention;

use burn::tensor::ops::{AttentionModuleOptions, ConvOptions};
pub use gemm_conv::gemm_convolution;

/// A Burn backend the model runs on: Burn's `Backend` plus the operations below.
pub trait ModelBackend: Backend {
    /// Whether frozen batch norms are folded into the convolutions' weights at load.
    /// CPU backends keep the exact arithmetic (the scale is applied in the same pass as
    /// the shift, residual and ReLU, so folding would save no memory traffic, only move
    /// parity by f32 rounding); GPU backends fold, which saves kernel launches.
    const FOLD_BATCH_NORM: bool = false;

    /// Scaled dot-product attention of `heads` heads, the heads side by side in the last
    /// dimension as `nn.MultiheadAttention` keeps them (before its output projection):
    /// `q` `[B, Lq, d]` attends to `k`, `v` `[B, Lk, d]`; `key_padding_mask` `[B, Lk]` is
    /// `true` on keys to ignore; `causal` hides key `j` from query `i` when
    /// `j > i + Lk - Lq`. Returns `[B, Lq, d]`.
    fn multi_head_attention(
        q: Tensor<Self, 3>,
        k: Tensor<Self, 3>,
        v: Tensor<Self, 3>,
        heads: usize,
        key_padding_mask: Option<Tensor<Self, 2, Bool>>,
        causal: bool,
    ) -> Tensor<Self, 3> {
        portable_attention(q, k, v, heads, key_padding_mask, causal)
    }

    /// `x weight + bias` for `x` `[M, K]`, `weight` `[K, N]` (Burn's `Linear` layout, a
    /// view is fine) and `bias` `[N]`.
    fn matmul_bias(
        x: Tensor<Self, 2>,
        weight: Tensor<Self, 2>,
        bias: Option<Tensor<Self, 1>>,
    ) -> Tensor<Self, 2> {
        burn::tensor::module::linear(x, weight, bias)
    }

    /// `x * scale[c] + shift[c]` over `x` `[N, C, H, W]` (a frozen batch norm; without
    /// `scale`, `x + shift[c]`: one whose scale is folded into the convolution before it),
    /// then `+ residual` where given, then ReLU where `relu`; in this order, with the
    /// rounding of separate operations.
    fn channel_affine(
        x: Tensor<Self, 4>,
        scale: Option<Tensor<Self, 1>>,
        shift: Tensor<Self, 1>,
        residual: Option<Tensor<Self, 4>>,
        relu: bool,
    ) -> Tensor<Self, 4> {
        portable_channel_affine(x, scale, shift, residual, relu)
    }

    /// Convolution of `x` `[N, C, H, W]` by `weight` `[out, C / groups, kh, kw]`, as
    /// Burn's `conv2d` op.
    fn convolution(
        x: Tensor<Self, 4>,
        weight: Tensor<Self, 4>,
        bias: Option<Tensor<Self, 1>>,
        options: ConvOptions<2>,
    ) -> Tensor<Self, 4> {
        burn::tensor::module::conv2d(x, weight, bias, options)
    }

    /// `x` `[N, C, H, W]` with zeros outside each image's top-left `valid[n]` (h, w)
    /// region: the padding of a batch of images of several sizes, made to hold what a
    /// convolution's own zero padding holds.
    fn zero_outside(x: Tensor<Self, 4>, valid: &[(usize, usize)]) -> Tensor<Self, 4> {
        portable_zero_outside(x, valid)
    }

    /// Max pooling of `x` `[N, C, H, W]` (no dilation, floor mode), as PyTorch's.
    fn max_pool(
        x: Tensor<Self, 4>,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> Tensor<Self, 4> {
        burn::tensor::module::max_pool2d(x, kernel, stride, padding, [1, 1], false)
    }
}

/// [`ModelBackend::multi_head_attention`] from Burn's own `attention` op: heads split
/// into a dimension of their own and merged back after.
pub fn portable_attention<B: Backend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    heads: usize,
    key_padding_mask: Option<Tensor<B, 2, Bool>>,
    causal: bool,
) -> Tensor<B, 3> {
    let [batch, len_q, d] = q.dims();
    let len_k = k.dims()[1];
    let split =
        |t: Tensor<B, 3>, len: usize| t.reshape([batch, len, heads, d / heads]).swap_dims(1, 2);
    let mask = key_padding_mask.map(|m| {
        m.reshape([batch, 1, 1, len_k])
            .expand([batch, heads, len_q, len_k])
    });
    let options = AttentionModuleOptions {
        is_causal: causal,
        ..Default::default()
    };
    let out = attention(
        split(q, len_q),
        split(k, len_k),
        split(v, len_k),
        mask,
        None,
        options,
    );
    out.swap_dims(1, 2).reshape([batch, len_q, d])
}

/// [`ModelBackend::zero_outside`] from Burn's tensor ops: one mask, filled with zeros
/// (not multiplied, so whatever the padding held goes, NaN included).
pub fn portable_zero_outside<B: Backend>(
    x: Tensor<B, 4>,
    valid: &[(usize, usize)],
) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    let mut padding = vec![false; n * h * w];
    for (b, &(vh, vw)) in valid.iter().enumerate().take(n) {
        for i in 0..h {
            for j in 0..w {
                padding[(b * h + i) * w + j] = i >= vh || j >= vw;
            }
        }
    }
    let mask = Tensor::<B, 4, Bool>::from_data(TensorData::new(padding, [n, 1, h, w]), &x.device())
        .expand([n, c, h, w]);
    x.mask_fill(mask, 0.0)
}

/// [`ModelBackend::channel_affine`] from Burn's tensor ops.
pub fn portable_channel_affine<B: Backend>(
    x: Tensor<B, 4>,
    scale: Option<Tensor<B, 1>>,
    shift: Tensor<B, 1>,
    residual: Option<Tensor<B, 4>>,
    relu: bool,
) -> Tensor<B, 4> {
    let [n, c, _, _] = x.dims();
    // Factors repeated per image: broadcasting over batch and space at once takes a
    // slow strided path in burn-flex (30x slower at batch 2, benches/load.rs --scaling).
    let per_image = |t: Tensor<B, 1>| t.reshape([1, c, 1, 1]).repeat_dim(0, n);
    let y = match scale {
        Some(scale) => x * per_image(scale) + per_image(shift),
        None => x + per_image(shift),
    };
    let y = match residual {
        Some(r) => y + r,
        None => y,
    };
    if relu {
        burn::tensor::activation::relu(y)
    } else {
        y
    }
}

#[cfg(feature = "ndarray")]
impl ModelBackend for burn::backend::NdArray<f32> {}
#[cfg(feature = "candle")]
impl ModelBackend for burn::backend::Candle<f32, i64> {}

/// How a GPU backend runs the model's convolutions (`--gpu-conv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GpuConv {
    /// im2col + one batched matrix product per convolution ([`gemm_convolution`]): the
    /// tensor cores that already run the transformer's products.
    #[default]
    Gemm,
    /// cubek's implicit-GEMM convolution with one fixed algorithm (simple synchronous,
    /// cyclic loading, CMMA tiles): no patch matrix in memory; falls back to `gemm` for a
    /// shape it does not take.
    ImplicitGemm,
    /// Burn's own `conv2d` (without autotune: a direct kernel, no tensor cores), for
    /// comparison.
    Direct,
}

impl GpuConv {
    pub const ALL: [GpuConv; 3] = [Self::Gemm, Self::ImplicitGemm, Self::Direct];

    pub fn name(self) -> &'static str {
        match self {
            Self::Gemm => "gemm",
            Self::ImplicitGemm => "implicit-gemm",
            Self::Direct => "direct",
        }
    }
}

impl std::str::FromStr for GpuConv {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == s.trim())
            .ok_or_else(|| {
                format!("unknown convolution path `{s}` (gemm, implicit-gemm or direct)")
            })
    }
}

/// The process's choice: one model per process, chosen at start-up (before any forward).
static GPU_CONV: AtomicU8 = AtomicU8::new(0);

/// Sets how GPU backends run convolutions from now on (CPU backends ignore it).
pub fn set_gpu_conv(choice: GpuConv) {
    GPU_CONV.store(choice as u8, Ordering::Relaxed);
}

pub fn gpu_conv() -> GpuConv {
    match GPU_CONV.load(Ordering::Relaxed) {
        1 => GpuConv::ImplicitGemm,
        2 => GpuConv::Direct,
        _ => GpuConv::Gemm,
    }
}
