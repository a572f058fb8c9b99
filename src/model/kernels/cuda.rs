//! The CUDA backend's convolutions on the tensor cores (issue 26). Burn 0.21 without its
//! `autotune` feature runs `conv2d` as a direct kernel (`ConvStrategy::Direct` in
//! burn-cubecl's `kernel/conv/base.rs`): one thread per output value looping over the
//! kernel and input channels in global memory. That was 92% of a forward pass on an H200.
//! Which path runs is [`super::gpu_conv`]; everything else takes the portable defaults.

use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn_cubecl::kernel::conv::{ConvStrategy, conv_forward};
use cubecl_cuda::CudaRuntime;

use super::{GpuConv, ModelBackend, gemm_convolution, gpu_conv};

type Cuda = burn::backend::Cuda<f32, i32>;

impl ModelBackend for Cuda {
    const FOLD_BATCH_NORM: bool = true;

    fn convolution(
        x: Tensor<Self, 4>,
        weight: Tensor<Self, 4>,
        bias: Option<Tensor<Self, 1>>,
        options: ConvOptions<2>,
    ) -> Tensor<Self, 4> {
        match gpu_conv() {
            GpuConv::Gemm => gemm_convolution(x, weight, bias, options),
            GpuConv::Direct => conv2d(x, weight, bias, options),
            GpuConv::ImplicitGemm => {
                let out = conv_forward::<CudaRuntime, 2>(
                    x.clone().into_primitive().tensor(),
                    weight.clone().into_primitive().tensor(),
                    bias.clone().map(|b| b.into_primitive().tensor()),
                    options.clone(),
                    ConvStrategy::ImplicitGemm,
                );
                match out {
                    Ok(out) => Tensor::from_primitive(TensorPrimitive::Float(out)),
                    // A shape the fixed algorithm cannot tile (e.g. alignment): the
                    // portable matrix-product path computes the same convolution.
                    Err(_) => gemm_convolution(x, weight, bias, options),
                }
            }
        }
    }
}
