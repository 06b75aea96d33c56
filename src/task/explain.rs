//! `vitrun explain`'s maps of what a prediction looked at, over the model's input: the last
//! block's CLS attention, attention rollout (both from the encoder alone, for any task), and
//! Grad-CAM as pytorch-grad-cam computes it for ViTs (the gradients of the explained score
//! with respect to the last block's `norm1` output, averaged over the patches into one weight
//! per channel; the weighted sum of the activations, ReLU, min-max scaled, resized bilinearly
//! to the input as `cv2.resize` does, and min-max scaled again).

use burn::backend::{Autodiff, Flex};
use burn::tensor::Tensor;

use crate::model::{Backbone, Features};
use crate::plot::attention::{last_block_map, rollout, to_patches, Reader};
use crate::plot::Fusion;

/// The backend Grad-CAM differentiates on.
pub type Grad = Autodiff<Flex>;

/// A tensor's values on the host, flat.
fn host<const D: usize>(t: Tensor<Flex, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap_or_default()
}

/// What `vitrun explain` draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The last block's CLS-token attention over the patches.
    Attention,
    /// Attention rollout through every block (Abnar & Zuidema 2020).
    Rollout,
    /// Grad-CAM of a class's score (Selvaraju et al. 2017, as pytorch-grad-cam).
    Gradcam,
}

impl Method {
    /// The method's name on the command line and in file names.
    pub fn name(self) -> &'static str {
        match self {
            Method::Attention => "attention",
            Method::Rollout => "rollout",
            Method::Gradcam => "gradcam",
        }
    }
}

/// One image's map over the model's input, row-major, scaled to `[0, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Map {
    pub values: Vec<f32>,
    /// `[height, width]` of the model's input.
    pub size: [usize; 2],
    /// The class whose score Grad-CAM explains, or of the box whose attention it is.
    pub class: Option<usize>,
    /// The box (`[x0, y0, x1, y1]` in input pixels) whose query's attention it is.
    pub region: Option<[f64; 4]>,
}

/// pytorch-grad-cam's `scale_cam_image` without the resize: `v − min`, then `/ (1e-7 + max)`.
pub(crate) fn min_max(values: &mut [f32]) {
    let min = values.iter().copied().fold(f32::INFINITY, f32::min);
    values.iter_mut().for_each(|v| *v -= min);
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    values.iter_mut().for_each(|v| *v /= 1e-7 + max);
}

/// `cv2.resize(map, (w, h))` with `INTER_LINEAR` on floats: half-pixel centres, clamped at
/// the borders.
pub fn resize_bilinear(map: &[f32], [gh, gw]: [usize; 2], [h, w]: [usize; 2]) -> Vec<f32> {
    let axis = |out: usize, from: usize| -> Vec<(usize, usize, f32)> {
        let scale = from as f32 / out as f32;
        (0..out)
            .map(|o| {
                let f = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (f.floor() as usize).min(from - 1);
                (i0, (i0 + 1).min(from - 1), (f - i0 as f32).min(1.0))
            })
            .collect()
    };
    let (rows, columns) = (axis(h, gh), axis(w, gw));
    let mut out = Vec::with_capacity(h * w);
    for &(y0, y1, ty) in &rows {
        for &(x0, x1, tx) in &columns {
            let top = map[y0 * gw + x0] * (1.0 - tx) + map[y0 * gw + x1] * tx;
            let bottom = map[y1 * gw + x0] * (1.0 - tx) + map[y1 * gw + x1] * tx;
            out.push(top * (1.0 - ty) + bottom * ty);
        }
    }
    out
}

/// The Grad-CAM target layer's activations and gradients of one batch, on the host.
pub struct Marked {
    /// `[batch, tokens, channels]`, prefix tokens first.
    pub activations: Vec<f32>,
    pub gradients: Vec<f32>,
    pub dims: [usize; 3],
    pub prefix: usize,
    pub grid: [usize; 2],
}

impl Marked {
    /// Each image's Grad-CAM at the input's `size`.
    pub fn maps(&self, size: [usize; 2], classes: &[usize]) -> Vec<Map> {
        let [b, n, c] = self.dims;
        let patches = n - self.prefix;
        (0..b)
            .map(|j| {
                let at = |v: &[f32], p: usize, k: usize| v[(j * n + self.prefix + p) * c + k];
                let weights: Vec<f32> = (0..c)
                    .map(|k| {
                        (0..patches).map(|p| at(&self.gradients, p, k)).sum::<f32>()
                            / patches as f32
                    })
                    .collect();
                let mut cam: Vec<f32> = (0..patches)
                    .map(|p| {
                        let v: f32 = (0..c)
                            .map(|k| weights[k] * at(&self.activations, p, k))
                            .sum();
                        v.max(0.0)
                    })
                    .collect();
                min_max(&mut cam);
                let mut values = resize_bilinear(&cam, self.grid, size);
                values.iter_mut().for_each(|v| *v = v.max(0.0));
                min_max(&mut values);
                Map {
                    values,
                    size,
                    class: classes.get(j).copied(),
                    region: None,
                }
            })
            .collect()
    }
}

/// Runs the encoder on `images` with its Grad-CAM layer marked, differentiates the score
/// `score` makes of the features (and the taps of `blocks`), and gives the layer's
/// activations and gradients with what `score` returned beside the score.
pub fn marked_gradients<E: Backbone<Grad>, T>(
    encoder: &E,
    images: Tensor<Grad, 4>,
    blocks: &[usize],
    score: impl FnOnce(Features<Grad>, Vec<Tensor<Grad, 3>>) -> (Tensor<Grad, 1>, T),
) -> anyhow::Result<(Marked, T)> {
    let mut kept = None;
    let mut mark = |a: Tensor<Grad, 3>| {
        let a = a.detach().require_grad();
        kept = Some(a.clone());
        a
    };
    let (features, taps) = encoder
        .forward_marked(images, blocks, &mut mark)
        .ok_or_else(|| anyhow::anyhow!("Grad-CAM needs a ViT backbone (it weighs the last block's norm1 activations); use --method attention or rollout, or a ViT"))?;
    let (prefix, grid) = (features.prefix, features.grid);
    let (total, extra) = score(features, taps);
    let activations =
        kept.ok_or_else(|| anyhow::anyhow!("the backbone did not reach its Grad-CAM layer"))?;
    let gradients = total.backward();
    let grad = activations.grad(&gradients).ok_or_else(|| {
        anyhow::anyhow!("the explained score does not depend on the Grad-CAM layer")
    })?;
    let dims = activations.dims();
    Ok((
        Marked {
            activations: host(activations.inner()),
            gradients: host(grad),
            dims,
            prefix,
            grid,
        },
        extra,
    ))
}

/// The CLS-attention maps of `images` through `encoder`, at the input's size and each scaled
/// to a maximum of 1; `None` for a backbone without attention.
pub fn attention_maps<E: Backbone<Flex>>(
    encoder: &E,
    images: Tensor<Flex, 4>,
    method: Method,
    (fusion, discard): (Fusion, f32),
    config: &crate::config::Config,
) -> Option<Vec<Map>> {
    let [b, _, h, w] = images.dims();
    let trace = encoder.trace(images);
    let first = trace.attentions.first()?;
    let [_, heads, n, _] = first.dims();
    let reader = Reader::of(config, trace.prefix);
    let blocks: Vec<Vec<f32>> = trace.attentions.iter().map(|a| host(a.clone())).collect();
    let per = heads * n * n;
    Some(
        (0..b)
            .map(|j| {
                let own = |block: &Vec<f32>| block[j * per..(j + 1) * per].to_vec();
                let patches = match method {
                    Method::Rollout => {
                        let flow = rollout(
                            &blocks.iter().map(own).collect::<Vec<_>>(),
                            heads,
                            n,
                            fusion,
                            discard,
                        );
                        to_patches(&flow, n, trace.prefix, reader)
                    }
                    _ => last_block_map(
                        &own(&blocks[blocks.len() - 1]),
                        (heads, n, trace.prefix),
                        reader,
                        fusion,
                        discard,
                    ),
                };
                let mut values = resize_bilinear(&patches, trace.grid, [h, w]);
                let max = values.iter().copied().fold(f32::MIN_POSITIVE, f32::max);
                values.iter_mut().for_each(|v| *v /= max);
                Map {
                    values,
                    size: [h, w],
                    class: None,
                    region: None,
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upsampling ×2 follows cv2's half-pixel rule: edges clamp, inner pixels interpolate at
    /// quarter offsets.
    #[test]
    fn resize_is_cv2s_inter_linear() {
        let out = resize_bilinear(&[0.0, 1.0], [1, 2], [1, 4]);
        assert_eq!(out, [0.0, 0.25, 0.75, 1.0]);
        let out = resize_bilinear(&[0.0, 4.0, 8.0], [1, 3], [2, 3]);
        assert_eq!(out, [0.0, 4.0, 8.0, 0.0, 4.0, 8.0]);
    }
}
