//! The backbone seam: a model is a backbone (the encoder, named as timm names it) under a
//! task's head. [`Backbone`] is everything a head may read of the encoder; [`Arch`] builds one
//! from `[model]` on any backend and adapts pretrained checkpoints to it. A new architecture is
//! a new module implementing both, and one arm of [`with_arch`].

use std::marker::PhantomData;

use burn::module::{Module, ModuleDisplay};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::coverage::Coverage;
use super::state_dict::StateDict;
use crate::config::{ArchKind, Config};
use crate::kernels::{TrainBackend, VitKernels};

/// What a task's head needs to know of the backbone under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackboneShape {
    /// Width of the features.
    pub dim: usize,
    /// Input pixels per position of the dense features (the patch size).
    pub stride: usize,
    /// Attention heads of the backbone (a query decoder on it attends with as many).
    pub heads: usize,
    /// Whether the backbone pools a second vector for a distillation head (DeiT's token).
    pub distilled: bool,
}

/// What the encoder computed on a batch (timm's `forward_features`): the tokens after the last
/// block and the final norm, `[batch, tokens, dim]`, with their layout.
#[derive(Debug, Clone)]
pub struct Features<B: Backend> {
    pub tokens: Tensor<B, 3>,
    /// Tokens before the patches (class, distillation).
    pub prefix: usize,
    /// The patch grid `[rows, columns]` (row-major after the prefix tokens).
    pub grid: [usize; 2],
}

/// Each image's pooled features: what a classification head reads (timm's pre-logits).
#[derive(Debug, Clone)]
pub struct Pooled<B: Backend> {
    /// `[batch, dim]`: the class token after the final norm, or the normed mean of the patches.
    pub features: Tensor<B, 2>,
    /// `[batch, dim]`: the distillation token after the final norm (DeiT).
    pub dist: Option<Tensor<B, 2>>,
}

/// Everything the backbone computed on a batch, for parity tests, attention maps and the
/// patch-embedding view.
#[derive(Debug, Clone)]
pub struct Trace<B: Backend> {
    /// Tokens after the embedding, prefix tokens and positions: `[batch, tokens, dim]`.
    pub tokens: Tensor<B, 3>,
    /// Every block's softmax attention, `[batch, heads, tokens, tokens]` (empty for a backbone
    /// without attention).
    pub attentions: Vec<Tensor<B, 4>>,
    /// Tokens before the patches (class, distillation).
    pub prefix: usize,
    /// The patch grid `[rows, columns]`.
    pub grid: [usize; 2],
    pub pooled: Pooled<B>,
}

/// An encoder: images in, features out, split as timm splits a model (`forward_features`,
/// then the pooling `forward_head` starts with). Everything task-specific sits in the head.
pub trait Backbone<B: VitKernels>: Module<B> + ModuleDisplay + core::fmt::Debug {
    /// The features' width, stride and what else a head sizes itself by.
    fn shape(&self) -> BackboneShape;

    /// Images `[batch, channels, h, w]` through the whole encoder.
    fn forward_features(&self, images: Tensor<B, 4>) -> Features<B>;

    /// Each image's pooled features (timm's `forward_head(x, pre_logits=True)`).
    fn pool(&self, features: Features<B>) -> Pooled<B>;

    /// Normed features per position, `[batch, rows·columns, dim]` in row-major order on the
    /// grid `[rows, columns]`: what a dense head (segmentation, detection) reads.
    fn dense(&self, features: Features<B>) -> (Tensor<B, 3>, [usize; 2]);

    /// [`Backbone::forward_features`] and [`Backbone::pool`] with the embedding and every
    /// block's attention kept.
    fn trace(&self, images: Tensor<B, 4>) -> Trace<B>;

    /// [`Backbone::forward_features`] and the patch tokens after each block of `blocks`
    /// (numbered from 1, UNETR's z3, z6, z9), `[batch, rows·columns, dim]` before the final
    /// norm. A backbone without transformer blocks gives none ([`Arch::blocks`] is 0 for it,
    /// and the experiment check refuses skip connections from it).
    fn forward_taps(
        &self,
        images: Tensor<B, 4>,
        blocks: &[usize],
    ) -> (Features<B>, Vec<Tensor<B, 3>>) {
        let _ = blocks;
        (self.forward_features(images), Vec::new())
    }

    /// [`Backbone::forward_taps`] with `mark` applied to the activations Grad-CAM weighs, the
    /// layer pytorch-grad-cam's tutorials hook for this backbone (a ViT's last block's `norm1`:
    /// `[batch, tokens, dim]`, prefix tokens first), so that the caller can keep them and ask
    /// for their gradient. `None`: the backbone has no such layer.
    fn forward_marked(
        &self,
        images: Tensor<B, 4>,
        blocks: &[usize],
        mark: &mut dyn FnMut(Tensor<B, 3>) -> Tensor<B, 3>,
    ) -> Option<(Features<B>, Vec<Tensor<B, 3>>)> {
        let _ = (images, blocks, mark);
        None
    }
}

/// An architecture (`model.arch`) with its dimensions: builds its backbone on any backend.
pub trait Arch: Clone + core::fmt::Debug + Send + Sync + 'static {
    /// The backbone this architecture builds on backend `B`.
    type Net<B: VitKernels>: Backbone<B>;

    /// What a head on this backbone is sized by.
    fn shape(&self) -> BackboneShape;

    /// How many transformer blocks the backbone has (what skip connections can tap).
    fn blocks(&self) -> usize {
        0
    }

    /// A freshly initialised backbone, seeded by the backend's RNG.
    fn init<B: VitKernels>(&self, device: &B::Device) -> Self::Net<B>;

    /// The backbone's weights without autodiff (for validation and the weight average).
    fn valid<B: TrainBackend>(net: &Self::Net<B>) -> Self::Net<B::InnerBackend>;

    /// Adapts a pretrained state dict to this architecture (timm's `checkpoint_filter_fn`):
    /// strips wrapper prefixes, maps or drops tokens, resamples positions; records what it
    /// changed in `coverage`.
    fn adapt(&self, sd: StateDict, coverage: &mut Coverage) -> StateDict;

    /// Why a checkpoint tensor of another shape than the model's was left out.
    fn misfit(&self, name: &str) -> Option<String> {
        let _ = name;
        None
    }

    /// timm's constructor for this backbone and its keyword arguments, the classifier's
    /// excepted (for `vitrun export`); an error says why timm cannot build it.
    fn timm_model(&self) -> anyhow::Result<TimmModel>;

    /// A state dict of this backbone's model under timm's own names (for `vitrun export`).
    fn to_timm(&self, sd: StateDict) -> StateDict {
        sd
    }
}

/// A timm model constructor (`VisionTransformer`, `resnet50`) and its keyword arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct TimmModel {
    pub architecture: String,
    pub args: serde_json::Map<String, serde_json::Value>,
    /// A model name timm registers whose entry point `args` complete
    /// (`timm.create_model(name, **args)` builds this model).
    pub name: String,
    /// The first conv's module (timm's `pretrained_cfg["first_conv"]`).
    pub first_conv: String,
    /// The classifier modules (`pretrained_cfg["classifier"]`).
    pub classifier: Vec<String>,
}

/// A whole model: a backbone and a task's head. Checkpoint keys are timm's: the `encoder` and
/// `head` fields are not part of the names (`blocks.0.attn.qkv.weight`, `head.weight`).
#[derive(Module, Debug)]
pub struct Model<B: Backend, E: Module<B>, H: Module<B>> {
    pub encoder: E,
    pub head: H,
    backend: PhantomData<B>,
}

impl<B: Backend, E: Module<B>, H: Module<B>> Model<B, E, H> {
    /// A model of `encoder` under `head`.
    pub fn new(encoder: E, head: H) -> Self {
        Model {
            encoder,
            head,
            backend: PhantomData,
        }
    }
}

/// Work generic over the architecture `model.arch` names.
pub trait ArchTask {
    type Output;
    fn run<A: Arch>(self, arch: A) -> Self::Output;
}

/// Runs `task` with the architecture of `config` (the one match on `model.arch`).
pub fn with_arch<T: ArchTask>(config: &Config, task: T) -> T::Output {
    match config.model.arch {
        ArchKind::Vit => task.run(super::VitSpec::from_config(config)),
        _ => task.run(super::ResNetSpec::from_config(config)),
    }
}
