//! timm's ResNet (`resnet18`, `resnet26`, `resnet34`, `resnet50`): a 7×7 stride-2 conv stem
//! with BatchNorm, ReLU and a 3×3 stride-2 max pool, then four stages of BasicBlocks or
//! Bottlenecks, each stage after the first halving the image. Parameter names are timm's
//! (`conv1.weight`, `layer2.0.downsample.0.weight`, `bn1.running_var`), so timm checkpoints
//! load by name; timm's classifier `fc` is the task head's `head` (see [`adapt`]).

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, PaddingConfig2d};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::backbone::{Arch, Backbone, BackboneShape, Features, Pooled, TimmModel, Trace};
use super::coverage::Coverage;
use super::state_dict::StateDict;
use crate::kernels::{self, TrainBackend, VitKernels};

/// The residual block of a ResNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Two 3×3 convs (resnet18, resnet34); expansion 1.
    Basic,
    /// 1×1, 3×3, 1×1 convs (resnet26, resnet50); expansion 4.
    Bottleneck,
}

impl BlockKind {
    /// Output channels per unit of stage width.
    pub fn expansion(self) -> usize {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

/// timm's ResNet presets: name, block, blocks per stage.
pub const RESNETS: [(&str, BlockKind, [usize; 4]); 4] = [
    ("resnet18", BlockKind::Basic, [2, 2, 2, 2]),
    ("resnet26", BlockKind::Bottleneck, [2, 2, 2, 2]),
    ("resnet34", BlockKind::Basic, [3, 4, 6, 3]),
    ("resnet50", BlockKind::Bottleneck, [3, 4, 6, 3]),
];

/// timm's stage widths (`channels`).
pub const RESNET_WIDTHS: [usize; 4] = [64, 128, 256, 512];

/// The stem's width: 64 whatever the stages' (timm's default stem).
pub const STEM_WIDTH: usize = 64;

/// A ResNet's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ResNetSpec {
    /// The preset's name (`resnet50`), for messages.
    pub name: String,
    pub block: BlockKind,
    /// Blocks per stage.
    pub layers: [usize; 4],
    /// Each stage's width (timm's `channels`); the stem is [`STEM_WIDTH`] wide.
    pub widths: [usize; 4],
    pub in_channels: usize,
}

impl ResNetSpec {
    /// The preset `name` (`resnet18` … `resnet50`) at widths `widths`, if it is one.
    pub fn preset(name: &str, widths: [usize; 4], in_channels: usize) -> Option<ResNetSpec> {
        RESNETS
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|&(n, block, layers)| ResNetSpec {
                name: n.to_string(),
                block,
                layers,
                widths,
                in_channels,
            })
    }

    /// Width of the pooled features: the last stage's output channels.
    pub fn dim(&self) -> usize {
        self.widths[3] * self.block.expansion()
    }

    /// A freshly initialised ResNet as timm initialises one: convs He-normal (fan out),
    /// BatchNorm at identity, the last norm of every block at zero (`zero_init_last`).
    pub fn init<B: Backend>(&self, device: &B::Device) -> ResNet<B> {
        let stem = STEM_WIDTH;
        let mut inplanes = stem;
        let stages: Vec<Vec<ResBlock<B>>> = (0..4)
            .map(|s| {
                let stride = if s == 0 { 1 } else { 2 };
                (0..self.layers[s])
                    .map(|b| {
                        let stride = if b == 0 { stride } else { 1 };
                        let block =
                            ResBlock::new(self.block, inplanes, self.widths[s], stride, device);
                        inplanes = self.widths[s] * self.block.expansion();
                        block
                    })
                    .collect()
            })
            .collect();
        let mut stages = stages.into_iter();
        let mut next = || stages.next().unwrap_or_default();
        ResNet {
            conv1: conv(self.in_channels, stem, 7, 2, device),
            bn1: norm(stem, false, device),
            layer1: next(),
            layer2: next(),
            layer3: next(),
            layer4: next(),
        }
    }
}

/// A bias-free conv of `kernel`² at `stride`, padded to keep `size / stride`, He-initialised
/// on its fan out as timm's ResNet does.
fn conv<B: Backend>(
    inp: usize,
    out: usize,
    kernel: usize,
    stride: usize,
    device: &B::Device,
) -> Conv2d<B> {
    let pad = kernel / 2;
    Conv2dConfig::new([inp, out], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .with_initializer(Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: true,
        })
        .init(device)
}

/// A BatchNorm of `channels` (PyTorch's momentum and epsilon), its scale at 0 when `zero`.
fn norm<B: Backend>(channels: usize, zero: bool, device: &B::Device) -> BatchNorm<B> {
    let n = BatchNormConfig::new(channels).init(device);
    if zero {
        let gamma = n.gamma.map(|g| g.zeros_like().require_grad());
        BatchNorm { gamma, ..n }
    } else {
        n
    }
}

/// The shortcut of a block that changes the shape: a strided 1×1 conv and a BatchNorm, named
/// by position as timm's `nn.Sequential` (`downsample.0`, `downsample.1`).
#[derive(Module, Debug)]
pub struct Downsample<B: Backend> {
    pub conv: Conv2d<B>,
    pub norm: BatchNorm<B>,
}

/// A BasicBlock (`conv3`/`bn3` absent) or a Bottleneck, with timm's field names.
#[derive(Module, Debug)]
pub struct ResBlock<B: Backend> {
    pub conv1: Conv2d<B>,
    pub bn1: BatchNorm<B>,
    pub conv2: Conv2d<B>,
    pub bn2: BatchNorm<B>,
    pub conv3: Option<Conv2d<B>>,
    pub bn3: Option<BatchNorm<B>>,
    pub downsample: Option<Downsample<B>>,
}

impl<B: Backend> ResBlock<B> {
    fn new(
        kind: BlockKind,
        inplanes: usize,
        width: usize,
        stride: usize,
        device: &B::Device,
    ) -> Self {
        let out = width * kind.expansion();
        let downsample = (stride != 1 || inplanes != out).then(|| Downsample {
            conv: conv(inplanes, out, 1, stride, device),
            norm: norm(out, false, device),
        });
        match kind {
            BlockKind::Basic => ResBlock {
                conv1: conv(inplanes, width, 3, stride, device),
                bn1: norm(width, false, device),
                conv2: conv(width, width, 3, 1, device),
                bn2: norm(width, true, device),
                conv3: None,
                bn3: None,
                downsample,
            },
            BlockKind::Bottleneck => ResBlock {
                conv1: conv(inplanes, width, 1, 1, device),
                bn1: norm(width, false, device),
                conv2: conv(width, width, 3, stride, device),
                bn2: norm(width, false, device),
                conv3: Some(conv(width, out, 1, 1, device)),
                bn3: Some(norm(out, true, device)),
                downsample,
            },
        }
    }
}

impl<B: VitKernels> ResBlock<B> {
    /// `relu(block(x) + shortcut(x))`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let shortcut = match &self.downsample {
            Some(d) => kernels::conv_batch_norm(&d.conv, &d.norm, x.clone(), false),
            None => x.clone(),
        };
        let y = kernels::conv_batch_norm(&self.conv1, &self.bn1, x, true);
        let y = match (&self.conv3, &self.bn3) {
            (Some(conv3), Some(bn3)) => {
                let y = kernels::conv_batch_norm(&self.conv2, &self.bn2, y, true);
                kernels::conv_batch_norm(conv3, bn3, y, false)
            }
            _ => kernels::conv_batch_norm(&self.conv2, &self.bn2, y, false),
        };
        burn::tensor::activation::relu(y + shortcut)
    }
}

/// timm's ResNet without its classifier (the task's head takes the pooled features).
#[derive(Module, Debug)]
pub struct ResNet<B: Backend> {
    pub conv1: Conv2d<B>,
    pub bn1: BatchNorm<B>,
    pub layer1: Vec<ResBlock<B>>,
    pub layer2: Vec<ResBlock<B>>,
    pub layer3: Vec<ResBlock<B>>,
    pub layer4: Vec<ResBlock<B>>,
}

impl<B: VitKernels> ResNet<B> {
    /// Images `[batch, channels, h, w]` → the last stage's feature map `[batch, C, h/32, w/32]`.
    pub fn feature_map(&self, images: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = kernels::conv_batch_norm(&self.conv1, &self.bn1, images, true);
        let x = kernels::max_pool2d(x, 3, 2, 1);
        [&self.layer1, &self.layer2, &self.layer3, &self.layer4]
            .into_iter()
            .flatten()
            .fold(x, |x, block| block.forward(x))
    }

    fn width(&self) -> usize {
        let last = self.layer4.last().or(self.layer3.last());
        match last {
            Some(block) => {
                let conv = block.conv3.as_ref().unwrap_or(&block.conv2);
                conv.weight.dims()[0]
            }
            None => self.conv1.weight.dims()[0],
        }
    }
}

impl<B: VitKernels> Backbone<B> for ResNet<B> {
    fn shape(&self) -> BackboneShape {
        shape_of(self.width())
    }

    /// The feature map as tokens `[batch, h·w, C]` (row-major), no prefix tokens.
    fn forward_features(&self, images: Tensor<B, 4>) -> Features<B> {
        let map = self.feature_map(images);
        let [batch, channels, h, w] = map.dims();
        Features {
            tokens: map.reshape([batch, channels, h * w]).swap_dims(1, 2),
            prefix: 0,
            grid: [h, w],
        }
    }

    /// Global average pooling (timm's `SelectAdaptivePool2d('avg')`).
    fn pool(&self, features: Features<B>) -> Pooled<B> {
        let [batch, _, dim] = features.tokens.dims();
        Pooled {
            features: features.tokens.mean_dim(1).reshape([batch, dim]),
            dist: None,
        }
    }

    fn dense(&self, features: Features<B>) -> (Tensor<B, 3>, [usize; 2]) {
        (features.tokens, features.grid)
    }

    /// A convnet has no attention: the trace holds the features and no attention maps.
    fn trace(&self, images: Tensor<B, 4>) -> Trace<B> {
        let features = self.forward_features(images);
        let (tokens, grid) = (features.tokens.clone(), features.grid);
        Trace {
            tokens,
            attentions: Vec::new(),
            prefix: 0,
            grid,
            pooled: self.pool(features),
        }
    }
}

fn shape_of(dim: usize) -> BackboneShape {
    BackboneShape {
        dim,
        stride: 32,
        heads: if dim.is_multiple_of(8) { 8 } else { 1 },
        distilled: false,
    }
}

impl Arch for ResNetSpec {
    type Net<B: VitKernels> = ResNet<B>;

    fn shape(&self) -> BackboneShape {
        shape_of(self.dim())
    }

    fn init<B: VitKernels>(&self, device: &B::Device) -> ResNet<B> {
        ResNetSpec::init(self, device)
    }

    fn valid<B: TrainBackend>(net: &ResNet<B>) -> ResNet<B::InnerBackend> {
        use burn::module::AutodiffModule;
        net.valid()
    }

    fn adapt(&self, sd: StateDict, coverage: &mut Coverage) -> StateDict {
        adapt(sd, coverage)
    }

    fn timm_model(&self) -> anyhow::Result<TimmModel> {
        let mut args = serde_json::Map::new();
        args.insert("in_chans".into(), self.in_channels.into());
        if self.widths != RESNET_WIDTHS {
            args.insert("channels".into(), self.widths.to_vec().into());
        }
        Ok(TimmModel {
            architecture: self.name.clone(),
            args,
            name: self.name.clone(),
            first_conv: "conv1".into(),
            classifier: vec!["fc".into()],
        })
    }

    fn to_timm(&self, sd: StateDict) -> StateDict {
        to_timm(sd)
    }
}

/// Adapts a timm ResNet state dict to vitrun's names: strips `module.` prefixes, names timm's
/// classifier `fc` as the task head `head`, and leaves out BatchNorm's `num_batches_tracked`
/// (PyTorch's count of updates, which momentum-based statistics never read).
pub fn adapt(sd: StateDict, coverage: &mut Coverage) -> StateDict {
    let mut out = StateDict::new();
    let mut stripped = false;
    let mut renamed = false;
    for (key, tensor) in sd {
        let key = match key.strip_prefix("module.") {
            Some(rest) => {
                stripped = true;
                rest.to_string()
            }
            None => key,
        };
        if key.ends_with("num_batches_tracked") {
            coverage
                .ignored
                .push((key, "PyTorch's BatchNorm update count".into()));
            continue;
        }
        let key = match key.strip_prefix("fc.") {
            Some(rest) => {
                renamed = true;
                format!("head.{rest}")
            }
            None => key,
        };
        out.insert(key, tensor);
    }
    if stripped {
        coverage
            .adapted
            .push("stripped the `module.` prefix".into());
    }
    if renamed {
        coverage
            .adapted
            .push("timm's classifier `fc` loaded as the head".into());
    }
    out
}

/// vitrun's names of a ResNet state dict as timm names them (`head.*` → `fc.*`), for export.
pub fn to_timm(sd: StateDict) -> StateDict {
    sd.into_iter()
        .map(|(k, v)| match k.strip_prefix("head.") {
            Some(rest) => (format!("fc.{rest}"), v),
            None => (k, v),
        })
        .collect()
}
