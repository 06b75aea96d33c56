//! Detection as a [`Task`]: DETR's queries on the encoder's patch tokens, the set loss, the
//! share of objects found while training (`train/recall50`), and on validation COCO mAP@0.5
//! (main), mAP@[.5:.95], mAP@0.75, the last layer's loss terms and each class's AP@0.5.

use burn::backend::Flex;
use burn::module::AutodiffModule;
use burn::tensor::Tensor;

use super::head::{detect, DetectionHead, DetectionShape, ImagePredictions, Wanted};
use super::loss::{HostOutputs, LossParts, SetLoss};
use super::map::{evaluate, Detection as Scored, GroundTruth};
use super::matcher::{MatchWeights, TargetBox};
use crate::config::Config;
use crate::contract::TaskMetrics;
use crate::data::geometry::ObjectBox;
use crate::data::{Batch, Image, Objects, Pipeline};
use crate::kernels::{TrainBackend, VitKernels};
use crate::model::{Backbone, BackboneShape, Model, StateDict, TimmModel};
use crate::task::{Answer, PanelInput, Panels, PredictOptions, Scores, Task};

/// IoU at which a training prediction counts as finding its object.
const FOUND_IOU: f64 = 0.5;

/// The detection task.
pub struct Detection {
    classes: Vec<String>,
    loss: SetLoss,
    shape: DetectionShape,
    /// The score a box needs to be drawn and predicted (`head.score_threshold`).
    score_threshold: f64,
}

/// Validation's boxes and loss terms, over the whole split.
#[derive(Debug, Default)]
pub struct DetectionTally {
    ground_truth: Vec<GroundTruth>,
    detections: Vec<Scored>,
    images: u64,
    parts: LossParts,
}

/// Each image's objects as the matcher takes them: boxes as fractions of the input.
fn targets(batch: &Batch<Objects>) -> Vec<Vec<TargetBox>> {
    let size = batch.size as f64;
    batch
        .targets
        .images
        .iter()
        .map(|objects| {
            objects
                .iter()
                .map(|o| TargetBox {
                    class: o.class,
                    center_size: o.corners.center_size().map(|v| v / size),
                })
                .collect()
        })
        .collect()
}

fn xywh(o: &crate::data::boxes::Corners) -> [f64; 4] {
    [o.x0, o.y0, o.width(), o.height()]
}

impl Detection {
    fn images<'a>(&self, out: &'a HostOutputs) -> impl Iterator<Item = ImagePredictions<'a>> {
        let columns = self.classes.len() + 1;
        out.probs
            .chunks(out.queries * columns)
            .zip(out.boxes.chunks(out.queries * 4))
            .map(move |(probs, boxes)| ImagePredictions {
                probs,
                boxes,
                classes: columns - 1,
            })
    }
}

/// The share of `objects` that a prediction scoring above "no object" frames with IoU ≥ 0.5
/// and the right class (1 for an image without objects that predicts none).
fn found_share(predictions: &ImagePredictions<'_>, objects: &[ObjectBox], size: usize) -> f64 {
    let columns = predictions.classes + 1;
    let confident: Vec<_> = predictions
        .all(size)
        .into_iter()
        .zip(predictions.probs.chunks(columns))
        .filter(|(b, p)| b.score > f64::from(p[predictions.classes]))
        .map(|(b, _)| b)
        .collect();
    if objects.is_empty() {
        return f64::from(u8::from(confident.is_empty()));
    }
    let found = objects
        .iter()
        .filter(|o| {
            confident
                .iter()
                .any(|b| b.class == o.class && b.corners.iou(&o.corners) >= FOUND_IOU)
        })
        .count();
    found as f64 / objects.len() as f64
}

impl Task for Detection {
    type Targets = Objects;
    type Head<B: VitKernels> = DetectionHead<B>;
    type Output = HostOutputs;
    type Tally = DetectionTally;
    const METRICS: TaskMetrics = TaskMetrics {
        task: "detection",
        val: &["map50", "map", "map75", "loss_ce", "loss_bbox", "loss_giou"],
        shown: 2,
        per_class: Some("ap50_"),
        train: "recall50",
    };

    fn new(config: &Config, classes: &[String]) -> anyhow::Result<Self> {
        let d = config.head.detection();
        Ok(Detection {
            classes: classes.to_vec(),
            loss: SetLoss {
                weights: MatchWeights {
                    class: d.ce_weight,
                    l1: d.l1_weight,
                    giou: d.giou_weight,
                },
                no_object_weight: d.no_object_weight,
                aux_loss: d.aux_loss,
                patch_weight: d.patch_weight,
            },
            shape: DetectionShape {
                queries: d.queries,
                groups: d.groups,
                layers: d.layers,
                classes: classes.len(),
            },
            score_threshold: d.score_threshold,
        })
    }

    fn head<B: VitKernels>(&self, shape: BackboneShape, device: &B::Device) -> DetectionHead<B> {
        DetectionHead::new(shape, self.shape, device)
    }

    fn valid_head<B: TrainBackend>(head: &DetectionHead<B>) -> DetectionHead<B::InnerBackend> {
        head.valid()
    }

    fn forward_loss<B: VitKernels, E: Backbone<B>>(
        &self,
        model: &Model<B, E, DetectionHead<B>>,
        images: Tensor<B, 4>,
        batch: &Batch<Objects>,
        training: bool,
    ) -> (Tensor<B, 1>, HostOutputs) {
        let wanted = Wanted {
            every_layer: self.loss.aux_loss,
            patches: self.loss.patch_weight > 0.0,
            all_groups: training,
        };
        let outputs = detect(model, images, wanted);
        self.loss.loss(outputs, &targets(batch))
    }

    fn train_score(&self, predictions: &HostOutputs, batch: &Batch<Objects>) -> f64 {
        self.images(predictions)
            .zip(&batch.targets.images)
            .map(|(p, objects)| found_share(&p, objects, batch.size))
            .sum()
    }

    fn tally(&self) -> DetectionTally {
        DetectionTally::default()
    }

    fn add(&self, tally: &mut DetectionTally, predictions: &HostOutputs, batch: &Batch<Objects>) {
        let n = batch.len() as f64;
        let p = predictions.parts;
        tally.parts.ce += p.ce * n;
        tally.parts.l1 += p.l1 * n;
        tally.parts.giou += p.giou * n;
        for (image, objects) in self.images(predictions).zip(&batch.targets.images) {
            let id = tally.images;
            tally.images += 1;
            tally
                .ground_truth
                .extend(objects.iter().map(|o| GroundTruth {
                    image: id,
                    class: o.class,
                    xywh: xywh(&o.corners),
                    crowd: false,
                }));
            tally
                .detections
                .extend(image.all(batch.size).into_iter().map(|b| Scored {
                    image: id,
                    class: b.class,
                    xywh: xywh(&b.corners),
                    score: b.score,
                }));
        }
    }

    fn scores(&self, tally: DetectionTally) -> Scores {
        let summary = evaluate(self.classes.len(), &tally.ground_truth, &tally.detections);
        let n = tally.images.max(1) as f64;
        let mut figures = vec![
            ("map50".to_string(), summary.map50),
            ("map".to_string(), summary.map),
            ("map75".to_string(), summary.map75),
            ("loss_ce".to_string(), tally.parts.ce / n),
            ("loss_bbox".to_string(), tally.parts.l1 / n),
            ("loss_giou".to_string(), tally.parts.giou / n),
        ];
        for (name, ap) in self.classes.iter().zip(&summary.per_class) {
            if let Some(ap) = ap {
                figures.push((format!("ap50_{name}"), ap.ap50));
            }
        }
        Scores {
            main: summary.map50,
            figures,
        }
    }

    fn data_panels(&self, input: &PanelInput<'_>) -> anyhow::Result<Panels> {
        super::panels::augmentations(input)
    }

    fn model_panels<E: Backbone<Flex>>(
        &self,
        model: &Model<Flex, E, DetectionHead<Flex>>,
        input: &PanelInput<'_>,
    ) -> anyhow::Result<Panels> {
        super::panels::panels(model, input)
    }

    fn predict_pipeline(&self, validation: Pipeline) -> Pipeline {
        validation.whole_image()
    }

    fn predict<E: Backbone<Flex>>(
        &self,
        model: &Model<Flex, E, DetectionHead<Flex>>,
        images: Tensor<Flex, 4>,
        originals: &[Image],
        options: &PredictOptions,
    ) -> anyhow::Result<Vec<Answer>> {
        let threshold = options.threshold.unwrap_or(self.score_threshold);
        super::predict::answers(
            model,
            &self.classes,
            threshold,
            images,
            originals,
            options.files,
        )
    }

    fn attention<E: Backbone<Flex>>(
        &self,
        model: &Model<Flex, E, DetectionHead<Flex>>,
        images: Tensor<Flex, 4>,
        class: Option<usize>,
    ) -> Option<anyhow::Result<Vec<crate::task::explain::Map>>> {
        Some(super::explain::box_attention(model, images, class))
    }

    fn export_args(
        &self,
        config: &Config,
        classes: &[String],
        timm: TimmModel,
        backbone: BackboneShape,
    ) -> anyhow::Result<serde_json::Value> {
        Ok(super::export::args(config, classes, timm, backbone))
    }

    fn export_weights(&self, sd: StateDict) -> anyhow::Result<StateDict> {
        super::export::weights(sd, self.shape.queries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::boxes::Corners;

    fn object(class: usize, x0: f64, y0: f64, x1: f64, y1: f64) -> ObjectBox {
        ObjectBox {
            class,
            corners: Corners { x0, y0, x1, y1 },
        }
    }

    /// A confident right-class box at IoU ≥ 0.5 finds its object; a wrong class, a poor
    /// overlap or a "no object" query does not.
    #[test]
    fn found_share_counts_confident_right_class_overlaps() {
        // Two classes; query 0 frames the car (class 0), query 1 says class 1 over the bus but
        // its box is off, query 2 is "no object".
        let probs = [0.8, 0.1, 0.1, 0.2, 0.7, 0.1, 0.1, 0.1, 0.8];
        let boxes = [
            0.25, 0.25, 0.5, 0.5, 0.9, 0.9, 0.1, 0.1, 0.75, 0.75, 0.5, 0.5,
        ];
        let p = ImagePredictions {
            probs: &probs,
            boxes: &boxes,
            classes: 2,
        };
        let car = object(0, 0.0, 0.0, 8.0, 8.0);
        let bus = object(1, 8.0, 8.0, 16.0, 16.0);
        assert_eq!(found_share(&p, &[car], 16), 1.0);
        assert_eq!(found_share(&p, &[car, bus], 16), 0.5);
        assert_eq!(found_share(&p, &[object(1, 0.0, 0.0, 8.0, 8.0)], 16), 0.0);
        assert_eq!(
            found_share(&p, &[], 16),
            0.0,
            "confident boxes on an empty image"
        );
    }
}
