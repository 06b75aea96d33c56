//! One trial: build the model, restore a checkpoint, then per epoch train → evaluate →
//! commit (metrics before the checkpoint that claims them) → ask the gate; finally record the
//! end. Each step is its own function of [`Trial`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor, TensorData};

use super::checkpoint::{self, PartialEpoch, Progress, Weights};
use super::early_stop::EpochGate;
use super::ema::Ema;
use super::grads::{gradients, Accumulator};
use super::loss_scale::LossScale;
use super::optim::{global_grad_norm, param_sizes, Optimizer};
use super::schedule::LrSchedule;
use super::teacher::{Teacher, TeacherTally};
use crate::config::{available_cores, CheckpointPolicy, Config, Precision};
use crate::contract::{Artifact, Checkpoint, Event, Metric, Split, Status, TrialDir, TrialExit};
use crate::data::{self, Batch, DataError, EpochLoader, LoaderSpec, Pipeline, Targets};
use crate::kernels::{TrainBackend, VitKernels};
use crate::model::{
    apply_pretrained, apply_state_dict, freeze, read_state_dict, state_dict, with_arch, Arch,
    ArchTask, Model, StateDict,
};
use crate::task::readings::{read_all, Reading, StepReadings};
use crate::task::{with_task, Scores, Task, TaskWork};
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

/// Everything a trial needs besides its backend.
pub struct TrialRun<'a> {
    pub config: &'a Config,
    pub trial_id: String,
    /// `runs/<experiment>/<trial-id>/`.
    pub dir: TrialDir,
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

/// The backend's random seed for batch `batch` of epoch `epoch` (dropout, drop-path), set
/// before every batch so that a run resumed mid-epoch draws what an uninterrupted one does.
/// Batch 0 gets the epoch's own seed, under which epoch 1's first forward also draws the
/// lazily initialised weights.
fn seed_for_batch(seed: u64, epoch: usize, batch: usize) -> u64 {
    let epoch_seed = seed
        .wrapping_mul(0x2545_f491_4f6c_dd1d)
        .wrapping_add(epoch as u64);
    epoch_seed ^ (batch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Moves the batch's pixels into a tensor (the targets stay in the batch).
fn to_tensor<B: burn::tensor::backend::Backend, T: Targets>(
    batch: &mut Batch<T>,
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

/// A training step whose loss and readings are still on the device.
struct UnreadStep<B: Backend> {
    /// The batch's 1-based index in the epoch.
    index: usize,
    /// Optimizer steps before and after the batch.
    step_before: u64,
    step_after: u64,
    lr: f64,
    images: usize,
    loss: Reading<B>,
    readings: StepReadings<B>,
}

/// An epoch's running sums and step rows, and the steps not read into them yet.
struct StepReads<B: Backend> {
    epoch: usize,
    started: Instant,
    /// Images seen before this run of the epoch (a resumed epoch's), for the images/s.
    seen_before: usize,
    /// Every how many batches a step loss is logged.
    log_every: usize,
    sums: PartialEpoch,
    rows: Vec<MetricRow>,
    unread: Vec<UnreadStep<B>>,
}

fn row(metric: Metric, step: u64, epoch: usize, value: f64) -> MetricRow {
    named_row(metric.split, metric.name, step, epoch, value)
}

/// A row of a metric named at run time (a task's figures: `val/miou`, `val/iou_car`, …).
fn named_row(split: Split, name: &str, step: u64, epoch: usize, value: f64) -> MetricRow {
    MetricRow {
        split: split.as_str().into(),
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
    /// The epoch means of the loss's named parts (`loss_cls`, `loss_dist`).
    parts: Vec<(String, f64)>,
    /// Step losses logged during the epoch.
    rows: Vec<MetricRow>,
    /// What the distillation teacher did in the epoch.
    teacher: Option<TeacherTally>,
}

/// How a training epoch ended.
enum EpochEnd {
    Trained(TrainStats),
    /// The loss stopped being finite at this optimizer step.
    Diverged(u64),
    Interrupted,
}

/// Validation figures of one epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub loss: f64,
    pub scores: Scores,
    /// Images skipped as unreadable (`skip_bad`).
    pub skipped: usize,
    /// What the distillation teacher did in the pass.
    pub teacher: Option<TeacherTally>,
}

/// The model a trial of task `T` on architecture `A` trains, on backend `B`.
pub type TrialModel<B, A, T> = Model<B, <A as Arch>::Net<B>, <T as Task>::Head<B>>;

/// The weights of a trial's model without autodiff.
fn valid<B: TrainBackend, A: Arch, T: Task>(
    model: &TrialModel<B, A, T>,
) -> TrialModel<B::InnerBackend, A, T> {
    Model::new(A::valid(&model.encoder), T::valid_head(&model.head))
}

/// A trial in progress: everything but the model, which moves through the optimizer.
struct Trial<'a, B: TrainBackend, A: Arch, T: Task> {
    config: &'a Config,
    task: T,
    arch: A,
    id: String,
    dir: TrialDir,
    recorder: &'a mut dyn Recorder,
    stop: Arc<AtomicBool>,
    observer: &'a mut dyn Observer,
    gate: Option<&'a mut dyn EpochGate>,
    optimizer: Optimizer<B::InnerBackend>,
    /// The distillation teacher, under `[distill]`.
    teacher: Option<Teacher<B::InnerBackend>>,
    /// The weight average, under `[train.ema]`.
    ema: Option<Ema<TrialModel<B::InnerBackend, A, T>>>,
    progress: Progress,
    schedule: LrSchedule,
    train_spec: LoaderSpec<T::Targets>,
    val_spec: LoaderSpec<T::Targets>,
    device: B::Device,
}

/// Runs the trial to the end (or divergence, or Ctrl-C) on backend `B`, for the architecture
/// of `model.arch` and the task of `head.task`.
pub fn run_trial<B: TrainBackend>(
    run: TrialRun<'_>,
    teacher: Option<Teacher<B::InnerBackend>>,
    device: B::Device,
) -> anyhow::Result<Outcome> {
    struct ForArch<'a, B: TrainBackend> {
        run: TrialRun<'a>,
        teacher: Option<Teacher<B::InnerBackend>>,
        device: B::Device,
    }
    struct ForTask<'a, B: TrainBackend, A: Arch> {
        run: TrialRun<'a>,
        teacher: Option<Teacher<B::InnerBackend>>,
        device: B::Device,
        arch: A,
    }
    impl<'a, B: TrainBackend> ArchTask for ForArch<'a, B> {
        type Output = anyhow::Result<Outcome>;
        fn run<A: Arch>(self, arch: A) -> Self::Output {
            let kind = self.run.config.head.task;
            with_task(
                kind,
                ForTask::<B, A> {
                    run: self.run,
                    teacher: self.teacher,
                    device: self.device,
                    arch,
                },
            )
        }
    }
    impl<'a, B: TrainBackend, A: Arch> TaskWork for ForTask<'a, B, A> {
        type Output = anyhow::Result<Outcome>;
        fn run<T: Task>(self) -> Self::Output {
            run_task::<B, A, T>(self.run, self.teacher, self.arch, self.device)
        }
    }
    let config = run.config;
    with_arch(
        config,
        ForArch::<B> {
            run,
            teacher,
            device,
        },
    )
}

fn run_task<B: TrainBackend, A: Arch, T: Task>(
    run: TrialRun<'_>,
    teacher: Option<Teacher<B::InnerBackend>>,
    arch: A,
    device: B::Device,
) -> anyhow::Result<Outcome> {
    let (resume, force) = (run.resume, run.force);
    let (mut trial, model) = Trial::<B, A, T>::new(run, arch, device)?;
    trial.teacher = teacher;
    trial.note_teacher()?;
    let model = trial.restore(model, resume, force)?;
    let mut model = trial.freeze(model)?;
    let mut last = None;
    for epoch in trial.progress.epoch + 1..=trial.config.train.epochs {
        if trial.stop.load(Ordering::SeqCst) {
            trial.interrupted(epoch)?;
            return Ok(Outcome::Interrupted { epoch });
        }
        let (next, end) = trial.train_epoch(model, epoch)?;
        model = next;
        let stats = match end {
            EpochEnd::Trained(stats) => stats,
            EpochEnd::Diverged(step) => return Ok(Outcome::Diverged { epoch, step }),
            EpochEnd::Interrupted => return Ok(Outcome::Interrupted { epoch }),
        };
        let eval = trial.evaluate(&valid::<B, A, T>(&model), epoch)?;
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
        metric: T::METRICS.main().name,
        last,
    })
}

impl<'a, B: TrainBackend, A: Arch, T: Task> Trial<'a, B, A, T> {
    /// Opens the data, builds the model, optimizer, schedule and loaders.
    fn new(
        run: TrialRun<'a>,
        arch: A,
        device: B::Device,
    ) -> anyhow::Result<(Self, TrialModel<B, A, T>)> {
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
        let splits = data::open(config, T::Targets::KIND)?;
        observer.message(&format!(
            "data: {} ({} train / {} val images, {} classes)",
            splits.source,
            splits.train.len(),
            splits.val.len(),
            splits.classes.len()
        ));
        let names = dir.classes();
        std::fs::write(&names, serde_json::to_string_pretty(&splits.classes)?)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", names.display()))?;
        let task = T::new(config, &splits.classes)?;
        B::seed(&device, config.seed);
        let encoder = arch.init::<B>(&device);
        let head = task.head::<B>(arch.shape(), &device);
        let model = Model::new(encoder, head);
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
            transform: None,
        };
        let (size, ch) = (config.data.image_size, config.data.channels);
        let steps_per_epoch = splits
            .train
            .len()
            .div_ceil(t.batch_size)
            .div_ceil(t.grad_accumulation);
        let trial = Trial {
            config,
            id: trial_id,
            dir,
            recorder,
            stop,
            observer,
            gate,
            optimizer: Optimizer::new(&config.optimizer).with_layer_decay(
                config.finetune.layer_decay,
                config.model.depth.unwrap_or(12),
            ),
            teacher: None,
            ema: None,
            progress: Progress {
                epoch: 0,
                step: 0,
                best_score: f64::NEG_INFINITY,
                best_epoch: 0,
                best_is_ema: false,
                partial: None,
                loss_scale: (t.precision == Precision::F16).then(LossScale::default),
            },
            schedule: LrSchedule::new(&config.optimizer, steps_per_epoch, t.epochs),
            train_spec: LoaderSpec {
                repeats: config.data.repeated_aug,
                transform: task.transform(config),
                ..loader(
                    splits.train.clone(),
                    Pipeline::train(&config.augment, size, ch)
                        .with_interpolation(config.data.interpolation),
                    true,
                )
            },
            val_spec: loader(
                splits.val.clone(),
                Pipeline::val(&config.augment, size, ch)
                    .with_interpolation(config.data.interpolation),
                false,
            ),
            device,
            task,
            arch,
        };
        Ok((trial, model))
    }

    /// Reports and records the distillation teacher, if any.
    fn note_teacher(&mut self) -> anyhow::Result<()> {
        let Some(teacher) = &self.teacher else {
            return Ok(());
        };
        let d = &self.config.distill;
        let text = format!(
            "{} ({} distillation, alpha {}, tau {})",
            teacher.describe,
            format!("{:?}", d.kind).to_lowercase(),
            d.alpha,
            d.tau
        );
        let file = teacher.file.clone();
        self.observer.message(&text);
        self.recorder.log_event(&self.id, Event::Teacher, &text)?;
        self.recorder
            .add_artifact(&self.id, Artifact::Teacher, &file)?;
        Ok(())
    }

    /// Loads `last/` when resuming (model, optimizer with its shapes checked, progress);
    /// otherwise clears metrics a previous attempt left.
    fn restore(
        &mut self,
        model: TrialModel<B, A, T>,
        resume: bool,
        force: bool,
    ) -> anyhow::Result<TrialModel<B, A, T>> {
        let ckpt = if resume {
            checkpoint::load(&self.dir, Checkpoint::Last)?
        } else {
            None
        };
        let Some(ckpt) = ckpt else {
            self.recorder.clear_metrics(&self.id)?;
            let model = self.load_pretrained(model)?;
            self.start_ema(&model, None, false)?;
            return Ok(model);
        };
        let last = self.dir.checkpoint(Checkpoint::Last);
        let model = apply_state_dict(
            model,
            &ckpt.model,
            &last.path().display().to_string(),
            &self.device,
        )?;
        let opt_file = last.optimizer();
        match &ckpt.optimizer {
            Some(opt) => self
                .optimizer
                .load_state_dict(opt, ckpt.progress.step, &param_sizes(&model), &self.device)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "{}: {e}; it does not belong to this model, so resuming is refused; delete {} to start the trial afresh",
                        opt_file.display(),
                        last.path().display()
                    )
                })?,
            None if force => {
                self.optimizer.steps = ckpt.progress.step;
                let msg = format!(
                    "{} is missing; resumed with a fresh optimizer state (--force)",
                    opt_file.display()
                );
                self.observer.message(&format!("warning: {msg}"));
                self.recorder.log_event(&self.id, Event::FreshOptimizer, &msg)?;
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
                last.ema().display()
            );
            self.observer.message(&format!("warning: {msg}"));
            self.recorder.log_event(&self.id, Event::FreshEma, &msg)?;
        }
        self.progress = ckpt.progress;
        let point = self.progress.resume_point();
        self.observer
            .message(&format!("resuming {point} (step {})", self.progress.step));
        self.recorder
            .log_event(&self.id, Event::Resume, &format!("resuming {point}"))?;
        Ok(model)
    }

    /// Starts the weight average under `[train.ema]`: from the saved one when resuming, else
    /// empty until the first update copies the weights. `require_saved` refuses a resume
    /// without the saved average, as a missing optimizer state is refused.
    fn start_ema(
        &mut self,
        model: &TrialModel<B, A, T>,
        saved: Option<&StateDict>,
        require_saved: bool,
    ) -> anyhow::Result<()> {
        let config = &self.config.train.ema;
        if !config.enabled {
            return Ok(());
        }
        let file = self.dir.checkpoint(Checkpoint::Last).ema();
        self.ema = Some(match saved {
            Some(sd) => {
                let file = file.display().to_string();
                let average = apply_state_dict(valid::<B, A, T>(model), sd, &file, &self.device)?;
                Ema::resumed(average, config)
            }
            None if require_saved => anyhow::bail!(
                "{} is missing: resuming would restart the weight average of train.ema; restore the file, or pass --force to restart the average from the current weights",
                file.display()
            ),
            None => Ema::new(config),
        });
        Ok(())
    }

    /// Starts from `[model] pretrained` when set: filters and applies the file, reports and
    /// records its coverage, and refuses (under `pretrained_strict`) one that leaves part of the
    /// encoder at its random initialisation.
    fn load_pretrained(
        &mut self,
        model: TrialModel<B, A, T>,
    ) -> anyhow::Result<TrialModel<B, A, T>> {
        let Some(spec) = &self.config.model.pretrained else {
            return Ok(model);
        };
        let runs_dir = std::path::Path::new(&self.config.train.runs_dir);
        let path =
            super::pretrained::source("model.pretrained", spec, self.recorder.store(), runs_dir)?;
        let sd = read_state_dict(&path).with_context(|| format!("model.pretrained = {spec:?}"))?;
        if let Some((name, _)) = sd
            .iter()
            .find(|(_, t)| t.data.iter().any(|v| !v.is_finite()))
        {
            anyhow::bail!(
                "model.pretrained {}: tensor {name} holds NaN or infinite values, so training from it could only diverge; use a checkpoint saved before its run diverged",
                path.display()
            );
        }
        let (model, coverage) = apply_pretrained(model, sd, &self.arch, &self.device);
        let summary = format!("pretrained {}: {}", path.display(), coverage.summary());
        self.observer.message(&summary);
        self.recorder
            .log_event(&self.id, Event::Pretrained, &summary)?;
        self.recorder
            .add_artifact(&self.id, Artifact::Pretrained, &path)?;
        if self.config.model.pretrained_strict && !coverage.encoder_complete() {
            let missing = coverage.encoder_gaps();
            anyhow::bail!(
                "model.pretrained {}: the checkpoint does not cover the encoder; these would train from random weights: {}; use a checkpoint of this architecture, or set model.pretrained_strict = false",
                path.display(),
                missing.join(", ")
            );
        }
        Ok(model)
    }

    /// Freezes what `[finetune]` names; frozen parameters get no gradient and no optimizer state.
    fn freeze(&mut self, model: TrialModel<B, A, T>) -> anyhow::Result<TrialModel<B, A, T>> {
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

    /// One pass over the training split, or its rest after a mid-epoch checkpoint. Divergence
    /// ends it early, with what it needs recorded; a stop signal ends it at the next optimizer
    /// step, with a mid-epoch checkpoint.
    fn train_epoch(
        &mut self,
        mut model: TrialModel<B, A, T>,
        epoch: usize,
    ) -> anyhow::Result<(TrialModel<B, A, T>, EpochEnd)> {
        let started = Instant::now();
        if let Some(teacher) = &self.teacher {
            teacher.take_tally();
        }
        let resumed = self.progress.partial.take();
        let first = resumed.as_ref().map_or(0, |p| p.batches_done);
        let loader = EpochLoader::start_at(self.train_spec.clone(), epoch, first);
        let steps = loader.batches;
        if let Some(p) = &resumed {
            anyhow::ensure!(
                p.batches == steps && p.batches_done <= steps,
                "{}: the checkpoint stopped after batch {} of {} in epoch {epoch}, but the epoch now has {steps} batches (the training data changed); restore the data, or delete {} to restart the trial",
                self.dir.checkpoint(Checkpoint::Last).progress().display(),
                p.batches_done,
                p.batches,
                self.dir.checkpoint(Checkpoint::Last).path().display()
            );
        }
        self.observer
            .epoch_start(epoch, self.config.train.epochs, steps);
        let sums = resumed.unwrap_or(PartialEpoch {
            batches_done: 0,
            batches: steps,
            loss_sum: 0.0,
            score_sum: 0.0,
            seen: 0,
            skipped: 0,
            parts: Vec::new(),
        });
        let mut reads = StepReads {
            epoch,
            started,
            seen_before: sums.seen,
            log_every: (steps / 20).max(1),
            sums,
            rows: Vec::new(),
            unread: Vec::new(),
        };
        let mut lr = self.schedule.lr(self.progress.step as usize);
        let accumulate = self.config.train.grad_accumulation;
        let read_every = self
            .config
            .train
            .read_every_on(super::backend::resolve_auto(self.config.train.device));
        let mut pending = Accumulator::default();
        let mut waiting = 0;
        for (i, batch) in (first..).zip(loader) {
            let mut batch = batch?;
            reads.sums.skipped += self.note_skipped(&batch)?;
            reads.sums.batches_done = i + 1;
            if !batch.is_empty() {
                B::seed(&self.device, seed_for_batch(self.config.seed, epoch, i));
                lr = self.schedule.lr(self.progress.step as usize);
                if let Some(teacher) = &self.teacher {
                    let logits = teacher.logits(batch.teacher_images(), batch.dims(), &self.device);
                    self.task.with_teacher(&mut batch.targets, logits);
                }
                let images = to_tensor::<B, T::Targets>(&mut batch, &self.device);
                let (loss, readings) = self.task.forward_train(&model, images, &batch);
                let step_before = self.progress.step;
                let loss_scale = self.progress.loss_scale.as_ref().map_or(1.0, |s| s.scale);
                let factor = loss_scale / accumulate as f64;
                let scaled = if factor == 1.0 {
                    loss.clone()
                } else {
                    loss.clone().mul_scalar(factor)
                };
                pending.add(&model, gradients(scaled.backward(), &model));
                waiting += 1;
                if waiting == accumulate {
                    model = self.optimizer_step(model, pending.take(), lr);
                    waiting = 0;
                }
                reads.unread.push(UnreadStep {
                    index: i + 1,
                    step_before,
                    step_after: self.progress.step,
                    lr,
                    images: batch.len(),
                    loss: Reading::Device(loss.inner()),
                    readings: readings.inner(),
                });
                if reads.unread.len() >= read_every {
                    if let Some(step) = self.read_steps(&mut reads)? {
                        return Ok((model, EpochEnd::Diverged(step)));
                    }
                }
            }
            // Gradients half accumulated cannot be saved: the stop waits for the step.
            if waiting == 0 && self.stop.load(Ordering::SeqCst) {
                if let Some(step) = self.read_steps(&mut reads)? {
                    return Ok((model, EpochEnd::Diverged(step)));
                }
                self.save_partial(&model, reads.sums, &reads.rows)?;
                self.interrupted(epoch)?;
                return Ok((model, EpochEnd::Interrupted));
            }
        }
        if waiting > 0 {
            model = self.optimizer_step(model, pending.take(), lr);
        }
        if let Some(step) = self.read_steps(&mut reads)? {
            return Ok((model, EpochEnd::Diverged(step)));
        }
        let StepReads {
            sums,
            rows,
            seen_before,
            ..
        } = reads;
        if sums.seen == 0 {
            return Err(DataError::Empty {
                split: "train",
                reason: format!(
                    "every training image of epoch {epoch} was unreadable ({} skipped under data.skip_bad)",
                    sums.skipped
                ),
            }
            .into());
        }
        let stats = TrainStats {
            loss: sums.loss_sum / sums.seen as f64,
            score: sums.score_sum / sums.seen as f64,
            skipped: sums.skipped,
            lr,
            images_per_sec: (sums.seen - seen_before) as f64
                / started.elapsed().as_secs_f64().max(1e-9),
            parts: sums
                .parts
                .iter()
                .map(|(name, sum)| (name.clone(), sum / sums.seen as f64))
                .collect(),
            rows,
            teacher: self.teacher.as_ref().map(Teacher::take_tally),
        };
        Ok((model, EpochEnd::Trained(stats)))
    }

    /// One optimizer step on `grads`, through the float16 loss scaler when there is one: a
    /// step whose scaled gradients overflowed is skipped (and counted) and the scale halved.
    /// The step counts either way, as the learning-rate schedule sees it.
    fn optimizer_step(
        &mut self,
        model: TrialModel<B, A, T>,
        grads: GradientsParams,
        lr: f64,
    ) -> TrialModel<B, A, T> {
        let unscale = match self.progress.loss_scale.as_mut() {
            Some(scaler) => {
                let finite = global_grad_norm::<B, _>(&model, &grads).is_finite();
                let unscale = 1.0 / scaler.scale;
                scaler.update(finite).then_some(unscale)
            }
            None => Some(1.0),
        };
        self.progress.step += 1;
        let Some(unscale) = unscale else {
            return model;
        };
        let model = self
            .optimizer
            .step_unscaled::<B, _>(model, grads, lr, unscale)
            .0;
        self.update_ema(&model);
        model
    }

    /// Copies the steps not read yet to the host, all in one copy, and adds them to the
    /// epoch's sums, step-loss rows and progress display, in order. A loss that is not finite
    /// ends the trial as diverged (recorded here): the answer is the step it happened at.
    fn read_steps(
        &mut self,
        reads: &mut StepReads<B::InnerBackend>,
    ) -> anyhow::Result<Option<u64>> {
        let unread = std::mem::take(&mut reads.unread);
        let mut values = Vec::new();
        let mut steps = Vec::new();
        for step in unread {
            values.push(step.loss);
            values.push(step.readings.score);
            let mut names = Vec::new();
            for (name, part) in step.readings.parts {
                names.push(name);
                values.push(part);
            }
            steps.push((
                step.index,
                step.step_before,
                step.step_after,
                step.lr,
                step.images,
                names,
            ));
        }
        let mut values = read_all(values).into_iter();
        let mut next = || values.next().unwrap_or(f64::NAN);
        for (index, step_before, step_after, lr, images, names) in steps {
            let loss = next();
            let score = next();
            let parts: Vec<(&'static str, f64)> = names.into_iter().map(|n| (n, next())).collect();
            if !loss.is_finite() {
                let msg = format!(
                    "loss became {loss} at epoch {}, step {step_before}",
                    reads.epoch
                );
                self.end_as(Status::Diverged, &msg)?;
                return Ok(Some(step_before));
            }
            let sums = &mut reads.sums;
            sums.score_sum += score;
            sums.add_parts(&parts, images);
            sums.seen += images;
            sums.loss_sum += loss * images as f64;
            let ips = (sums.seen - reads.seen_before) as f64
                / reads.started.elapsed().as_secs_f64().max(1e-9);
            self.observer.step(
                index,
                sums.loss_sum / sums.seen as f64,
                sums.score_sum / sums.seen as f64,
                ips,
            );
            if index % reads.log_every == 0 {
                reads
                    .rows
                    .push(row(Metric::TRAIN_STEP_LOSS, step_after, reads.epoch, loss));
                reads
                    .rows
                    .push(row(Metric::TRAIN_STEP_LR, step_after, reads.epoch, lr));
            }
        }
        Ok(None)
    }

    /// Saves `last/` in the middle of an epoch (at an optimizer step): the weights, optimizer,
    /// weight average and the epoch's running sums, after the step losses logged so far, so
    /// that a resume continues with the next batch.
    fn save_partial(
        &mut self,
        model: &TrialModel<B, A, T>,
        sums: PartialEpoch,
        rows: &[MetricRow],
    ) -> anyhow::Result<()> {
        self.recorder.log_metrics(&self.id, rows)?;
        if self.config.train.checkpoint == CheckpointPolicy::None {
            return Ok(());
        }
        self.progress.partial = Some(sums);
        let (weights, average) = self.weights(model);
        self.save_last(&weights, average.as_ref())
    }

    /// The model's state dict and the weight average's, if any.
    fn weights(&self, model: &TrialModel<B, A, T>) -> (StateDict, Option<StateDict>) {
        let average = self
            .ema
            .as_ref()
            .and_then(|e| e.model.as_ref())
            .map(state_dict);
        (state_dict(model), average)
    }

    /// Writes `last/` (weights, optimizer, weight average, progress) and records it.
    fn save_last(
        &mut self,
        weights: &StateDict,
        average: Option<&StateDict>,
    ) -> anyhow::Result<()> {
        let optimizer = self.optimizer.state_dict();
        let saved = Weights {
            model: weights,
            optimizer: Some(&optimizer),
            ema: average,
        };
        let path = checkpoint::save(&self.dir, Checkpoint::Last, saved, &self.progress)?;
        self.recorder
            .add_artifact(&self.id, Artifact::CheckpointLast, &path)?;
        Ok(())
    }

    /// Records the trial as interrupted during `epoch`, naming where `vitrun resume` continues.
    fn interrupted(&mut self, epoch: usize) -> anyhow::Result<()> {
        let from = checkpoint::progress_of(&self.dir)
            .map_or_else(|| "from the start".to_string(), |p| p.resume_point());
        let msg = format!(
            "interrupted during epoch {epoch}; `vitrun resume {}` continues {from}",
            self.id
        );
        self.end_as(Status::Interrupted, &msg)
    }

    /// Records the trial as ended with `status`, and why.
    fn end_as(&mut self, status: Status, why: &str) -> anyhow::Result<()> {
        self.recorder
            .log_event(&self.id, Event::Ended(status), why)?;
        self.recorder.set_status(&self.id, status, Some(why))?;
        Ok(())
    }

    /// Moves the weight average toward the weights after an optimizer step.
    fn update_ema(&mut self, model: &TrialModel<B, A, T>) {
        if let Some(ema) = &mut self.ema {
            ema.update(valid::<B, A, T>(model), self.progress.step);
        }
    }

    /// Logs a batch's skipped files; returns how many.
    fn note_skipped(&mut self, batch: &Batch<T::Targets>) -> anyhow::Result<usize> {
        if !batch.skipped.is_empty() {
            let names = batch.skipped.join(", ");
            self.observer
                .message(&format!("skipped unreadable: {names}"));
            self.recorder.log_event(&self.id, Event::Skipped, &names)?;
        }
        Ok(batch.skipped.len())
    }

    /// Validation over the whole split; skipped files are logged like training's.
    fn evaluate(
        &mut self,
        model: &TrialModel<B::InnerBackend, A, T>,
        epoch: usize,
    ) -> anyhow::Result<Evaluation> {
        let mut skipped_names = Vec::new();
        let eval = evaluate(
            &self.task,
            model,
            &self.val_spec,
            Eval {
                epoch,
                device: &self.device,
                teacher: self.teacher.as_ref(),
            },
            &mut skipped_names,
        )?;
        if !skipped_names.is_empty() {
            let names = skipped_names.join(", ");
            self.observer
                .message(&format!("skipped unreadable (validation): {names}"));
            self.recorder.log_event(&self.id, Event::Skipped, &names)?;
        }
        Ok(eval)
    }

    /// The rows of what the teacher did in a pass (`teacher_forwards`, `teacher_cached`: images
    /// it classified, images the cache answered); the cache's problems go to the log.
    fn note_teacher_tally(
        &mut self,
        split: Split,
        tally: &TeacherTally,
        step: u64,
        epoch: usize,
    ) -> [MetricRow; 2] {
        if let Some(problem) = &tally.last_problem {
            self.observer.message(&format!(
                "teacher cache ({}): {} failed their checks, {} could not be written; last: {problem}",
                split.as_str(),
                crate::contract::count(tally.rejected, "entry"),
                tally.unwritten
            ));
        }
        let [forwards, cached] = match split {
            Split::Train => [Metric::TRAIN_TEACHER_FORWARDS, Metric::TRAIN_TEACHER_CACHED],
            _ => [Metric::VAL_TEACHER_FORWARDS, Metric::VAL_TEACHER_CACHED],
        };
        [
            row(forwards, step, epoch, tally.forwards as f64),
            row(cached, step, epoch, tally.cached as f64),
        ]
    }

    /// Commits the epoch's metrics, then the checkpoints that claim them.
    fn commit_epoch(
        &mut self,
        model: &TrialModel<B, A, T>,
        epoch: usize,
        stats: TrainStats,
        eval: Evaluation,
        ema_eval: Option<Evaluation>,
    ) -> anyhow::Result<EpochSummary> {
        let s = self.progress.step;
        let mut rows = stats.rows;
        rows.extend([
            row(Metric::TRAIN_LOSS, s, epoch, stats.loss),
            named_row(Split::Train, T::METRICS.train, s, epoch, stats.score),
            row(Metric::TRAIN_LR, s, epoch, stats.lr),
            row(Metric::TRAIN_IMAGES_PER_SEC, s, epoch, stats.images_per_sec),
            row(Metric::TRAIN_SKIPPED, s, epoch, stats.skipped as f64),
            row(Metric::TRAIN_PARAMS, s, epoch, model.num_params() as f64),
            row(Metric::VAL_LOSS, s, epoch, eval.loss),
            row(Metric::VAL_SKIPPED, s, epoch, eval.skipped as f64),
        ]);
        if let Some(mib) = peak_rss_mib() {
            rows.push(row(Metric::TRAIN_PEAK_RSS, s, epoch, mib));
        }
        if let Some(scaler) = &self.progress.loss_scale {
            rows.push(row(Metric::TRAIN_LOSS_SCALE, s, epoch, scaler.scale));
            rows.push(row(
                Metric::TRAIN_SKIPPED_STEPS,
                s,
                epoch,
                scaler.skipped as f64,
            ));
        }
        for (name, value) in &stats.parts {
            rows.push(named_row(Split::Train, name, s, epoch, *value));
        }
        for (split, tally) in [(Split::Train, &stats.teacher), (Split::Val, &eval.teacher)] {
            if let Some(tally) = tally {
                rows.extend(self.note_teacher_tally(split, tally, s, epoch));
            }
        }
        for (name, value) in &eval.scores.figures {
            rows.push(named_row(Split::Val, name, s, epoch, *value));
        }
        if let Some(e) = &ema_eval {
            rows.push(row(Metric::VAL_EMA_LOSS, s, epoch, e.loss));
            for (name, value) in &e.scores.figures {
                rows.push(named_row(Split::ValEma, name, s, epoch, *value));
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
            let (weights, average) = self.weights(model);
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
                let path = checkpoint::save(&self.dir, Checkpoint::Best, saved, &self.progress)?;
                self.recorder
                    .add_artifact(&self.id, Artifact::CheckpointBest, &path)?;
            }
            self.save_last(&weights, average.as_ref())?;
        }
        Ok(EpochSummary {
            epoch,
            train_loss: stats.loss,
            train_score: stats.score,
            train_score_name: T::METRICS.train,
            val_loss: eval.loss,
            val_score: live,
            score_name: T::METRICS.main().name,
            val_others: eval
                .scores
                .figures
                .into_iter()
                .filter(|(name, _)| T::METRICS.val[1..T::METRICS.shown].contains(&name.as_str()))
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

/// Where a validation pass runs: its epoch, device and the distillation teacher, if any.
pub struct Eval<'a, B: VitKernels> {
    pub epoch: usize,
    pub device: &'a B::Device,
    /// Its logits of each batch go to the task (the teacher's top-1 and agreement).
    pub teacher: Option<&'a Teacher<B>>,
}

/// Validation loss (the task's loss without training's smoothing or mixing) and the task's
/// metrics over the whole split. Unreadable files skipped under `skip_bad` are appended to
/// `skipped`; a split of which no image could be read is an error, never a zero.
pub fn evaluate<B: VitKernels, E: crate::model::Backbone<B>, T: Task>(
    task: &T,
    model: &Model<B, E, T::Head<B>>,
    spec: &LoaderSpec<T::Targets>,
    at: Eval<'_, B>,
    skipped: &mut Vec<String>,
) -> anyhow::Result<Evaluation> {
    let Eval {
        epoch,
        device,
        teacher,
    } = at;
    let (mut loss_sum, mut seen) = (0.0, 0);
    let mut tally = task.tally();
    for batch in EpochLoader::start(spec.clone(), epoch) {
        let mut batch = batch?;
        skipped.append(&mut batch.skipped);
        if batch.is_empty() {
            continue;
        }
        if let Some(teacher) = teacher {
            let logits = teacher.logits(batch.teacher_images(), batch.dims(), device);
            task.with_teacher(&mut batch.targets, logits);
        }
        let images = to_tensor::<B, T::Targets>(&mut batch, device);
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
        teacher: teacher.map(Teacher::take_tally),
    })
}

/// This process's peak resident memory so far in MiB (`getrusage`), if the kernel gives it.
fn peak_rss_mib() -> Option<f64> {
    // SAFETY: getrusage fills the struct it is given and reads nothing else.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0;
    (ok && usage.ru_maxrss > 0).then(|| usage.ru_maxrss as f64 / 1024.0)
}
