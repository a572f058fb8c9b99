//! Convolution as matrix products, from Burn's tensor ops alone, for backends whose own
//! convolution is slow where their matrix product is fast (Burn 0.21's CUDA backend runs
//! `conv2d` without autotune as a direct kernel, one thread per output and no tensor
//! cores, while its matmul runs on the tensor cores: BENCHMARKS.md, "First CUDA run").
//!
//! - 1x1, stride 1, no padding: the image is already the `[C, H*W]` matrix, so the
//!   convolution is one batched product with the `[O, C]` weight;
//! - anything else (the 7x7/2 stem, the 3x3s, the strided 1x1 downsamples, a ViT's patch
//!   embedding): zero padding, then `unfold4d` without padding, which Burn builds from two
//!   strided views and one copy into the `[C*kh*kw, Ho*Wo]` patch matrix (im2col), then the
//!   same batched product.
//!
//! Grouped and dilated convolutions, which the model does not have, go to Burn's op.

use burn::prelude::*;
use burn::tensor::module::{conv2d, unfold4d};
use burn::tensor::ops::{ConvOptions, PadMode, UnfoldOptions};

/// `conv2d(x, weight, bias, options)` computed as im2col + one batched matrix product.
pub fn gemm_convolution<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: ConvOptions<2>,
) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    let [o, cg, kh, kw] = weight.dims();
    let [sh, sw] = options.stride;
    let [ph, pw] = options.padding;
    let (hp, wp) = (h + 2 * ph, w + 2 * pw);
    if options.groups != 1
        || options.dilation != [1, 1]
        || cg != c
        || sh == 0
        || sw == 0
        || hp < kh
        || wp < kw
        || n == 0
        || o == 0
        || c == 0
    {
        return conv2d(x, weight, bias, options);
    }
    let (ho, wo) = ((hp - kh) / sh + 1, (wp - kw) / sw + 1);
    let k = c * kh * kw;
    let columns: Tensor<B, 3> = if kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0 {
        x.reshape([n, c, h * w])
    } else {
        let x = if ph > 0 || pw > 0 {
            x.pad([(ph, ph), (pw, pw)], PadMode::Constant(0.0))
        } else {
            x
        };
        unfold4d(x, [kh, kw], UnfoldOptions::new([sh, sw], [0, 0], [1, 1]))
    };
    // One weight matrix for every image: a broadcast view, not copies.
    let weight = weight.reshape([1, o, k]).expand([n, o, k]);
    let out = weight.matmul(columns);
    let out = match bias {
        Some(b) => out + b.reshape([1, o, 1]),
        None => out,
    };
    out.reshape([n, o, ho, wo])
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use proptest::prelude::*;

    type B = burn::backend::Flex;

    fn max_relative_error(a: Tensor<B, 4>, b: Tensor<B, 4>) -> f32 {
        assert_eq!(a.dims(), b.dims());
        let a = a.into_data().to_vec::<f32>().unwrap();
        let b = b.into_data().to_vec::<f32>().unwrap();
        let scale = b.iter().fold(1e-6f32, |m, x| m.max(x.abs()));
        a.iter()
            .zip(&b)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs() / scale))
    }

    /// `gemm_convolution` against Burn's `conv2d` on one shape: batch `n`, `c` -> `o`
    /// channels, square kernel `k`, `stride`, `padding`.
    fn check(
        n: usize,
        c: usize,
        hw: [usize; 2],
        o: usize,
        (k, stride, padding, bias): (usize, usize, usize, bool),
    ) -> f32 {
        let device = Default::default();
        let x = Tensor::<B, 4>::random(
            [n, c, hw[0], hw[1]],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let weight = Tensor::<B, 4>::random([o, c, k, k], Distribution::Normal(0.0, 0.1), &device);
        let bias =
            bias.then(|| Tensor::<B, 1>::random([o], Distribution::Normal(0.0, 1.0), &device));
        let options = ConvOptions::new([stride, stride], [padding, padding], [1, 1], 1);
        let ours = gemm_convolution(x.clone(), weight.clone(), bias.clone(), options.clone());
        let burn = conv2d(x, weight, bias, options);
        max_relative_error(ours, burn)
    }

    /// Every distinct convolution of ResNet-50 (channel counts scaled down 8x, small
    /// maps) and of CLIP ViT's patch embedding, at batch 2.
    #[test]
    fn every_model_convolution_shape_equals_burns_conv2d() {
        let shapes: &[(&str, usize, usize, usize, usize, usize, bool)] = &[
            // (what, in, out, kernel, stride, padding, bias)
            ("stem 7x7/2", 3, 8, 7, 2, 3, false),
            ("layer1 1x1", 8, 8, 1, 1, 0, false),
            ("layer1 3x3", 8, 8, 3, 1, 1, false),
            ("layer1 1x1 expand", 8, 32, 1, 1, 0, false),
            ("layer1 downsample 1x1/1", 8, 32, 1, 1, 0, false),
            ("layer2 3x3/2", 16, 16, 3, 2, 1, false),
            ("layer2 downsample 1x1/2", 32, 64, 1, 2, 0, false),
            ("layer4 3x3/2", 64, 64, 3, 2, 1, false),
            ("input_proj 1x1 with bias", 256, 32, 1, 1, 0, true),
            ("ViT patch 32x32/32", 3, 16, 32, 32, 0, false),
            ("ViT patch 8x8/8", 3, 16, 8, 8, 0, false),
        ];
        for &(what, c, o, k, s, p, bias) in shapes {
            let hw = if k >= 8 { [64, 96] } else { [13, 18] };
            let err = check(2, c, hw, o, (k, s, p, bias));
            assert!(err <= 1e-5, "{what}: relative error {err}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Odd sizes, strides and paddings, including maps smaller than stride x kernel.
        #[test]
        fn any_stride_padding_and_odd_size_equals_burns_conv2d(
            n in 1usize..3, c in 1usize..6, h in 1usize..12, w in 1usize..12, o in 1usize..6,
            kh in 1usize..5, kw in 1usize..5, stride in 1usize..4, padding in 0usize..3,
            bias in any::<bool>(),
        ) {
            prop_assume!(h + 2 * padding >= kh && w + 2 * padding >= kw);
            let device = Default::default();
            let x = Tensor::<B, 4>::random([n, c, h, w], Distribution::Normal(0.0, 1.0), &device);
            let weight = Tensor::<B, 4>::random([o, c, kh, kw], Distribution::Normal(0.0, 0.3), &device);
            let bias = bias.then(|| Tensor::<B, 1>::random([o], Distribution::Normal(0.0, 1.0), &device));
            let options = ConvOptions::new([stride, stride], [padding, padding], [1, 1], 1);
            let ours = gemm_convolution(x.clone(), weight.clone(), bias.clone(), options.clone());
            let burn = conv2d(x, weight, bias, options);
            let err = max_relative_error(ours, burn);
            prop_assert!(err <= 1e-5, "relative error {}", err);
        }
    }
}
