//! Segmenter's linear decoder: the model's `head` classifies every patch token, and the
//! per-patch logits are upsampled bilinearly to the input's size. The patch grid is read from
//! the input and the patch size, so any image and patch size work.

use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::Tensor;

use crate::kernels::VitKernels;
use crate::model::Vit;

/// Per-pixel class logits `[batch, classes, height, width]` of images `[batch, channels,
/// height, width]`.
pub fn pixel_logits<B: VitKernels>(model: &Vit<B>, images: Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, _, h, w] = images.dims();
    let [_, _, patch, _] = model.patch_embed.proj.weight.dims();
    let (gh, gw) = (h / patch, w / patch);
    let tokens = model.patch_tokens(images);
    let logits = model.head.forward(tokens);
    let classes = logits.dims()[2];
    let grid = logits.reshape([b, gh, gw, classes]).permute([0, 3, 1, 2]);
    interpolate(
        grid,
        [h, w],
        InterpolateOptions {
            mode: InterpolateMode::Bilinear,
            align_corners: false,
        },
    )
}
