//! Segmentation's head on the backbone's dense features: Segmenter's linear decoder (the head
//! classifies every patch token and the logits are upsampled bilinearly to the input's size),
//! or the progressive transposed-conv decoder (`head.decoder = "conv"`), which upsamples the
//! patch grid to pixel features that the head classifies. The grid comes from the backbone,
//! so any image and patch size work.

use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::Tensor;

use super::decoder::ConvDecoder;
use crate::kernels::{self, VitKernels};
use crate::model::{Backbone, BackboneShape, Model};

/// The classifier of each patch or pixel (`head`), and the conv decoder when there is one
/// (`decoder`).
#[derive(Module, Debug)]
pub struct SegmentationHead<B: Backend> {
    pub head: Linear<B>,
    pub decoder: Option<ConvDecoder<B>>,
}

impl<B: Backend> SegmentationHead<B> {
    /// A head of `classes` outputs on a backbone of `shape`, with the conv decoder when `conv`.
    pub fn new(shape: BackboneShape, classes: usize, conv: bool, device: &B::Device) -> Self {
        let inputs = if conv {
            ConvDecoder::<B>::out_channels(shape.dim, shape.stride)
        } else {
            shape.dim
        };
        SegmentationHead {
            head: LinearConfig::new(inputs, classes)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 0.02,
                })
                .init(device),
            decoder: conv.then(|| ConvDecoder::new(shape.dim, shape.stride, device)),
        }
    }
}

/// Per-pixel class logits `[batch, classes, height, width]` of images `[batch, channels,
/// height, width]`.
pub fn pixel_logits<B: VitKernels, E: Backbone<B>>(
    model: &Model<B, E, SegmentationHead<B>>,
    images: Tensor<B, 4>,
) -> Tensor<B, 4> {
    let [b, _, h, w] = images.dims();
    let encoder = &model.encoder;
    let (tokens, [gh, gw]) = encoder.dense(encoder.forward_features(images));
    let head = &model.head;
    if let Some(decoder) = &head.decoder {
        let dim = tokens.dims()[2];
        let features = decoder.forward(tokens.reshape([b, gh, gw, dim]), [h, w]);
        let channels = features.dims()[3];
        let logits = kernels::linear(&head.head, features.reshape([b, h * w, channels]), false);
        let classes = logits.dims()[2];
        return logits.reshape([b, h, w, classes]).permute([0, 3, 1, 2]);
    }
    let logits = kernels::linear(&head.head, tokens, false);
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
    use crate::model::{Arch, VitSpec};
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::Distribution;

    fn spec(patch: usize, size: usize) -> VitSpec {
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
            mean_pool: false,
            distilled: false,
            dropout: 0.0,
            attn_dropout: 0.0,
            drop_path: 0.0,
        }
    }

    /// Both decoders give logits at the input's size for power-of-two and other patch sizes,
    /// and every parameter of the conv decoder and head gets a gradient.
    #[test]
    fn both_decoders_give_pixel_logits_and_train() {
        type B = Autodiff<Flex>;
        let device = Default::default();
        for (patch, size, conv) in [(4, 16, false), (4, 16, true), (3, 12, true), (8, 16, true)] {
            let spec = spec(patch, size);
            let head = SegmentationHead::new(spec.shape(), 4, conv, &device);
            let model = Model::new(Arch::init::<B>(&spec, &device), head);
            assert_eq!(model.head.decoder.is_some(), conv);
            let images =
                Tensor::<B, 4>::random([2, 3, size, size], Distribution::Normal(0.0, 1.0), &device);
            let logits = pixel_logits(&model, images);
            assert_eq!(
                logits.dims(),
                [2, 4, size, size],
                "patch {patch}, conv {conv}"
            );
            let grads = logits.powf_scalar(2.0).mean().backward();
            assert!(model.head.head.weight.grad(&grads).is_some());
            if let Some(decoder) = &model.head.decoder {
                for stage in &decoder.stages {
                    let g = stage.weight.grad(&grads).expect("each stage trains");
                    assert!(g.abs().sum().into_scalar() > 0.0);
                }
            }
        }
    }
}
