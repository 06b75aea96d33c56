//! DETR-style detection: Hungarian matching and COCO mAP (box geometry is `data::boxes`, which
//! the augmentations share).

pub mod map;
pub mod matcher;
