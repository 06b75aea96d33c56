//! The bare-burn peer of vitrun's model: the ViT a burn user writes from burn's stock parts
//! (`Conv2d` patches, `nn::attention::MultiHeadAttention`, `LayerNorm`, `Linear`, `Gelu`,
//! `CrossEntropyLoss`, `optim::AdamW`), with nothing of vitrun's. The issue measured such a
//! prototype as the floor vitrun's model and loop must not fall below; the bench runs it in the
//! same process, on the same backend and threads.

use burn::module::{Module, Param};
use burn::nn::attention::{MhaInput, MultiHeadAttention, MultiHeadAttentionConfig};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Gelu, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, Int, Tensor, TensorData};

#[derive(Module, Debug)]
struct Block<B: Backend> {
    norm1: LayerNorm<B>,
    attn: MultiHeadAttention<B>,
    norm2: LayerNorm<B>,
    fc1: Linear<B>,
    gelu: Gelu,
    fc2: Linear<B>,
}

impl<B: Backend> Block<B> {
    fn new(dim: usize, heads: usize, device: &B::Device) -> Self {
        Self {
            norm1: LayerNormConfig::new(dim).init(device),
            attn: MultiHeadAttentionConfig::new(dim, heads)
                .with_dropout(0.0)
                .init(device),
            norm2: LayerNormConfig::new(dim).init(device),
            fc1: LinearConfig::new(dim, dim * 4).init(device),
            gelu: Gelu::new(),
            fc2: LinearConfig::new(dim * 4, dim).init(device),
        }
    }

    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = self.norm1.forward(x.clone());
        let x = x + self.attn.forward(MhaInput::self_attn(h)).context;
        let h = self.fc2.forward(
            self.gelu
                .forward(self.fc1.forward(self.norm2.forward(x.clone()))),
        );
        x + h
    }
}

/// A class-token ViT with learned positions, built from burn's stock modules.
#[derive(Module, Debug)]
pub struct BareVit<B: Backend> {
    patch: Conv2d<B>,
    cls: Param<Tensor<B, 3>>,
    pos: Param<Tensor<B, 3>>,
    blocks: Vec<Block<B>>,
    norm: LayerNorm<B>,
    head: Linear<B>,
}

impl<B: Backend> BareVit<B> {
    /// `image` px square RGB input cut into `patch` px patches; `depth` blocks of width `dim`.
    pub fn new(
        image: usize,
        patch: usize,
        dim: usize,
        depth: usize,
        heads: usize,
        classes: usize,
        device: &B::Device,
    ) -> Self {
        let tokens = (image / patch).pow(2) + 1;
        let normal = Distribution::Normal(0.0, 0.02);
        Self {
            patch: Conv2dConfig::new([3, dim], [patch, patch])
                .with_stride([patch, patch])
                .init(device),
            cls: Param::from_tensor(Tensor::random([1, 1, dim], normal, device)),
            pos: Param::from_tensor(Tensor::random([1, tokens, dim], normal, device)),
            blocks: (0..depth).map(|_| Block::new(dim, heads, device)).collect(),
            norm: LayerNormConfig::new(dim).init(device),
            head: LinearConfig::new(dim, classes).init(device),
        }
    }

    /// Logits `[batch, classes]` for images `[batch, 3, image, image]`.
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let [b, _, _, _] = images.dims();
        let patches = self.patch.forward(images);
        let [_, d, gh, gw] = patches.dims();
        let patches = patches.reshape([b, d, gh * gw]).swap_dims(1, 2);
        let cls = self.cls.val().expand([b, 1, d]);
        let mut x = Tensor::cat(vec![cls, patches], 1) + self.pos.val();
        for block in &self.blocks {
            x = block.forward(x);
        }
        let x = self.norm.forward(x);
        self.head.forward(x.narrow(1, 0, 1).reshape([b, d]))
    }
}

/// One training step per call: cross-entropy with label smoothing 0.1, burn's AdamW.
pub struct BareTrainer<B: AutodiffBackend> {
    model: Option<BareVit<B>>,
    optim: burn::optim::adaptor::OptimizerAdaptor<burn::optim::AdamW, BareVit<B>, B>,
    targets: Tensor<B, 1, Int>,
}

impl<B: AutodiffBackend> BareTrainer<B> {
    /// A trainer for `model` whose batch labels are `labels`.
    pub fn new(model: BareVit<B>, labels: &[i64], device: &B::Device) -> Self {
        Self {
            model: Some(model),
            optim: AdamWConfig::new().with_weight_decay(0.05).init(),
            targets: Tensor::from_data(TensorData::new(labels.to_vec(), [labels.len()]), device),
        }
    }

    /// Forward, backward and an optimizer step on `images`; waits for the result.
    pub fn step(&mut self, images: Tensor<B, 4>) {
        let model = self.model.take().expect("model");
        let loss = CrossEntropyLossConfig::new()
            .with_smoothing(Some(0.1))
            .init(&images.device())
            .forward(model.forward(images), self.targets.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let model = self.optim.step(1e-3, model, grads);
        let _ = model.cls.val().into_data();
        self.model = Some(model);
    }

    /// The trained model without its autodiff graph, for inference.
    pub fn inference_model(&self) -> BareVit<B::InnerBackend> {
        burn::module::AutodiffModule::valid(self.model.as_ref().expect("model"))
    }
}
