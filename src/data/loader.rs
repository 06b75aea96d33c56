//! The batch loader: decodes and augments in parallel (rayon) on a background thread, a few
//! batches ahead of the training step.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::augment::{repeat_rng, Pipeline};
use super::dataset::{DataError, Dataset, Target};
use super::geometry::ObjectBox;
use super::mix::{Mixer, SoftTargets};

/// A batch ready for the model: `images` is `[len, channels, size, size]` row-major, and each
/// image's target is in the field of its kind.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub images: Vec<f32>,
    /// Class labels (classification).
    pub labels: Vec<i64>,
    /// Class ids per pixel, `size × size` an image (segmentation).
    pub masks: Vec<u8>,
    /// Objects per image, boxes in pixels of the `size × size` input (detection).
    pub objects: Vec<Vec<ObjectBox>>,
    pub channels: usize,
    pub size: usize,
    /// Samples skipped in this batch because their file was unreadable (`skip_bad`).
    pub skipped: Vec<String>,
    /// Soft targets when Mixup/CutMix mixed the batch (training only).
    pub targets: Option<SoftTargets>,
}

impl Batch {
    /// Number of images (each has a label, a mask or a list of objects).
    pub fn len(&self) -> usize {
        let masks = self.masks.len() / (self.size * self.size).max(1);
        self.labels.len().max(masks).max(self.objects.len())
    }

    /// Whether the batch holds no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push_target(&mut self, target: Target) {
        match target {
            Target::Class(c) => self.labels.push(c as i64),
            Target::Mask(m) => self.masks.extend_from_slice(&m.labels),
            Target::Objects(o) => self.objects.push(o),
        }
    }
}

/// What one epoch of loading needs.
#[derive(Clone)]
pub struct LoaderSpec {
    pub dataset: Arc<dyn Dataset>,
    pub pipeline: Arc<Pipeline>,
    pub batch_size: usize,
    /// Shuffle with (seed, epoch); validation keeps file order.
    pub shuffle: bool,
    pub seed: u64,
    pub skip_bad: bool,
    pub prefetch: usize,
    pub pool: Arc<rayon::ThreadPool>,
    /// Draws of each sample per epoch (DeiT's repeated augmentation; 1 = off).
    pub repeats: usize,
    /// Mixup/CutMix applied to each assembled batch.
    pub mixer: Option<Arc<Mixer>>,
}

/// The sample order of an epoch: a seeded shuffle, the same for the same (seed, epoch).
pub fn epoch_order(len: usize, seed: u64, epoch: usize, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    if shuffle {
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(
            seed.wrapping_mul(0x9e37_79b9).wrapping_add(epoch as u64),
        ));
    }
    order
}

/// One sample drawn into an epoch: its index and which of its repeated draws this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Draw {
    pub index: usize,
    pub repeat: u8,
}

/// Most draws of one sample per epoch that repeated augmentation allows.
pub const MAX_REPEATS: usize = 16;

/// The draws of an epoch with repeated augmentation (DeiT's `RASampler`, timm's
/// `RepeatAugSampler` on one replica): each sample of `order` is taken `repeats` times in a
/// row, each time augmented differently, and the epoch keeps its length, so it sees the first
/// `len / repeats` samples of the shuffle.
pub fn repeated_order(order: &[usize], repeats: usize) -> Vec<Draw> {
    let repeats = repeats.clamp(1, MAX_REPEATS);
    order
        .iter()
        .flat_map(|&index| {
            (0..repeats).map(move |r| Draw {
                index,
                repeat: r as u8,
            })
        })
        .take(order.len())
        .collect()
}

/// Builds one batch from the given sample indices (first draws).
pub fn load_batch(spec: &LoaderSpec, epoch: usize, indices: &[usize]) -> Result<Batch, DataError> {
    let draws: Vec<Draw> = indices
        .iter()
        .map(|&index| Draw { index, repeat: 0 })
        .collect();
    load_draws(spec, epoch, &draws)
}

/// Builds one batch from the given draws, each augmented with its own seeded RNG.
fn load_draws(spec: &LoaderSpec, epoch: usize, draws: &[Draw]) -> Result<Batch, DataError> {
    let results: Vec<Result<(Vec<f32>, Target), DataError>> = spec.pool.install(|| {
        draws
            .par_iter()
            .map(|&Draw { index: i, repeat }| match spec.dataset.get(i) {
                Ok(sample) => {
                    let mut rng = repeat_rng(spec.seed, epoch, i, repeat);
                    let (h, w) = (sample.image.height, sample.image.width);
                    let out = spec.pipeline.apply(sample.image, &mut rng);
                    let target = sample.target.moved(
                        &out.geometry,
                        h,
                        w,
                        spec.pipeline.config.min_box_visible,
                    );
                    Ok((out.image.data, target))
                }
                Err(e) => Err(e),
            })
            .collect()
    });
    let p = &spec.pipeline;
    let mut batch = Batch {
        images: Vec::with_capacity(draws.len() * p.channels * p.size * p.size),
        channels: p.channels,
        size: p.size,
        ..Batch::default()
    };
    for r in results {
        match r {
            Ok((pixels, target)) => {
                batch.images.extend_from_slice(&pixels);
                batch.push_target(target);
            }
            Err(DataError::BadFile { path, .. }) if spec.skip_bad => batch.skipped.push(path),
            Err(e) => return Err(e),
        }
    }
    Ok(batch)
}

/// Batches of one epoch, produced on a background thread `prefetch` batches ahead. A failure
/// of that thread (a panic in a transform or a decoder) is an error of the epoch, never a
/// quietly shorter epoch.
pub struct EpochLoader {
    rx: Receiver<Result<Batch, DataError>>,
    worker: Option<JoinHandle<()>>,
    /// Batches this epoch will yield.
    pub batches: usize,
    received: usize,
    ended: bool,
}

/// The text of a caught panic.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

impl EpochLoader {
    /// Starts loading epoch `epoch`.
    pub fn start(spec: LoaderSpec, epoch: usize) -> EpochLoader {
        let order = epoch_order(spec.dataset.len(), spec.seed, epoch, spec.shuffle);
        let draws = repeated_order(&order, spec.repeats);
        let chunks: Vec<Vec<Draw>> = draws
            .chunks(spec.batch_size)
            .map(<[Draw]>::to_vec)
            .collect();
        let batches = chunks.len();
        let (tx, rx) = bounded(spec.prefetch.max(1));
        let worker = std::thread::spawn(move || {
            for (i, chunk) in chunks.iter().enumerate() {
                let batch = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let mut batch = load_draws(&spec, epoch, chunk)?;
                    if let Some(mixer) = &spec.mixer {
                        batch.targets = Some(mixer.mix(&mut batch, epoch, i));
                    }
                    Ok(batch)
                }))
                .unwrap_or_else(|payload| {
                    Err(DataError::Worker {
                        reason: format!(
                            "batch {} of epoch {epoch} failed: {}",
                            i + 1,
                            panic_text(payload.as_ref())
                        ),
                    })
                });
                let failed = batch.is_err();
                if tx.send(batch).is_err() || failed {
                    return;
                }
            }
        });
        EpochLoader {
            rx,
            worker: Some(worker),
            batches,
            received: 0,
            ended: false,
        }
    }
}

impl Iterator for EpochLoader {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ended {
            return None;
        }
        match self.rx.recv() {
            Ok(batch) => {
                self.received += 1;
                self.ended = batch.is_err();
                Some(batch)
            }
            Err(_) => {
                self.ended = true;
                if self.received == self.batches {
                    return None;
                }
                let cause = match self.worker.take().map(JoinHandle::join) {
                    Some(Err(payload)) => panic_text(payload.as_ref()),
                    _ => "its thread ended early".into(),
                };
                Some(Err(DataError::Worker {
                    reason: format!(
                        "the loader stopped after {} of {} batches: {cause}",
                        self.received, self.batches
                    ),
                }))
            }
        }
    }
}

impl Drop for EpochLoader {
    fn drop(&mut self) {
        let (_, empty) = bounded(1);
        drop(std::mem::replace(&mut self.rx, empty));
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}
