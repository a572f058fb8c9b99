//! Frozen batch norm (or, folded into the convolution, its shift), residual add and ReLU
//! in one pass on the flex CPU backend.
//!
//! In Burn's ops a ResNet bottleneck's `relu(bn(conv) + identity)` is four passes over
//! the activation, each into a newly allocated tensor (a 60 MB one at 800x1200 for
//! layer1, whose fresh pages the kernel zeroes on first touch). Here it is one pass,
//! in place in the convolution's output, one (image, channel) plane per task.

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::{DType, TensorPrimitive};
use rayon::prelude::*;

use crate::model::kernels::portable_channel_affine;

/// [`ModelBackend::channel_affine`] on flex.
pub(super) fn channel_affine(
    x: Tensor<Flex, 4>,
    scale: Option<Tensor<Flex, 1>>,
    shift: Tensor<Flex, 1>,
    residual: Option<Tensor<Flex, 4>>,
    relu: bool,
) -> Tensor<Flex, 4> {
    let dims = x.dims();
    let [_, c, h, w] = dims;
    let f32s = [x.dtype(), shift.dtype()]
        .into_iter()
        .chain(scale.as_ref().map(|s| s.dtype()))
        .chain(residual.as_ref().map(|r| r.dtype()))
        .all(|d| d == DType::F32);
    let shapes = scale.as_ref().is_none_or(|s| s.dims() == [c])
        && shift.dims() == [c]
        && residual.as_ref().is_none_or(|r| r.dims() == dims);
    if !f32s || !shapes || c == 0 || h * w == 0 {
        return portable_channel_affine(x, scale, shift, residual, relu);
    }
    let scale = scale.map(|s| s.into_data().iter::<f32>().collect::<Vec<_>>());
    let shift = shift.into_data().iter::<f32>().collect::<Vec<_>>();
    let residual = residual.map(|r| r.into_primitive().tensor().to_contiguous());
    // The conversion drops the caller's handle, so a convolution's fresh output is
    // uniquely owned and written in place (shared storage is copied first).
    let mut out = x.into_primitive().tensor().to_contiguous();
    let plane = h * w;
    let residual = residual.as_ref().map(|r| r.storage::<f32>());
    let data = out.storage_mut::<f32>();
    data.par_chunks_mut(plane).enumerate().for_each(|(i, y)| {
        let t = shift[i % c];
        match (&scale, residual) {
            (Some(scale), Some(r)) => {
                let (s, r) = (scale[i % c], &r[i * plane..(i + 1) * plane]);
                y.iter_mut().zip(r).for_each(|(v, r)| *v = *v * s + t + r);
            }
            (Some(scale), None) => {
                let s = scale[i % c];
                y.iter_mut().for_each(|v| *v = *v * s + t);
            }
            (None, Some(r)) => {
                let r = &r[i * plane..(i + 1) * plane];
                y.iter_mut().zip(r).for_each(|(v, r)| *v = *v + t + r);
            }
            (None, None) => y.iter_mut().for_each(|v| *v += t),
        }
        if relu {
            y.iter_mut()
                .for_each(|v| *v = if *v > 0.0 { *v } else { 0.0 });
        }
    });
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// [`ModelBackend::zero_outside`] on flex: in place, writing only the padding.
pub(super) fn zero_outside(x: Tensor<Flex, 4>, valid: &[(usize, usize)]) -> Tensor<Flex, 4> {
    let [n, c, h, w] = x.dims();
    if x.dtype() != DType::F32 || valid.len() != n || h * w == 0 {
        return crate::model::kernels::portable_zero_outside(x, valid);
    }
    let mut out = x.into_primitive().tensor().to_contiguous();
    let data = out.storage_mut::<f32>();
    data.par_chunks_mut(h * w)
        .enumerate()
        .for_each(|(i, plane)| {
            let (vh, vw) = valid[i / c];
            let (vh, vw) = (vh.min(h), vw.min(w));
            if vw < w {
                for row in plane.chunks_mut(w).take(vh) {
                    row[vw..].fill(0.0);
                }
            }
            plane[vh * w..].fill(0.0);
        });
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    fn random<const D: usize>(dims: [usize; D], seed: u64) -> Tensor<Flex, D> {
        <Flex as Backend>::seed(&Default::default(), seed);
        Tensor::random(dims, Distribution::Normal(0.0, 1.0), &Default::default())
    }

    /// Equal to the portable version, and a shared input is left as it was.
    #[test]
    fn zero_outside_equals_the_portable_version() {
        let x = random([3, 2, 5, 7], 5);
        let before = x.clone().into_data();
        let valid = [(5, 7), (2, 3), (4, 7)];
        let want = crate::model::kernels::portable_zero_outside(x.clone(), &valid);
        let got = zero_outside(x.clone(), &valid);
        assert_eq!(got.clone().into_data(), want.into_data());
        assert_eq!(
            x.clone().into_data(),
            before,
            "a shared input must not change"
        );
        let v = got.into_data().to_vec::<f32>().unwrap();
        // Image 1, channel 1: rows 0-1 keep columns 0-2, everything else is zero.
        let plane = &v[(2 + 1) * 35..(2 + 2) * 35];
        assert!(plane[3..7].iter().chain(&plane[10..]).all(|&p| p == 0.0));
        assert!(plane[..3].iter().all(|&p| p != 0.0));
    }

    /// Bit for bit Burn's separate operations, with and without residual and ReLU, and
    /// the input left as it was when it is shared.
    #[test]
    fn equals_separate_operations() {
        for (scaled, residual, relu) in [
            (true, false, false),
            (true, false, true),
            (true, true, true),
            (false, false, false),
            (false, true, true),
        ] {
            let x = random([2, 3, 5, 7], 1);
            let (s, t) = (scaled.then(|| random([3], 2)), random([3], 3));
            let r = residual.then(|| random([2, 3, 5, 7], 4));
            let want = portable_channel_affine(x.clone(), s.clone(), t.clone(), r.clone(), relu);
            let before = x.clone().into_data();
            let got = channel_affine(x.clone(), s, t, r, relu);
            assert_eq!(got.into_data(), want.into_data());
            assert_eq!(x.into_data(), before, "a shared input must not change");
        }
    }
}
