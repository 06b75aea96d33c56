//! DETR-style detection: the query decoder's outputs, Hungarian matching, the set loss and COCO
//! mAP (box geometry is `data::boxes`, which the augmentations share).

pub mod head;
pub mod loss;
pub mod map;
pub mod matcher;
mod task;

pub use task::{Detection, DetectionTally};
