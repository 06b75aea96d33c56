//! A U-Net-style decoder on a ViT, after UNETR (Hatamizadeh et al. 2022): the final patch
//! features are upsampled ×2 per stage by transposed convolutions (channels halving as in the
//! conv decoder); at each of the first stages the tokens of one encoder block (the deepest
//! first, `head.skip_blocks`) are brought from the patch grid to that stage's resolution by
//! their own chain of transposed convolutions and fused in by a 3×3 conv. At the input's
//! resolution the image itself, through a 3×3 conv, is the last skip. The model's `head`
//! classifies each pixel's features. Odd patch grids and sizes are met by bilinear resizing.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::PaddingConfig2d;
use burn::tensor::backend::Backend;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::Tensor;

use super::decoder::{stage_channels, upsample_cells};
use crate::kernels::{self, VitKernels};

/// The U-Net decoder's modules.
#[derive(Module, Debug)]
pub struct UnetDecoder<B: Backend> {
    /// Each stage's ×2 upsampling of the decoder path.
    pub up: Vec<ConvTranspose2d<B>>,
    /// Each skip's chain of ×2 upsamplings from the patch grid to its stage's resolution.
    pub skips: Vec<Vec<ConvTranspose2d<B>>>,
    /// Each skip's 3×3 conv fusing it with the decoder path.
    pub fuse: Vec<Conv2d<B>>,
    /// The 3×3 conv of the input image (UNETR's z0).
    pub stem: Conv2d<B>,
    /// The 3×3 conv fusing the image's features with the decoder path at full resolution.
    pub out: Conv2d<B>,
}

fn conv3x3<B: Backend>(input: usize, output: usize, device: &B::Device) -> Conv2d<B> {
    Conv2dConfig::new([input, output], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device)
}

fn up2<B: Backend>(input: usize, output: usize, device: &B::Device) -> ConvTranspose2d<B> {
    ConvTranspose2dConfig::new([input, output], [2, 2])
        .with_stride([2, 2])
        .init(device)
}

fn resized<B: Backend>(x: Tensor<B, 4>, size: [usize; 2]) -> Tensor<B, 4> {
    let [_, _, h, w] = x.dims();
    if [h, w] == size {
        return x;
    }
    interpolate(
        x,
        size,
        InterpolateOptions {
            mode: InterpolateMode::Bilinear,
            align_corners: false,
        },
    )
}

impl<B: Backend> UnetDecoder<B> {
    /// The decoder of a ViT `dim` wide with `patch`-pixel patches on `channels`-channel images,
    /// with `skips` skip connections (at most one per stage, ⌊log₂ patch⌋).
    pub fn new(
        dim: usize,
        patch: usize,
        channels: usize,
        skips: usize,
        device: &B::Device,
    ) -> Self {
        let stages = stage_channels(dim, patch);
        let last = Self::out_channels(dim, patch);
        UnetDecoder {
            up: stages.iter().map(|&(i, o)| up2(i, o, device)).collect(),
            skips: stages
                .iter()
                .take(skips)
                .enumerate()
                .map(|(s, &(_, width))| {
                    (0..=s)
                        .map(|k| up2(if k == 0 { dim } else { width }, width, device))
                        .collect()
                })
                .collect(),
            fuse: stages
                .iter()
                .take(skips)
                .map(|&(_, width)| conv3x3(2 * width, width, device))
                .collect(),
            stem: conv3x3(channels, last, device),
            out: conv3x3(2 * last, last, device),
        }
    }

    /// Channels of the features it gives the head.
    pub fn out_channels(dim: usize, patch: usize) -> usize {
        stage_channels(dim, patch).last().map_or(dim, |&(_, o)| o)
    }
}

impl<B: VitKernels> UnetDecoder<B> {
    /// Pixel features `[batch, height, width, channels]` of `images` from the final patch
    /// features `grid` and the skip blocks' `taps` (each `[batch, rows, columns, dim]`, the
    /// deepest first). The path stays channels last; the transposed convolutions run as matrix
    /// multiplies ([`upsample_cells`]) and the 3×3 convs through the fused conv kernel.
    pub fn forward(
        &self,
        grid: Tensor<B, 4>,
        taps: Vec<Tensor<B, 4>>,
        images: Tensor<B, 4>,
    ) -> Tensor<B, 4> {
        let [_, _, h, w] = images.dims();
        let nchw = |x: Tensor<B, 4>| x.permute([0, 3, 1, 2]);
        let nhwc = |x: Tensor<B, 4>| x.permute([0, 2, 3, 1]);
        let mut taps = taps.into_iter();
        let mut x = grid;
        for (s, up) in self.up.iter().enumerate() {
            x = upsample_cells(up, x);
            if let (Some(chain), Some(fuse), Some(tap)) =
                (self.skips.get(s), self.fuse.get(s), taps.next())
            {
                let skip = chain.iter().fold(tap, |t, up| upsample_cells(up, t));
                let both = Tensor::cat(vec![x, skip], 3);
                x = nhwc(kernels::conv2d(fuse, nchw(both), true));
            }
        }
        let x = resized(nchw(x), [h, w]);
        let image = kernels::conv2d(&self.stem, images, true);
        nhwc(kernels::conv2d(
            &self.out,
            Tensor::cat(vec![x, image], 1),
            true,
        ))
    }
}
