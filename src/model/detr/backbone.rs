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
}

impl<B: ModelBackend> FrozenBatchNorm2d<B> {
    pub fn new(channels: usize, device: &B::Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([channels], device)),
            bias: Param::from_tensor(Tensor::zeros([channels], device)),
            running_mean: Param::from_tensor(Tensor::zeros([channels], device)),
            running_var: Param::from_tensor(Tensor::ones([channels], device)),
        }
    }

    /// `scale = w / sqrt(rv + eps)`, `shift = b - rm * scale` (DETR's formulation, eps 1e-5).
    fn factors(&self) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let scale = self.weight.val() * (self.running_var.val() + 1e-5).sqrt().recip();
        let shift = self.bias.val() - self.running_mean.val() * scale.clone();
        (scale, shift)
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let (scale, shift) = self.factors();
        B::channel_affine(x, scale, shift, None, false)
    }

    /// `relu(self.forward(x) + residual)`, or without the residual, in one pass where
    /// the backend can.
    pub fn forward_relu(&self, x: Tensor<B, 4>, residual: Option<Tensor<B, 4>>) -> Tensor<B, 4> {
        let (scale, shift) = self.factors();
        B::channel_affine(x, scale, shift, residual, true)
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
        let identity = match &self.downsample {
            Some(d) => d.bn.forward(conv(&d.conv, x.clone())),
            None => x.clone(),
        };
        let y = self.bn1.forward_relu(conv(&self.conv1, x), None);
        let y = self.bn2.forward_relu(conv(&self.conv2, y), None);
        self.bn3.forward_relu(conv(&self.conv3, y), Some(identity))
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
    /// The 7x7/2 convolution, frozen batch norm, ReLU and 3x3/2 max pool before layer1.
    pub fn stem(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = self.bn1.forward_relu(conv(&self.conv1, x), None);
        B::max_pool(x, STEM_POOL.kernel, STEM_POOL.stride, STEM_POOL.padding)
    }

    /// C5 features `[B, 32*base_width, ceil(H/32), ceil(W/32)]` of normalised images.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let mut x = self.stem(x);
        for block in self
            .layer1
            .iter()
            .chain(&self.layer2)
            .chain(&self.layer3)
            .chain(&self.layer4)
        {
            x = block.forward(x);
        }
        x
    }
}
