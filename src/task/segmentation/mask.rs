//! Segmenter's mask transformer (Strudel et al. 2021, `rstrudel/segmenter`'s `MaskTransformer`):
//! the patch tokens, projected to the decoder's width, and one learnable embedding per class go
//! through `layers` transformer blocks together; the class embeddings and the patches are each
//! projected and L2-normalised, and each patch's mask logit for a class is their dot product,
//! centred over the classes and tempered ([`centred`], the default) or layer-normed over them
//! (Segmenter's `mask_norm`, `head.mask_norm = "segmenter"`). The grid of logits is upsampled
//! bilinearly to the input.
//! Names follow Segmenter's (`proj_dec`, `cls_emb`, `blocks`, `decoder_norm`, `proj_patch`,
//! `proj_classes`, `mask_norm`).

use burn::module::{Module, Param};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::config::MaskNorm;
use crate::kernels::{self, VitKernels};
use crate::model::Block;

/// The epsilon of Segmenter's norms (PyTorch's `nn.LayerNorm` default).
const NORM_EPS: f64 = 1e-5;

/// The temperature of the tempered cosine scores (see [`centred`]).
pub const TEMPERATURE: f64 = 0.07;

/// Segmenter's decoder of patch tokens into class masks.
#[derive(Module, Debug)]
pub struct MaskTransformer<B: Backend> {
    pub proj_dec: Linear<B>,
    /// One embedding per class, `[1, classes, dim]`.
    pub cls_emb: Param<Tensor<B, 3>>,
    pub blocks: Vec<Block<B>>,
    pub decoder_norm: LayerNorm<B>,
    /// `[dim, dim]`, applied as `patches @ proj_patch`.
    pub proj_patch: Param<Tensor<B, 2>>,
    /// `[dim, dim]`, applied as `classes @ proj_classes`.
    pub proj_classes: Param<Tensor<B, 2>>,
    pub mask_norm: LayerNorm<B>,
    /// Whether `mask_norm` scales centred, tempered scores ([`centred`]) rather than
    /// standardising them (Segmenter's).
    tempered: bool,
}

/// The sizes of a [`MaskTransformer`], and how it scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskShape {
    /// The encoder's width.
    pub encoder_dim: usize,
    /// The decoder's width (Segmenter: the encoder's).
    pub dim: usize,
    pub heads: usize,
    pub layers: usize,
    pub classes: usize,
    pub norm: MaskNorm,
}

impl<B: Backend> MaskTransformer<B> {
    /// A decoder of `shape` with Segmenter's initialisation: linear weights and class
    /// embeddings N(0, 0.02), the two projections `dim^-½ · N(0, 1)`, norms at 1 and 0.
    pub fn new(shape: MaskShape, device: &B::Device) -> Self {
        let MaskShape {
            encoder_dim,
            dim,
            heads,
            layers,
            classes,
            norm: mask_norm,
        } = shape;
        let normal = |std: f64| Initializer::Normal { mean: 0.0, std };
        let norm = |width: usize| {
            LayerNormConfig::new(width)
                .with_epsilon(NORM_EPS)
                .init(device)
        };
        let scale = (dim as f64).powf(-0.5);
        MaskTransformer {
            proj_dec: LinearConfig::new(encoder_dim, dim)
                .with_initializer(normal(0.02))
                .init(device),
            cls_emb: normal(0.02).init([1, classes, dim], device),
            blocks: (0..layers)
                .map(|_| Block::with_norm_eps(dim, heads, 4 * dim, [0.0; 3], NORM_EPS, device))
                .collect(),
            decoder_norm: norm(dim),
            proj_patch: normal(scale).init([dim, dim], device),
            proj_classes: normal(scale).init([dim, dim], device),
            mask_norm: norm(classes),
            tempered: mask_norm == MaskNorm::Tempered,
        }
    }
}

impl<B: VitKernels> MaskTransformer<B> {
    /// Patch tokens `[batch, rows·columns, encoder dim]` on `grid` → mask logits `[batch,
    /// classes, rows, columns]`.
    pub fn forward(&self, patches: Tensor<B, 3>, grid: [usize; 2]) -> Tensor<B, 4> {
        let [b, n, _] = patches.dims();
        let [_, classes, dim] = self.cls_emb.dims();
        let x = kernels::linear(&self.proj_dec, patches, false);
        let class_tokens = self.cls_emb.val().expand([b, classes, dim]);
        let mut x = Tensor::cat(vec![x, class_tokens], 1);
        for block in &self.blocks {
            x = block.forward(x, false).0;
        }
        let x = kernels::layer_norm_eps(&self.decoder_norm, x, NORM_EPS);
        let patch_features = x
            .clone()
            .narrow(1, 0, n)
            .matmul(self.proj_patch.val().unsqueeze());
        let class_features = x
            .narrow(1, n, classes)
            .matmul(self.proj_classes.val().unsqueeze());
        let masks =
            l2_normalised(patch_features).matmul(l2_normalised(class_features).swap_dims(1, 2));
        let masks = if self.tempered {
            centred(&self.mask_norm, masks)
        } else {
            kernels::layer_norm_eps(&self.mask_norm, masks, NORM_EPS)
        };
        masks
            .reshape([b, grid[0], grid[1], classes])
            .permute([0, 3, 1, 2])
    }
}

/// `mask_norm` without the division by the spread. Standardising K scores bounds the logits by
/// ±√(K − 1) whatever the margin: for two classes only the sign of their difference is left
/// (±1) and its gradient vanishes, and on six classes from scratch the decoder stayed at the
/// class prior. Each patch's scores (cosines) are centred, divided by CLIP's temperature 0.07
/// (what the spread does for Segmenter's 150 classes: cosines a few tenths apart become
/// confident logits), then scaled and shifted by the norm's weight and bias.
fn centred<B: Backend>(mask_norm: &LayerNorm<B>, masks: Tensor<B, 3>) -> Tensor<B, 3> {
    let mean = masks.clone().mean_dim(2);
    let weight = mask_norm.gamma.val().unsqueeze::<3>();
    let centred = (masks - mean).div_scalar(TEMPERATURE) * weight;
    match &mask_norm.beta {
        Some(bias) => centred + bias.val().unsqueeze::<3>(),
        None => centred,
    }
}

/// `x` divided by its L2 norm along the last axis (PyTorch's `x / x.norm(dim=-1,
/// keepdim=True)`; a tiny floor keeps a zero row finite).
fn l2_normalised<B: Backend>(x: Tensor<B, 3>) -> Tensor<B, 3> {
    let norm = x
        .clone()
        .powf_scalar(2.0)
        .sum_dim(2)
        .sqrt()
        .clamp_min(1e-12);
    x / norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{apply_state_dict, read_state_dict};
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    /// With the weights of `scripts/make_segmenter_fixture.py`'s PyTorch module (Segmenter's
    /// `MaskTransformer`), the decoder gives its masks on a 3×4 grid.
    #[test]
    fn masks_match_segmenters_mask_transformer() {
        let file = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/segmenter/mask_transformer.safetensors"
        );
        let mut sd = read_state_dict(std::path::Path::new(file)).unwrap();
        let input = sd.remove("input.patches").unwrap();
        let expected = sd.remove("output.masks").unwrap();
        let device = Default::default();
        let shape = MaskShape {
            encoder_dim: 24,
            dim: 16,
            heads: 2,
            layers: 2,
            classes: 3,
            norm: MaskNorm::Segmenter,
        };
        let decoder = apply_state_dict(
            MaskTransformer::<Flex>::new(shape, &device),
            &sd,
            file,
            &device,
        )
        .unwrap();
        let patches =
            Tensor::<Flex, 3>::from_data(TensorData::new(input.data, [2, 12, 24]), &device);
        let masks = decoder.forward(patches, [3, 4]);
        assert_eq!(masks.dims().to_vec(), expected.shape);
        let ours = masks.into_data().to_vec::<f32>().unwrap();
        let worst = ours
            .iter()
            .zip(&expected.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        eprintln!("mask transformer vs Segmenter: largest difference {worst:.2e}");
        assert!(worst < 1e-4, "largest difference {worst}");
    }
}
