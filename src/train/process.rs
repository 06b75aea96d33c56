//! A trial as a process: the claim in the store (or the shard), the trial folder, the thread
//! pool, a panic caught and recorded as `crashed`, and a cluster's stop turned into a requeue.
//! `vitrun run`, `vitrun trial` and a SLURM array task all run a trial through [`run`].

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;

use super::backend::{dispatch, BackendTask};
use super::early_stop::{EpochGate, Judge};
use super::teacher::Teacher;
use super::{run_trial, Observer, Outcome, ProbeReport, ProbeSteps, TrialRun};
use crate::config::{available_cores, Loaded};
use crate::contract::{Artifact, Event, Status};
use crate::data::panic_text;
use crate::kernels::TrainBackend;
use crate::track::{Claim, Recorder, ShardRecorder, Store, TrialStart};

/// How `vitrun run` / `vitrun trial` runs one trial.
pub struct TrialOptions {
    /// Continue from the trial's last checkpoint when it has one.
    pub resume: bool,
    /// Take over a claim held by another host, and resume without optimizer state.
    pub force: bool,
    /// The sweep this trial belongs to (enables its early-stopping rule).
    pub sweep: Option<String>,
    /// The id the scheduler planned; a different resolved id is an error.
    pub expect_id: Option<String>,
    /// Set when a cluster array task runs the trial: its records go to a shard.
    pub cluster: Option<ClusterTrial>,
}

/// A trial run by a cluster array task: it writes its own shard instead of the store, judges
/// early stopping against its peers' shards, and when its time is up (USR2 before the time
/// limit, or the job's deadline) it checkpoints, marks itself preempted and requeues its array
/// task — at most `max_requeues` times, and only while each attempt completes an epoch. Any
/// other stop (TERM: `scancel`, or the cluster's own preemption, which requeues by itself) is
/// an interruption.
pub struct ClusterTrial {
    /// `JOBID_INDEX` of the array task.
    pub job: Option<String>,
    pub peers: crate::track::PeerSnapshot,
    /// Whether the job's time is up (USR2, or the deadline), and which: the stop flag is set
    /// with it.
    pub stopped_by: Box<dyn Fn() -> Option<&'static str>>,
    /// Requeues this array task; `Err(why)` when the cluster refuses (a cancelled job).
    pub requeue: Box<dyn Fn() -> Result<(), String>>,
    /// How many times this array task was requeued before (`SLURM_RESTART_COUNT`).
    pub restarts: u32,
    /// `[sweep.slurm] max_requeues`.
    pub max_requeues: u32,
}

/// How a `vitrun run`/`trial` command ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TrialEnd {
    /// This process ran the trial.
    Ran(Outcome),
    /// Another live process holds the trial; nothing was done.
    Held {
        pid: i64,
        host: String,
        since: Option<String>,
    },
    /// A sweep's trial that another process already ended; nothing was done.
    Done(Status),
}

/// A panic caught inside a trial; it is recorded as `crashed`.
#[derive(Debug, thiserror::Error)]
#[error("the trial panicked: {0}")]
pub struct Crash(pub String);

struct TrainTask<'a> {
    loaded: &'a Loaded,
    options: &'a TrialOptions,
    stop: Arc<AtomicBool>,
    observer: &'a mut dyn Observer,
}

impl BackendTask for TrainTask<'_> {
    type Output = anyhow::Result<TrialEnd>;

    fn run<B: TrainBackend>(
        mut self,
        device: B::Device,
        label: String,
    ) -> anyhow::Result<TrialEnd> {
        let config = &self.loaded.config;
        let id = config.trial_id();
        if let Some(expected) = &self.options.expect_id {
            anyhow::ensure!(
                *expected == id,
                "this trial resolves to id {id}, but the sweep planned {expected}; the file or a VITRUN_* variable changed since planning"
            );
        }
        let mut boxed: Box<dyn Recorder> = match &self.options.cluster {
            None => {
                // Shards of earlier cluster attempts fold first, so this attempt's writes are
                // the newest the store has.
                crate::track::sync_before_reading(config.runs().path())?;
                Box::new(Store::open(&config.store_path())?)
            }
            Some(cluster) => Box::new(ShardRecorder::new(
                config.experiment_dir().path(),
                &id,
                cluster.job.clone(),
                cluster.peers.clone(),
            )),
        };
        let recorder = boxed.as_mut();
        let start = TrialStart {
            id: id.clone(),
            experiment: config.name.clone(),
            file: self.loaded.file.display().to_string(),
            config_json: serde_json::to_string(config)?,
            seed: config.seed,
            params: config.flat_params(),
            device: label.clone(),
            main_metric: crate::task::metrics(config.head.task)
                .main()
                .name
                .to_string(),
        };
        // The teacher loads before the claim: a missing trial, a broken file or other classes
        // fail the run without recording an attempt.
        let asked = config.distill.kind != crate::config::DistillType::None;
        let teacher = match &config.distill.teacher {
            Some(_) if asked => {
                let classes = crate::data::open(config, crate::data::TargetKind::Class)?.classes;
                super::teacher::Teacher::<B::InnerBackend>::load(
                    config,
                    &classes,
                    recorder.store(),
                    &device,
                )?
            }
            _ => None,
        };
        let mut resume = self.options.resume;
        match recorder.claim(&start, self.options.force, true)? {
            Claim::Held { pid, host, since } => return Ok(TrialEnd::Held { pid, host, since }),
            Claim::Done(status) if self.options.sweep.is_some() => {
                return Ok(TrialEnd::Done(status))
            }
            Claim::Done(status) if !self.options.force => {
                anyhow::bail!(
                    "trial {id} is already {status}{}; nothing to resume or rerun. `--force` retrains it from scratch as a new attempt",
                    recorder.store().and_then(|s| result_of(s, &id)).unwrap_or_default()
                )
            }
            Claim::Done(_) => {
                // `--force` on a done trial: a new attempt, from scratch.
                recorder.claim(&start, true, false)?;
                resume = false;
            }
            Claim::Taken { .. } => {}
        }
        let args: Vec<String> = std::env::args().collect();
        let command =
            shlex::try_join(args.iter().map(String::as_str)).unwrap_or_else(|_| args.join(" "));
        recorder.log_event(&id, Event::Started, &command)?;
        let start_epoch = if resume {
            super::checkpoint::progress_of(&config.trial_dir(&id)).map_or(0, |p| p.epoch)
        } else {
            0
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.train::<B>(recorder, &id, (device, teacher), label, resume)
        }))
        .unwrap_or_else(|payload| Err(Crash(panic_text(payload.as_ref())).into()));
        if let Err(e) = &result {
            let status = if e.is::<Crash>() {
                Status::Crashed
            } else {
                Status::Failed
            };
            let recorded = recorder.set_status(&id, status, Some(&format!("{e:#}")));
            if let Err(store_error) = recorded {
                return Err(anyhow::anyhow!(
                    "{e:#}; and the failure could not be recorded: {store_error}"
                ));
            }
        }
        match (result?, &self.options.cluster) {
            (Outcome::Interrupted { epoch }, Some(cluster)) => match (cluster.stopped_by)() {
                Some(why) => Ok(TrialEnd::Ran(preempted(
                    recorder,
                    cluster,
                    &id,
                    Stopped {
                        epoch,
                        started_after: start_epoch,
                        why,
                        resumes: super::checkpoint::progress_of(&config.trial_dir(&id))
                            .map_or_else(|| "from the start".into(), |p| p.resume_point()),
                    },
                )?)),
                None => Ok(TrialEnd::Ran(Outcome::Interrupted { epoch })),
            },
            (outcome, _) => Ok(TrialEnd::Ran(outcome)),
        }
    }
}

/// `(best val top1 98.20% at epoch 9, 10 epochs)`: a done trial's result, as the store has it.
fn result_of(store: &Store, id: &str) -> Option<String> {
    let t = store.trials(None).ok()?.into_iter().find(|t| t.id == id)?;
    let best = t
        .best
        .map(|v| format!("best val {} {:.2}%", t.best_metric, v * 100.0));
    let epochs = t
        .epochs
        .map(|e| crate::contract::count(e.max(0) as usize, "epoch"));
    let parts: Vec<String> = best.into_iter().chain(epochs).collect();
    (!parts.is_empty()).then(|| format!(" ({})", parts.join(", ")))
}

/// A cluster trial whose time was up.
struct Stopped {
    /// The epoch it was in.
    epoch: usize,
    /// The epoch its attempt resumed after (0 for a fresh start).
    started_after: usize,
    /// What said its time was up.
    why: &'static str,
    /// Where its checkpoint continues (`after epoch 3`, `in epoch 4 after batch 12 of 40`).
    resumes: String,
}

/// Records a trial whose job's time was up as preempted (its checkpoint is the one saved at
/// the stop, mid-epoch) and requeues its array task, unless the requeues are used up or the attempt completed no
/// epoch (another attempt would stop at the same point); then, or if the cluster refuses,
/// the trial stays interrupted with the reason.
fn preempted(
    recorder: &mut dyn Recorder,
    cluster: &ClusterTrial,
    id: &str,
    stopped: Stopped,
) -> anyhow::Result<Outcome> {
    let Stopped {
        epoch,
        started_after,
        why,
        resumes,
    } = stopped;
    let interrupted = |recorder: &mut dyn Recorder, msg: String| -> anyhow::Result<Outcome> {
        recorder.log_event(id, Event::Ended(Status::Interrupted), &msg)?;
        recorder.set_status(id, Status::Interrupted, Some(&msg))?;
        Ok(Outcome::Interrupted { epoch })
    };
    if cluster.restarts >= cluster.max_requeues {
        return interrupted(recorder, format!(
            "stopped ({why}) during epoch {epoch} after {}: [sweep.slurm] max_requeues = {} is used up, so it is not requeued again; run the sweep again to continue it {resumes}",
            crate::contract::count(cluster.restarts as usize, "requeue"), cluster.max_requeues
        ));
    }
    if epoch <= started_after + 1 {
        return interrupted(recorder, format!(
            "stopped ({why}) during epoch {epoch} without completing an epoch since it resumed after epoch {started_after}: another attempt would stop at the same point, so it is not requeued; raise [sweep.slurm] time or shorten an epoch; run the sweep again to continue it {resumes}"
        ));
    }
    let msg = format!("preempted ({why}) during epoch {epoch}; requeued, it resumes {resumes}");
    recorder.log_event(id, Event::Ended(Status::Preempted), &msg)?;
    recorder.set_status(id, Status::Preempted, Some(&msg))?;
    match (cluster.requeue)() {
        Ok(()) => Ok(Outcome::Preempted { epoch }),
        Err(why) => {
            let msg = format!("stopped by the cluster during epoch {epoch} and not requeued: {why}; run the sweep again to resume it");
            recorder.set_status(id, Status::Interrupted, Some(&msg))?;
            Ok(Outcome::Interrupted { epoch })
        }
    }
}

impl TrainTask<'_> {
    /// Everything after the claim: the trial folder, threads, and the loop itself.
    fn train<B: TrainBackend>(
        &mut self,
        recorder: &mut dyn Recorder,
        id: &str,
        (device, teacher): (B::Device, Option<Teacher<B::InnerBackend>>),
        label: String,
        resume: bool,
    ) -> anyhow::Result<Outcome> {
        let config = &self.loaded.config;
        let dir = config.trial_dir(id);
        std::fs::create_dir_all(dir.path())
            .with_context(|| format!("cannot create {}", dir.path().display()))?;
        let resolved =
            toml::to_string_pretty(config).context("cannot render the resolved config")?;
        let file = dir.config();
        std::fs::write(&file, resolved)
            .with_context(|| format!("cannot write {}", file.display()))?;
        recorder.add_artifact(id, Artifact::Config, &file)?;
        self.observer.message(&format!(
            "trial {id} of experiment {} on {label}; folder {}",
            config.name,
            dir.path().display()
        ));
        let threads = if config.train.threads == 0 {
            available_cores()
        } else {
            config.train.threads
        };
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global();
        let mut judge = self
            .options
            .sweep
            .clone()
            .zip(crate::task::stop_criterion(self.loaded)?)
            .map(|(sweep, rule)| Judge { sweep, rule });
        run_trial::<B>(
            TrialRun {
                config,
                trial_id: id.to_string(),
                dir,
                recorder,
                resume,
                force: self.options.force,
                stop: self.stop.clone(),
                observer: &mut *self.observer,
                gate: judge.as_mut().map(|j| j as &mut dyn EpochGate),
            },
            teacher,
            device,
        )
    }
}

/// Trains the experiment's single trial in this process, reporting to `observer`, unless
/// another live process holds it. The experiment is checked against its task first, so a
/// mistake is never recorded as a failed trial.
pub fn run(
    loaded: &Loaded,
    options: &TrialOptions,
    stop: Arc<AtomicBool>,
    observer: &mut dyn Observer,
) -> anyhow::Result<TrialEnd> {
    crate::task::preflight(loaded)?;
    dispatch(
        &loaded.config,
        TrainTask {
            loaded,
            options,
            stop,
            observer,
        },
    )
    .map_err(|e| super::backend::in_experiment(loaded, e))?
}

struct ProbeTask<'a>(&'a Loaded, ProbeSteps);

impl BackendTask for ProbeTask<'_> {
    type Output = anyhow::Result<ProbeReport>;

    fn run<B: TrainBackend>(self, device: B::Device, _label: String) -> Self::Output {
        super::probe::<B>(&self.0.config, device, self.1)
    }
}

/// `vitrun probe` (hidden): training steps on the first training batch, then as many
/// inference passes, on the trial's device and precision: the GPU memory probe of
/// `trials_per_gpu = "auto"`, and the GPU benchmark's images per second.
pub fn probe(loaded: &Loaded, steps: ProbeSteps) -> anyhow::Result<ProbeReport> {
    dispatch(&loaded.config, ProbeTask(loaded, steps))
        .map_err(|e| super::backend::in_experiment(loaded, e))?
}
