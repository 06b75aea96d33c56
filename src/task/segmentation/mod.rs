//! Semantic segmentation: the linear decoder, the per-pixel loss, the metrics and the task.

pub mod head;
pub mod loss;
pub mod metrics;
mod task;

pub use task::Segmentation;
