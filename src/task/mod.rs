//! What each task adds to the shared ViT encoder and trial loop: its loss, its training score
//! and its validation metrics (classification, segmentation, detection). The trial is generic over [`Task`] and picks the implementation once, from
//! `head.task`.

pub mod classification;
pub mod detection;
pub mod segmentation;

use burn::tensor::Tensor;

use crate::config::Config;
use crate::data::Batch;
use crate::kernels::VitKernels;
use crate::model::Vit;

/// What a validation pass measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// The task's main metric (maximised): what `best/` and the log line follow.
    pub main: f64,
    /// Every figure to log under the split, by name, the main one first.
    pub figures: Vec<(String, f64)>,
    /// How many of the first figures the epoch's log line shows (the rest, such as per-class
    /// IoU, are only stored).
    pub shown: usize,
}

/// One task's part of a trial.
pub trait Task: Sized {
    /// The model's predictions on a batch, on the host, for scoring.
    type Output;
    /// What validation accumulates over batches.
    type Tally;
    /// The main validation metric's name under `val/` and `val_ema/`.
    const MAIN: &'static str;
    /// The training score's name under `train/`.
    const TRAIN_SCORE: &'static str;

    /// The task for an experiment whose dataset has `classes`; an option that does not fit
    /// them (a class weight per class) is an error naming the key.
    fn new(config: &Config, classes: &[String]) -> anyhow::Result<Self>;

    /// The loss of a batch (the training loss when `training`: label smoothing, mixed
    /// targets) and the model's predictions on the host, for scoring.
    fn forward_loss<B: VitKernels>(
        &self,
        model: &Vit<B>,
        images: Tensor<B, 4>,
        batch: &Batch,
        training: bool,
    ) -> (Tensor<B, 1>, Self::Output);

    /// The training score summed over the batch's images.
    fn train_score(&self, predictions: &Self::Output, batch: &Batch) -> f64;

    /// An empty validation tally.
    fn tally(&self) -> Self::Tally;

    /// Adds a validation batch's predictions.
    fn add(&self, tally: &mut Self::Tally, predictions: &Self::Output, batch: &Batch);

    /// The validation figures of a whole pass.
    fn scores(&self, tally: Self::Tally) -> Scores;
}

#[cfg(test)]
mod tests {
    use super::classification::Classification;
    use super::detection::Detection;
    use super::segmentation::Segmentation;
    use super::Task;
    use crate::config;

    /// The trial logs each task's main metric under the name the config's default ranks by.
    #[test]
    fn each_task_logs_the_metric_its_experiments_rank_by() {
        let main = |t: config::Task| t.main_metric();
        assert_eq!(
            main(config::Task::Classification).name,
            Classification::MAIN
        );
        assert_eq!(main(config::Task::Segmentation).name, Segmentation::MAIN);
        assert_eq!(main(config::Task::Detection).name, Detection::MAIN);
        // Early stopping accepts what `Task::logs` lists: each task's own scores are in it.
        for (t, score, train) in [
            (
                config::Task::Classification,
                Classification::MAIN,
                Classification::TRAIN_SCORE,
            ),
            (
                config::Task::Segmentation,
                Segmentation::MAIN,
                Segmentation::TRAIN_SCORE,
            ),
            (
                config::Task::Detection,
                Detection::MAIN,
                Detection::TRAIN_SCORE,
            ),
        ] {
            assert!(t.logs(&format!("val/{score}")) && t.logs(&format!("train/{train}")));
            assert_eq!(main(t).split, "val");
        }
    }
}
