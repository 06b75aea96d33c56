//! Per-pixel logits from the encoder's patch tokens. Segmenter's linear decoder: the model's
//! `head` classifies every patch token and the logits are upsampled bilinearly to the input's
//! size. With the conv decoder (`Vit::decoder`), the patch grid is upsampled to pixel features
//! first and the head classifies each pixel. The grid is read from the input and the patch
//! size, so any image and patch size work.

use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::Tensor;

use crate::kernels::{self, VitKernels};
use crate::model::Vit;

/// Per-pixel class logits `[batch, classes, height, width]` of images `[batch, channels,
/// height, width]`.
pub fn pixel_logits<B: VitKernels>(model: &Vit<B>, images: Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, _, h, w] = images.dims();
    let patch = model.patch_embed.patch_size();
    let (gh, gw) = (h / patch, w / patch);
    let tokens = model.patch_tokens(images);
    if let Some(decoder) = &model.decoder {
        let dim = tokens.dims()[2];
        let features = decoder.forward(tokens.reshape([b, gh, gw, dim]), [h, w]);
        let channels = features.dims()[3];
        let logits = kernels::linear(&model.head, features.reshape([b, h * w, channels]), false);
        let classes = logits.dims()[2];
        return logits.reshape([b, h, w, classes]).permute([0, 3, 1, 2]);
    }
    let logits = kernels::linear(&model.head, tokens, false);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DecoderSpec, VitSpec};
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::Distribution;

    fn spec(patch: usize, size: usize, conv: bool) -> VitSpec {
        VitSpec {
            image_size: size,
            in_channels: 3,
            patch_size: patch,
            conv_stem: Vec::new(),
            conv_stem_pool: false,
            conv_stem_depth: 1,
            conv_stem_batch_norm: false,
            embed_dim: 32,
            depth: 1,
            num_heads: 2,
            mlp_ratio: 2.0,
            num_classes: 4,
            mean_pool: false,
            distilled: false,
            dropout: 0.0,
            attn_dropout: 0.0,
            drop_path: 0.0,
            decoder: if conv {
                DecoderSpec::Conv
            } else {
                DecoderSpec::None
            },
        }
    }

    /// Both decoders give logits at the input's size for power-of-two and other patch sizes,
    /// and every parameter of the conv decoder and head gets a gradient.
    #[test]
    fn both_decoders_give_pixel_logits_and_train() {
        type B = Autodiff<Flex>;
        let device = Default::default();
        for (patch, size, conv) in [(4, 16, false), (4, 16, true), (3, 12, true), (8, 16, true)] {
            let model = spec(patch, size, conv).init::<B>(&device);
            assert_eq!(model.decoder.is_some(), conv);
            let images =
                Tensor::<B, 4>::random([2, 3, size, size], Distribution::Normal(0.0, 1.0), &device);
            let logits = pixel_logits(&model, images);
            assert_eq!(
                logits.dims(),
                [2, 4, size, size],
                "patch {patch}, conv {conv}"
            );
            let grads = logits.powf_scalar(2.0).mean().backward();
            assert!(model.head.weight.grad(&grads).is_some());
            if let Some(decoder) = &model.decoder {
                for stage in &decoder.stages {
                    let g = stage.weight.grad(&grads).expect("each stage trains");
                    assert!(g.abs().sum().into_scalar() > 0.0);
                }
            }
        }
    }
}
