//! Detection's head: the backbone's dense features decoded by DETR's object queries (`detr`),
//! each query read by the class head (`head`, no-object last) and the box MLP, per decoder
//! layer; and on the host, the boxes a score threshold keeps, for reports.

use burn::backend::Flex;
use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::detr::DetrDecoder;
use crate::data::boxes::Corners;
use crate::kernels::{self, VitKernels};
use crate::model::{Backbone, BackboneShape, Model};
use crate::task::panels::host;

/// The query decoder and the class head that reads its queries.
#[derive(Module, Debug)]
pub struct DetectionHead<B: Backend> {
    /// Each query's class logits, the last column "no object".
    pub head: Linear<B>,
    pub detr: DetrDecoder<B>,
}

/// How many queries and layers a [`DetectionHead`] has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectionShape {
    /// Object queries, the most objects an image can be given.
    pub queries: usize,
    /// Query groups decoded while training (Group DETR; 1 = plain DETR).
    pub groups: usize,
    /// Decoder layers.
    pub layers: usize,
    /// Object classes (the head has one more output: no object).
    pub classes: usize,
}

impl<B: Backend> DetectionHead<B> {
    /// A head of `shape` on a backbone of `backbone`'s width and heads.
    pub fn new(backbone: BackboneShape, shape: DetectionShape, device: &B::Device) -> Self {
        let head = LinearConfig::new(backbone.dim, shape.classes + 1)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            })
            .init(device);
        DetectionHead {
            head,
            detr: DetrDecoder::new(
                backbone.dim,
                backbone.heads,
                [shape.queries, shape.groups],
                shape.layers,
                shape.classes,
                device,
            ),
        }
    }
}

/// Class logits `[batch·groups, queries, classes + 1]` and boxes `[batch·groups, queries, 4]`
/// (`cx, cy, w, h` in [0, 1]; each image's groups in a row) of each decoder layer, the last
/// layer last; and when asked for, the patch tokens' class logits `[batch, gh·gw, classes +
/// 1]` of the `grid` (`[gh, gw]`).
pub struct LayerOutputs<B: Backend> {
    pub logits: Vec<Tensor<B, 3>>,
    pub boxes: Vec<Tensor<B, 3>>,
    pub groups: usize,
    pub patch_logits: Option<Tensor<B, 3>>,
    pub grid: [usize; 2],
    /// The last layer's cross-attention weights of the first group's queries `[batch, heads,
    /// queries, gh·gw]`.
    pub cross_attention: Option<Tensor<B, 4>>,
}

/// Which outputs [`detect`] computes beyond the last layer's first query group.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wanted {
    /// Every decoder layer's outputs (auxiliary losses).
    pub every_layer: bool,
    /// The patch tokens' class logits (the dense auxiliary loss).
    pub patches: bool,
    /// Every query group (Group DETR's training).
    pub all_groups: bool,
}

/// The detection model's outputs on images `[batch, channels, height, width]`.
pub fn detect<B: VitKernels, E: Backbone<B>>(
    model: &Model<B, E, DetectionHead<B>>,
    images: Tensor<B, 4>,
    wanted: Wanted,
) -> LayerOutputs<B> {
    let decoder = &model.head.detr;
    let encoder = &model.encoder;
    let (memory, grid) = encoder.dense(encoder.forward_features(images));
    let patch_logits = wanted
        .patches
        .then(|| kernels::linear(&decoder.patch_head, memory.clone(), false));
    let [b, _, _] = memory.dims();
    let decoded = decoder.forward(memory, grid, wanted.all_groups);
    let mut features = decoded.layers;
    let cross_attention = decoded.cross_attention.map(|w| {
        let [_, _, n, _] = w.dims();
        let groups = if wanted.all_groups {
            decoder.groups()
        } else {
            1
        };
        w.narrow(2, 0, n / groups)
    });
    if !wanted.every_layer {
        features = features.split_off(features.len() - 1);
    }
    let groups = if wanted.all_groups {
        decoder.groups()
    } else {
        1
    };
    let per_image = |x: Tensor<B, 3>| {
        let [_, n, d] = x.dims();
        x.reshape([b * groups, n / groups, d])
    };
    let (logits, boxes) = features
        .into_iter()
        .map(|f| {
            let logits = kernels::linear(&model.head.head, f.clone(), false);
            (per_image(logits), per_image(decoder.boxes(f)))
        })
        .unzip();
    LayerOutputs {
        logits,
        boxes,
        groups,
        patch_logits,
        grid,
        cross_attention,
    }
}

/// The last decoder layer's predictions of a batch on the host: each query's class
/// probabilities (no object last) and box.
pub struct LastLayer {
    probs: Vec<f32>,
    boxes: Vec<f32>,
    queries: usize,
    classes: usize,
}

impl LastLayer {
    /// The last layer's predictions of `images` (`[batch, channels, size, size]`).
    pub fn of<E: Backbone<Flex>>(
        model: &Model<Flex, E, DetectionHead<Flex>>,
        images: Tensor<Flex, 4>,
    ) -> anyhow::Result<LastLayer> {
        Self::from_outputs(&detect(model, images, Wanted::default()))
    }

    /// The last layer's predictions among a batch's `outputs`.
    pub fn from_outputs(outputs: &LayerOutputs<Flex>) -> anyhow::Result<LastLayer> {
        let (Some(logits), Some(boxes)) = (outputs.logits.last(), outputs.boxes.last()) else {
            anyhow::bail!("the detection model gave no decoder output");
        };
        let [_, queries, columns] = logits.dims();
        Ok(LastLayer {
            probs: host(softmax(logits.clone(), 2)),
            boxes: host(boxes.clone()),
            queries,
            classes: columns - 1,
        })
    }

    /// Queries per image.
    pub fn queries(&self) -> usize {
        self.queries
    }

    /// Image `j`'s predictions.
    pub fn image(&self, j: usize) -> ImagePredictions<'_> {
        let (q, columns) = (self.queries, self.classes + 1);
        ImagePredictions {
            probs: &self.probs[j * q * columns..(j + 1) * q * columns],
            boxes: &self.boxes[j * q * 4..(j + 1) * q * 4],
            classes: self.classes,
        }
    }
}

/// A box the model predicts, in pixels of the input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PredictedBox {
    /// The query that predicted it.
    pub query: usize,
    pub class: usize,
    pub score: f64,
    pub corners: Corners,
}

/// One image's predictions on the host: per query, the probabilities of the classes and of
/// "no object" (last), and the box `[cx, cy, w, h]` in [0, 1].
#[derive(Debug, Clone, Copy)]
pub struct ImagePredictions<'a> {
    pub probs: &'a [f32],
    pub boxes: &'a [f32],
    /// Object classes (the probabilities have one more column).
    pub classes: usize,
}

impl ImagePredictions<'_> {
    /// Every query's best object class and its probability, with its box in pixels of a
    /// `size × size` input: what mAP ranks.
    pub fn all(&self, size: usize) -> Vec<PredictedBox> {
        let columns = self.classes + 1;
        self.probs
            .chunks(columns)
            .zip(self.boxes.chunks(4))
            .enumerate()
            .map(|(query, (p, b))| {
                let (class, score) =
                    p[..self.classes]
                        .iter()
                        .enumerate()
                        .fold(
                            (0, f32::MIN),
                            |best, (c, &v)| if v > best.1 { (c, v) } else { best },
                        );
                let s = size as f64;
                let [cx, cy, w, h] = [b[0], b[1], b[2], b[3]].map(|v| f64::from(v) * s);
                PredictedBox {
                    query,
                    class,
                    score: f64::from(score),
                    corners: Corners::from_center(cx, cy, w, h),
                }
            })
            .collect()
    }

    /// The boxes scoring at least `threshold`, best first: what a report draws.
    pub fn above(&self, size: usize, threshold: f64) -> Vec<PredictedBox> {
        let mut kept: Vec<PredictedBox> = self
            .all(size)
            .into_iter()
            .filter(|b| b.score >= threshold)
            .collect();
        kept.sort_by(|a, b| b.score.total_cmp(&a.score));
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_scores_its_best_object_class_never_no_object() {
        let probs = [0.1, 0.2, 0.7, 0.6, 0.3, 0.1];
        let boxes = [0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.5, 0.5];
        let image = ImagePredictions {
            probs: &probs,
            boxes: &boxes,
            classes: 2,
        };
        let all = image.all(16);
        assert_eq!((all[0].class, all[0].score as f32), (1, 0.2));
        assert_eq!((all[1].class, all[1].score as f32), (0, 0.6));
        assert_eq!(
            all[0].corners,
            Corners {
                x0: 4.0,
                y0: 6.0,
                x1: 12.0,
                y1: 10.0
            }
        );
        let kept = image.above(16, 0.5);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].class, 0);
    }
}
