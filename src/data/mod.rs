//! Datasets (synthetic vehicles, ImageFolder, IDX), augmentations and the parallel loader.

pub mod augment;
mod batch;
pub mod boxes;
pub mod coco;
mod dataset;
pub mod folder;
pub mod geometry;
pub mod idx;
mod image;
pub mod lesions;
mod loader;
pub mod mask_folder;
pub mod mix;
pub mod nifti;
mod preflight;
pub mod rand_augment;
mod resample;
pub mod scenes;
pub mod synthetic;
pub mod volumes;

use std::path::Path;
use std::sync::Arc;

pub use augment::{Augmented, Pipeline};
pub use batch::{Batch, BatchTransform, Labels, Masks, Objects, SoftTargets, TargetKind, Targets};
pub use dataset::{DataError, Dataset, Sample, Splits, Target};
pub use image::Image;
pub use loader::{
    epoch_order, load_batch, panic_text, repeated_order, Draw, EpochLoader, LoaderSpec,
};
pub use mix::Mixer;
pub use preflight::preflight;

use crate::config::{Config, DatasetKind};
use dataset::select_classes;
use lesions::{SyntheticLesions, LESION_CLASSES};
use scenes::{SceneTarget, SyntheticScenes};
use synthetic::{SyntheticVehicles, VEHICLE_CLASSES};

/// Opens the train and validation splits an experiment asks for, with targets of the kind its
/// task trains on (a dataset of scenes gives boxes or masks); a split without an image is an
/// error.
pub fn open(config: &Config, wants: TargetKind) -> Result<Splits, DataError> {
    let splits = open_splits(config, wants)?;
    if splits.train.is_empty() {
        return Err(DataError::Empty {
            split: "train",
            reason: format!(
                "{} has no training image for the selected classes; check data.path and data.classes",
                splits.source
            ),
        });
    }
    if splits.val.is_empty() {
        return Err(DataError::Empty {
            split: "validation",
            reason: format!(
                "{} has no validation image (data.val_split = {}, and no val/ or t10k split); set data.val_split above 0, e.g. 0.1",
                splits.source, config.data.val_split
            ),
        });
    }
    Ok(splits)
}

fn open_splits(config: &Config, wants: TargetKind) -> Result<Splits, DataError> {
    let d = &config.data;
    let caps = (d.train_size, d.val_size);
    let path = || Path::new(d.path.as_deref().unwrap_or(""));
    match d.dataset {
        DatasetKind::Synthetic => {
            let own: Vec<String> = VEHICLE_CLASSES.iter().map(|s| s.to_string()).collect();
            let picked = select_classes(&own, config.class_names())?;
            let make = |split, len| {
                SyntheticVehicles::new(config.seed, split, len, d.image_size, picked.clone())
            };
            Ok(Splits {
                train: Arc::new(make(0, d.train_size.unwrap_or(2000))),
                val: Arc::new(make(1, d.val_size.unwrap_or(500))),
                classes: picked.iter().map(|&i| own[i].clone()).collect(),
                source: "synthetic vehicles (generated)".into(),
            })
        }
        DatasetKind::SyntheticScenes => {
            let own: Vec<String> = VEHICLE_CLASSES.iter().map(|s| s.to_string()).collect();
            let picked = select_classes(&own, config.class_names())?;
            let names: Vec<String> = picked.iter().map(|&i| own[i].clone()).collect();
            let (target, classes) = match wants {
                TargetKind::Objects => (SceneTarget::Objects, names),
                TargetKind::Mask => (
                    SceneTarget::ClassMask,
                    std::iter::once("background".to_string()).chain(names).collect(),
                ),
                TargetKind::Class => return Err(DataError::Layout {
                    path: "data.dataset".into(),
                    reason: "synthetic_scenes gives boxes and masks, not one class an image; set head.task = \"detection\" or \"segmentation\", or use dataset = \"synthetic\" to classify".into(),
                }),
            };
            let make = |split, len| {
                SyntheticScenes::new(
                    config.seed,
                    split,
                    len,
                    d.image_size,
                    picked.clone(),
                    d.max_objects,
                    target,
                )
            };
            Ok(Splits {
                train: Arc::new(make(0, d.train_size.unwrap_or(2000))),
                val: Arc::new(make(1, d.val_size.unwrap_or(500))),
                classes,
                source: "synthetic vehicle scenes (generated)".into(),
            })
        }
        DatasetKind::SyntheticLesions => {
            if wants != TargetKind::Mask {
                return Err(DataError::Layout {
                    path: "data.dataset".into(),
                    reason: "synthetic_lesions gives lesion masks only; set head.task = \"segmentation\"".into(),
                });
            }
            let make = |split, len| SyntheticLesions::new(config.seed, split, len, d.image_size);
            Ok(Splits {
                train: Arc::new(make(0, d.train_size.unwrap_or(2000))),
                val: Arc::new(make(1, d.val_size.unwrap_or(500))),
                classes: LESION_CLASSES.iter().map(|s| s.to_string()).collect(),
                source: "synthetic lesion scans (generated)".into(),
            })
        }
        DatasetKind::Coco => {
            let Some(annotations) = d.annotations.as_deref() else {
                return Err(DataError::Layout {
                    path: "data.annotations".into(),
                    reason: "dataset = \"coco\" needs the JSON of boxes: set data.annotations (and data.val_annotations, or data.val_split)".into(),
                });
            };
            let paths = coco::CocoPaths {
                images: path(),
                annotations: Path::new(annotations),
                val_annotations: d.val_annotations.as_deref().map(Path::new),
                val_images: d.val_path.as_deref().map(Path::new),
            };
            coco::open(
                paths,
                config.class_names(),
                d.val_split,
                config.seed,
                caps,
                d.skip_bad,
                d.max_image_pixels,
            )
        }
        DatasetKind::Nifti => volumes::open(
            path(),
            config.class_names(),
            d.val_split,
            config.seed,
            caps,
            d.max_image_pixels,
            volumes::Slicing::of(d),
        ),
        DatasetKind::MaskFolder => mask_folder::open(
            path(),
            config.class_names(),
            d.val_split,
            config.seed,
            caps,
            d.skip_bad,
            d.max_image_pixels,
        ),
        DatasetKind::ImageFolder => folder::open(
            path(),
            config.class_names(),
            d.val_split,
            config.seed,
            caps,
            d.max_image_pixels,
        ),
        DatasetKind::Idx => idx::open(
            path(),
            config.class_names(),
            d.val_split,
            caps,
            d.max_image_pixels,
        ),
    }
}
