//! Task-specific pieces on top of the shared ViT encoder: detection's boxes, matching and mAP,
//! segmentation's metrics.

pub mod detection;
pub mod segmentation;
