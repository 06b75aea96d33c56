//! The tutorial's progressive decoder for segmentation: the patch grid is upsampled ×2 per
//! stage by transposed convolutions (kernel 2, stride 2, GELU), halving the channels, until it
//! is within a factor 2 of the input; bilinear interpolation covers what is left, so any image
//! and patch size work. The model's `head` then classifies each pixel's features.

use burn::module::Module;
use burn::nn::conv::{ConvTranspose2d, ConvTranspose2dConfig};
use burn::tensor::backend::Backend;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::Tensor;

use crate::kernels::{self, VitKernels};

/// Fewest channels a stage narrows to.
const MIN_CHANNELS: usize = 16;

/// Upsampling stages from the patch grid toward the input's resolution.
#[derive(Module, Debug)]
pub struct ConvDecoder<B: Backend> {
    pub stages: Vec<ConvTranspose2d<B>>,
}

/// The stages' `(in, out)` channels for a ViT of width `dim` with `patch`-pixel patches:
/// ⌊log₂ patch⌋ stages, each halving the channels (not below 16).
pub fn stage_channels(dim: usize, patch: usize) -> Vec<(usize, usize)> {
    let stages = crate::config::upsampling_stages(patch);
    let mut channels = dim;
    (0..stages)
        .map(|_| {
            let next = (channels / 2).max(MIN_CHANNELS);
            let pair = (channels, next);
            channels = next;
            pair
        })
        .collect()
}

impl<B: Backend> ConvDecoder<B> {
    /// The decoder of a ViT of width `dim` with `patch`-pixel patches.
    pub fn new(dim: usize, patch: usize, device: &B::Device) -> Self {
        ConvDecoder {
            stages: stage_channels(dim, patch)
                .into_iter()
                .map(|(i, o)| {
                    ConvTranspose2dConfig::new([i, o], [2, 2])
                        .with_stride([2, 2])
                        .init(device)
                })
                .collect(),
        }
    }

    /// Channels of the features it gives the head.
    pub fn out_channels(dim: usize, patch: usize) -> usize {
        stage_channels(dim, patch).last().map_or(dim, |&(_, o)| o)
    }
}

impl<B: VitKernels> ConvDecoder<B> {
    /// Grid features `[batch, gh, gw, dim]` → pixel features `[batch, height, width,
    /// channels]`, channels last throughout, each stage by [`upsample_cells`].
    pub fn forward(&self, grid: Tensor<B, 4>, size: [usize; 2]) -> Tensor<B, 4> {
        let mut x = grid;
        for stage in &self.stages {
            x = upsample_cells(stage, x);
        }
        let [_, h, w, _] = x.dims();
        if [h, w] == size {
            return x;
        }
        let resized = interpolate(
            x.permute([0, 3, 1, 2]),
            size,
            InterpolateOptions {
                mode: InterpolateMode::Bilinear,
                align_corners: false,
            },
        );
        resized.permute([0, 2, 3, 1])
    }
}

/// A kernel-2, stride-2 transposed convolution and GELU on channels-last features `[batch,
/// rows, columns, in]` → `[batch, 2·rows, 2·columns, out]`. Such a convolution maps each cell
/// to its own 2×2 block, so it runs as one matrix multiply (every cell's features by the
/// kernel as `[in, out·2·2]`) and a depth-to-space reshuffle.
pub fn upsample_cells<B: VitKernels>(stage: &ConvTranspose2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, h, w, c_in] = x.dims();
    let [_, c_out, _, _] = stage.weight.dims();
    // Columns ordered (ky, kx, out), so the reshuffle moves whole feature vectors.
    let kernel = stage
        .weight
        .val()
        .permute([0, 2, 3, 1])
        .reshape([c_in, 4 * c_out]);
    let bias = stage.bias.as_ref().map(|bias| {
        bias.val()
            .reshape([1, c_out])
            .repeat_dim(0, 4)
            .reshape([4 * c_out])
    });
    let cells = kernels::linear_2d(x.reshape([b * h * w, c_in]), kernel, bias, true);
    cells
        .reshape([b, h, w, 2, 2, c_out])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([b, 2 * h, 2 * w, c_out])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_follow_the_patch_size() {
        assert_eq!(stage_channels(128, 8), vec![(128, 64), (64, 32), (32, 16)]);
        assert_eq!(stage_channels(192, 16).len(), 4);
        assert_eq!(
            stage_channels(96, 7),
            vec![(96, 48), (48, 24)],
            "×4, then bilinear ×1.75"
        );
        assert_eq!(stage_channels(64, 1), vec![]);
        assert_eq!(ConvDecoder::<burn::backend::Flex>::out_channels(64, 16), 16);
    }
}

#[cfg(test)]
mod equivalence {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::activation::gelu;
    use burn::tensor::Distribution;

    /// The matrix-multiply stage equals burn's transposed convolution with the same weights.
    #[test]
    fn a_stage_equals_the_transposed_convolution() {
        let device = Default::default();
        let decoder = ConvDecoder::<Flex>::new(8, 2, &device);
        let grid = Tensor::<Flex, 4>::random([2, 3, 5, 8], Distribution::Normal(0.0, 1.0), &device);
        let ours = decoder.forward(grid.clone(), [6, 10]);
        let stage = &decoder.stages[0];
        let reference = gelu(stage.forward(grid.permute([0, 3, 1, 2]))).permute([0, 2, 3, 1]);
        let diff = (ours - reference).abs().max().into_scalar();
        assert!(diff < 1e-5, "max difference {diff}");
    }
}
