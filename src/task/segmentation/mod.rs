//! Semantic segmentation: the head and decoders, the per-pixel loss, the metrics, the report
//! panels and the task.

mod decoder;
mod export;
pub mod head;
pub mod loss;
mod mask;
pub mod metrics;
mod panels;
pub mod predict;
mod task;
mod unet;

pub use decoder::ConvDecoder;
pub use head::SegmentationHead;
pub use task::Segmentation;
