//! ResNet v1.5 (stride on the 3x3 conv) with frozen batch norm; only C5 is returned.
//! Field names mirror `backbone.0.body.*` (the loader maps `backbone.0.body.` to
//! `backbone.` and `downsample.{0,1}` to `downsample.{conv,bn}`).

use burn::module::Param;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::*;
use burn::tensor::ops::ConvOptions;

use crate::model::kernels::ModelBackend;

/// torchvision's `FrozenBatchNorm2d`: fixed statistics and affine parameters.
#[derive(Module, Debug)]
pub struct FrozenBatchNorm2d<B: ModelBackend> {
    pub weight: Param<Tensor<B, 1>>,
    pub bias: Param<Tensor<B, 1>>,
    pub running_mean: Param<Tensor<B, 1>>,
    pub running_var: Param<Tensor<B, 1>>,
    /// Set once at load by [`ResNet::prepare_batch_norms`] (derived state, not part of
    /// the checkpoint): the shift a forward pass would otherwise recompute, and the scale
    /// unless it is folded into the convolution before (then `x + shift` is left).
    #[module(skip)]
    pub prepared_shift: Option<Tensor<B, 1>>,
    #[module(skip)]
    pub prepared_scale: Option<Tensor<B, 1>>,
}

impl<B: ModelBackend> FrozenBatchNorm2d<B> {
    pub fn new(channels: usize, device: &B::Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([channels], device)),
            bias: Param::from_tensor(Tensor::zeros([channels], device)),
            running_mean: Param::from_tensor(Tensor::zeros([channels], device)),
            running_var: Param::from_tensor(Tensor::ones([channels], device)),
            prepared_shift: None,
            prepared_scale: None,
        }
    }

    /// `scale = w / sqrt(rv + eps)`, `shift = b - rm * scale` (DETR's formulation, eps 1e-5).
    fn factors(&self) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let scale = self.weight.val() * (self.running_var.val() + 1e-5).sqrt().recip();
        let shift = self.bias.val() - self.running_mean.val() * scale.clone();
        (scale, shift)
    }

    /// The batch norm of `x`, then `+ residual` where given, then ReLU where `relu`, in one
    /// pass where the backend can.
    pub fn forward_with(
        &self,
        x: Tensor<B, 4>,
        residual: Option<Tensor<B, 4>>,
        relu: bool,
    ) -> Tensor<B, 4> {
        let (scale, shift) = match &self.prepared_shift {
            Some(shift) => (self.prepared_scale.clone(), shift.clone()),
            None => {
                let (scale, shift) = self.factors();
                (Some(scale), shift)
            }
        };
        B::channel_affine(x, scale, shift, residual, relu)
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.forward_with(x, None, false)
    }

    /// `relu(self.forward(x) + residual)`, or without the residual, in one pass where
    /// the backend can.
    pub fn forward_relu(&self, x: Tensor<B, 4>, residual: Option<Tensor<B, 4>>) -> Tensor<B, 4> {
        self.forward_with(x, residual, true)
    }

    /// Computes the factors once. With `fold`, the scale moves into `conv`'s weights
    /// (`w[o] * scale[o]`, computed in f64 and rounded once) and only the shift is left;
    /// without, the activations are scaled exactly as the unprepared forward scales them
    /// (same values, bit for bit). Idempotent.
    fn prepare(&mut self, conv: &mut Conv2d<B>, fold: bool) {
        if self.prepared_shift.is_some() {
            return;
        }
        if !fold {
            let (scale, shift) = self.factors();
            self.prepared_scale = Some(scale);
            self.prepared_shift = Some(shift);
            return;
        }
        let host =
            |t: Tensor<B, 1>| -> Vec<f64> { t.into_data().iter::<f32>().map(f64::from).collect() };
        let (w, b) = (host(self.weight.val()), host(self.bias.val()));
        let (mean, var) = (host(self.running_mean.val()), host(self.running_var.val()));
        let scale: Vec<f64> = w
            .iter()
            .zip(&var)
            .map(|(w, v)| w / (v + 1e-5).sqrt())
            .collect();
        let mut shift: Vec<f64> = b
            .iter()
            .zip(&mean)
            .zip(&scale)
            .map(|((b, m), s)| b - m * s)
            .collect();
        if let Some(bias) = conv.bias.take() {
            // A convolution with its own bias (not in ResNet): it is scaled too.
            for ((t, c), s) in shift.iter_mut().zip(host(bias.val())).zip(&scale) {
                *t += c * s;
            }
        }
        let weight = conv.weight.val();
        let dims = weight.dims();
        let per_out = (dims[1] * dims[2] * dims[3]).max(1);
        let folded: Vec<f32> = weight
            .into_data()
            .iter::<f32>()
            .enumerate()
            .map(|(i, x)| (f64::from(x) * scale[i / per_out]) as f32)
            .collect();
        let device = conv.weight.device();
        conv.weight = Param::from_tensor(Tensor::from_data(TensorData::new(folded, dims), &device));
        let shift: Vec<f32> = shift.into_iter().map(|t| t as f32).collect();
        let n = shift.len();
        self.prepared_shift = Some(Tensor::from_data(TensorData::new(shift, [n]), &device));
    }

    /// Whether the scale is folded into the convolution's weights.
    pub fn is_folded(&self) -> bool {
        self.prepared_shift.is_some() && self.prepared_scale.is_none()
    }
}

#[derive(Module, Debug)]
pub struct Downsample<B: ModelBackend> {
    pub conv: Conv2d<B>,
    pub bn: FrozenBatchNorm2d<B>,
}

#[derive(Module, Debug)]
pub struct Bottleneck<B: ModelBackend> {
    pub conv1: Conv2d<B>,
    pub bn1: FrozenBatchNorm2d<B>,
    pub conv2: Conv2d<B>,
    pub bn2: FrozenBatchNorm2d<B>,
    pub conv3: Conv2d<B>,
    pub bn3: FrozenBatchNorm2d<B>,
    pub downsample: Option<Downsample<B>>,
}

impl<B: ModelBackend> Bottleneck<B> {
    fn prepare_batch_norms(&mut self, fold: bool) {
        self.bn1.prepare(&mut self.conv1, fold);
        self.bn2.prepare(&mut self.conv2, fold);
        self.bn3.prepare(&mut self.conv3, fold);
        if let Some(d) = &mut self.downsample {
            d.bn.prepare(&mut d.conv, fold);
        }
    }

    fn new(inplanes: usize, planes: usize, stride: usize, device: &B::Device) -> Self {
        let out = planes * 4;
        let conv = |i: usize, o: usize, k: usize, s: usize, p: usize| {
            Conv2dConfig::new([i, o], [k, k])
                .with_stride([s, s])
                .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                .with_bias(false)
                .init(device)
        };
        let downsample = (stride != 1 || inplanes != out).then(|| Downsample {
            conv: conv(inplanes, out, 1, stride, 0),
            bn: FrozenBatchNorm2d::new(out, device),
        });
        Self {
            conv1: conv(inplanes, planes, 1, 1, 0),
            bn1: FrozenBatchNorm2d::new(planes, device),
            conv2: conv(planes, planes, 3, stride, 1),
            bn2: FrozenBatchNorm2d::new(planes, device),
            conv3: conv(planes, out, 1, 1, 0),
            bn3: FrozenBatchNorm2d::new(out, device),
            downsample,
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.forward_valid(x, &Valid::Whole)
    }

    /// [`Self::forward`] on a batch padded around images of `valid` sizes: the 3x3
    /// convolution, the only one that mixes neighbouring positions, reads zeros where its
    /// own zero padding would be (`valid`: the block's input sizes).
    fn forward_valid(&self, x: Tensor<B, 4>, valid: &Valid) -> Tensor<B, 4> {
        let identity = match &self.downsample {
            Some(d) => d.bn.forward(conv(&d.conv, x.clone())),
            None => x.clone(),
        };
        let y = self.bn1.forward_relu(conv(&self.conv1, x), None);
        let y = valid.zero_outside(y);
        let y = self.bn2.forward_relu(conv(&self.conv2, y), None);
        self.bn3.forward_relu(conv(&self.conv3, y), Some(identity))
    }

    /// The stride of the block (on its 3x3 convolution, ResNet v1.5).
    fn stride(&self) -> usize {
        self.conv2.stride[0]
    }
}

/// Which positions of a feature map hold an image: all of them, or in a batch padded
/// around images of several sizes, each image's top-left (h, w).
#[derive(Debug, Clone, PartialEq)]
pub enum Valid {
    Whole,
    Sizes(Vec<(usize, usize)>),
}

impl Valid {
    /// The images' sizes in a tensor of `padded` (h, w): [`Valid::Whole`] when none is
    /// padded.
    pub fn new(sizes: &[(usize, usize)], padded: (usize, usize)) -> Self {
        if sizes.iter().all(|&s| s == padded) {
            Self::Whole
        } else {
            Self::Sizes(sizes.to_vec())
        }
    }

    /// After a layer of stride 2 (kernel 1 with no padding, 3 with padding 1 or 7 with
    /// padding 3, or the 3x3/2 max pool with padding 1): every size `s` becomes
    /// `ceil(s / 2)`, the output positions computed from the image's own pixels.
    pub fn halved(&self) -> Self {
        match self {
            Self::Whole => Self::Whole,
            Self::Sizes(s) => Self::Sizes(
                s.iter()
                    .map(|&(h, w)| (h.div_ceil(2), w.div_ceil(2)))
                    .collect(),
            ),
        }
    }

    fn zero_outside<B: ModelBackend>(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            Self::Whole => x,
            Self::Sizes(sizes) => {
                let [_, _, h, w] = x.dims();
                if sizes.iter().all(|&s| s == (h, w)) {
                    x
                } else {
                    B::zero_outside(x, sizes)
                }
            }
        }
    }
}

/// Shape of the backbone: ResNet-50 is `layers = [3, 4, 6, 3]`, `base_width = 64`.
#[derive(Config, Debug)]
pub struct ResNetConfig {
    #[config(default = "[3, 4, 6, 3]")]
    pub layers: [usize; 4],
    #[config(default = 64)]
    pub base_width: usize,
}

impl ResNetConfig {
    /// Channels of C5 (2048 for ResNet-50).
    pub fn out_channels(&self) -> usize {
        self.base_width * 8 * 4
    }

    pub fn init<B: ModelBackend>(&self, device: &B::Device) -> ResNet<B> {
        let w = self.base_width;
        let mut inplanes = w;
        let mut make_layer = |planes: usize, blocks: usize, stride: usize| {
            let mut out = Vec::with_capacity(blocks);
            for i in 0..blocks {
                out.push(Bottleneck::new(
                    inplanes,
                    planes,
                    if i == 0 { stride } else { 1 },
                    device,
                ));
                inplanes = planes * 4;
            }
            out
        };
        let layer1 = make_layer(w, self.layers[0], 1);
        let layer2 = make_layer(w * 2, self.layers[1], 2);
        let layer3 = make_layer(w * 4, self.layers[2], 2);
        let layer4 = make_layer(w * 8, self.layers[3], 2);
        ResNet {
            conv1: Conv2dConfig::new([3, w], [7, 7])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(3, 3, 3, 3))
                .with_bias(false)
                .init(device),
            bn1: FrozenBatchNorm2d::new(w, device),
            layer1,
            layer2,
            layer3,
            layer4,
        }
    }
}

/// `conv` applied to `x` through the backend's kernel ([`Conv2d::forward`] calls Burn's op
/// directly); padding that is not the same on both sides stays with Burn's module.
fn conv<B: ModelBackend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    match conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            let options = ConvOptions::new(conv.stride, [top, left], conv.dilation, conv.groups);
            B::convolution(
                x,
                conv.weight.val(),
                conv.bias.as_ref().map(Param::val),
                options,
            )
        }
        _ => conv.forward(x),
    }
}

/// Size, stride and padding of a pooling window.
struct Pool {
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
}

/// The stem's max pool: 3x3, stride 2, padding 1 (a function of the backend, not a
/// module: it has no parameters).
const STEM_POOL: Pool = Pool {
    kernel: [3, 3],
    stride: [2, 2],
    padding: [1, 1],
};

#[derive(Module, Debug)]
pub struct ResNet<B: ModelBackend> {
    pub conv1: Conv2d<B>,
    pub bn1: FrozenBatchNorm2d<B>,
    pub layer1: Vec<Bottleneck<B>>,
    pub layer2: Vec<Bottleneck<B>>,
    pub layer3: Vec<Bottleneck<B>>,
    pub layer4: Vec<Bottleneck<B>>,
}

impl<B: ModelBackend> ResNet<B> {
    /// Computes every frozen batch norm's factors once (at load), and with `fold` moves
    /// their scales into the convolutions before them: the same function up to float
    /// rounding, one multiplication less per activation and no per-forward factor
    /// kernels. A folded module's parameters no longer equal the checkpoint's, so it is
    /// for running, not for saving. Idempotent.
    pub fn prepare_batch_norms(mut self, fold: bool) -> Self {
        self.bn1.prepare(&mut self.conv1, fold);
        for block in self
            .layer1
            .iter_mut()
            .chain(&mut self.layer2)
            .chain(&mut self.layer3)
            .chain(&mut self.layer4)
        {
            block.prepare_batch_norms(fold);
        }
        self
    }

    /// Whether [`Self::prepare_batch_norms`] folded the scales into the weights.
    pub fn is_folded(&self) -> bool {
        self.bn1.is_folded()
    }

    /// The 7x7/2 convolution, frozen batch norm, ReLU and 3x3/2 max pool before layer1.
    pub fn stem(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.stem_valid(x, &Valid::Whole)
    }

    /// [`Self::stem`] on a padded batch (`valid`: the input's image sizes): the max pool
    /// reads zeros around each image, which after the ReLU change no maximum, as its own
    /// padding does not.
    fn stem_valid(&self, x: Tensor<B, 4>, valid: &Valid) -> Tensor<B, 4> {
        let x = self.bn1.forward_relu(conv(&self.conv1, x), None);
        let x = valid.halved().zero_outside(x);
        B::max_pool(x, STEM_POOL.kernel, STEM_POOL.stride, STEM_POOL.padding)
    }

    /// C5 features `[B, 32*base_width, ceil(H/32), ceil(W/32)]` of normalised images.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.forward_padded(x, &Valid::Whole)
    }

    /// C5 features of a batch zero-padded around images of `valid` sizes: each image's
    /// features, at its top-left `Self::valid_features` positions, are those of the image
    /// alone (up to float rounding), whatever the padding; the rest is not meaningful.
    pub fn forward_padded(&self, x: Tensor<B, 4>, valid: &Valid) -> Tensor<B, 4> {
        let mut x = self.stem_valid(x, valid);
        let mut valid = valid.halved().halved();
        for block in self
            .layer1
            .iter()
            .chain(&self.layer2)
            .chain(&self.layer3)
            .chain(&self.layer4)
        {
            x = block.forward_valid(x, &valid);
            if block.stride() == 2 {
                valid = valid.halved();
            }
        }
        x
    }

    /// The valid (h, w) of C5 for images of `sizes`: `ceil(s / 32)` (five halvings).
    pub fn valid_features(sizes: &[(usize, usize)]) -> Vec<(usize, usize)> {
        sizes
            .iter()
            .map(|&(h, w)| (h.div_ceil(32), w.div_ceil(32)))
            .collect()
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    type B = burn::backend::Flex;

    /// Random statistics and affine parameters in every batch norm (`new` gives the
    /// identity, which folding would leave unchanged).
    fn randomise(bn: &mut FrozenBatchNorm2d<B>) {
        let c = bn.weight.dims()[0];
        let device = Default::default();
        let r =
            |lo: f64, hi: f64| Tensor::<B, 1>::random([c], Distribution::Uniform(lo, hi), &device);
        bn.weight = Param::from_tensor(r(0.5, 1.5));
        bn.bias = Param::from_tensor(r(-0.5, 0.5));
        bn.running_mean = Param::from_tensor(r(-0.2, 0.2));
        bn.running_var = Param::from_tensor(r(0.5, 2.0));
    }

    /// Prepared without folding: bit for bit the unprepared features. Folded: the same up
    /// to float rounding. Preparing twice changes nothing.
    #[test]
    fn prepared_batch_norms_give_the_unprepared_features() {
        let device = Default::default();
        <B as Backend>::seed(&device, 7);
        let mut net = ResNetConfig::new()
            .with_layers([1, 2, 1, 1])
            .with_base_width(8)
            .init::<B>(&device);
        randomise(&mut net.bn1);
        for block in net
            .layer1
            .iter_mut()
            .chain(&mut net.layer2)
            .chain(&mut net.layer3)
            .chain(&mut net.layer4)
        {
            randomise(&mut block.bn1);
            randomise(&mut block.bn2);
            randomise(&mut block.bn3);
            if let Some(d) = &mut block.downsample {
                randomise(&mut d.bn);
            }
        }
        let x = Tensor::<B, 4>::random([2, 3, 67, 93], Distribution::Normal(0.0, 1.0), &device);
        let want = net.forward(x.clone());
        let exact = net.clone().prepare_batch_norms(false);
        assert!(!exact.is_folded());
        assert_eq!(
            exact.forward(x.clone()).into_data(),
            want.clone().into_data()
        );
        let folded = net.prepare_batch_norms(true);
        assert!(folded.is_folded());
        let got = folded.forward(x.clone());
        let scale = want.clone().abs().max().into_scalar();
        let diff = (got.clone() - want).abs().max().into_scalar();
        assert!(
            diff <= 1e-5 * scale.max(1.0),
            "folded differs by {diff} (scale {scale})"
        );
        let twice = folded.prepare_batch_norms(true).forward(x);
        assert_eq!(twice.into_data(), got.into_data());
    }
}
