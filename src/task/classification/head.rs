//! Classification's head on the backbone's pooled features: `head`, and DeiT's `head_dist` on
//! the distillation token (the model's answer is the mean of both, as timm's in eval mode).

use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::kernels::VitKernels;
use crate::model::{Arch, Backbone, BackboneShape, Features, Model, Pooled, Vit, VitSpec};

/// The class head, and the distillation head of a distilled backbone.
#[derive(Module, Debug)]
pub struct ClassifierHead<B: Backend> {
    pub head: Linear<B>,
    pub head_dist: Option<Linear<B>>,
}

impl<B: Backend> ClassifierHead<B> {
    /// A head of `classes` outputs for a backbone of `shape` (two heads when it is distilled).
    pub fn new(shape: BackboneShape, classes: usize, device: &B::Device) -> Self {
        let linear = || {
            LinearConfig::new(shape.dim, classes)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 0.02,
                })
                .init(device)
        };
        ClassifierHead {
            head: linear(),
            head_dist: shape.distilled.then(linear),
        }
    }

    /// Each head's logits: the class head's, and the distillation head's when the backbone
    /// pooled a distillation token (timm's `VisionTransformerDistilled` in distilled training).
    pub fn heads(&self, pooled: Pooled<B>) -> (Tensor<B, 2>, Option<Tensor<B, 2>>) {
        let logits = self.head.forward(pooled.features);
        let dist = match (&self.head_dist, pooled.dist) {
            (Some(head_dist), Some(dist)) => Some(head_dist.forward(dist)),
            _ => None,
        };
        (logits, dist)
    }

    /// Class logits `[batch, classes]` of pooled features: the mean of both heads when the
    /// backbone pooled a distillation token (timm's `forward_head` after the pooling).
    pub fn forward(&self, pooled: Pooled<B>) -> Tensor<B, 2> {
        let logits = self.head.forward(pooled.features);
        match (&self.head_dist, pooled.dist) {
            (Some(head_dist), Some(dist)) => (logits + head_dist.forward(dist)).div_scalar(2.0),
            _ => logits,
        }
    }
}

/// A classification model on backbone `E`.
pub type Classifier<B, E> = Model<B, E, ClassifierHead<B>>;

/// A freshly initialised ViT classifier of `classes` classes: timm's `VisionTransformer`, its
/// head included, seeded by the backend's RNG (the encoder's weights drawn first).
pub fn vit_classifier<B: VitKernels>(
    spec: &VitSpec,
    classes: usize,
    device: &B::Device,
) -> Classifier<B, Vit<B>> {
    let encoder = spec.init(device);
    let head = ClassifierHead::new(spec.shape(), classes, device);
    Model::new(encoder, head)
}

/// Everything a classifier computed on one batch, for parity tests and attention maps.
#[derive(Debug, Clone)]
pub struct ClassifierTrace<B: Backend> {
    /// Tokens after patch embedding, prefix tokens and positions: `[batch, tokens, dim]`.
    pub tokens: Tensor<B, 3>,
    /// Softmax attention of every block: `[batch, heads, tokens, tokens]`.
    pub attentions: Vec<Tensor<B, 4>>,
    /// Tokens before the patches.
    pub prefix: usize,
    /// The patch grid `[rows, columns]`.
    pub grid: [usize; 2],
    /// Pooled, normed features `[batch, dim]` (for a distilled model the mean of the class
    /// and distillation tokens, as timm's `forward_head(x, pre_logits=True)`).
    pub features: Tensor<B, 2>,
    pub logits: Tensor<B, 2>,
}

impl<B: VitKernels, E: Backbone<B>> Model<B, E, ClassifierHead<B>> {
    /// Class logits `[batch, classes]` of images `[batch, channels, h, w]`.
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        self.forward_head(self.forward_features(images))
    }

    /// The encoder's features (timm's `forward_features`).
    pub fn forward_features(&self, images: Tensor<B, 4>) -> Features<B> {
        self.encoder.forward_features(images)
    }

    /// Each head's logits of images (the class head's, the distillation head's).
    pub fn forward_heads(&self, images: Tensor<B, 4>) -> (Tensor<B, 2>, Option<Tensor<B, 2>>) {
        self.head
            .heads(self.encoder.pool(self.forward_features(images)))
    }

    /// Pooling and the heads (timm's `forward_head`).
    pub fn forward_head(&self, features: Features<B>) -> Tensor<B, 2> {
        self.head.forward(self.encoder.pool(features))
    }

    /// Logits with the tokens, every block's attention and the pooled features.
    pub fn trace(&self, images: Tensor<B, 4>) -> ClassifierTrace<B> {
        let trace = self.encoder.trace(images);
        let pooled = trace.pooled;
        let features = match &pooled.dist {
            Some(dist) => (pooled.features.clone() + dist.clone()).div_scalar(2.0),
            None => pooled.features.clone(),
        };
        ClassifierTrace {
            tokens: trace.tokens,
            attentions: trace.attentions,
            prefix: trace.prefix,
            grid: trace.grid,
            features,
            logits: self.head.forward(pooled),
        }
    }
}
