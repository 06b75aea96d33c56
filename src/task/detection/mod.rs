//! DETR-style detection: the query decoder and its head, Hungarian matching, the set loss, COCO
//! mAP and the report panels (box geometry is `data::boxes`, which the augmentations share).

mod detr;
mod explain;
mod export;
pub mod head;
pub mod loss;
pub mod map;
pub mod matcher;
mod panels;
pub mod predict;
mod task;

pub use detr::{CrossAttention, DetrDecoder, DetrLayer, QueryFeatures};
pub use head::DetectionHead;
pub use task::{Detection, DetectionTally};
