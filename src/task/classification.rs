//! Classification: one label an image, cross-entropy (soft targets under Mixup/CutMix), top-1
//! and top-5.

use burn::tensor::Tensor;

use super::{Scores, Task};
use crate::config::Config;
use crate::data::Batch;
use crate::kernels::VitKernels;
use crate::model::Vit;
use crate::train::loss::{cross_entropy, soft_cross_entropy, top_k_correct};

/// Top-5 is logged only with more classes than this (with 5 or fewer it is always 100 %).
const TOP5_FROM: usize = 5;

/// The classification task.
pub struct Classification {
    classes: usize,
    label_smoothing: f64,
}

/// Validation counts.
#[derive(Debug, Default)]
pub struct TopK {
    top1: usize,
    top5: usize,
    seen: usize,
}

fn host(logits: Tensor<impl burn::tensor::backend::Backend, 2>) -> Vec<f32> {
    logits
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap_or_default()
}

impl Task for Classification {
    type Output = Vec<f32>;
    type Tally = TopK;
    const MAIN: &'static str = "top1";
    const TRAIN_SCORE: &'static str = "top1";

    fn new(config: &Config, classes: &[String]) -> anyhow::Result<Self> {
        Ok(Classification {
            classes: classes.len(),
            label_smoothing: config.optimizer.label_smoothing,
        })
    }

    fn forward_loss<B: VitKernels>(
        &self,
        model: &Vit<B>,
        images: Tensor<B, 4>,
        batch: &Batch,
        training: bool,
    ) -> (Tensor<B, 1>, Vec<f32>) {
        let logits = model.forward(images);
        let loss = match (&batch.targets, training) {
            (Some(mixed), true) => soft_cross_entropy(logits.clone(), &mixed.values),
            (_, true) => cross_entropy(logits.clone(), &batch.labels, self.label_smoothing),
            (_, false) => cross_entropy(logits.clone(), &batch.labels, 0.0),
        };
        (loss, host(logits))
    }

    /// Top-1 hits, against the dominant label of a mixed image.
    fn train_score(&self, predictions: &Vec<f32>, batch: &Batch) -> f64 {
        let scored = batch
            .targets
            .as_ref()
            .map_or(&batch.labels, |t| &t.dominant);
        top_k_correct(predictions, self.classes, scored, 1) as f64
    }

    fn tally(&self) -> TopK {
        TopK::default()
    }

    fn add(&self, tally: &mut TopK, predictions: &Vec<f32>, batch: &Batch) {
        tally.top1 += top_k_correct(predictions, self.classes, &batch.labels, 1);
        tally.top5 += top_k_correct(predictions, self.classes, &batch.labels, 5);
        tally.seen += batch.len();
    }

    fn scores(&self, tally: TopK) -> Scores {
        let n = tally.seen.max(1) as f64;
        let top1 = tally.top1 as f64 / n;
        let mut figures = vec![("top1".to_string(), top1)];
        if self.classes > TOP5_FROM {
            figures.push(("top5".into(), tally.top5 as f64 / n));
        }
        Scores {
            main: top1,
            shown: figures.len(),
            figures,
        }
    }
}
