//! One trial: build the model, train epoch by epoch, evaluate, log, checkpoint, resume.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor, TensorData};

use super::checkpoint::{self, Progress};
use super::loss::{cross_entropy, top_k_correct};
use super::optim::Optimizer;
use super::schedule::LrSchedule;
use crate::config::{CheckpointPolicy, Config};
use crate::data::{self, Batch, EpochLoader, LoaderSpec, Pipeline};
use crate::model::{apply_state_dict, state_dict, Vit, VitSpec};
use crate::track::{MetricRow, Status, Store};

/// What the trial reports while it runs (progress bars, plain log lines).
pub trait Observer {
    fn message(&mut self, _text: &str) {}
    fn epoch_start(&mut self, _epoch: usize, _epochs: usize, _batches: usize) {}
    fn step(&mut self, _done: usize, _loss: f64, _top1: f64, _images_per_sec: f64) {}
    fn epoch_end(&mut self, _summary: &EpochSummary) {}
}

/// Figures of one finished epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochSummary {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_top1: f64,
    pub val_loss: f64,
    pub val_top1: f64,
    pub val_top5: f64,
    pub lr: f64,
    pub images_per_sec: f64,
}

/// How a trial ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Finished {
        best_top1: f64,
        last: EpochSummary,
    },
    Diverged {
        epoch: usize,
        step: u64,
    },
    Interrupted {
        epoch: usize,
    },
    /// Stopped early by the sweep's rule after `epoch`.
    Pruned {
        epoch: usize,
        reason: String,
    },
}

/// Decides after each epoch (metrics and checkpoint committed) whether the trial goes on.
/// Sweeps plug their early-stopping rule in here.
pub trait EpochGate {
    /// `Some(reason)` stops the trial as pruned; the gate records its decisions in the store.
    fn after_epoch(
        &mut self,
        store: &mut Store,
        trial: &str,
        epoch: usize,
    ) -> anyhow::Result<Option<String>>;
}

/// Everything a trial needs besides its backend.
pub struct TrialRun<'a> {
    pub config: &'a Config,
    pub trial_id: String,
    /// `runs/<experiment>/<trial-id>/`.
    pub dir: PathBuf,
    pub store: &'a mut Store,
    /// Continue from `last/` when present.
    pub resume: bool,
    /// Set by Ctrl-C: the trial stops after the current step.
    pub stop: Arc<AtomicBool>,
    pub observer: &'a mut dyn Observer,
    /// Early stopping, when the trial is part of a sweep that has a rule.
    pub gate: Option<&'a mut dyn EpochGate>,
}

fn seed_for_epoch(seed: u64, epoch: usize) -> u64 {
    seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
        .wrapping_add(epoch as u64)
}

/// Moves the batch's pixels into a tensor (the labels stay in the batch).
fn to_tensor<B: burn::tensor::backend::Backend>(
    batch: &mut Batch,
    device: &B::Device,
) -> Tensor<B, 4> {
    let shape = [batch.len(), batch.channels, batch.size, batch.size];
    Tensor::from_data(
        TensorData::new(std::mem::take(&mut batch.images), shape),
        device,
    )
}

fn wall() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Runs the trial to the end (or divergence, or Ctrl-C) on backend `B`.
pub fn run_trial<B: AutodiffBackend>(
    run: TrialRun<'_>,
    device: B::Device,
) -> anyhow::Result<Outcome> {
    let TrialRun {
        config,
        trial_id,
        dir,
        store,
        resume,
        stop,
        observer,
        mut gate,
    } = run;
    let splits = data::open(config)?;
    observer.message(&format!(
        "data: {} ({} train / {} val images, {} classes)",
        splits.source,
        splits.train.len(),
        splits.val.len(),
        splits.classes.len()
    ));
    let spec = VitSpec::from_config(config, splits.classes.len());
    B::seed(&device, config.seed);
    let mut model: Vit<B> = spec.init(&device);
    let mut optimizer = Optimizer::<B::InnerBackend>::new(&config.optimizer);
    let mut progress = Progress {
        epoch: 0,
        step: 0,
        best_top1: f64::NEG_INFINITY,
        best_epoch: 0,
    };
    let restored = if resume {
        checkpoint::load(&dir, "last")?
    } else {
        None
    };
    match restored {
        Some(ckpt) => {
            model = apply_state_dict(
                model,
                &ckpt.model,
                &dir.join("last").display().to_string(),
                &device,
            )?;
            if let Some(opt) = &ckpt.optimizer {
                optimizer.load_state_dict(opt, ckpt.progress.step, &device);
            }
            progress = ckpt.progress;
            observer.message(&format!(
                "resuming after epoch {} (step {})",
                progress.epoch, progress.step
            ));
            store.log_event(
                &trial_id,
                "resume",
                &format!("from epoch {}", progress.epoch),
            )?;
        }
        None => store.clear_metrics(&trial_id)?,
    }
    let t = &config.train;
    let threads = if t.threads == 0 {
        num_cpus()
    } else {
        t.threads
    };
    let workers = if config.data.workers == 0 {
        threads
    } else {
        config.data.workers
    };
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .thread_name(|i| format!("vitrun-data-{i}"))
            .build()?,
    );
    let loader = |dataset, pipeline: Pipeline, shuffle| LoaderSpec {
        dataset,
        pipeline: Arc::new(pipeline),
        batch_size: t.batch_size,
        shuffle,
        seed: config.seed,
        skip_bad: config.data.skip_bad,
        prefetch: config.data.prefetch,
        pool: pool.clone(),
    };
    let (size, ch) = (config.data.image_size, config.data.channels);
    let train_spec = loader(
        splits.train.clone(),
        Pipeline::train(&config.augment, size, ch),
        true,
    );
    let val_spec = loader(
        splits.val.clone(),
        Pipeline::val(&config.augment, size, ch),
        false,
    );
    let steps_per_epoch = splits.train.len().div_ceil(t.batch_size);
    let schedule = LrSchedule::new(&config.optimizer, steps_per_epoch, t.epochs);
    let mut last = None;
    for epoch in progress.epoch + 1..=t.epochs {
        B::seed(&device, seed_for_epoch(config.seed, epoch));
        let started = Instant::now();
        let loader = EpochLoader::start(train_spec.clone(), epoch);
        observer.epoch_start(epoch, t.epochs, loader.batches);
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0usize, 0usize);
        let mut rows = Vec::new();
        let log_every = (steps_per_epoch / 20).max(1);
        let mut lr = schedule.lr(progress.step as usize);
        let mut skipped = 0;
        for (i, batch) in loader.enumerate() {
            let mut batch = batch?;
            if !batch.skipped.is_empty() {
                skipped += batch.skipped.len();
                observer.message(&format!("skipped unreadable: {}", batch.skipped.join(", ")));
                store.log_event(&trial_id, "skipped", &batch.skipped.join(", "))?;
            }
            if batch.is_empty() {
                continue;
            }
            lr = schedule.lr(progress.step as usize);
            let logits = model.forward(to_tensor::<B>(&mut batch, &device));
            let loss = cross_entropy(
                logits.clone(),
                &batch.labels,
                config.optimizer.label_smoothing,
            );
            let loss_value: f64 = loss.clone().into_scalar().elem();
            if !loss_value.is_finite() {
                let msg = format!(
                    "loss became {loss_value} at epoch {epoch}, step {}",
                    progress.step
                );
                store.log_event(&trial_id, "diverged", &msg)?;
                store.set_status(&trial_id, Status::Diverged, Some(&msg))?;
                return Ok(Outcome::Diverged {
                    epoch,
                    step: progress.step,
                });
            }
            let grads = loss.backward();
            let (next, _) = optimizer.step::<B, Vit<B>>(model, &grads, lr);
            model = next;
            progress.step += 1;
            let host: Vec<f32> = logits
                .into_data()
                .convert::<f32>()
                .to_vec()
                .unwrap_or_default();
            correct += top_k_correct(&host, spec.num_classes, &batch.labels, 1);
            seen += batch.len();
            loss_sum += loss_value * batch.len() as f64;
            let ips = seen as f64 / started.elapsed().as_secs_f64().max(1e-9);
            observer.step(
                i + 1,
                loss_sum / seen as f64,
                correct as f64 / seen as f64,
                ips,
            );
            if (i + 1) % log_every == 0 {
                rows.push(row("train", "step_loss", progress.step, epoch, loss_value));
            }
            if stop.load(Ordering::SeqCst) {
                store.log_metrics(&trial_id, &rows)?;
                let msg = format!("interrupted during epoch {epoch}; `vitrun run FILE --resume` continues after epoch {}", progress.epoch);
                store.log_event(&trial_id, "interrupted", &msg)?;
                store.set_status(&trial_id, Status::Failed, Some(&msg))?;
                return Ok(Outcome::Interrupted { epoch });
            }
        }
        let train_secs = started.elapsed().as_secs_f64();
        let (val_loss, val_top1, val_top5) =
            evaluate(&model.valid(), &val_spec, epoch, spec.num_classes, &device)?;
        let summary = EpochSummary {
            epoch,
            train_loss: loss_sum / seen.max(1) as f64,
            train_top1: correct as f64 / seen.max(1) as f64,
            val_loss,
            val_top1,
            val_top5,
            lr,
            images_per_sec: seen as f64 / train_secs.max(1e-9),
        };
        let s = progress.step;
        rows.extend([
            row("train", "loss", s, epoch, summary.train_loss),
            row("train", "top1", s, epoch, summary.train_top1),
            row("train", "lr", s, epoch, summary.lr),
            row("train", "images_per_sec", s, epoch, summary.images_per_sec),
            row("val", "loss", s, epoch, val_loss),
            row("val", "top1", s, epoch, val_top1),
            row("val", "top5", s, epoch, val_top5),
        ]);
        if skipped > 0 {
            rows.push(row("data", "skipped_files", s, epoch, skipped as f64));
        }
        progress.epoch = epoch;
        let improved = val_top1 > progress.best_top1;
        if improved {
            progress.best_top1 = val_top1;
            progress.best_epoch = epoch;
        }
        // Metrics commit before the checkpoint claims the epoch: a kill in between re-runs it.
        store.log_metrics(&trial_id, &rows)?;
        if config.train.checkpoint != CheckpointPolicy::None {
            let weights = state_dict(&model);
            if improved && config.train.checkpoint == CheckpointPolicy::LastAndBest {
                let path = checkpoint::save(&dir, "best", &weights, None, &progress)?;
                store.add_artifact(&trial_id, "checkpoint_best", &path)?;
            }
            let path = checkpoint::save(
                &dir,
                "last",
                &weights,
                Some(&optimizer.state_dict()),
                &progress,
            )?;
            store.add_artifact(&trial_id, "checkpoint_last", &path)?;
        }
        observer.epoch_end(&summary);
        last = Some(summary);
        if let (Some(gate), true) = (gate.as_deref_mut(), epoch < t.epochs) {
            if let Some(reason) = gate.after_epoch(store, &trial_id, epoch)? {
                observer.message(&format!("pruned: {reason}"));
                return Ok(Outcome::Pruned { epoch, reason });
            }
        }
    }
    store.set_status(&trial_id, Status::Finished, None)?;
    let last = match last {
        Some(last) => last,
        None => EpochSummary {
            epoch: progress.epoch,
            train_loss: f64::NAN,
            train_top1: f64::NAN,
            val_loss: f64::NAN,
            val_top1: progress.best_top1,
            val_top5: f64::NAN,
            lr: f64::NAN,
            images_per_sec: f64::NAN,
        },
    };
    Ok(Outcome::Finished {
        best_top1: progress.best_top1,
        last,
    })
}

fn row(split: &str, name: &str, step: u64, epoch: usize, value: f64) -> MetricRow {
    MetricRow {
        split: split.into(),
        name: name.into(),
        step: step as i64,
        epoch: epoch as i64,
        value,
        wall_time: wall(),
    }
}

/// Validation loss (plain cross-entropy), top-1 and top-5 over the whole split.
pub fn evaluate<B: burn::tensor::backend::Backend>(
    model: &Vit<B>,
    spec: &LoaderSpec,
    epoch: usize,
    classes: usize,
    device: &B::Device,
) -> anyhow::Result<(f64, f64, f64)> {
    let (mut loss_sum, mut top1, mut top5, mut seen) = (0.0, 0, 0, 0);
    for batch in EpochLoader::start(spec.clone(), epoch) {
        let mut batch = batch?;
        if batch.is_empty() {
            continue;
        }
        let logits = model.forward(to_tensor::<B>(&mut batch, device));
        let loss: f64 = cross_entropy(logits.clone(), &batch.labels, 0.0)
            .into_scalar()
            .elem();
        let host: Vec<f32> = logits
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap_or_default();
        top1 += top_k_correct(&host, classes, &batch.labels, 1);
        top5 += top_k_correct(&host, classes, &batch.labels, 5);
        loss_sum += loss * batch.len() as f64;
        seen += batch.len();
    }
    let n = seen.max(1) as f64;
    Ok((loss_sum / n, top1 as f64 / n, top5 as f64 / n))
}

/// Logical cores available to this process.
pub fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
