//! One trial: build the model, restore a checkpoint, then per epoch train → evaluate →
//! commit (metrics before the checkpoint that claims them) → ask the gate; finally record the
//! end. Each step is its own function of [`Trial`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::kernels::TrainBackend;
use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{ElementConversion, Tensor, TensorData};

use super::checkpoint::{self, Progress, Weights};
use super::ema::Ema;
use super::optim::{param_sizes, Optimizer};
use super::schedule::LrSchedule;
use crate::config::{self, available_cores, CheckpointPolicy, Config};
use crate::contract::{Metric, Status, TrialExit};
use crate::data::{self, Batch, DataError, EpochLoader, LoaderSpec, Mixer, Pipeline};
use crate::model::{
    apply_pretrained, apply_state_dict, freeze, read_state_dict, state_dict, Vit, VitSpec,
};
pub use crate::schedule::EpochGate;
use crate::task::classification::Classification;
use crate::task::detection::Detection;
use crate::task::segmentation::Segmentation;
use crate::task::{Scores, Task};
use crate::track::{MetricRow, Recorder};

/// What the trial reports while it runs (progress bars, plain log lines).
pub trait Observer {
    fn message(&mut self, _text: &str) {}
    fn epoch_start(&mut self, _epoch: usize, _epochs: usize, _batches: usize) {}
    /// After a training step: batches done, running loss and training score, throughput.
    fn step(&mut self, _done: usize, _loss: f64, _score: f64, _images_per_sec: f64) {}
    fn epoch_end(&mut self, _summary: &EpochSummary) {}
}

/// Figures of one finished epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochSummary {
    pub epoch: usize,
    pub train_loss: f64,
    /// The task's training score (`train/top1`, `train/pixel_acc`), named by `train_score_name`.
    pub train_score: f64,
    pub train_score_name: &'static str,
    pub val_loss: f64,
    /// The task's main validation metric (`val/top1`, `val/miou`), named by `score_name`.
    pub val_score: f64,
    pub score_name: &'static str,
    /// The other validation figures the log line shows, by name (top-5, pixel accuracy, …).
    pub val_others: Vec<(String, f64)>,
    /// The weight average's main validation metric (`[train.ema]`).
    pub val_ema_score: Option<f64>,
    pub lr: f64,
    pub images_per_sec: f64,
}

/// How a trial ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Finished {
        /// The best value of the task's main validation metric, named by `metric`.
        best_score: f64,
        metric: &'static str,
        /// The last epoch this process trained (`None` when resuming found nothing left).
        last: Option<EpochSummary>,
    },
    Diverged {
        epoch: usize,
        step: u64,
    },
    Interrupted {
        epoch: usize,
    },
    /// Stopped by the cluster during `epoch` and requeued; the requeued task resumes.
    Preempted {
        epoch: usize,
    },
    /// Stopped early by the sweep's rule after `epoch`.
    Pruned {
        epoch: usize,
        reason: String,
    },
}

impl Outcome {
    /// The process exit this outcome is reported with.
    pub fn exit(&self) -> TrialExit {
        match self {
            Outcome::Finished { .. } => TrialExit::Finished,
            Outcome::Diverged { .. } => TrialExit::Diverged,
            Outcome::Interrupted { .. } | Outcome::Preempted { .. } => TrialExit::Interrupted,
            Outcome::Pruned { .. } => TrialExit::Pruned,
        }
    }

    /// The status this outcome is stored as.
    pub fn status(&self) -> Status {
        match self {
            Outcome::Finished { .. } => Status::Finished,
            Outcome::Diverged { .. } => Status::Diverged,
            Outcome::Interrupted { .. } => Status::Interrupted,
            Outcome::Preempted { .. } => Status::Preempted,
            Outcome::Pruned { .. } => Status::Pruned,
        }
    }
}

/// The trial folder's file of class names in label order (what `vitrun predict` prints).
pub const CLASSES_FILE: &str = "classes.json";

/// Everything a trial needs besides its backend.
pub struct TrialRun<'a> {
    pub config: &'a Config,
    pub trial_id: String,
    /// `runs/<experiment>/<trial-id>/`.
    pub dir: PathBuf,
    /// Where the trial's records go (the store, or a shard under a cluster launcher).
    pub recorder: &'a mut dyn Recorder,
    /// Continue from `last/` when present.
    pub resume: bool,
    /// Resume even when the optimizer state is missing (with a fresh one, recorded as an event).
    pub force: bool,
    /// Set by Ctrl-C or SIGTERM: the trial stops after the current step.
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

fn row(metric: Metric, step: u64, epoch: usize, value: f64) -> MetricRow {
    named_row(metric.split, metric.name, step, epoch, value)
}

/// A row of a metric named at run time (a task's figures: `val/miou`, `val/iou_car`, …).
fn named_row(split: &str, name: &str, step: u64, epoch: usize, value: f64) -> MetricRow {
    MetricRow {
        split: split.into(),
        name: name.into(),
        step: step as i64,
        epoch: epoch as i64,
        value,
        wall_time: wall(),
    }
}

/// What one training epoch measured.
struct TrainStats {
    loss: f64,
    /// The task's training score, averaged over images.
    score: f64,
    skipped: usize,
    lr: f64,
    images_per_sec: f64,
    /// Step losses logged during the epoch.
    rows: Vec<MetricRow>,
}

/// How a training epoch ended.
enum EpochEnd {
    Trained(TrainStats),
    Diverged,
    Interrupted,
}

/// Validation figures of one epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub loss: f64,
    pub scores: Scores,
    /// Images skipped as unreadable (`skip_bad`).
    pub skipped: usize,
}

/// A trial in progress: everything but the model, which moves through the optimizer.
struct Trial<'a, B: TrainBackend, T: Task> {
    config: &'a Config,
    task: T,
    id: String,
    dir: PathBuf,
    recorder: &'a mut dyn Recorder,
    stop: Arc<AtomicBool>,
    observer: &'a mut dyn Observer,
    gate: Option<&'a mut dyn EpochGate>,
    spec: VitSpec,
    optimizer: Optimizer<B::InnerBackend>,
    /// The weight average, under `[train.ema]`.
    ema: Option<Ema<Vit<B::InnerBackend>>>,
    progress: Progress,
    schedule: LrSchedule,
    train_spec: LoaderSpec,
    val_spec: LoaderSpec,
    device: B::Device,
}

/// Runs the trial to the end (or divergence, or Ctrl-C) on backend `B`, for the task of
/// `head.task`.
pub fn run_trial<B: TrainBackend>(run: TrialRun<'_>, device: B::Device) -> anyhow::Result<Outcome> {
    match run.config.head.task {
        config::Task::Classification => run_task::<B, Classification>(run, device),
        config::Task::Segmentation => run_task::<B, Segmentation>(run, device),
        config::Task::Detection => run_task::<B, Detection>(run, device),
    }
}

fn run_task<B: TrainBackend, T: Task>(
    run: TrialRun<'_>,
    device: B::Device,
) -> anyhow::Result<Outcome> {
    let (resume, force) = (run.resume, run.force);
    let (mut trial, model) = Trial::<B, T>::new(run, device)?;
    let model = trial.restore(model, resume, force)?;
    let mut model = trial.freeze(model)?;
    let mut last = None;
    for epoch in trial.progress.epoch + 1..=trial.config.train.epochs {
        let (next, end) = trial.train_epoch(model, epoch)?;
        model = next;
        let stats = match end {
            EpochEnd::Trained(stats) => stats,
            EpochEnd::Diverged => {
                return Ok(Outcome::Diverged {
                    epoch,
                    step: trial.progress.step,
                })
            }
            EpochEnd::Interrupted => return Ok(Outcome::Interrupted { epoch }),
        };
        let eval = trial.evaluate(&model.valid(), epoch)?;
        let average = trial.ema.as_ref().and_then(|e| e.model.clone());
        let ema_eval = match average {
            Some(average) => Some(trial.evaluate(&average, epoch)?),
            None => None,
        };
        let summary = trial.commit_epoch(&model, epoch, stats, eval, ema_eval)?;
        trial.observer.epoch_end(&summary);
        last = Some(summary);
        if let Some(reason) = trial.ask_gate(epoch)? {
            return Ok(Outcome::Pruned { epoch, reason });
        }
    }
    trial
        .recorder
        .set_status(&trial.id, Status::Finished, None)?;
    Ok(Outcome::Finished {
        best_score: trial.progress.best_score,
        metric: T::MAIN,
        last,
    })
}

impl<'a, B: TrainBackend, T: Task> Trial<'a, B, T> {
    /// Opens the data, builds the model, optimizer, schedule and loaders.
    fn new(run: TrialRun<'a>, device: B::Device) -> anyhow::Result<(Self, Vit<B>)> {
        let TrialRun {
            config,
            trial_id,
            dir,
            recorder,
            stop,
            observer,
            gate,
            ..
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
        let names = dir.join(CLASSES_FILE);
        std::fs::write(&names, serde_json::to_string_pretty(&splits.classes)?)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", names.display()))?;
        B::seed(&device, config.seed);
        let model: Vit<B> = spec.init(&device);
        let t = &config.train;
        let threads = if t.threads == 0 {
            available_cores()
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
            repeats: 1,
            mixer: None,
        };
        let (size, ch) = (config.data.image_size, config.data.channels);
        let steps_per_epoch = splits
            .train
            .len()
            .div_ceil(t.batch_size)
            .div_ceil(t.grad_accumulation);
        let trial = Trial {
            config,
            task: T::new(config, &splits.classes)?,
            id: trial_id,
            dir,
            recorder,
            stop,
            observer,
            gate,
            spec,
            optimizer: Optimizer::new(&config.optimizer).with_layer_decay(
                config.finetune.layer_decay,
                config.model.depth.unwrap_or(12),
            ),
            ema: None,
            progress: Progress {
                epoch: 0,
                step: 0,
                best_score: f64::NEG_INFINITY,
                best_epoch: 0,
                best_is_ema: false,
            },
            schedule: LrSchedule::new(&config.optimizer, steps_per_epoch, t.epochs),
            train_spec: LoaderSpec {
                repeats: config.data.repeated_aug,
                mixer: Mixer::new(
                    &config.augment,
                    config.optimizer.label_smoothing,
                    splits.classes.len(),
                    config.seed,
                )
                .map(Arc::new),
                ..loader(
                    splits.train.clone(),
                    Pipeline::train(&config.augment, size, ch),
                    true,
                )
            },
            val_spec: loader(
                splits.val.clone(),
                Pipeline::val(&config.augment, size, ch),
                false,
            ),
            device,
        };
        Ok((trial, model))
    }

    /// Loads `last/` when resuming (model, optimizer with its shapes checked, progress);
    /// otherwise clears metrics a previous attempt left.
    fn restore(&mut self, model: Vit<B>, resume: bool, force: bool) -> anyhow::Result<Vit<B>> {
        let ckpt = if resume {
            checkpoint::load(&self.dir, "last")?
        } else {
            None
        };
        let Some(ckpt) = ckpt else {
            self.recorder.clear_metrics(&self.id)?;
            let model = self.load_pretrained(model)?;
            self.start_ema(&model, None, false)?;
            return Ok(model);
        };
        let last = self.dir.join("last");
        let model = apply_state_dict(
            model,
            &ckpt.model,
            &last.display().to_string(),
            &self.device,
        )?;
        let opt_file = last.join("optimizer.safetensors");
        match &ckpt.optimizer {
            Some(opt) => self
                .optimizer
                .load_state_dict(opt, ckpt.progress.step, &param_sizes(&model), &self.device)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "{}: {e}; it does not belong to this model, so resuming is refused; delete {} to start the trial afresh",
                        opt_file.display(),
                        last.display()
                    )
                })?,
            None if force => {
                self.optimizer.steps = ckpt.progress.step;
                let msg = format!(
                    "{} is missing; resumed with a fresh optimizer state (--force)",
                    opt_file.display()
                );
                self.observer.message(&format!("warning: {msg}"));
                self.recorder.log_event(&self.id, "fresh_optimizer", &msg)?;
            }
            None => anyhow::bail!(
                "{} is missing: resuming would restart the optimizer's moments and change the training; restore the file, or pass --force to resume with a fresh optimizer",
                opt_file.display()
            ),
        }
        self.start_ema(&model, ckpt.ema.as_ref(), !force)?;
        if self.ema.is_some() && ckpt.ema.is_none() {
            let msg = format!(
                "{} is missing; the weight average restarts from the current weights (--force)",
                last.join("ema.safetensors").display()
            );
            self.observer.message(&format!("warning: {msg}"));
            self.recorder.log_event(&self.id, "fresh_ema", &msg)?;
        }
        self.progress = ckpt.progress;
        self.observer.message(&format!(
            "resuming after epoch {} (step {})",
            self.progress.epoch, self.progress.step
        ));
        self.recorder.log_event(
            &self.id,
            "resume",
            &format!("from epoch {}", self.progress.epoch),
        )?;
        Ok(model)
    }

    /// Starts the weight average under `[train.ema]`: from the saved one when resuming, else
    /// empty until the first update copies the weights. `require_saved` refuses a resume
    /// without the saved average, as a missing optimizer state is refused.
    fn start_ema(
        &mut self,
        model: &Vit<B>,
        saved: Option<&crate::model::StateDict>,
        require_saved: bool,
    ) -> anyhow::Result<()> {
        let config = &self.config.train.ema;
        if !config.enabled {
            return Ok(());
        }
        let last = self.dir.join("last");
        self.ema = Some(match saved {
            Some(sd) => {
                let file = last.join("ema.safetensors").display().to_string();
                let average = apply_state_dict(model.valid(), sd, &file, &self.device)?;
                Ema::resumed(average, config)
            }
            None if require_saved => anyhow::bail!(
                "{} is missing: resuming would restart the weight average of train.ema; restore the file, or pass --force to restart the average from the current weights",
                last.join("ema.safetensors").display()
            ),
            None => Ema::new(config),
        });
        Ok(())
    }

    /// Starts from `[model] pretrained` when set: filters and applies the file, reports and
    /// records its coverage, and refuses (under `pretrained_strict`) one that leaves part of the
    /// encoder at its random initialisation.
    fn load_pretrained(&mut self, model: Vit<B>) -> anyhow::Result<Vit<B>> {
        let Some(spec) = &self.config.model.pretrained else {
            return Ok(model);
        };
        let runs_dir = std::path::Path::new(&self.config.train.runs_dir);
        let path = super::pretrained::source(spec, self.recorder.store(), runs_dir)?;
        let sd = read_state_dict(&path)?;
        let (model, coverage) = apply_pretrained(model, sd, &self.spec, &self.device);
        let summary = format!("pretrained {}: {}", path.display(), coverage.summary());
        self.observer.message(&summary);
        self.recorder.log_event(&self.id, "pretrained", &summary)?;
        self.recorder.add_artifact(&self.id, "pretrained", &path)?;
        if self.config.model.pretrained_strict && !coverage.encoder_complete() {
            let missing: Vec<String> = coverage
                .reinitialised
                .iter()
                .filter(|(n, _)| !crate::model::is_head(n))
                .map(|(n, why)| format!("{n} ({why})"))
                .collect();
            anyhow::bail!(
                "model.pretrained {}: the checkpoint does not cover the encoder; these would train from random weights: {}; use a checkpoint of this architecture, or set model.pretrained_strict = false",
                path.display(),
                missing.join(", ")
            );
        }
        Ok(model)
    }

    /// Freezes what `[finetune]` names; frozen parameters get no gradient and no optimizer state.
    fn freeze(&mut self, model: Vit<B>) -> anyhow::Result<Vit<B>> {
        let f = &self.config.finetune;
        let mut patterns: Vec<String> = f.freeze.clone();
        if f.freeze_patch_embed {
            patterns.push("patch_embed".into());
        }
        patterns.extend((0..f.freeze_blocks).map(|i| format!("blocks.{i}")));
        if patterns.is_empty() {
            return Ok(model);
        }
        let (model, frozen) =
            freeze(model, &patterns).map_err(|e| anyhow::anyhow!("finetune.freeze: {e}"))?;
        self.observer.message(&format!(
            "frozen: {} tensors ({})",
            frozen.len(),
            patterns.join(", ")
        ));
        Ok(model)
    }

    /// One pass over the training split. Divergence and Ctrl-C end it early, with what they
    /// need recorded.
    fn train_epoch(
        &mut self,
        mut model: Vit<B>,
        epoch: usize,
    ) -> anyhow::Result<(Vit<B>, EpochEnd)> {
        B::seed(&self.device, seed_for_epoch(self.config.seed, epoch));
        let started = Instant::now();
        let loader = EpochLoader::start(self.train_spec.clone(), epoch);
        let steps = loader.batches;
        self.observer
            .epoch_start(epoch, self.config.train.epochs, steps);
        let (mut loss_sum, mut score_sum, mut seen, mut skipped) = (0.0, 0.0, 0usize, 0usize);
        let mut rows = Vec::new();
        let log_every = (steps / 20).max(1);
        let mut lr = self.schedule.lr(self.progress.step as usize);
        let accumulate = self.config.train.grad_accumulation;
        let mut pending = GradientsAccumulator::<Vit<B>>::new();
        let mut waiting = 0;
        for (i, batch) in loader.enumerate() {
            let mut batch = batch?;
            skipped += self.note_skipped(&batch)?;
            if batch.is_empty() {
                continue;
            }
            lr = self.schedule.lr(self.progress.step as usize);
            let images = to_tensor::<B>(&mut batch, &self.device);
            let (loss, predictions) = self.task.forward_loss(&model, images, &batch, true);
            let loss_value: f64 = loss.clone().into_scalar().elem();
            if !loss_value.is_finite() {
                let msg = format!(
                    "loss became {loss_value} at epoch {epoch}, step {}",
                    self.progress.step
                );
                self.recorder.log_event(&self.id, "diverged", &msg)?;
                self.recorder
                    .set_status(&self.id, Status::Diverged, Some(&msg))?;
                return Ok((model, EpochEnd::Diverged));
            }
            let scaled = if accumulate > 1 {
                loss.div_scalar(accumulate as f64)
            } else {
                loss
            };
            pending.accumulate(
                &model,
                GradientsParams::from_grads(scaled.backward(), &model),
            );
            waiting += 1;
            if waiting == accumulate {
                model = self
                    .optimizer
                    .step::<B, Vit<B>>(model, pending.grads(), lr)
                    .0;
                self.progress.step += 1;
                self.update_ema(&model);
                waiting = 0;
            }
            score_sum += self.task.train_score(&predictions, &batch);
            seen += batch.len();
            loss_sum += loss_value * batch.len() as f64;
            let ips = seen as f64 / started.elapsed().as_secs_f64().max(1e-9);
            self.observer
                .step(i + 1, loss_sum / seen as f64, score_sum / seen as f64, ips);
            if (i + 1) % log_every == 0 {
                rows.push(row(
                    Metric::TRAIN_STEP_LOSS,
                    self.progress.step,
                    epoch,
                    loss_value,
                ));
            }
            if self.stop.load(Ordering::SeqCst) {
                self.recorder.log_metrics(&self.id, &rows)?;
                let msg = format!(
                    "interrupted during epoch {epoch}; `vitrun run FILE --resume` continues after epoch {}",
                    self.progress.epoch
                );
                self.recorder.log_event(&self.id, "interrupted", &msg)?;
                self.recorder
                    .set_status(&self.id, Status::Interrupted, Some(&msg))?;
                return Ok((model, EpochEnd::Interrupted));
            }
        }
        if waiting > 0 {
            model = self
                .optimizer
                .step::<B, Vit<B>>(model, pending.grads(), lr)
                .0;
            self.progress.step += 1;
            self.update_ema(&model);
        }
        if seen == 0 {
            return Err(DataError::Empty {
                split: "train",
                reason: format!(
                    "every training image of epoch {epoch} was unreadable ({skipped} skipped under data.skip_bad)"
                ),
            }
            .into());
        }
        let stats = TrainStats {
            loss: loss_sum / seen as f64,
            score: score_sum / seen as f64,
            skipped,
            lr,
            images_per_sec: seen as f64 / started.elapsed().as_secs_f64().max(1e-9),
            rows,
        };
        Ok((model, EpochEnd::Trained(stats)))
    }

    /// Moves the weight average toward the weights after an optimizer step.
    fn update_ema(&mut self, model: &Vit<B>) {
        if let Some(ema) = &mut self.ema {
            ema.update(model.valid(), self.progress.step);
        }
    }

    /// Logs a batch's skipped files; returns how many.
    fn note_skipped(&mut self, batch: &Batch) -> anyhow::Result<usize> {
        if !batch.skipped.is_empty() {
            let names = batch.skipped.join(", ");
            self.observer
                .message(&format!("skipped unreadable: {names}"));
            self.recorder.log_event(&self.id, "skipped", &names)?;
        }
        Ok(batch.skipped.len())
    }

    /// Validation over the whole split; skipped files are logged like training's.
    fn evaluate(
        &mut self,
        model: &Vit<B::InnerBackend>,
        epoch: usize,
    ) -> anyhow::Result<Evaluation> {
        let mut skipped_names = Vec::new();
        let eval = evaluate(
            &self.task,
            model,
            &self.val_spec,
            epoch,
            &self.device,
            &mut skipped_names,
        )?;
        if !skipped_names.is_empty() {
            let names = skipped_names.join(", ");
            self.observer
                .message(&format!("skipped unreadable (validation): {names}"));
            self.recorder.log_event(&self.id, "skipped", &names)?;
        }
        Ok(eval)
    }

    /// Commits the epoch's metrics, then the checkpoints that claim them.
    fn commit_epoch(
        &mut self,
        model: &Vit<B>,
        epoch: usize,
        stats: TrainStats,
        eval: Evaluation,
        ema_eval: Option<Evaluation>,
    ) -> anyhow::Result<EpochSummary> {
        let s = self.progress.step;
        let mut rows = stats.rows;
        rows.extend([
            row(Metric::TRAIN_LOSS, s, epoch, stats.loss),
            named_row("train", T::TRAIN_SCORE, s, epoch, stats.score),
            row(Metric::TRAIN_LR, s, epoch, stats.lr),
            row(Metric::TRAIN_IMAGES_PER_SEC, s, epoch, stats.images_per_sec),
            row(Metric::TRAIN_SKIPPED, s, epoch, stats.skipped as f64),
            row(Metric::VAL_LOSS, s, epoch, eval.loss),
            row(Metric::VAL_SKIPPED, s, epoch, eval.skipped as f64),
        ]);
        for (name, value) in &eval.scores.figures {
            rows.push(named_row(Metric::VAL_LOSS.split, name, s, epoch, *value));
        }
        if let Some(e) = &ema_eval {
            rows.push(row(Metric::VAL_EMA_LOSS, s, epoch, e.loss));
            for (name, value) in &e.scores.figures {
                rows.push(named_row(
                    Metric::VAL_EMA_LOSS.split,
                    name,
                    s,
                    epoch,
                    *value,
                ));
            }
        }
        self.progress.epoch = epoch;
        let live = eval.scores.main;
        let ema_wins = ema_eval.as_ref().is_some_and(|e| e.scores.main > live);
        let epoch_best = ema_eval.as_ref().map_or(live, |e| e.scores.main.max(live));
        let improved = epoch_best > self.progress.best_score;
        if improved {
            self.progress.best_score = epoch_best;
            self.progress.best_epoch = epoch;
            self.progress.best_is_ema = ema_wins;
        }
        // Metrics commit before the checkpoint claims the epoch: a kill in between re-runs it.
        self.recorder.log_metrics(&self.id, &rows)?;
        let policy = self.config.train.checkpoint;
        if policy != CheckpointPolicy::None {
            let weights = state_dict(model);
            let average = self
                .ema
                .as_ref()
                .and_then(|e| e.model.as_ref())
                .map(state_dict);
            if improved && policy == CheckpointPolicy::LastAndBest {
                let best = match &average {
                    Some(avg) if ema_wins => avg,
                    _ => &weights,
                };
                let saved = Weights {
                    model: best,
                    optimizer: None,
                    ema: None,
                };
                let path = checkpoint::save(&self.dir, "best", saved, &self.progress)?;
                self.recorder
                    .add_artifact(&self.id, "checkpoint_best", &path)?;
            }
            let optimizer = self.optimizer.state_dict();
            let saved = Weights {
                model: &weights,
                optimizer: Some(&optimizer),
                ema: average.as_ref(),
            };
            let path = checkpoint::save(&self.dir, "last", saved, &self.progress)?;
            self.recorder
                .add_artifact(&self.id, "checkpoint_last", &path)?;
        }
        Ok(EpochSummary {
            epoch,
            train_loss: stats.loss,
            train_score: stats.score,
            train_score_name: T::TRAIN_SCORE,
            val_loss: eval.loss,
            val_score: live,
            score_name: T::MAIN,
            val_others: eval
                .scores
                .figures
                .into_iter()
                .take(eval.scores.shown)
                .filter(|(name, _)| name != T::MAIN)
                .collect(),
            val_ema_score: ema_eval.map(|e| e.scores.main),
            lr: stats.lr,
            images_per_sec: stats.images_per_sec,
        })
    }

    /// The sweep's early-stopping verdict after a committed epoch (never after the last).
    fn ask_gate(&mut self, epoch: usize) -> anyhow::Result<Option<String>> {
        let Some(gate) = self.gate.as_deref_mut() else {
            return Ok(None);
        };
        if epoch >= self.config.train.epochs {
            return Ok(None);
        }
        let verdict = gate.after_epoch(self.recorder, &self.id, epoch)?;
        if let Some(reason) = &verdict {
            self.observer.message(&format!("pruned: {reason}"));
        }
        Ok(verdict)
    }
}

/// Validation loss (the task's loss without training's smoothing or mixing) and the task's
/// metrics over the whole split. Unreadable files skipped under `skip_bad` are appended to
/// `skipped`; a split of which no image could be read is an error, never a zero.
pub fn evaluate<B: crate::kernels::VitKernels, T: Task>(
    task: &T,
    model: &Vit<B>,
    spec: &LoaderSpec,
    epoch: usize,
    device: &B::Device,
    skipped: &mut Vec<String>,
) -> anyhow::Result<Evaluation> {
    let (mut loss_sum, mut seen) = (0.0, 0);
    let mut tally = task.tally();
    for batch in EpochLoader::start(spec.clone(), epoch) {
        let mut batch = batch?;
        skipped.append(&mut batch.skipped);
        if batch.is_empty() {
            continue;
        }
        let images = to_tensor::<B>(&mut batch, device);
        let (loss, predictions) = task.forward_loss(model, images, &batch, false);
        let loss: f64 = loss.into_scalar().elem();
        task.add(&mut tally, &predictions, &batch);
        loss_sum += loss * batch.len() as f64;
        seen += batch.len();
    }
    if seen == 0 {
        return Err(DataError::Empty {
            split: "validation",
            reason: format!(
                "every validation image of epoch {epoch} was unreadable ({} skipped under data.skip_bad)",
                skipped.len()
            ),
        }
        .into());
    }
    Ok(Evaluation {
        loss: loss_sum / seen as f64,
        scores: task.scores(tally),
        skipped: skipped.len(),
    })
}
