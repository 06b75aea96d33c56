//! Classification: one label an image, cross-entropy (soft targets under Mixup/CutMix), top-1
//! and top-5; attention maps, predictions, the confusion matrix and the patch view in reports;
//! top-k classes from `vitrun predict`; timm's arguments for `vitrun export`.

pub mod distill;
mod head;
pub mod loss;
mod panels;

pub use head::{vit_classifier, Classifier, ClassifierHead, ClassifierTrace};

use std::sync::Arc;

use burn::backend::Flex;
use burn::module::AutodiffModule;
use burn::tensor::activation::softmax;
use burn::tensor::{Tensor, TensorData};

use super::explain::{marked_gradients, Grad, Map};
use super::readings::{Reading, StepReadings};
use super::{Answer, PanelInput, Panels, PredictOptions, Scores, Task};
use crate::config::{Config, DistillType, Interpolation, TeacherInput};
use crate::contract::TaskMetrics;
use crate::data::{Batch, BatchTransform, Image, Labels, Mixer};
use crate::kernels::{TrainBackend, VitKernels};
use crate::model::{Backbone, BackboneShape, Model, TimmModel};
use distill::{argmax_rows, DistillLoss};
use loss::{cross_entropy, soft_cross_entropy, top_k_correct};

/// The value of a one-element loss.
fn scalar<B: burn::tensor::backend::Backend>(loss: &Tensor<B, 1>) -> f64 {
    burn::tensor::ElementConversion::elem::<f64>(loss.clone().into_scalar())
}

/// Top-5 is logged only with more classes than this (with 5 or fewer it is always 100 %).
const TOP5_FROM: usize = 5;

/// The classification task.
pub struct Classification {
    classes: usize,
    names: Vec<String>,
    label_smoothing: f64,
    /// DeiT's distillation loss, under `[distill]`.
    distill: Option<DistillLoss>,
}

/// A classifier's predictions on a batch.
#[derive(Debug, Clone, Default)]
pub struct ClassOutput {
    /// The model's answer `[batch, classes]`: both heads averaged for a distilled model.
    pub logits: Vec<f32>,
    /// The class head's and the distillation head's logits, for a distilled model.
    pub heads: Option<(Vec<f32>, Vec<f32>)>,
    /// The loss's parts (`loss_cls`, `loss_dist`) under distillation.
    pub parts: Vec<(&'static str, f64)>,
}

/// Validation counts.
#[derive(Debug, Default)]
pub struct TopK {
    top1: usize,
    top5: usize,
    /// Each head's own top-1 hits, for a distilled model.
    heads: Option<[usize; 2]>,
    /// The teacher's top-1 hits and the images where the model's answer is the teacher's.
    teacher: Option<[usize; 2]>,
    seen: usize,
}

fn host(logits: Tensor<impl burn::tensor::backend::Backend, 2>) -> Vec<f32> {
    logits
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap_or_default()
}

/// A batch's loss, answer logits, both heads' logits (distilled models) and the loss's parts
/// (under distillation), all on the device.
struct Step<B: burn::tensor::backend::Backend> {
    loss: Tensor<B, 1>,
    logits: Tensor<B, 2>,
    heads: Option<(Tensor<B, 2>, Tensor<B, 2>)>,
    parts: Vec<(&'static str, Tensor<B, 1>)>,
}

/// The rows of `logits` `[batch, classes]` whose first highest score is at their label (ties
/// go to the lower class, as [`top_k_correct`] counts them), as a one-element count.
fn top1_hits<B: burn::tensor::backend::Backend>(
    logits: Tensor<B, 2>,
    labels: &[i64],
) -> Tensor<B, 1> {
    let device = logits.device();
    let labels = Tensor::<B, 1, burn::tensor::Int>::from_data(
        TensorData::new(labels.to_vec(), [labels.len()]),
        &device,
    );
    let answers = logits.argmax(1).reshape([labels.dims()[0]]);
    answers.equal(labels).int().sum().float()
}

impl Classification {
    fn step<B: VitKernels, E: Backbone<B>>(
        &self,
        model: &Model<B, E, ClassifierHead<B>>,
        images: Tensor<B, 4>,
        batch: &Batch<Labels>,
        training: bool,
    ) -> Step<B> {
        let t = &batch.targets;
        let base = |logits: Tensor<B, 2>| match (&t.mixed, training) {
            (Some(mixed), true) => soft_cross_entropy(logits, &mixed.values),
            (_, true) => cross_entropy(logits, &t.labels, self.label_smoothing),
            (_, false) => cross_entropy(logits, &t.labels, 0.0),
        };
        let (cls, dist) = model.forward_heads(images);
        let Some(dist) = dist else {
            return Step {
                loss: base(cls.clone()),
                logits: cls,
                heads: None,
                parts: Vec::new(),
            };
        };
        let logits = (cls.clone() + dist.clone()).div_scalar(2.0);
        let heads = Some((cls.clone(), dist.clone()));
        let (loss, parts) = match (&self.distill, &t.teacher, training) {
            (Some(distill), Some(teacher), true) => {
                let base = base(cls);
                let term = distill.distillation(dist, teacher);
                let parts = vec![("loss_cls", base.clone()), ("loss_dist", term.clone())];
                (distill.combine(base, term), parts)
            }
            _ => (base(logits.clone()), Vec::new()),
        };
        Step {
            loss,
            logits,
            heads,
            parts,
        }
    }
}

impl Task for Classification {
    type Targets = Labels;
    type Head<B: VitKernels> = ClassifierHead<B>;
    type Output = ClassOutput;
    type Tally = TopK;
    const METRICS: TaskMetrics = TaskMetrics {
        task: "classification",
        val: &["top1", "top5"],
        shown: 2,
        per_class: None,
        train: "top1",
    };

    fn new(config: &Config, classes: &[String]) -> anyhow::Result<Self> {
        Ok(Classification {
            classes: classes.len(),
            names: classes.to_vec(),
            label_smoothing: config.optimizer.label_smoothing,
            distill: DistillLoss::new(&config.distill),
        })
    }

    fn head<B: VitKernels>(&self, shape: BackboneShape, device: &B::Device) -> ClassifierHead<B> {
        ClassifierHead::new(shape, self.classes, device)
    }

    fn valid_head<B: TrainBackend>(head: &ClassifierHead<B>) -> ClassifierHead<B::InnerBackend> {
        head.valid()
    }

    /// Mixup/CutMix, when `[augment]` turns either on; it keeps the images before mixing
    /// when a teacher sees them (`distill.teacher_input = "unmixed"`).
    fn transform(&self, config: &Config) -> Option<Arc<dyn BatchTransform<Labels>>> {
        let mixer = Mixer::new(
            &config.augment,
            config.optimizer.label_smoothing,
            self.classes,
            config.seed,
        )?;
        let d = &config.distill;
        let teacher_sees_unmixed = d.kind != DistillType::None
            && d.teacher.is_some()
            && d.teacher_input == TeacherInput::Unmixed;
        let mixer = if teacher_sees_unmixed {
            mixer.keeping_unmixed()
        } else {
            mixer
        };
        Some(Arc::new(mixer))
    }

    fn forward_loss<B: VitKernels, E: Backbone<B>>(
        &self,
        model: &Model<B, E, ClassifierHead<B>>,
        images: Tensor<B, 4>,
        batch: &Batch<Labels>,
        training: bool,
    ) -> (Tensor<B, 1>, ClassOutput) {
        let step = self.step(model, images, batch, training);
        let output = ClassOutput {
            logits: host(step.logits),
            heads: step.heads.map(|(cls, dist)| (host(cls), host(dist))),
            parts: step
                .parts
                .iter()
                .map(|(name, part)| (*name, scalar(part)))
                .collect(),
        };
        (step.loss, output)
    }

    /// The top-1 hits and the distillation parts stay on the device.
    fn forward_train<B: VitKernels, E: Backbone<B>>(
        &self,
        model: &Model<B, E, ClassifierHead<B>>,
        images: Tensor<B, 4>,
        batch: &Batch<Labels>,
    ) -> (Tensor<B, 1>, StepReadings<B>) {
        let step = self.step(model, images, batch, true);
        let t = &batch.targets;
        let scored = t.mixed.as_ref().map_or(&t.labels, |m| &m.dominant);
        let readings = StepReadings {
            score: Reading::Device(top1_hits(step.logits, scored)),
            parts: step
                .parts
                .into_iter()
                .map(|(name, part)| (name, Reading::Device(part.detach())))
                .collect(),
        };
        (step.loss, readings)
    }

    fn with_teacher(&self, targets: &mut Labels, logits: Vec<f32>) {
        targets.teacher = Some(logits);
    }

    fn loss_parts(&self, predictions: &ClassOutput) -> Vec<(&'static str, f64)> {
        predictions.parts.clone()
    }

    /// Top-1 hits, against the dominant label of a mixed image.
    fn train_score(&self, predictions: &ClassOutput, batch: &Batch<Labels>) -> f64 {
        let t = &batch.targets;
        let scored = t.mixed.as_ref().map_or(&t.labels, |m| &m.dominant);
        top_k_correct(&predictions.logits, self.classes, scored, 1) as f64
    }

    fn tally(&self) -> TopK {
        TopK::default()
    }

    fn add(&self, tally: &mut TopK, predictions: &ClassOutput, batch: &Batch<Labels>) {
        let labels = &batch.targets.labels;
        let n = self.classes;
        tally.top1 += top_k_correct(&predictions.logits, n, labels, 1);
        tally.top5 += top_k_correct(&predictions.logits, n, labels, 5);
        if let Some((cls, dist)) = &predictions.heads {
            let [c, d] = tally.heads.get_or_insert([0, 0]);
            *c += top_k_correct(cls, n, labels, 1);
            *d += top_k_correct(dist, n, labels, 1);
        }
        if let Some(teacher) = &batch.targets.teacher {
            let [hits, agree] = tally.teacher.get_or_insert([0, 0]);
            *hits += top_k_correct(teacher, n, labels, 1);
            *agree += top_k_correct(&predictions.logits, n, &argmax_rows(teacher, n), 1);
        }
        tally.seen += batch.len();
    }

    fn scores(&self, tally: TopK) -> Scores {
        let n = tally.seen.max(1) as f64;
        let top1 = tally.top1 as f64 / n;
        let mut figures = vec![("top1".to_string(), top1)];
        if self.classes > TOP5_FROM {
            figures.push(("top5".into(), tally.top5 as f64 / n));
        }
        if let Some([cls, dist]) = tally.heads {
            figures.push(("top1_cls".into(), cls as f64 / n));
            figures.push(("top1_dist".into(), dist as f64 / n));
        }
        if let Some([hits, agree]) = tally.teacher {
            figures.push(("teacher_top1".into(), hits as f64 / n));
            figures.push(("teacher_agreement".into(), agree as f64 / n));
        }
        Scores {
            main: top1,
            figures,
        }
    }

    fn data_panels(&self, input: &PanelInput<'_>) -> anyhow::Result<Panels> {
        panels::data_panels(input)
    }

    fn model_panels<E: Backbone<Flex>>(
        &self,
        model: &Model<Flex, E, ClassifierHead<Flex>>,
        input: &PanelInput<'_>,
    ) -> anyhow::Result<Panels> {
        panels::model_panels(model, input)
    }

    fn predict<E: Backbone<Flex>>(
        &self,
        model: &Model<Flex, E, ClassifierHead<Flex>>,
        images: Tensor<Flex, 4>,
        _originals: &[Image],
        options: &PredictOptions,
    ) -> anyhow::Result<Vec<Answer>> {
        let probs = host(softmax(model.forward(images), 1));
        let n = self.classes;
        Ok(probs
            .chunks(n)
            .map(|p| {
                let mut order: Vec<usize> = (0..n).collect();
                order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
                let top: Vec<(&str, f32)> = order
                    .into_iter()
                    .take(options.top_k.max(1))
                    .map(|i| (self.names[i].as_str(), p[i]))
                    .collect();
                Answer {
                    text: top
                        .iter()
                        .map(|(c, prob)| format!("{c} {prob:.2}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    json: serde_json::json!({
                        "top": top
                            .iter()
                            .map(|(c, prob)| serde_json::json!({"class": c, "probability": prob}))
                            .collect::<Vec<_>>()
                    }),
                    files: Vec::new(),
                    boxes: None,
                    labels: None,
                }
            })
            .collect())
    }

    fn gradcam<E: Backbone<Grad>>(
        &self,
        model: &Model<Grad, E, ClassifierHead<Grad>>,
        images: Tensor<Grad, 4>,
        class: Option<usize>,
    ) -> anyhow::Result<Vec<Map>> {
        let [_, _, h, w] = images.dims();
        let (marked, targets) = marked_gradients(&model.encoder, images, &[], |features, _| {
            let logits = model.forward_head(features);
            let [b, k] = logits.dims();
            let top = host(logits.clone().argmax(1).float());
            let targets: Vec<usize> = (0..b).map(|j| class.unwrap_or(top[j] as usize)).collect();
            let mut picked = vec![0.0f32; b * k];
            for (j, &t) in targets.iter().enumerate() {
                picked[j * k + t] = 1.0;
            }
            let picked = Tensor::from_data(TensorData::new(picked, [b, k]), &logits.device());
            ((logits * picked).sum(), targets)
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
        Ok(timm_args(config, classes, timm))
    }
}

/// The timm model `timm` (the backbone's constructor and arguments) with a classifier of
/// `classes`, with the class names and input normalisation `config` trains with, and the
/// `pretrained_cfg` that makes `timm.create_model(timm_name, pretrained=True,
/// pretrained_cfg_overlay=dict(pretrained_cfg, file=…), **model_args)` load the export whole
/// (the classifier kept: its class count is the cfg's) and preprocess as vitrun validates.
pub fn timm_args(config: &Config, classes: &[String], timm: TimmModel) -> serde_json::Value {
    let mut args = timm.args;
    args.insert("num_classes".into(), classes.len().into());
    let normalize = &config.augment.normalize;
    let channels = config.data.channels;
    let (mean, std) = if normalize.enabled {
        (normalize.mean.clone(), normalize.std.clone())
    } else {
        (vec![0.0; channels], vec![1.0; channels])
    };
    let crop = &config.augment.center_crop;
    // vitrun validates by resizing the short side to size·ratio and cropping the centre
    // (timm's crop_pct = 1 / ratio), or by resizing the whole image (timm's "squash"), with
    // data.interpolation (its PIL filters are timm's; vitrun's bilinear is closest to timm's).
    let (crop_pct, crop_mode) = if crop.enabled {
        (1.0 / crop.ratio, "center")
    } else {
        (1.0, "squash")
    };
    let size = config.data.image_size;
    let interpolation = match config.data.interpolation {
        Interpolation::Bilinear => "bilinear",
        Interpolation::Bicubic => "bicubic",
        Interpolation::Area => "box",
    };
    serde_json::json!({
        "architecture": timm.architecture,
        "timm_name": timm.name,
        "model_args": args,
        "label_names": classes,
        "mean": normalize.enabled.then_some(&normalize.mean),
        "std": normalize.enabled.then_some(&normalize.std),
        "pretrained_cfg": {
            "input_size": [channels, size, size],
            "crop_pct": crop_pct,
            "crop_mode": crop_mode,
            "interpolation": interpolation,
            "mean": mean,
            "std": std,
            "num_classes": classes.len(),
            "first_conv": timm.first_conv,
            "classifier": timm.classifier,
            "label_names": classes,
        },
    })
}
