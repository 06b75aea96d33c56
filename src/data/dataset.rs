//! The dataset abstraction and the errors reading one can give.

use std::sync::Arc;

use super::geometry::{transform_boxes, Mask, ObjectBox, Step};
use super::image::Image;

/// Why a dataset or one of its images could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DataError {
    #[error("dataset path {path} does not exist; fix data.path in the experiment file (or install the dataset)")]
    MissingPath { path: String },
    #[error("cannot read {path}: {reason}; fix or remove the file, or set data.skip_bad = true to skip unreadable images")]
    BadFile { path: String, reason: String },
    #[error("{path}: {reason}")]
    Layout { path: String, reason: String },
    #[error("data.classes: {reason}")]
    Classes { reason: String },
    #[error("data loader failed: {reason}")]
    Worker { reason: String },
    #[error("the {split} split has no usable image: {reason}")]
    Empty { split: &'static str, reason: String },
}

/// What an image is labelled with; the kind is the task's.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A class index (classification).
    Class(usize),
    /// A class id per pixel of the image, `IGNORE_LABEL` where nothing counts (segmentation).
    Mask(Mask),
    /// Objects with their class and box in pixels of the image (detection).
    Objects(Vec<ObjectBox>),
}

impl Target {
    /// The target after the image went through `steps` from `height × width`: masks are
    /// resampled with it, boxes mapped, clipped and dropped when less than `min_visible` of
    /// them stays in the picture; a class does not move.
    pub fn moved(self, steps: &[Step], height: usize, width: usize, min_visible: f64) -> Target {
        match self {
            Target::Class(c) => Target::Class(c),
            Target::Mask(mask) => Target::Mask(steps.iter().fold(mask, |m, s| s.mask(&m))),
            Target::Objects(objects) => {
                Target::Objects(transform_boxes(&objects, steps, height, width, min_visible))
            }
        }
    }
}

/// One labelled image.
#[derive(Debug, Clone)]
pub struct Sample {
    pub image: Image,
    pub target: Target,
}

impl Sample {
    /// An image of class `label`.
    pub fn classified(image: Image, label: usize) -> Sample {
        Sample {
            image,
            target: Target::Class(label),
        }
    }

    /// The class of a classification sample; `None` for a mask or boxes.
    pub fn class(&self) -> Option<usize> {
        match self.target {
            Target::Class(c) => Some(c),
            _ => None,
        }
    }
}

/// A finite, indexable set of labelled images. `get` must be deterministic for an index.
pub trait Dataset: Send + Sync {
    /// Number of samples.
    fn len(&self) -> usize;

    /// Whether there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads (or generates) sample `index`.
    fn get(&self, index: usize) -> Result<Sample, DataError>;
}

/// A dataset's train and validation splits with their class names.
#[derive(Clone)]
pub struct Splits {
    pub train: Arc<dyn Dataset>,
    pub val: Arc<dyn Dataset>,
    pub classes: Vec<String>,
    /// A short description for logs (`synthetic vehicles (generated)`, a path, …).
    pub source: String,
}

/// Picks the configured subset and order of a dataset's own class names.
pub fn select_classes(own: &[String], wanted: Option<&[String]>) -> Result<Vec<usize>, DataError> {
    match wanted {
        None => Ok((0..own.len()).collect()),
        Some(names) => names
            .iter()
            .map(|n| {
                own.iter()
                    .position(|o| o == n)
                    .ok_or_else(|| DataError::Classes {
                        reason: format!("unknown class {n:?}; this dataset has {}", own.join(", ")),
                    })
            })
            .collect(),
    }
}

/// Splits `items` into (train, validation) by a seeded shuffle: the first `round(len ·
/// fraction)` of the shuffle are held out for validation.
pub fn hold_out<T>(mut items: Vec<T>, fraction: f64, seed: u64) -> (Vec<T>, Vec<T>) {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    items.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let n_val = ((items.len() as f64) * fraction).round() as usize;
    let train = items.split_off(n_val);
    (train, items)
}
