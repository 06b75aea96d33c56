//! The batch loader: decodes and augments in parallel (rayon) on a background thread, a few
//! batches ahead of the training step.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::augment::{sample_rng, Pipeline};
use super::dataset::{DataError, Dataset};

/// A batch ready for the model: `images` is `[len, channels, size, size]` row-major.
#[derive(Debug, Clone)]
pub struct Batch {
    pub images: Vec<f32>,
    pub labels: Vec<i64>,
    pub channels: usize,
    pub size: usize,
    /// Samples skipped in this batch because their file was unreadable (`skip_bad`).
    pub skipped: Vec<String>,
}

impl Batch {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the batch holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
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

/// Builds one batch from the given sample indices.
pub fn load_batch(spec: &LoaderSpec, epoch: usize, indices: &[usize]) -> Result<Batch, DataError> {
    let results: Vec<Result<(Vec<f32>, usize), DataError>> = spec.pool.install(|| {
        indices
            .par_iter()
            .map(|&i| match spec.dataset.get(i) {
                Ok(sample) => {
                    let mut rng = sample_rng(spec.seed, epoch, i);
                    let out = spec.pipeline.apply(sample.image, &mut rng);
                    Ok((out.image.data, sample.label))
                }
                Err(e) => Err(e),
            })
            .collect()
    });
    let p = &spec.pipeline;
    let mut batch = Batch {
        images: Vec::with_capacity(indices.len() * p.channels * p.size * p.size),
        labels: Vec::with_capacity(indices.len()),
        channels: p.channels,
        size: p.size,
        skipped: Vec::new(),
    };
    for r in results {
        match r {
            Ok((pixels, label)) => {
                batch.images.extend_from_slice(&pixels);
                batch.labels.push(label as i64);
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
        let chunks: Vec<Vec<usize>> = order
            .chunks(spec.batch_size)
            .map(<[usize]>::to_vec)
            .collect();
        let batches = chunks.len();
        let (tx, rx) = bounded(spec.prefetch.max(1));
        let worker = std::thread::spawn(move || {
            for (i, chunk) in chunks.iter().enumerate() {
                let batch = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    load_batch(&spec, epoch, chunk)
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
