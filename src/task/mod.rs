//! Tasks: what a model is trained to predict. A task owns its target type, its head on the
//! backbone, its loss, its metrics (the main one first), its report panels and its predict
//! output; the trial, the report, `predict` and `export` call through [`Task`]. [`with_task`]
//! is the one place that turns `head.task` into a task's type.

pub mod classification;
mod dense_export;
pub mod detection;
pub mod explain;
mod outputs;
mod panels;
pub mod readings;
pub mod segmentation;

pub use outputs::npy_f32;
pub(crate) use panels::batch as images_tensor;
pub use panels::{
    denorm, val_samples, Chosen, PanelInput, PanelOptions, Panels, SampleOrder, Samples, WORST_POOL,
};

use std::sync::Arc;

use burn::backend::Flex;
use burn::module::{Module, ModuleDisplay};
use burn::tensor::Tensor;

use crate::config::{Config, ConfigError, Loaded, Objective, StopCriterion, TaskKind};
use crate::contract::TaskMetrics;
use crate::data::{Batch, BatchTransform, Image, Pipeline, Targets};
use crate::kernels::{TrainBackend, VitKernels};
use crate::model::{Backbone, BackboneShape, Model, StateDict, TimmModel};
use classification::Classification;
use detection::Detection;
use explain::{Grad, Map};
use readings::{Reading, StepReadings};
use segmentation::Segmentation;

/// What a validation pass measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// The task's main metric (maximised): what `best/` and the log line follow.
    pub main: f64,
    /// Every figure to log under the split, by name, the main one first.
    pub figures: Vec<(String, f64)>,
}

/// What `vitrun predict` asks of a task besides the images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PredictOptions {
    /// How many classes to name per image (classification).
    pub top_k: usize,
    /// Per-class probability maps as well (segmentation's `--probs`).
    pub probs: bool,
    /// The lowest score of a box kept (detection); `None`: the trial's `head.score_threshold`.
    pub threshold: Option<f64>,
    /// Whether the answers carry their files (masks, overlays, probability maps): only when
    /// they are written (`--out`), so that nothing is encoded to be thrown away.
    pub files: bool,
}

/// A file of one image's prediction: the suffix its name takes after the image's stem
/// (`mask.png`), and its bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictFile {
    pub suffix: &'static str,
    pub bytes: Vec<u8>,
}

/// A box a detector found, in pixels of the image as given.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundBox {
    pub class: String,
    /// The class's index in the trial's class list.
    pub class_index: usize,
    pub score: f64,
    /// `[x, y, width, height]`, COCO's order.
    pub bbox: [f64; 4],
}

/// One image's answer from `vitrun predict`, in the task's own words.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// One line of text (`car 0.93, truck 0.04`).
    pub text: String,
    /// The same as a JSON value.
    pub json: serde_json::Value,
    /// The files `--out DIR` receives for this image (masks, overlays, probability maps).
    pub files: Vec<PredictFile>,
    /// The boxes found, for a task that finds boxes (the run's COCO results file).
    pub boxes: Option<Vec<FoundBox>>,
    /// Each pixel's class id, row-major at the image's size, for a task that labels pixels
    /// (a label volume stacks them).
    pub labels: Option<Vec<u8>>,
}

/// One task's part of a model and a trial.
pub trait Task: Sized + Send + Sync + 'static {
    /// The targets of a batch (class labels, masks, objects).
    type Targets: Targets;
    /// The head on the backbone, on any backend.
    type Head<B: VitKernels>: Module<B> + ModuleDisplay + core::fmt::Debug;
    /// The model's predictions on a batch, on the host, for scoring.
    type Output;
    /// What validation accumulates over batches.
    type Tally;
    /// What the task logs (its main metric first).
    const METRICS: TaskMetrics;

    /// The task for an experiment whose dataset has `classes`; an option that does not fit
    /// them (a class weight per class) is an error naming the key.
    fn new(config: &Config, classes: &[String]) -> anyhow::Result<Self>;

    /// The checks of an experiment of this task that need the backbone's facts (not the
    /// config's alone): the key at fault and why.
    fn check(config: &Config) -> Result<(), (&'static str, String)> {
        let _ = config;
        Ok(())
    }

    /// A freshly initialised head for a backbone of `shape`.
    fn head<B: VitKernels>(&self, shape: BackboneShape, device: &B::Device) -> Self::Head<B>;

    /// The head's weights without autodiff (for validation and the weight average).
    fn valid_head<B: TrainBackend>(head: &Self::Head<B>) -> Self::Head<B::InnerBackend>;

    /// Work on each training batch after it is assembled (Mixup/CutMix), if any.
    fn transform(&self, config: &Config) -> Option<Arc<dyn BatchTransform<Self::Targets>>> {
        let _ = config;
        None
    }

    /// The loss of a batch (the training loss when `training`: label smoothing, mixed
    /// targets) and the model's predictions on the host, for scoring.
    fn forward_loss<B: VitKernels, E: Backbone<B>>(
        &self,
        model: &Model<B, E, Self::Head<B>>,
        images: Tensor<B, 4>,
        batch: &Batch<Self::Targets>,
        training: bool,
    ) -> (Tensor<B, 1>, Self::Output);

    /// A training batch's loss, with its score and loss parts as readings a task may keep on
    /// the device (the trial copies them to the host every `train.read_every` steps). The
    /// default reads them at once, through [`Task::forward_loss`].
    fn forward_train<B: VitKernels, E: Backbone<B>>(
        &self,
        model: &Model<B, E, Self::Head<B>>,
        images: Tensor<B, 4>,
        batch: &Batch<Self::Targets>,
    ) -> (Tensor<B, 1>, StepReadings<B>) {
        let (loss, predictions) = self.forward_loss(model, images, batch, true);
        let readings = StepReadings {
            score: Reading::Host(self.train_score(&predictions, batch)),
            parts: self
                .loss_parts(&predictions)
                .into_iter()
                .map(|(name, value)| (name, Reading::Host(value)))
                .collect(),
        };
        (loss, readings)
    }

    /// Hands the teacher's class logits `[batch, classes]` of a batch to its targets
    /// (`[distill]`); a task that cannot learn from a teacher (the config refuses distillation
    /// for it) leaves them.
    fn with_teacher(&self, targets: &mut Self::Targets, logits: Vec<f32>) {
        let _ = (targets, logits);
    }

    /// Named parts of a training batch's loss (DeiT's `loss_cls`, `loss_dist`), each averaged
    /// over the batch: the trial logs their epoch means under `train/`.
    fn loss_parts(&self, predictions: &Self::Output) -> Vec<(&'static str, f64)> {
        let _ = predictions;
        Vec::new()
    }

    /// The training score summed over the batch's images.
    fn train_score(&self, predictions: &Self::Output, batch: &Batch<Self::Targets>) -> f64;

    /// An empty validation tally.
    fn tally(&self) -> Self::Tally;

    /// Adds a validation batch's predictions.
    fn add(
        &self,
        tally: &mut Self::Tally,
        predictions: &Self::Output,
        batch: &Batch<Self::Targets>,
    );

    /// The validation figures of a whole pass, named as [`Task::METRICS`] lists them.
    fn scores(&self, tally: Self::Tally) -> Scores;

    /// The report's figures of the trial's data alone (augmentation samples).
    fn data_panels(&self, input: &PanelInput<'_>) -> anyhow::Result<Panels>;

    /// The report's figures of a trial whose weights are in `model`.
    fn model_panels<E: Backbone<Flex>>(
        &self,
        model: &Model<Flex, E, Self::Head<Flex>>,
        input: &PanelInput<'_>,
    ) -> anyhow::Result<Panels>;

    /// The pipeline `vitrun predict` reads images with, given the trial's validation one: a
    /// dense task maps its answer back onto the whole image, so it replaces a centre crop with
    /// a resize of the whole image.
    fn predict_pipeline(&self, validation: Pipeline) -> Pipeline {
        validation
    }

    /// `vitrun predict`'s answer for each image of `images` (`[n, channels, size, size]`,
    /// through [`Task::predict_pipeline`]); `originals` are the same images as decoded, at
    /// their own sizes, for answers given in their pixels.
    fn predict<E: Backbone<Flex>>(
        &self,
        model: &Model<Flex, E, Self::Head<Flex>>,
        images: Tensor<Flex, 4>,
        originals: &[Image],
        options: &PredictOptions,
    ) -> anyhow::Result<Vec<Answer>>;

    /// Grad-CAM of `images` (`[n, channels, size, size]`, through
    /// [`Task::predict_pipeline`]): each image's map of the score of class `class`, or of the
    /// model's own answer. A task without a score to explain says so.
    fn gradcam<E: Backbone<Grad>>(
        &self,
        model: &Model<Grad, E, Self::Head<Grad>>,
        images: Tensor<Grad, 4>,
        class: Option<usize>,
    ) -> anyhow::Result<Vec<Map>> {
        let _ = (model, images, class);
        anyhow::bail!(
            "Grad-CAM of a {} model is not in vitrun yet; use --method attention or rollout",
            Self::METRICS.task
        )
    }

    /// The task's own attention maps of `images` for `vitrun explain --method attention`,
    /// where it has some that say more than the encoder's (a detector: the query's
    /// cross-attention over the patches behind its best box, of class `class` when given,
    /// DETR's figure); `None` draws the encoder's.
    fn attention<E: Backbone<Flex>>(
        &self,
        model: &Model<Flex, E, Self::Head<Flex>>,
        images: Tensor<Flex, 4>,
        class: Option<usize>,
    ) -> Option<anyhow::Result<Vec<Map>>> {
        let _ = (model, images, class);
        None
    }

    /// What `vitrun export` writes beside the weights so that timm rebuilds the model (on a
    /// backbone of `backbone`'s shape); an error says why this task's model cannot be exported
    /// (by default: only classifiers are).
    fn export_args(
        &self,
        _config: &Config,
        _classes: &[String],
        _timm: TimmModel,
        _backbone: BackboneShape,
    ) -> anyhow::Result<serde_json::Value> {
        Err(not_exported(Self::METRICS.task))
    }

    /// The exported state dict of a model whose weights under timm's names are `sd` (by
    /// default as it is: a classifier's head is timm's `head`).
    fn export_weights(&self, sd: StateDict) -> anyhow::Result<StateDict> {
        Ok(sd)
    }
}

/// Work generic over the task `head.task` names.
pub trait TaskWork {
    type Output;
    fn run<T: Task>(self) -> Self::Output;
}

/// Runs `work` with the task `kind` names: the one match on `head.task`.
pub fn with_task<W: TaskWork>(kind: TaskKind, work: W) -> W::Output {
    match kind {
        TaskKind::Classification => work.run::<Classification>(),
        TaskKind::Segmentation => work.run::<Segmentation>(),
        TaskKind::Detection => work.run::<Detection>(),
    }
}

/// What a trial of task `kind` logs.
pub fn metrics(kind: TaskKind) -> &'static TaskMetrics {
    struct Of;
    impl TaskWork for Of {
        type Output = &'static TaskMetrics;
        fn run<T: Task>(self) -> &'static TaskMetrics {
            &T::METRICS
        }
    }
    with_task(kind, Of)
}

/// The early-stopping rule of `loaded`'s sweep for its task: the metric defaulted to the
/// task's main one and checked against what the task logs (placed at its line).
pub fn stop_criterion(loaded: &Loaded) -> Result<Option<StopCriterion>, ConfigError> {
    let Some(rule) = &loaded.sweep.early_stop else {
        return Ok(None);
    };
    rule.resolve(metrics(loaded.config.head.task))
        .map(Some)
        .map_err(|e| loaded.sweep_error(e))
}

/// The objectives of `loaded`'s search (the task's main metric unless `[sweep] objective` or
/// `objectives` names others it logs), placed at their line when invalid.
pub fn objectives(loaded: &Loaded) -> Result<Vec<Objective>, ConfigError> {
    loaded
        .sweep
        .resolve_objectives(metrics(loaded.config.head.task))
        .map_err(|e| loaded.sweep_error(e))
}

/// The checks of an experiment that need its task's facts; what loads an experiment to plan
/// or run it calls this after `config::load`.
pub fn check(loaded: &Loaded) -> Result<(), ConfigError> {
    stop_criterion(loaded)?;
    if loaded.sweep.method.is_adaptive() {
        objectives(loaded)?;
    }
    struct Check<'a>(&'a Config);
    impl TaskWork for Check<'_> {
        type Output = Result<(), (&'static str, String)>;
        fn run<T: Task>(self) -> Self::Output {
            T::check(self.0)
        }
    }
    with_task(loaded.config.head.task, Check(&loaded.config)).map_err(|(key, reason)| {
        ConfigError::Invalid {
            place: loaded.where_set(key),
            key: key.to_string(),
            reason,
        }
    })
}

/// [`check`], and the files the experiment's data keys name are there and readable: what
/// `vitrun check`, a local sweep and a trial's process (before it claims the trial) run. (Not
/// `plan`, which lists trials on a machine that may not hold the data.)
pub fn preflight(loaded: &Loaded) -> Result<(), ConfigError> {
    check(loaded)?;
    crate::data::preflight(&loaded.config.data).map_err(|(key, reason)| ConfigError::Invalid {
        place: loaded.where_set(&key),
        key,
        reason,
    })
}

/// Why `vitrun export` refuses a trial of `task`, whose head has no PyTorch counterpart in
/// the export yet.
fn not_exported(task: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "vitrun export writes classifiers and segmenters for timm and PyTorch, and this model's head.task is {task:?}; vitrun predict gives its outputs (--out DIR)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Goal;

    /// Every task's figures follow the direction rule generic readers (reports, exports)
    /// apply to any metric name, and its main metric is maximised.
    #[test]
    fn every_tasks_metrics_agree_with_the_generic_direction_rule() {
        for kind in [
            TaskKind::Classification,
            TaskKind::Segmentation,
            TaskKind::Detection,
        ] {
            let m = metrics(kind);
            assert_eq!(serde_json::to_value(kind).unwrap(), m.task);
            assert_eq!(m.main().goal, Goal::Maximize, "{kind:?}");
            assert!(m.shown >= 1 && m.shown <= m.val.len(), "{kind:?}");
            assert!(m.logs(&m.main().key()) && m.logs(&format!("train/{}", m.train)));
            assert!(m.logs("val/loss") && m.logs("train/images_per_sec"));
        }
    }
}
