//! A batch ready for the model: its images and their targets, typed by the kind of target the
//! task trains on (class labels, masks, objects), so a task can only read the targets it has.

use super::dataset::Target;
use super::geometry::ObjectBox;

/// Which kind of target a sample has, or a task trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// One class an image.
    Class,
    /// A class per pixel.
    Mask,
    /// Boxes of objects with their classes.
    Objects,
}

impl TargetKind {
    /// What one target of this kind is, for errors ("a class label").
    pub fn describe(self) -> &'static str {
        match self {
            TargetKind::Class => "a class label",
            TargetKind::Mask => "a mask",
            TargetKind::Objects => "a list of boxes",
        }
    }
}

/// The targets of a batch, one per image, in the form one task reads them.
pub trait Targets: Default + Send + 'static {
    /// The kind of target this holds.
    const KIND: TargetKind;

    /// Adds one image's target; gives it back when it is of another kind.
    fn push(&mut self, target: Target) -> Result<(), Target>;

    /// Number of images.
    fn len(&self) -> usize;

    /// Whether there is no target.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A batch ready for the model: `images` is `[len, channels, size, size]` row-major.
#[derive(Debug, Clone, Default)]
pub struct Batch<T> {
    pub images: Vec<f32>,
    pub targets: T,
    pub channels: usize,
    pub size: usize,
    /// Samples skipped in this batch because their file was unreadable (`skip_bad`).
    pub skipped: Vec<String>,
    /// The images as they were before Mixup/CutMix, kept when a distillation teacher sees
    /// them (`distill.teacher_input = "unmixed"`); `None` when the batch was not mixed.
    pub unmixed: Option<Vec<f32>>,
}

impl<T: Targets> Batch<T> {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Whether the batch holds no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `[len, channels, size, size]`.
    pub fn dims(&self) -> [usize; 4] {
        [self.len(), self.channels, self.size, self.size]
    }

    /// The images a distillation teacher classifies: before Mixup/CutMix when they were
    /// kept, else the batch's own.
    pub fn teacher_images(&self) -> &[f32] {
        self.unmixed.as_deref().unwrap_or(&self.images)
    }
}

/// Work done on each assembled batch before it is handed out (Mixup/CutMix).
pub trait BatchTransform<T>: Send + Sync {
    /// Changes batch `index` of `epoch` in place.
    fn apply(&self, batch: &mut Batch<T>, epoch: usize, index: usize);
}

/// Soft targets of a batch Mixup or CutMix mixed.
#[derive(Debug, Clone, PartialEq)]
pub struct SoftTargets {
    /// `[len, classes]` row-major; each row sums to 1.
    pub values: Vec<f32>,
    /// Per image, the label with the larger share (what train top-1 is measured against).
    pub dominant: Vec<i64>,
    /// Per image, the share of its own label before smoothing (1 = not mixed).
    pub lam: Vec<f64>,
    /// Per image, whether it was drawn for CutMix (else Mixup or none); on small images the
    /// box can be empty, and `lam` then says 1.
    pub cutmix: Vec<bool>,
}

/// One class label an image (classification), and the soft targets when the batch was mixed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Labels {
    pub labels: Vec<i64>,
    /// Set when Mixup/CutMix mixed the batch (training only).
    pub mixed: Option<SoftTargets>,
    /// The teacher's class logits `[batch, classes]` row-major, under `[distill]`.
    pub teacher: Option<Vec<f32>>,
}

impl Targets for Labels {
    const KIND: TargetKind = TargetKind::Class;

    fn push(&mut self, target: Target) -> Result<(), Target> {
        match target {
            Target::Class(c) => {
                self.labels.push(c as i64);
                Ok(())
            }
            other => Err(other),
        }
    }

    fn len(&self) -> usize {
        self.labels.len()
    }
}

/// A class id per pixel (segmentation): each image's `size × size` plane in a row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Masks {
    pub pixels: Vec<u8>,
    /// Number of images.
    pub count: usize,
}

impl Targets for Masks {
    const KIND: TargetKind = TargetKind::Mask;

    fn push(&mut self, target: Target) -> Result<(), Target> {
        match target {
            Target::Mask(m) => {
                self.pixels.extend_from_slice(&m.labels);
                self.count += 1;
                Ok(())
            }
            other => Err(other),
        }
    }

    fn len(&self) -> usize {
        self.count
    }
}

/// Each image's objects (detection), boxes in pixels of the `size × size` input.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Objects {
    pub images: Vec<Vec<ObjectBox>>,
}

impl Targets for Objects {
    const KIND: TargetKind = TargetKind::Objects;

    fn push(&mut self, target: Target) -> Result<(), Target> {
        match target {
            Target::Objects(o) => {
                self.images.push(o);
                Ok(())
            }
            other => Err(other),
        }
    }

    fn len(&self) -> usize {
        self.images.len()
    }
}

impl Target {
    /// What kind of target this is.
    pub fn kind(&self) -> TargetKind {
        match self {
            Target::Class(_) => TargetKind::Class,
            Target::Mask(_) => TargetKind::Mask,
            Target::Objects(_) => TargetKind::Objects,
        }
    }
}
