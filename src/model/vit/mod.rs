//! The Vision Transformer, laid out and computed as timm's `VisionTransformer`.

use burn::module::{AutodiffModule, Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::PaddingConfig2d;
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Initializer, LayerNorm, LayerNormConfig,
    Linear, LinearConfig,
};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};

mod filter;
pub mod resample;

use super::backbone::{Arch, Backbone, BackboneShape, Features, Pooled, TimmModel, Trace};
use super::coverage::Coverage;
use super::state_dict::StateDict;
use crate::kernels::{self, TrainBackend, VitKernels};

/// Architecture of a ViT encoder: everything needed to build it, nothing about training or
/// the head on top.
#[derive(Debug, Clone, PartialEq)]
pub struct VitSpec {
    pub image_size: usize,
    pub in_channels: usize,
    pub patch_size: usize,
    /// Output channels of each conv stem stage (each halves the image); empty for the
    /// patchify conv.
    pub conv_stem: Vec<usize>,
    /// Each stem conv keeps the resolution and a 3×3 stride-2 max pool halves it (the compact
    /// convolutional transformer's tokenizer), instead of the conv's own stride 2.
    pub conv_stem_pool: bool,
    /// 3×3 convs per stem stage; the first changes the channels (and strides), the others
    /// keep the channels and the resolution.
    pub conv_stem_depth: usize,
    /// BatchNorm between each stem conv and its ReLU.
    pub conv_stem_batch_norm: bool,
    pub embed_dim: usize,
    pub depth: usize,
    pub num_heads: usize,
    pub mlp_ratio: f64,
    /// Mean-pool the patch tokens (+`fc_norm`) instead of taking the class token.
    pub mean_pool: bool,
    /// DeiT's distillation token and second head.
    pub distilled: bool,
    pub dropout: f64,
    pub attn_dropout: f64,
    pub drop_path: f64,
}

impl VitSpec {
    /// A plain ViT (patchify stem, class token, MLP ratio 2, no dropout) of `embed_dim`,
    /// `depth` blocks and `num_heads` heads on `image_size`-pixel RGB images: the small models
    /// of tests and examples.
    pub fn plain(
        image_size: usize,
        patch_size: usize,
        [embed_dim, depth, num_heads]: [usize; 3],
    ) -> VitSpec {
        VitSpec {
            image_size,
            in_channels: 3,
            patch_size,
            conv_stem: Vec::new(),
            conv_stem_pool: false,
            conv_stem_depth: 1,
            conv_stem_batch_norm: false,
            embed_dim,
            depth,
            num_heads,
            mlp_ratio: 2.0,
            mean_pool: false,
            distilled: false,
            dropout: 0.0,
            attn_dropout: 0.0,
            drop_path: 0.0,
        }
    }

    /// Tokens before the patches (class, and distillation if any).
    pub fn num_prefix_tokens(&self) -> usize {
        1 + usize::from(self.distilled)
    }

    /// Patches per side.
    pub fn grid_size(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Builds the encoder with timm's initialisation, seeded by the backend's RNG.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Vit<B> {
        let d = self.embed_dim;
        let trunc = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        };
        let norm = || {
            LayerNormConfig::new(d)
                .with_epsilon(kernels::NORM_EPS)
                .init(device)
        };
        let tokens = self.grid_size() * self.grid_size() + self.num_prefix_tokens();
        let hidden = (d as f64 * self.mlp_ratio) as usize;
        let blocks = (0..self.depth)
            .map(|i| {
                let rate = if self.depth > 1 {
                    self.drop_path * i as f64 / (self.depth - 1) as f64
                } else {
                    self.drop_path
                };
                Block::new(
                    d,
                    self.num_heads,
                    hidden,
                    [self.dropout, self.attn_dropout, rate],
                    device,
                )
            })
            .collect();
        let token = |std: f64| Initializer::Normal { mean: 0.0, std }.init([1, 1, d], device);
        Vit {
            patch_embed: self.patch_embed(device),
            cls_token: token(1e-6),
            dist_token: self.distilled.then(|| token(0.02)),
            pos_embed: trunc.init([1, tokens, d], device),
            pos_drop: DropoutConfig::new(self.dropout).init(),
            blocks,
            norm: (!self.mean_pool).then(norm),
            fc_norm: self.mean_pool.then(norm),
            embed_dim: d,
            num_heads: self.num_heads,
        }
    }

    /// The patchify conv (kernel = stride = patch size), or the conv stem and its 1×1
    /// projection.
    fn patch_embed<B: Backend>(&self, device: &B::Device) -> PatchEmbed<B> {
        let mut channels = self.in_channels;
        let depth = self.conv_stem_depth.max(1);
        let stem = self
            .conv_stem
            .iter()
            .flat_map(|&out| std::iter::repeat_n(out, depth).enumerate())
            .map(|(index, out)| {
                let stride = if self.conv_stem_pool || index > 0 {
                    1
                } else {
                    2
                };
                let conv = Conv2dConfig::new([channels, out], [3, 3])
                    .with_stride([stride, stride])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init(device);
                channels = out;
                conv
            })
            .collect::<Vec<_>>();
        let stem_norm = stem
            .iter()
            .filter(|_| self.conv_stem_batch_norm)
            .map(|conv| BatchNormConfig::new(conv.weight.dims()[0]).init(device))
            .collect();
        let kernel = if stem.is_empty() { self.patch_size } else { 1 };
        PatchEmbed {
            stem,
            stem_norm,
            stem_pool: self.conv_stem_pool,
            stem_depth: depth,
            proj: Conv2dConfig::new([channels, self.embed_dim], [kernel, kernel])
                .with_stride([kernel, kernel])
                .init(device),
        }
    }
}

impl Arch for VitSpec {
    type Net<B: VitKernels> = Vit<B>;

    fn shape(&self) -> BackboneShape {
        BackboneShape {
            dim: self.embed_dim,
            stride: self.patch_size,
            heads: self.num_heads,
            distilled: self.distilled,
        }
    }

    fn blocks(&self) -> usize {
        self.depth
    }

    fn init<B: VitKernels>(&self, device: &B::Device) -> Vit<B> {
        VitSpec::init(self, device)
    }

    fn valid<B: TrainBackend>(net: &Vit<B>) -> Vit<B::InnerBackend> {
        net.valid()
    }

    fn adapt(&self, sd: StateDict, coverage: &mut Coverage) -> StateDict {
        filter::filter(sd, self, coverage)
    }

    fn misfit(&self, name: &str) -> Option<String> {
        (name == "pos_embed")
            .then(|| "position rows differ and cannot be resampled (not a square grid)".into())
    }

    fn timm_model(&self) -> anyhow::Result<TimmModel> {
        anyhow::ensure!(
            self.conv_stem.is_empty(),
            "vitrun export writes timm's VisionTransformer, which has no conv stem, and this model has model.conv_stem = {:?}; vitrun predict runs it as it is",
            self.conv_stem
        );
        let args = serde_json::json!({
            "img_size": self.image_size,
            "patch_size": self.patch_size,
            "in_chans": self.in_channels,
            "embed_dim": self.embed_dim,
            "depth": self.depth,
            "num_heads": self.num_heads,
            "mlp_ratio": self.mlp_ratio,
            "global_pool": if self.mean_pool { "avg" } else { "token" },
            "fc_norm": self.mean_pool,
            "qkv_bias": true,
        });
        // Any registered ViT's entry point would do: `args` set every size it sets.
        let (architecture, name, classifier) = if self.distilled {
            (
                "VisionTransformerDistilled",
                "deit_tiny_distilled_patch16_224",
                vec!["head".into(), "head_dist".into()],
            )
        } else {
            (
                "VisionTransformer",
                "vit_tiny_patch16_224",
                vec!["head".into()],
            )
        };
        Ok(TimmModel {
            architecture: architecture.into(),
            args: args.as_object().cloned().unwrap_or_default(),
            name: name.into(),
            first_conv: "patch_embed.proj".into(),
            classifier,
        })
    }
}

/// Image → patch tokens: a conv with kernel = stride = patch size, or a conv stem of 3×3
/// convs, each stage halving the image, followed by a 1×1 conv.
#[derive(Module, Debug)]
pub struct PatchEmbed<B: Backend> {
    /// The conv stem, each conv followed by a ReLU; empty for the patchify conv.
    pub stem: Vec<Conv2d<B>>,
    /// The BatchNorm between each stem conv and its ReLU; empty without a stem norm.
    pub stem_norm: Vec<BatchNorm<B>>,
    /// Whether a 3×3 stride-2 max pool ends each stem stage (whose convs then keep the
    /// resolution).
    pub stem_pool: bool,
    /// Convs per stem stage.
    pub stem_depth: usize,
    pub proj: Conv2d<B>,
}

impl<B: VitKernels> PatchEmbed<B> {
    /// Pixels per patch side: the stem's strides times the projection's.
    pub fn patch_size(&self) -> usize {
        let [_, _, kernel, _] = self.proj.weight.dims();
        kernel << (self.stem.len() / self.stem_depth.max(1))
    }

    /// Images `[batch, channels, h, w]` → patch tokens `[batch, patches, dim]`, the grid in
    /// row-major order. The projection is computed as one matrix multiply over the unfolded
    /// patches, so the tokens come out token-major: no transposing copy of them, forward or
    /// backward. Pixels beyond the last whole patch are ignored, as by the strided conv.
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 3> {
        let depth = self.stem_depth.max(1);
        let images = self
            .stem
            .iter()
            .enumerate()
            .fold(images, |x, (index, conv)| {
                let x = match self.stem_norm.get(index) {
                    Some(norm) => kernels::batch_norm(norm, kernels::conv2d(conv, x, false), true),
                    None => kernels::conv2d(conv, x, true),
                };
                if self.stem_pool && (index + 1) % depth == 0 {
                    kernels::max_pool2d(x, 3, 2, 1)
                } else {
                    x
                }
            });
        let [dim, channels, patch, _] = self.proj.weight.dims();
        let [b, _, h, w] = images.dims();
        let (gh, gw) = (h / patch, w / patch);
        let images = if (h, w) == (gh * patch, gw * patch) {
            images
        } else {
            images.narrow(2, 0, gh * patch).narrow(3, 0, gw * patch)
        };
        let unfolded = images
            .reshape([b, channels, gh, patch, gw, patch])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([b * gh * gw, channels * patch * patch]);
        let weight = self
            .proj
            .weight
            .val()
            .reshape([dim, channels * patch * patch])
            .transpose();
        let bias = self.proj.bias.as_ref().map(|bias| bias.val());
        kernels::linear_2d(unfolded, weight, bias, false).reshape([b, gh * gw, dim])
    }
}

/// Multi-head self-attention with a fused qkv projection.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    pub qkv: Linear<B>,
    pub proj: Linear<B>,
    num_heads: usize,
    attn_drop: Dropout,
    proj_drop: Dropout,
}

impl<B: VitKernels> Attention<B> {
    /// `x`: `[batch, tokens, dim]`. With `keep_weights`, also returns the softmax attention
    /// `[batch, heads, tokens, tokens]`.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        keep_weights: bool,
    ) -> (Tensor<B, 3>, Option<Tensor<B, 4>>) {
        let qkv = kernels::linear(&self.qkv, x, false);
        let training = B::ad_enabled(&qkv.device());
        let (context, weights) = if keep_weights || (training && self.attn_drop.prob > 0.0) {
            let [q, k, v] = kernels::composed::split_heads(qkv, self.num_heads);
            let weights = kernels::composed::attention_weights(q, k);
            let context = kernels::composed::attend(self.attn_drop.forward(weights.clone()), v);
            (context, keep_weights.then_some(weights))
        } else {
            (kernels::self_attention(qkv, self.num_heads), None)
        };
        (
            self.proj_drop
                .forward(kernels::linear(&self.proj, context, false)),
            weights,
        )
    }
}

/// The transformer block's feed-forward: Linear → GELU (erf) → Linear.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
    drop: Dropout,
}

impl<B: VitKernels> Mlp<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = self.drop.forward(kernels::linear(&self.fc1, x, true));
        self.drop.forward(kernels::linear(&self.fc2, x, false))
    }
}

/// Pre-norm transformer block with stochastic depth on both residual branches.
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    pub norm1: LayerNorm<B>,
    pub attn: Attention<B>,
    pub norm2: LayerNorm<B>,
    pub mlp: Mlp<B>,
    drop_path: f64,
    /// The norms' epsilon (timm's ViT: 1e-6).
    norm_eps: f64,
}

impl<B: Backend> Block<B> {
    /// A block `dim` wide with `heads` heads and an MLP `hidden` wide, timm's initialisation;
    /// `[dropout, attention dropout, drop-path rate]`.
    pub fn new(
        dim: usize,
        heads: usize,
        hidden: usize,
        rates: [f64; 3],
        device: &B::Device,
    ) -> Block<B> {
        Self::with_norm_eps(dim, heads, hidden, rates, kernels::NORM_EPS, device)
    }

    /// [`Block::new`] with norms of epsilon `norm_eps` (PyTorch's default 1e-5 in Segmenter).
    pub fn with_norm_eps(
        dim: usize,
        heads: usize,
        hidden: usize,
        [dropout, attn_dropout, drop_path]: [f64; 3],
        norm_eps: f64,
        device: &B::Device,
    ) -> Block<B> {
        let linear = |i: usize, o: usize| {
            LinearConfig::new(i, o)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 0.02,
                })
                .init(device)
        };
        let norm = || {
            LayerNormConfig::new(dim)
                .with_epsilon(norm_eps)
                .init(device)
        };
        Block {
            norm1: norm(),
            attn: Attention {
                qkv: linear(dim, 3 * dim),
                proj: linear(dim, dim),
                num_heads: heads,
                attn_drop: DropoutConfig::new(attn_dropout).init(),
                proj_drop: DropoutConfig::new(dropout).init(),
            },
            norm2: norm(),
            mlp: Mlp {
                fc1: linear(dim, hidden),
                fc2: linear(hidden, dim),
                drop: DropoutConfig::new(dropout).init(),
            },
            drop_path,
            norm_eps,
        }
    }
}

impl<B: VitKernels> Block<B> {
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        keep_weights: bool,
    ) -> (Tensor<B, 3>, Option<Tensor<B, 4>>) {
        let (a, weights) = self.attn.forward(
            kernels::layer_norm_eps(&self.norm1, x.clone(), self.norm_eps),
            keep_weights,
        );
        let x = x + self.drop_path(a);
        let m = self.mlp.forward(kernels::layer_norm_eps(
            &self.norm2,
            x.clone(),
            self.norm_eps,
        ));
        (x.clone() + self.drop_path(m), weights)
    }

    /// [`Block::forward`] with `mark` applied to `norm1`'s output before the attention reads it
    /// (Grad-CAM's target layer).
    pub fn forward_marked(
        &self,
        x: Tensor<B, 3>,
        mark: &mut dyn FnMut(Tensor<B, 3>) -> Tensor<B, 3>,
    ) -> Tensor<B, 3> {
        let normed = mark(kernels::layer_norm_eps(
            &self.norm1,
            x.clone(),
            self.norm_eps,
        ));
        let (a, _) = self.attn.forward(normed, false);
        let x = x + self.drop_path(a);
        let m = self.mlp.forward(kernels::layer_norm_eps(
            &self.norm2,
            x.clone(),
            self.norm_eps,
        ));
        x.clone() + self.drop_path(m)
    }

    /// Drops the whole residual branch per sample with probability `drop_path` while training.
    fn drop_path(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        if self.drop_path == 0.0 || !B::ad_enabled(&x.device()) {
            return x;
        }
        let keep = 1.0 - self.drop_path;
        let [b, _, _] = x.dims();
        let mask = Tensor::<B, 3>::random([b, 1, 1], Distribution::Bernoulli(keep), &x.device());
        x * mask.div_scalar(keep)
    }
}

/// A Vision Transformer encoder with timm's parameter names and numerics: everything of
/// timm's `VisionTransformer` but the heads.
#[derive(Module, Debug)]
pub struct Vit<B: Backend> {
    pub patch_embed: PatchEmbed<B>,
    pub cls_token: Param<Tensor<B, 3>>,
    pub dist_token: Option<Param<Tensor<B, 3>>>,
    pub pos_embed: Param<Tensor<B, 3>>,
    pos_drop: Dropout,
    pub blocks: Vec<Block<B>>,
    /// Final norm of the class-token model (timm `norm`).
    pub norm: Option<LayerNorm<B>>,
    /// Norm after mean pooling (timm `fc_norm`).
    pub fc_norm: Option<LayerNorm<B>>,
    embed_dim: usize,
    num_heads: usize,
}

impl<B: VitKernels> Vit<B> {
    /// Images `[batch, channels, h, w]` → tokens with prefix tokens and positions added.
    pub fn embed(&self, images: Tensor<B, 4>) -> Tensor<B, 3> {
        let patches = self.patch_embed.forward(images);
        let [b, _, d] = patches.dims();
        let mut parts = vec![self.cls_token.val().expand([b, 1, d])];
        if let Some(dist) = &self.dist_token {
            parts.push(dist.val().expand([b, 1, d]));
        }
        parts.push(patches);
        let tokens = Tensor::cat(parts, 1) + self.pos_embed.val();
        self.pos_drop.forward(tokens)
    }

    fn prefix_tokens(&self) -> usize {
        1 + usize::from(self.dist_token.is_some())
    }

    /// Tokens through every block, with the blocks' attention weights when `keep_weights`.
    fn encode(
        &self,
        tokens: Tensor<B, 3>,
        keep_weights: bool,
    ) -> (Tensor<B, 3>, Vec<Tensor<B, 4>>) {
        let mut x = tokens;
        let mut attentions = Vec::new();
        for block in &self.blocks {
            let (y, w) = block.forward(x, keep_weights);
            x = y;
            attentions.extend(w);
        }
        (x, attentions)
    }

    /// The features of `images` with the patch tokens after each of `blocks` (numbered from
    /// 1), and `mark` applied to the last block's `norm1` output when given.
    fn encode_tapped(
        &self,
        images: Tensor<B, 4>,
        blocks: &[usize],
        mut mark: Option<&mut dyn FnMut(Tensor<B, 3>) -> Tensor<B, 3>>,
    ) -> (Features<B>, Vec<Tensor<B, 3>>) {
        let grid = self.grid(&images);
        let prefix = self.prefix_tokens();
        let mut x = self.embed(images);
        let mut taps = vec![None; blocks.len()];
        let last = self.blocks.len().saturating_sub(1);
        for (i, block) in self.blocks.iter().enumerate() {
            x = match mark.as_deref_mut() {
                Some(mark) if i == last => block.forward_marked(x, mark),
                _ => block.forward(x, false).0,
            };
            for (tap, _) in taps.iter_mut().zip(blocks).filter(|(_, &b)| b == i + 1) {
                let [_, n, _] = x.dims();
                *tap = Some(x.clone().narrow(1, prefix, n - prefix));
            }
        }
        let features = Features {
            tokens: self.normed(x),
            prefix,
            grid,
        };
        (features, taps.into_iter().flatten().collect())
    }

    /// The patch grid of images `[batch, channels, h, w]`.
    fn grid(&self, images: &Tensor<B, 4>) -> [usize; 2] {
        let [_, _, h, w] = images.dims();
        let patch = self.patch_embed.patch_size();
        [h / patch, w / patch]
    }

    /// Blocks' output after the final norm (timm's `norm`; a mean-pooling model has
    /// `fc_norm` instead, applied after pooling).
    fn normed(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.norm {
            Some(norm) => kernels::layer_norm(norm, x),
            None => x,
        }
    }
}

impl<B: VitKernels> Backbone<B> for Vit<B> {
    fn shape(&self) -> BackboneShape {
        BackboneShape {
            dim: self.embed_dim,
            stride: self.patch_embed.patch_size(),
            heads: self.num_heads,
            distilled: self.dist_token.is_some(),
        }
    }

    fn forward_features(&self, images: Tensor<B, 4>) -> Features<B> {
        let grid = self.grid(&images);
        let (x, _) = self.encode(self.embed(images), false);
        Features {
            tokens: self.normed(x),
            prefix: self.prefix_tokens(),
            grid,
        }
    }

    /// The class (and distillation) token, or the mean of the patch tokens under `fc_norm`.
    fn pool(&self, features: Features<B>) -> Pooled<B> {
        let Features { tokens, prefix, .. } = features;
        let [b, n, d] = tokens.dims();
        match &self.fc_norm {
            Some(fc_norm) => {
                let pooled = tokens
                    .narrow(1, prefix, n - prefix)
                    .mean_dim(1)
                    .reshape([b, d]);
                Pooled {
                    features: kernels::layer_norm(fc_norm, pooled),
                    dist: None,
                }
            }
            None => Pooled {
                features: tokens.clone().narrow(1, 0, 1).reshape([b, d]),
                dist: (prefix > 1).then(|| tokens.narrow(1, 1, 1).reshape([b, d])),
            },
        }
    }

    /// The patch tokens, normed: a mean-pooling model normalises each with its `fc_norm`, as
    /// Segmenter applies the encoder's last norm.
    fn dense(&self, features: Features<B>) -> (Tensor<B, 3>, [usize; 2]) {
        let Features {
            tokens,
            prefix,
            grid,
        } = features;
        let [_, n, _] = tokens.dims();
        let patches = tokens.narrow(1, prefix, n - prefix);
        let patches = match &self.fc_norm {
            Some(fc_norm) => kernels::layer_norm(fc_norm, patches),
            None => patches,
        };
        (patches, grid)
    }

    fn forward_taps(
        &self,
        images: Tensor<B, 4>,
        blocks: &[usize],
    ) -> (Features<B>, Vec<Tensor<B, 3>>) {
        self.encode_tapped(images, blocks, None)
    }

    fn forward_marked(
        &self,
        images: Tensor<B, 4>,
        blocks: &[usize],
        mark: &mut dyn FnMut(Tensor<B, 3>) -> Tensor<B, 3>,
    ) -> Option<(Features<B>, Vec<Tensor<B, 3>>)> {
        Some(self.encode_tapped(images, blocks, Some(mark)))
    }

    fn trace(&self, images: Tensor<B, 4>) -> Trace<B> {
        let grid = self.grid(&images);
        let tokens = self.embed(images);
        let (x, attentions) = self.encode(tokens.clone(), true);
        let prefix = self.prefix_tokens();
        let pooled = self.pool(Features {
            tokens: self.normed(x),
            prefix,
            grid,
        });
        Trace {
            tokens,
            attentions,
            prefix,
            grid,
            pooled,
        }
    }
}
