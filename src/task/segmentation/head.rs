//! Segmentation's head on the backbone's dense features, with one of four decoders
//! (`head.decoder`): Segmenter's linear decoder (the head classifies every patch token and the
//! logits are upsampled bilinearly to the input's size); the progressive transposed-conv
//! decoder (`conv`), which upsamples the patch grid to pixel features that the head
//! classifies; Segmenter's mask transformer (`mask`); or the U-Net decoder with skip
//! connections from encoder blocks (`unet`). The grid comes from the backbone, so any image
//! and patch size work.

use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::Tensor;

use super::decoder::ConvDecoder;
use super::mask::{MaskShape, MaskTransformer};
use super::unet::UnetDecoder;
use crate::config::MaskNorm;
use crate::kernels::{self, VitKernels};
use crate::model::{Backbone, BackboneShape, Features, Model};

/// The decoder between the backbone and the per-pixel classes. Checkpoints name its weights
/// `decoder.…` whichever it is (the variant is not part of the name, as in PyTorch).
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // one per model, built once: boxing buys nothing
pub enum PixelDecoder<B: Backend> {
    Conv(ConvDecoder<B>),
    Mask(MaskTransformer<B>),
    Unet(UnetDecoder<B>),
}

/// Which decoder a [`SegmentationHead`] has, with what sizes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecoderChoice {
    Linear,
    Conv,
    /// Segmenter's mask transformer with this many layers, scoring as `norm` says.
    Mask {
        layers: usize,
        norm: MaskNorm,
    },
    /// The U-Net decoder tapping these blocks (numbered from 1, the deepest first), on images
    /// of this many channels.
    Unet {
        skip_blocks: Vec<usize>,
        channels: usize,
    },
}

/// The classifier of each patch or pixel (`head`; the mask transformer classifies by itself),
/// and the decoder when it is not the linear one.
#[derive(Module, Debug)]
pub struct SegmentationHead<B: Backend> {
    pub head: Option<Linear<B>>,
    pub decoder: Option<PixelDecoder<B>>,
    /// The encoder blocks the U-Net decoder taps, the deepest first.
    skip_blocks: Vec<usize>,
}

impl<B: Backend> SegmentationHead<B> {
    /// A head of `classes` outputs on a backbone of `shape`, with the decoder `choice`.
    pub fn new(
        shape: BackboneShape,
        classes: usize,
        choice: &DecoderChoice,
        device: &B::Device,
    ) -> Self {
        let (dim, patch) = (shape.dim, shape.stride);
        let classifier = |inputs: usize| {
            LinearConfig::new(inputs, classes)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 0.02,
                })
                .init(device)
        };
        let (head, decoder, skip_blocks) = match choice {
            DecoderChoice::Linear => (Some(classifier(dim)), None, Vec::new()),
            DecoderChoice::Conv => (
                Some(classifier(ConvDecoder::<B>::out_channels(dim, patch))),
                Some(PixelDecoder::Conv(ConvDecoder::new(dim, patch, device))),
                Vec::new(),
            ),
            DecoderChoice::Mask { layers, norm } => {
                let mask = MaskShape {
                    encoder_dim: dim,
                    dim,
                    heads: shape.heads,
                    layers: *layers,
                    classes,
                    norm: *norm,
                };
                let decoder = PixelDecoder::Mask(MaskTransformer::new(mask, device));
                (None, Some(decoder), Vec::new())
            }
            DecoderChoice::Unet {
                skip_blocks,
                channels,
            } => {
                let unet = UnetDecoder::new(dim, patch, *channels, skip_blocks.len(), device);
                (
                    Some(classifier(UnetDecoder::<B>::out_channels(dim, patch))),
                    Some(PixelDecoder::Unet(unet)),
                    skip_blocks.clone(),
                )
            }
        };
        SegmentationHead {
            head,
            decoder,
            skip_blocks,
        }
    }
}

fn bilinear<B: Backend>(x: Tensor<B, 4>, size: [usize; 2]) -> Tensor<B, 4> {
    interpolate(
        x,
        size,
        InterpolateOptions {
            mode: InterpolateMode::Bilinear,
            align_corners: false,
        },
    )
}

/// Per-pixel class logits `[batch, classes, height, width]` of pixel features `[batch,
/// height, width, channels]`, by the head.
fn classify<B: VitKernels>(head: &Linear<B>, features: Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, h, w, channels] = features.dims();
    let logits = kernels::linear(head, features.reshape([b, h * w, channels]), false);
    let classes = logits.dims()[2];
    logits.reshape([b, h, w, classes]).permute([0, 3, 1, 2])
}

/// Per-pixel class logits `[batch, classes, height, width]` of images `[batch, channels,
/// height, width]`.
pub fn pixel_logits<B: VitKernels, E: Backbone<B>>(
    model: &Model<B, E, SegmentationHead<B>>,
    images: Tensor<B, 4>,
) -> Tensor<B, 4> {
    let (features, taps) = model
        .encoder
        .forward_taps(images.clone(), &model.head.skip_blocks);
    decode(model, features, taps, images)
}

/// The encoder blocks the head's decoder taps (for [`decode`]).
pub fn skip_blocks<B: Backend>(head: &SegmentationHead<B>) -> &[usize] {
    &head.skip_blocks
}

/// Per-pixel class logits of `images` from the encoder's `features` and the taps of the
/// head's skip blocks.
pub fn decode<B: VitKernels, E: Backbone<B>>(
    model: &Model<B, E, SegmentationHead<B>>,
    features: Features<B>,
    taps: Vec<Tensor<B, 3>>,
    images: Tensor<B, 4>,
) -> Tensor<B, 4> {
    let [b, _, h, w] = images.dims();
    let head = &model.head;
    let (tokens, [gh, gw]) = model.encoder.dense(features);
    let dim = tokens.dims()[2];
    let as_grid = |t: Tensor<B, 3>| t.reshape([b, gh, gw, dim]);
    let classifier = || {
        head.head
            .as_ref()
            .expect("every decoder but the mask transformer has a classifier")
    };
    match &head.decoder {
        None => {
            let grid = classify(classifier(), as_grid(tokens));
            bilinear(grid, [h, w])
        }
        Some(PixelDecoder::Conv(decoder)) => {
            classify(classifier(), decoder.forward(as_grid(tokens), [h, w]))
        }
        Some(PixelDecoder::Mask(decoder)) => bilinear(decoder.forward(tokens, [gh, gw]), [h, w]),
        Some(PixelDecoder::Unet(decoder)) => {
            let taps = taps.into_iter().map(as_grid).collect();
            classify(classifier(), decoder.forward(as_grid(tokens), taps, images))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Arch, VitSpec};
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::backend::AutodiffBackend;
    use burn::tensor::Distribution;

    fn spec(patch: usize, size: usize) -> VitSpec {
        VitSpec::plain(size, patch, [32, 2, 2])
    }

    /// Every decoder gives logits at the input's size for power-of-two and other patch sizes
    /// and odd patch grids (the U-Net at 5×5 and at 4×4 under an 18-pixel image), and every
    /// parameter of the decoder and head gets a gradient.
    #[test]
    fn every_decoder_gives_pixel_logits_and_trains() {
        type B = Autodiff<Flex>;
        let device = Default::default();
        let unet = |skip_blocks: Vec<usize>| DecoderChoice::Unet {
            skip_blocks,
            channels: 3,
        };
        let cases = [
            (4, 16, DecoderChoice::Linear),
            (4, 16, DecoderChoice::Conv),
            (3, 12, DecoderChoice::Conv),
            (8, 16, DecoderChoice::Conv),
            (
                4,
                16,
                DecoderChoice::Mask {
                    layers: 2,
                    norm: MaskNorm::Segmenter,
                },
            ),
            (
                3,
                12,
                DecoderChoice::Mask {
                    layers: 1,
                    norm: MaskNorm::Tempered,
                },
            ),
            (4, 20, unet(vec![2, 1])),
            (4, 18, unet(vec![2])),
            (8, 16, unet(vec![2, 1, 1])),
            (3, 12, unet(Vec::new())),
        ];
        for (patch, size, choice) in cases {
            let spec = spec(patch, size);
            let head = SegmentationHead::new(spec.shape(), 4, &choice, &device);
            let model = Model::new(Arch::init::<B>(&spec, &device), head);
            let images =
                Tensor::<B, 4>::random([2, 3, size, size], Distribution::Normal(0.0, 1.0), &device);
            let logits = pixel_logits(&model, images);
            assert_eq!(
                logits.dims(),
                [2, 4, size, size],
                "patch {patch}, {choice:?}"
            );
            let grads = logits.powf_scalar(2.0).mean().backward();
            let mut untrained = Vec::new();
            let mut visitor = GradCheck {
                grads: &grads,
                untrained: &mut untrained,
            };
            model.head.visit(&mut visitor);
            assert!(
                untrained.is_empty(),
                "{choice:?}: no gradient for {untrained:?}"
            );
        }
    }

    /// Checkpoints name each decoder's weights `decoder.…` (Segmenter's names for the mask
    /// transformer, the conv decoder's as before), and a model's state dict loads back into a
    /// fresh one of the same decoder, giving the same logits.
    #[test]
    fn decoders_are_named_as_in_pytorch_and_round_trip() {
        use crate::model::{apply_state_dict, state_dict, timm_names};
        let device = Default::default();
        let spec = spec(4, 16);
        let expect = [
            (
                DecoderChoice::Conv,
                vec![
                    "head.weight",
                    "decoder.stages.0.weight",
                    "decoder.stages.1.bias",
                ],
            ),
            (
                DecoderChoice::Mask {
                    layers: 2,
                    norm: MaskNorm::Tempered,
                },
                vec![
                    "decoder.proj_dec.weight",
                    "decoder.cls_emb",
                    "decoder.blocks.1.attn.qkv.weight",
                    "decoder.decoder_norm.weight",
                    "decoder.proj_patch",
                    "decoder.proj_classes",
                    "decoder.mask_norm.bias",
                ],
            ),
            (
                DecoderChoice::Unet {
                    skip_blocks: vec![2, 1],
                    channels: 3,
                },
                vec![
                    "head.weight",
                    "decoder.up.1.weight",
                    "decoder.skips.1.1.weight",
                    "decoder.fuse.0.weight",
                    "decoder.stem.weight",
                    "decoder.out.bias",
                ],
            ),
        ];
        for (choice, names) in expect {
            let model = Model::new(
                Arch::init::<Flex>(&spec, &device),
                SegmentationHead::new(spec.shape(), 3, &choice, &device),
            );
            let all = timm_names(&model);
            for name in &names {
                assert!(
                    all.contains(&name.to_string()),
                    "{choice:?}: {name} in {all:?}"
                );
            }
            assert_eq!(
                all.contains(&"head.weight".to_string()),
                !matches!(choice, DecoderChoice::Mask { .. })
            );
            let fresh = Model::new(
                Arch::init::<Flex>(&spec, &device),
                SegmentationHead::new(spec.shape(), 3, &choice, &device),
            );
            let loaded = apply_state_dict(fresh, &state_dict(&model), "test", &device).unwrap();
            let images =
                Tensor::<Flex, 4>::random([1, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
            let diff = (pixel_logits(&model, images.clone()) - pixel_logits(&loaded, images))
                .abs()
                .max()
                .into_scalar();
            assert_eq!(diff, 0.0, "{choice:?}");
        }
    }

    /// Collects the parameters without a non-zero gradient.
    struct GradCheck<'a> {
        grads: &'a <B as AutodiffBackend>::Gradients,
        untrained: &'a mut Vec<String>,
    }

    type B = Autodiff<Flex>;

    impl burn::module::ModuleVisitor<B> for GradCheck<'_> {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
            let trained = param
                .grad(self.grads)
                .is_some_and(|g| g.abs().sum().into_scalar() > 0.0);
            if !trained {
                self.untrained.push(format!("{:?}", param.shape()));
            }
        }
    }
}
