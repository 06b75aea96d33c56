//! Cross-entropy with label smoothing or soft (mixed) targets, and top-k accuracy.

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

/// Mean cross-entropy of `logits` `[batch, classes]` against `labels`, with the target
/// spread as `1 - smoothing` on the label and `smoothing / classes` everywhere (timm).
pub fn cross_entropy<B: Backend>(
    logits: Tensor<B, 2>,
    labels: &[i64],
    smoothing: f64,
) -> Tensor<B, 1> {
    let classes = logits.dims()[1];
    let targets = smoothed_targets(labels, classes, smoothing);
    soft_cross_entropy(logits, &targets)
}

/// One-hot targets `[batch, classes]` with `1 - smoothing + smoothing / classes` on the label
/// and `smoothing / classes` elsewhere.
pub fn smoothed_targets(labels: &[i64], classes: usize, smoothing: f64) -> Vec<f32> {
    let off = (smoothing / classes as f64) as f32;
    let on = (1.0 - smoothing) as f32 + off;
    let mut target = vec![off; labels.len() * classes];
    for (row, &label) in labels.iter().enumerate() {
        target[row * classes + label as usize] = on;
    }
    target
}

/// Mean over rows of `-Σ target · log_softmax(logits)` (timm's `SoftTargetCrossEntropy`);
/// `targets` is `[batch, classes]` row-major.
pub fn soft_cross_entropy<B: Backend>(logits: Tensor<B, 2>, targets: &[f32]) -> Tensor<B, 1> {
    let dims = logits.dims();
    let target =
        Tensor::<B, 2>::from_data(TensorData::new(targets.to_vec(), dims), &logits.device());
    let logp = log_softmax(logits, 1);
    (target * logp).sum_dim(1).mean().neg()
}

/// How many rows have their label among the `k` highest logits (ties broken by index).
pub fn top_k_correct(logits: &[f32], classes: usize, labels: &[i64], k: usize) -> usize {
    labels
        .iter()
        .enumerate()
        .filter(|(row, &label)| {
            let scores = &logits[row * classes..(row + 1) * classes];
            let target = scores[label as usize];
            let better = scores
                .iter()
                .enumerate()
                .filter(|(i, &s)| s > target || (s == target && *i < label as usize))
                .count();
            better < k
        })
        .count()
}
