//! Segmentation as a [`Task`]: the linear decoder's per-pixel logits, the pixel loss, pixel
//! accuracy while training, and mIoU (main), pixel accuracy, per-class IoU and, for two
//! classes, the foreground Dice on validation.

use burn::backend::Flex;
use burn::module::AutodiffModule;
use burn::tensor::{Int, Tensor, TensorData};

use super::head::{decode, pixel_logits, skip_blocks, DecoderChoice, SegmentationHead};
use super::loss::{pixel_rows, PixelLoss};
use super::metrics::Confusion;
use crate::config::{Config, Decoder, MaskNorm};
use crate::contract::TaskMetrics;
use crate::data::geometry::IGNORE_LABEL;
use crate::data::{Batch, Image, Masks, Pipeline};
use crate::kernels::{TrainBackend, VitKernels};
use crate::model::{
    with_arch, Arch, ArchTask, Backbone, BackboneShape, Model, StateDict, TimmModel,
};
use crate::task::explain::{marked_gradients, Grad, Map};
use crate::task::panels::host;
use crate::task::readings::{Reading, StepReadings};
use crate::task::{Answer, PanelInput, Panels, PredictOptions, Scores, Task};

/// The segmentation task.
pub struct Segmentation {
    classes: Vec<String>,
    loss: PixelLoss,
    decoder: DecoderChoice,
}

/// The class other than the first (the background) with the most pixels in `labels`, or the
/// first when no other is predicted.
fn largest_foreground(labels: &[f32], classes: usize) -> usize {
    let mut counts = vec![0usize; classes];
    for &l in labels {
        counts[l as usize] += 1;
    }
    (1..classes)
        .filter(|&k| counts[k] > 0)
        .max_by_key(|&k| counts[k])
        .unwrap_or(0)
}

/// The backbone's transformer blocks.
struct Depth;

impl ArchTask for Depth {
    type Output = usize;
    fn run<A: Arch>(self, arch: A) -> usize {
        arch.blocks()
    }
}

/// The decoder `head.decoder` names, sized by the experiment.
fn decoder_choice(config: &Config) -> DecoderChoice {
    match config.head.decoder.unwrap_or(Decoder::Linear) {
        Decoder::Linear => DecoderChoice::Linear,
        Decoder::Conv => DecoderChoice::Conv,
        Decoder::Mask => DecoderChoice::Mask {
            layers: config.head.layers.unwrap_or(2),
            norm: config.head.mask_norm.unwrap_or(MaskNorm::Tempered),
        },
        Decoder::Unet => {
            let depth = with_arch(config, Depth);
            DecoderChoice::Unet {
                skip_blocks: config.head.skip_blocks_for(depth, config.model.patch_size),
                channels: config.data.channels,
            }
        }
    }
}

impl Task for Segmentation {
    type Targets = Masks;
    type Head<B: VitKernels> = SegmentationHead<B>;
    type Output = Vec<f32>;
    type Tally = Confusion;
    const METRICS: TaskMetrics = TaskMetrics {
        task: "segmentation",
        val: &["miou", "pixel_acc", "dice"],
        shown: 3,
        per_class: Some("iou_"),
        train: "pixel_acc",
    };

    fn new(config: &Config, classes: &[String]) -> anyhow::Result<Self> {
        let class_weights = config.head.class_weights.clone().unwrap_or_default();
        if !class_weights.is_empty() && class_weights.len() != classes.len() {
            anyhow::bail!(
                "head.class_weights has {} weights and the dataset has {} classes ({}); give one weight per class, in this order",
                class_weights.len(),
                classes.len(),
                classes.join(", ")
            );
        }
        if config.head.mask_norm == Some(MaskNorm::Segmenter) && classes.len() < 3 {
            anyhow::bail!(
                "head.mask_norm = \"segmenter\" standardises each patch's {} class scores, which leaves only their order (±1 for two classes) and nothing to learn from; remove head.mask_norm (the default \"tempered\" scores learn with any number of classes)",
                classes.len()
            );
        }
        Ok(Segmentation {
            classes: classes.to_vec(),
            loss: PixelLoss {
                class_weights,
                dice_weight: config.head.dice_weight.unwrap_or(0.0),
            },
            decoder: decoder_choice(config),
        })
    }

    /// The U-Net decoder's skip blocks exist in the backbone.
    fn check(config: &Config) -> Result<(), (&'static str, String)> {
        let DecoderChoice::Unet { skip_blocks, .. } = decoder_choice(config) else {
            return Ok(());
        };
        let depth = with_arch(config, Depth);
        if depth == 0 {
            return Err((
                "head.decoder",
                format!(
                    "the U-Net decoder taps transformer blocks and model.arch = {} has none; use decoder = \"conv\", or a ViT",
                    serde_json::to_value(config.model.arch).unwrap_or_default()
                ),
            ));
        }
        match skip_blocks.iter().find(|&&b| b > depth) {
            Some(b) => Err((
                "head.skip_blocks",
                format!(
                    "block {b} is past the encoder's {depth} blocks; list blocks from 1 to {depth}"
                ),
            )),
            None => Ok(()),
        }
    }

    fn head<B: VitKernels>(&self, shape: BackboneShape, device: &B::Device) -> SegmentationHead<B> {
        SegmentationHead::new(shape, self.classes.len(), &self.decoder, device)
    }

    fn valid_head<B: TrainBackend>(
        head: &SegmentationHead<B>,
    ) -> SegmentationHead<B::InnerBackend> {
        head.valid()
    }

    fn forward_loss<B: VitKernels, E: Backbone<B>>(
        &self,
        model: &Model<B, E, SegmentationHead<B>>,
        images: Tensor<B, 4>,
        batch: &Batch<Masks>,
        _training: bool,
    ) -> (Tensor<B, 1>, Vec<f32>) {
        let rows = pixel_rows(pixel_logits(model, images));
        let predicted = rows.clone().argmax(1);
        let loss = self.loss.loss(rows, &batch.targets.pixels);
        let labels = predicted
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap_or_default();
        (loss, labels)
    }

    /// The pixel accuracy stays on the device.
    fn forward_train<B: VitKernels, E: Backbone<B>>(
        &self,
        model: &Model<B, E, SegmentationHead<B>>,
        images: Tensor<B, 4>,
        batch: &Batch<Masks>,
    ) -> (Tensor<B, 1>, StepReadings<B>) {
        let rows = pixel_rows(pixel_logits(model, images));
        let predicted = rows.clone().argmax(1);
        let loss = self.loss.loss(rows, &batch.targets.pixels);
        let score = pixel_shares(predicted, &batch.targets.pixels, batch.targets.count);
        let readings = StepReadings {
            score: Reading::Device(score),
            parts: Vec::new(),
        };
        (loss, readings)
    }

    /// Each image's share of correctly labelled pixels (of those that count), summed.
    fn train_score(&self, predictions: &Vec<f32>, batch: &Batch<Masks>) -> f64 {
        let plane = batch.size * batch.size;
        predictions
            .chunks(plane)
            .zip(batch.targets.pixels.chunks(plane))
            .map(|(p, t)| {
                let (mut right, mut counted) = (0usize, 0usize);
                for (&p, &t) in p.iter().zip(t) {
                    if t != IGNORE_LABEL {
                        counted += 1;
                        right += usize::from(p as usize == usize::from(t));
                    }
                }
                if counted == 0 {
                    0.0
                } else {
                    right as f64 / counted as f64
                }
            })
            .sum()
    }

    fn tally(&self) -> Confusion {
        Confusion::new(self.classes.len())
    }

    fn add(&self, tally: &mut Confusion, predictions: &Vec<f32>, batch: &Batch<Masks>) {
        let predicted: Vec<u8> = predictions.iter().map(|&p| p as u8).collect();
        tally.add(&batch.targets.pixels, &predicted);
    }

    fn scores(&self, tally: Confusion) -> Scores {
        let miou = tally.mean_iou();
        let mut figures = vec![
            ("miou".to_string(), miou),
            ("pixel_acc".to_string(), tally.pixel_accuracy()),
        ];
        if let (2, Some(dice)) = (self.classes.len(), tally.dice(1)) {
            figures.push(("dice".into(), dice));
        }
        for (name, iou) in self.classes.iter().zip(tally.iou()) {
            if let Some(iou) = iou {
                figures.push((format!("iou_{name}"), iou));
            }
        }
        Scores {
            main: miou,
            figures,
        }
    }

    fn data_panels(&self, input: &PanelInput<'_>) -> anyhow::Result<Panels> {
        super::panels::augmentations(input)
    }

    fn model_panels<E: Backbone<Flex>>(
        &self,
        model: &Model<Flex, E, SegmentationHead<Flex>>,
        input: &PanelInput<'_>,
    ) -> anyhow::Result<Panels> {
        super::panels::panels(model, input)
    }

    /// pytorch-grad-cam's `SemanticSegmentationTarget`: the sum of the class's logits over
    /// the pixels predicted as it; the class by default is the largest one predicted other than
    /// the first (the background), or the first when none is.
    fn gradcam<E: Backbone<Grad>>(
        &self,
        model: &Model<Grad, E, SegmentationHead<Grad>>,
        images: Tensor<Grad, 4>,
        class: Option<usize>,
    ) -> anyhow::Result<Vec<Map>> {
        let [_, _, h, w] = images.dims();
        let blocks = skip_blocks(&model.head).to_vec();
        let (marked, targets) =
            marked_gradients(&model.encoder, images.clone(), &blocks, |features, taps| {
                let logits = decode(model, features, taps, images);
                let [b, k, _, _] = logits.dims();
                let labels = host(logits.clone().argmax(1).float().inner());
                let plane = h * w;
                let mut targets = Vec::with_capacity(b);
                let mut mask = vec![0.0f32; b * k * plane];
                for j in 0..b {
                    let own = &labels[j * plane..(j + 1) * plane];
                    let target = class.unwrap_or_else(|| largest_foreground(own, k));
                    for (p, &l) in own.iter().enumerate() {
                        if l as usize == target {
                            mask[(j * k + target) * plane + p] = 1.0;
                        }
                    }
                    targets.push(target);
                }
                let mask = Tensor::from_data(TensorData::new(mask, [b, k, h, w]), &logits.device());
                ((logits * mask).sum(), targets)
            })?;
        Ok(marked.maps([h, w], &targets))
    }

    fn export_args(
        &self,
        config: &Config,
        classes: &[String],
        timm: TimmModel,
        _backbone: BackboneShape,
    ) -> anyhow::Result<serde_json::Value> {
        Ok(super::export::args(config, classes, timm, &self.decoder))
    }

    fn export_weights(&self, sd: StateDict) -> anyhow::Result<StateDict> {
        Ok(super::export::weights(sd))
    }

    fn predict_pipeline(&self, validation: Pipeline) -> Pipeline {
        validation.whole_image()
    }

    fn predict<E: Backbone<Flex>>(
        &self,
        model: &Model<Flex, E, SegmentationHead<Flex>>,
        images: Tensor<Flex, 4>,
        originals: &[Image],
        options: &PredictOptions,
    ) -> anyhow::Result<Vec<Answer>> {
        super::predict::answers(model, &self.classes, images, originals, options)
    }
}

/// [`Task::train_score`] on the device: `predicted` `[images × pixels, 1]` class ids against
/// the `targets` of `images` masks; each image's share of right pixels among those that count
/// (0 when none does), summed, as a one-element tensor.
fn pixel_shares<B: burn::tensor::backend::Backend>(
    predicted: Tensor<B, 2, Int>,
    targets: &[u8],
    images: usize,
) -> Tensor<B, 1> {
    let plane = targets.len() / images.max(1);
    let device = predicted.device();
    let targets = Tensor::<B, 2, Int>::from_data(
        TensorData::new(
            targets.iter().map(|&t| i64::from(t)).collect(),
            [images, plane],
        ),
        &device,
    );
    let counted = targets.clone().not_equal_elem(i64::from(IGNORE_LABEL));
    let right = predicted
        .reshape([images, plane])
        .equal(targets)
        .bool_and(counted.clone());
    let right = right.int().sum_dim(1).float();
    let counted = counted.int().sum_dim(1).float().clamp_min(1.0);
    (right / counted).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_accuracy_on_the_device_counts_only_labelled_pixels_per_image() {
        let device = Default::default();
        let predicted = Tensor::<Flex, 2, Int>::from_data(
            TensorData::new(vec![0i64, 0, 1, 1, 1, 1, 1, 1], [8, 1]),
            &device,
        );
        let targets = [
            0u8,
            1,
            IGNORE_LABEL,
            1,
            IGNORE_LABEL,
            IGNORE_LABEL,
            IGNORE_LABEL,
            2,
        ];
        let shares: f32 = pixel_shares(predicted, &targets, 2).into_scalar();
        assert!((shares - (2.0 / 3.0 + 0.0)).abs() < 1e-6, "{shares}");
    }

    /// The device's score is the host's [`Task::train_score`] on any masks.
    #[test]
    fn pixel_accuracy_on_the_device_is_the_hosts() {
        let classes: Vec<String> = ["sky", "road", "car"].map(String::from).to_vec();
        let task = Segmentation::new(&Config::default(), &classes).unwrap();
        let (images, size) = (5, 6);
        let n = images * size * size;
        let predicted: Vec<i64> = (0..n).map(|i| ((i / 2) % 3) as i64).collect();
        let pixels: Vec<u8> = (0..n)
            .map(|i| match (i * 7 / 3) % 4 {
                3 => IGNORE_LABEL,
                c => c as u8,
            })
            .collect();
        let batch = Batch {
            images: Vec::new(),
            channels: 3,
            size,
            targets: Masks {
                pixels: pixels.clone(),
                count: images,
            },
            skipped: Vec::new(),
            unmixed: None,
        };
        let host = task.train_score(&predicted.iter().map(|&p| p as f32).collect(), &batch);
        let device = Tensor::<Flex, 2, Int>::from_data(
            TensorData::new(predicted, [n, 1]),
            &Default::default(),
        );
        let on_device: f32 = pixel_shares(device, &pixels, images).into_scalar();
        assert!(
            (f64::from(on_device) - host).abs() < 1e-5,
            "{on_device} vs {host}"
        );
        assert!(host > 0.5 && host < 4.5, "a score that can differ: {host}");
    }
}
