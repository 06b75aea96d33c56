//! DeiT's distillation loss (`DistillationLoss` in facebookresearch/deit's `losses.py`): the
//! class head learns from the labels, the distillation head from the teacher's logits, and
//! the two terms are weighted by `alpha`.

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::loss::cross_entropy;
use crate::config::{DistillConfig, DistillType};

/// The distillation term and its weight, for a `[distill]` type other than `none`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DistillLoss {
    pub kind: DistillType,
    pub alpha: f64,
    pub tau: f64,
}

impl DistillLoss {
    /// The loss `[distill]` asks for; `None` for `type = "none"`.
    pub fn new(config: &DistillConfig) -> Option<DistillLoss> {
        (config.kind != DistillType::None).then_some(DistillLoss {
            kind: config.kind,
            alpha: config.alpha,
            tau: config.tau,
        })
    }

    /// The distillation head's term against the teacher's logits `[batch, classes]`
    /// (row-major): soft, `τ²·KL(softmax(teacher/τ) ‖ softmax(dist/τ))` summed over the batch and
    /// divided by its element count (DeiT's `kl_div(..., reduction='sum', log_target=True) ·
    /// τ² / numel`); hard, the cross-entropy against the teacher's top class.
    pub fn distillation<B: Backend>(&self, dist: Tensor<B, 2>, teacher: &[f32]) -> Tensor<B, 1> {
        let dims = dist.dims();
        match self.kind {
            DistillType::Hard => cross_entropy(dist, &argmax_rows(teacher, dims[1]), 0.0),
            _ => {
                let teacher = Tensor::<B, 2>::from_data(
                    TensorData::new(teacher.to_vec(), dims),
                    &dist.device(),
                );
                let tau = self.tau;
                let student = log_softmax(dist.div_scalar(tau), 1);
                let target = log_softmax(teacher.div_scalar(tau), 1);
                (target.clone().exp() * (target - student))
                    .sum()
                    .mul_scalar(tau * tau / (dims[0] * dims[1]) as f64)
            }
        }
    }

    /// `(1 − α)·base + α·distillation`.
    pub fn combine<B: Backend>(
        &self,
        base: Tensor<B, 1>,
        distillation: Tensor<B, 1>,
    ) -> Tensor<B, 1> {
        base.mul_scalar(1.0 - self.alpha) + distillation.mul_scalar(self.alpha)
    }
}

/// Each row's index of its largest value (the first of equals, as `torch.argmax`).
pub fn argmax_rows(logits: &[f32], classes: usize) -> Vec<i64> {
    logits
        .chunks(classes.max(1))
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |(best, max), (i, &v)| {
                    if v > max {
                        (i, v)
                    } else {
                        (best, max)
                    }
                })
                .0 as i64
        })
        .collect()
}
