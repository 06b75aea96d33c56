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
use super::batch::{Batch, BatchTransform, Targets};
use super::dataset::{DataError, Dataset, Target};
use crate::config::MAX_REPEATED_AUG;

/// What one epoch of loading needs, for batches of targets `T`.
pub struct LoaderSpec<T> {
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
    /// Applied to each assembled batch (the task's Mixup/CutMix).
    pub transform: Option<Arc<dyn BatchTransform<T>>>,
}

impl<T> Clone for LoaderSpec<T> {
    fn clone(&self) -> Self {
        LoaderSpec {
            dataset: self.dataset.clone(),
            pipeline: self.pipeline.clone(),
            batch_size: self.batch_size,
            shuffle: self.shuffle,
            seed: self.seed,
            skip_bad: self.skip_bad,
            prefetch: self.prefetch,
            pool: self.pool.clone(),
            repeats: self.repeats,
            transform: self.transform.clone(),
        }
    }
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

/// The draws of an epoch with repeated augmentation (DeiT's `RASampler`, timm's
/// `RepeatAugSampler` on one replica): each sample of `order` is taken `repeats` times in a
/// row, each time augmented differently, and the epoch keeps its length, so it sees the first
/// `len / repeats` samples of the shuffle.
pub fn repeated_order(order: &[usize], repeats: usize) -> Vec<Draw> {
    let repeats = repeats.clamp(1, MAX_REPEATED_AUG);
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
pub fn load_batch<T: Targets>(
    spec: &LoaderSpec<T>,
    epoch: usize,
    indices: &[usize],
) -> Result<Batch<T>, DataError> {
    let draws: Vec<Draw> = indices
        .iter()
        .map(|&index| Draw { index, repeat: 0 })
        .collect();
    load_draws(spec, epoch, &draws)
}

/// Builds one batch from the given draws, each augmented with its own seeded RNG.
fn load_draws<T: Targets>(
    spec: &LoaderSpec<T>,
    epoch: usize,
    draws: &[Draw],
) -> Result<Batch<T>, DataError> {
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
        targets: T::default(),
        channels: p.channels,
        size: p.size,
        skipped: Vec::new(),
        unmixed: None,
    };
    for r in results {
        match r {
            Ok((pixels, target)) => {
                batch.targets.push(target).map_err(|found| DataError::Layout {
                    path: "head.task".into(),
                    reason: format!(
                        "the dataset gives {} an image and the task trains on {}; pick a dataset that has the task's targets",
                        found.kind().describe(),
                        T::KIND.describe()
                    ),
                })?;
                batch.images.extend_from_slice(&pixels);
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
pub struct EpochLoader<T> {
    rx: Receiver<Result<Batch<T>, DataError>>,
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

impl<T: Targets> EpochLoader<T> {
    /// Starts loading epoch `epoch`.
    pub fn start(spec: LoaderSpec<T>, epoch: usize) -> EpochLoader<T> {
        Self::start_at(spec, epoch, 0)
    }

    /// Starts loading epoch `epoch` at batch `first` (0-based): the batches before it are
    /// neither read nor augmented, and the rest are the very batches a full epoch yields
    /// there, as every draw and every batch's mixing is seeded by its place in the epoch.
    pub fn start_at(spec: LoaderSpec<T>, epoch: usize, first: usize) -> EpochLoader<T> {
        let order = epoch_order(spec.dataset.len(), spec.seed, epoch, spec.shuffle);
        let draws = repeated_order(&order, spec.repeats);
        let chunks: Vec<Vec<Draw>> = draws
            .chunks(spec.batch_size)
            .map(<[Draw]>::to_vec)
            .collect();
        let batches = chunks.len();
        let (tx, rx) = bounded(spec.prefetch.max(1));
        let worker = std::thread::spawn(move || {
            for (i, chunk) in chunks.iter().enumerate().skip(first) {
                let batch = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let mut batch = load_draws(&spec, epoch, chunk)?;
                    if let Some(transform) = &spec.transform {
                        transform.apply(&mut batch, epoch, i);
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
            received: first.min(batches),
            ended: false,
        }
    }
}

impl<T> Iterator for EpochLoader<T> {
    type Item = Result<Batch<T>, DataError>;

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

impl<T> Drop for EpochLoader<T> {
    fn drop(&mut self) {
        let (_, empty) = bounded(1);
        drop(std::mem::replace(&mut self.rx, empty));
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}
