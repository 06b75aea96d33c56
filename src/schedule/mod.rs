//! The sweep scheduler: a queue of planned trials, slots on the GPUs and CPU, one child process
//! per trial (`vitrun trial …`), retries from the last checkpoint, recovery of stale `running`
//! rows, Ctrl-C, and a live view. Early-stopping rules live with the trial
//! (`train::early_stop`) and run inside each trial's process. A trial's process claims it in the store itself, so two sweeps of one
//! file never train a trial twice: the loser exits busy and this scheduler waits for the holder.

mod devices;
mod exit;
mod launcher;
mod live;
mod probe;
mod slots;
pub mod slurm;

pub use devices::{discover, filter_visible, parse_devices, parse_nvidia_smi, Devices, Gpu};
pub use exit::{classify, oom_kills, Exit, ExitContext};
pub use launcher::{slot_device, Launch, Launcher, TrialCommand};
pub use live::{clock, Board, Console, RunningRow, Silent, SweepView};
pub use probe::{largest, measure, used_by};
pub use slots::{fit, layout, PerGpu, Slot};

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::contract::{Event, Status};
use crate::plan::{Plan, PlannedTrial};
use crate::track::{hostname, QueuedTrial, Store};

/// Where a proposing search's next trial comes from (see `search::Proposer`).
pub trait Proposals {
    /// The next trial, recorded in `store` as queued; none when the search has made its
    /// budget of trials.
    fn next(&self, store: &mut Store) -> anyhow::Result<Option<PlannedTrial>>;

    /// How many trials the search makes in all.
    fn budget(&self) -> usize;
}

impl Proposals for crate::search::Proposer<'_> {
    fn next(&self, store: &mut Store) -> anyhow::Result<Option<PlannedTrial>> {
        crate::search::Proposer::next(self, store)
    }

    fn budget(&self) -> usize {
        crate::search::Proposer::budget(self)
    }
}

/// Everything a sweep run needs.
pub struct Sweep<'a> {
    /// The trials planned up front (for a search: those it proposed in earlier runs).
    pub plan: Plan,
    /// A search's source of further trials, asked whenever a slot is free and nothing is
    /// queued.
    pub proposals: Option<&'a dyn Proposals>,
    /// The experiment file (recorded with the experiment).
    pub file: PathBuf,
    pub store_path: PathBuf,
    pub slots: Vec<Slot>,
    /// Relaunches of a failed trial in this run (each resumes from its last checkpoint).
    pub max_retries: usize,
    /// Which failure kinds are relaunched.
    pub retry_on: Vec<Status>,
    pub launcher: &'a dyn Launcher,
    /// Set by Ctrl-C: stop launching, ask running trials to stop after their step.
    pub stop: Arc<AtomicBool>,
    pub view: &'a mut dyn SweepView,
}

/// One trial's line in the summary.
#[derive(Debug, Clone)]
pub struct TrialResult {
    pub id: String,
    /// The swept values, `key=value …`.
    pub point: String,
    pub status: Status,
    /// The best value of the task's main validation metric, named by `best_metric`.
    pub best: Option<f64>,
    pub best_metric: String,
    pub epochs: Option<i64>,
    pub seconds: Option<f64>,
    pub error: Option<String>,
}

/// What a sweep run did.
#[derive(Debug, Clone)]
pub struct SweepReport {
    /// Every planned trial, best val top-1 first.
    pub results: Vec<TrialResult>,
    /// Processes started in this run (retries included).
    pub launched: usize,
    /// Trials already done in the store before this run.
    pub skipped: usize,
    /// Ctrl-C stopped the run before every trial was done.
    pub interrupted: bool,
    pub wall: Duration,
}

struct Job {
    index: usize,
    attempt: usize,
}

/// Counts behind the live view, kept in memory so a tick reads the store only for the
/// running trials.
struct Tally {
    done: usize,
    total: usize,
    /// Epochs completed by trials of this run that have exited.
    progressed: i64,
    /// Epochs each planned trial has logged (by plan index), as of its last exit.
    epochs_done: Vec<i64>,
    started: Instant,
}

struct Active {
    job: Job,
    slot: usize,
    child: Child,
    start_epoch: i64,
    /// The cgroup's OOM-kill count when the trial started.
    oom_kills: Option<u64>,
}

fn log_path(t: &PlannedTrial) -> PathBuf {
    t.config.trial_dir(&t.id).log()
}

fn tail(path: &PathBuf) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let start = text.len().saturating_sub(4000);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[start..].to_string()
}

fn wants_gpu(t: &PlannedTrial, have_gpu: bool) -> bool {
    t.config.train.device.is_gpu().unwrap_or(have_gpu)
}

fn spawn(plan: &Plan, launcher: &dyn Launcher, job: &Job, slot: &Slot) -> anyhow::Result<Child> {
    let trial = &plan.trials[job.index];
    let log = log_path(trial);
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let mut cmd = launcher.command(&Launch {
        trial,
        slot,
        attempt: job.attempt,
    });
    writeln!(
        out,
        "=== {} attempt {} on {}: {:?}",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        job.attempt,
        slot.label,
        cmd
    )?;
    match slot.gpu {
        Some(gpu) => cmd.env("CUDA_VISIBLE_DEVICES", gpu.to_string()),
        None => cmd.env("CUDA_VISIBLE_DEVICES", ""),
    };
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0);
    // SAFETY: prctl is async-signal-safe; it makes the child die with the scheduler, so a
    // killed scheduler leaves stale rows (recovered on the next run), never orphans.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn()
        .with_context(|| format!("cannot start trial {}: {cmd:?}", trial.id))
}

fn interrupt(child: &Child) {
    // SAFETY: sending a signal to our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
}

/// The plan's trials as the store records them before they run.
pub fn queued(plan: &Plan) -> Vec<QueuedTrial> {
    plan.trials
        .iter()
        .map(|t| QueuedTrial {
            id: t.id.clone(),
            config_json: serde_json::to_string(&t.config).expect("a config serialises"),
            seed: t.config.seed,
        })
        .collect()
}

/// Runs every trial of the plan that the store does not have done, and waits for them.
pub fn run(sweep: Sweep<'_>) -> anyhow::Result<SweepReport> {
    Scheduler::new(sweep)?.run()
}

/// A sweep run in progress.
struct Scheduler<'a> {
    plan: Plan,
    proposals: Option<&'a dyn Proposals>,
    slots: Vec<Slot>,
    launcher: &'a dyn Launcher,
    view: &'a mut dyn SweepView,
    stop: Arc<AtomicBool>,
    max_retries: usize,
    retry_on: Vec<Status>,
    store: Store,
    have_gpu: bool,
    queue: VecDeque<Job>,
    /// Trials another live process holds; polled until they end.
    external: Vec<usize>,
    active: Vec<Active>,
    busy: Vec<bool>,
    tally: Tally,
    launched: usize,
    skipped: usize,
    stopping: bool,
    /// The search has made its budget of trials (or has no new point).
    spent: bool,
}

impl<'a> Scheduler<'a> {
    /// Registers the plan in the store and sorts its trials into done, queued and held.
    fn new(sweep: Sweep<'a>) -> anyhow::Result<Self> {
        let started = Instant::now();
        let plan = sweep.plan;
        let experiment = match plan.trials.first() {
            Some(first) => first.config.name.clone(),
            None if sweep.proposals.is_some() => plan.sweep.clone(),
            None => anyhow::bail!("the sweep has no trials"),
        };
        if let Some(runs_dir) = sweep.store_path.parent() {
            crate::track::sync_before_reading(runs_dir)?;
        }
        let mut store = Store::open(&sweep.store_path)?;
        store.register_sweep(
            &plan.sweep,
            &experiment,
            &sweep.file.display().to_string(),
            &queued(&plan),
        )?;
        let have_gpu = sweep.slots.iter().any(|s| s.gpu.is_some());
        let have_cpu = sweep.slots.iter().any(|s| s.gpu.is_none());
        if let Some(t) = plan.trials.iter().find(|t| {
            let gpu = wants_gpu(t, have_gpu);
            (gpu && !have_gpu) || (!gpu && !have_cpu)
        }) {
            anyhow::bail!(
                "trial {} asks for train.device = \"{}\" but the sweep has no such slot (slots: {}); set train.device or pass --devices",
                t.id,
                t.config.train.device,
                sweep.slots.iter().map(|s| s.label.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
        let logged = store.val_epochs(&experiment)?;
        let busy = vec![false; sweep.slots.len()];
        let budget = sweep.proposals.map_or(0, |p| p.budget());
        let total = plan.trials.len().max(budget);
        let epochs_done = plan
            .trials
            .iter()
            .map(|t| logged.get(&t.id).copied().unwrap_or(0))
            .collect();
        let mut scheduler = Scheduler {
            plan,
            proposals: sweep.proposals,
            slots: sweep.slots,
            launcher: sweep.launcher,
            view: sweep.view,
            stop: sweep.stop,
            max_retries: sweep.max_retries,
            retry_on: sweep.retry_on,
            store,
            have_gpu,
            queue: VecDeque::new(),
            external: Vec::new(),
            active: Vec::new(),
            busy,
            tally: Tally {
                done: 0,
                total,
                progressed: 0,
                epochs_done,
                started,
            },
            launched: 0,
            skipped: 0,
            stopping: false,
            spent: false,
        };
        scheduler.triage(&experiment)?;
        Ok(scheduler)
    }

    /// Sorts the planned trials by their state in the store.
    fn triage(&mut self, experiment: &str) -> anyhow::Result<()> {
        let host = hostname();
        let on_cluster = self.on_cluster(experiment);
        let states = self.store.trial_states(experiment)?;
        for (index, t) in self.plan.trials.iter().enumerate() {
            if let Some(task) = on_cluster.get(&t.id) {
                self.view.note(&format!(
                    "trial {} is queued or running on the cluster (SLURM task {task}); left to it",
                    t.id
                ));
                self.skipped += 1;
                continue;
            }
            let Some(state) = states.get(&t.id) else {
                self.queue.push_back(Job { index, attempt: 1 });
                continue;
            };
            let here = state.host.as_deref() == Some(host.as_str());
            match (state.status, state.effective()) {
                (s, _) if s.is_done() => self.skipped += 1,
                (Status::Running, Status::Running) if here => {
                    self.view.note(&format!(
                        "trial {} is running in process {} already; waiting for it",
                        t.id,
                        state.pid.unwrap_or(0)
                    ));
                    self.external.push(index);
                }
                (Status::Running, Status::Running) => {
                    self.view.note(&format!(
                        "trial {} is running on host {}; left to it",
                        t.id,
                        state.host.as_deref().unwrap_or("?")
                    ));
                    self.skipped += 1;
                }
                (Status::Running, _) => {
                    let reason = format!(
                        "stale: its process {} on {host} is gone; recovered by the sweep",
                        state.pid.unwrap_or(0)
                    );
                    self.store.mark_stale(&t.id, state.pid, &reason)?;
                    self.view.note(&format!("trial {}: {reason}", t.id));
                    self.queue.push_back(Job { index, attempt: 1 });
                }
                _ => self.queue.push_back(Job { index, attempt: 1 }),
            }
        }
        self.tally.done = self.skipped;
        let slots: Vec<&str> = self.slots.iter().map(|s| s.label.as_str()).collect();
        self.view.note(&format!(
            "sweep {}: {} ({} already done, {} to run{}) on {}: {}",
            self.plan.sweep,
            crate::contract::count(self.plan.trials.len(), "trial"),
            self.skipped,
            self.queue.len() + self.external.len(),
            if self.proposals.is_some() {
                ", more as the search proposes them"
            } else {
                ""
            },
            crate::contract::count(slots.len(), "slot"),
            slots.join(", ")
        ));
        Ok(())
    }

    /// Trials of this experiment that a live SLURM task holds or will run, with the task (none
    /// where the experiment was never submitted to a cluster or SLURM does not answer here).
    fn on_cluster(&mut self, experiment: &str) -> std::collections::HashMap<String, String> {
        let Some(runs_dir) = self.store.path().parent().map(std::path::Path::to_path_buf) else {
            return Default::default();
        };
        slurm::refresh(&mut self.store, &runs_dir, experiment)
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, (_, state))| state.as_ref().is_some_and(slurm::TaskState::is_live))
            .map(|(trial, (task, _))| (trial, task))
            .collect()
    }

    /// Waits for every trial, launching, reaping and polling until none is left.
    fn run(mut self) -> anyhow::Result<SweepReport> {
        let mut last_view = Instant::now() - Duration::from_secs(10);
        loop {
            self.check_stop();
            if !self.stopping {
                self.launch()?;
            }
            self.reap()?;
            let idle = self.active.is_empty() && self.queue.is_empty();
            if last_view.elapsed() >= Duration::from_millis(500) || idle {
                last_view = Instant::now();
                self.poll()?;
            }
            let searching = self.proposals.is_some() && !self.spent;
            if self.active.is_empty()
                && (self.stopping
                    || (self.queue.is_empty() && self.external.is_empty() && !searching))
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.view.finish();
        Ok(SweepReport {
            results: results(&self.store, &self.plan)?,
            launched: self.launched,
            skipped: self.skipped,
            interrupted: self.stopping,
            wall: self.tally.started.elapsed(),
        })
    }

    fn check_stop(&mut self) {
        if !self.stopping && self.stop.load(Ordering::SeqCst) {
            self.stopping = true;
            self.view.note("stopping: running trials finish their step and checkpoint state (Ctrl-C again to abort)");
            for a in &self.active {
                interrupt(&a.child);
            }
        }
    }

    /// Starts queued trials on free slots of the kind they need.
    fn launch(&mut self) -> anyhow::Result<()> {
        for s in 0..self.slots.len() {
            if self.busy[s] {
                continue;
            }
            let on_gpu = self.slots[s].gpu.is_some();
            let have_gpu = self.have_gpu;
            let fits = |plan: &Plan, j: &Job| wants_gpu(&plan.trials[j.index], have_gpu) == on_gpu;
            if !self.queue.iter().any(|j| fits(&self.plan, j)) {
                if let Some(job) = self.propose()? {
                    self.queue.push_back(job);
                }
            }
            let Some(pos) = self.queue.iter().position(|j| fits(&self.plan, j)) else {
                continue;
            };
            let Some(job) = self.queue.remove(pos) else {
                continue;
            };
            let slot = &self.slots[s];
            let trial = &self.plan.trials[job.index];
            if let Some(state) = self.store.trial_states_of(&trial.id)? {
                if state.status.is_done() {
                    self.tally.done += 1;
                    self.view.note(&format!(
                        "trial {} was {} by another process",
                        trial.id, state.status
                    ));
                    continue;
                }
                if state.effective() == Status::Running
                    && state.host.as_deref() == Some(&hostname())
                {
                    self.view.note(&format!(
                        "trial {} is running in process {}; waiting for it",
                        trial.id,
                        state.pid.unwrap_or(0)
                    ));
                    self.external.push(job.index);
                    continue;
                }
            }
            let start_epoch = self.tally.epochs_done[job.index];
            let oom_kills = oom_kills();
            let child = spawn(&self.plan, self.launcher, &job, slot)?;
            self.view.note(&format!(
                "start  {} on {} (attempt {}): {}",
                trial.id,
                slot.label,
                job.attempt,
                trial.describe()
            ));
            self.launched += 1;
            self.busy[s] = true;
            self.active.push(Active {
                job,
                slot: s,
                child,
                start_epoch,
                oom_kills,
            });
        }
        Ok(())
    }

    /// The search's next trial as a job, when the sweep has a search with budget left.
    fn propose(&mut self) -> anyhow::Result<Option<Job>> {
        let Some(proposals) = self.proposals.filter(|_| !self.spent) else {
            return Ok(None);
        };
        let Some(trial) = proposals.next(&mut self.store)? else {
            self.spent = true;
            self.tally.total = self.plan.trials.len();
            if self.plan.trials.len() < proposals.budget() {
                self.view.note(&format!(
                    "the search proposes no more: every point it found is already one of its {} trials (a small space, or one the search has covered)",
                    self.plan.trials.len()
                ));
            }
            return Ok(None);
        };
        self.view
            .note(&format!("proposed {}: {}", trial.id, trial.describe()));
        let index = self.plan.trials.len();
        self.plan.trials.push(trial);
        self.tally.epochs_done.push(0);
        self.tally.total = self.tally.total.max(self.plan.trials.len());
        Ok(Some(Job { index, attempt: 1 }))
    }

    /// Collects exited trial processes: records what they could not, retries or counts them.
    fn reap(&mut self) -> anyhow::Result<()> {
        let mut i = 0;
        while i < self.active.len() {
            let Some(status) = self.active[i].child.try_wait()? else {
                i += 1;
                continue;
            };
            let a = self.active.swap_remove(i);
            self.busy[a.slot] = false;
            let trial = &self.plan.trials[a.job.index];
            let state = self.store.trial_states_of(&trial.id)?;
            let now = self.store.latest_epoch(&trial.id)?.epoch;
            self.tally.progressed += now - a.start_epoch;
            self.tally.epochs_done[a.job.index] = now;
            let log_tail = tail(&log_path(trial));
            let exit = classify(
                status,
                &ExitContext {
                    stopping: self.stopping,
                    recorded: state.as_ref().and_then(|s| s.error.as_deref()),
                    log_tail: &log_tail,
                    oom_killed: matches!((a.oom_kills, oom_kills()), (Some(b), Some(n)) if n > b),
                },
            );
            self.settle(a, exit)?;
        }
        Ok(())
    }

    fn settle(&mut self, a: Active, exit: Exit) -> anyhow::Result<()> {
        let id = self.plan.trials[a.job.index].id.clone();
        match exit {
            Exit::Failed { kind, cause } => {
                self.store
                    .end_unfinished(&id, Some(a.child.id()), kind, &cause)?;
                let retry = self.retry_on.contains(&kind)
                    && a.job.attempt <= self.max_retries
                    && !self.stopping;
                if retry {
                    let msg = format!(
                        "attempt {} ended {kind} ({cause}); retrying from its last checkpoint",
                        a.job.attempt
                    );
                    self.store.log_event(&id, Event::Retry, &msg)?;
                    self.view.note(&format!("retry  {id}: {msg}"));
                    self.queue.push_front(Job {
                        index: a.job.index,
                        attempt: a.job.attempt + 1,
                    });
                } else {
                    self.tally.done += 1;
                    self.view.note(&format!("{kind} {id}: {cause}"));
                }
            }
            Exit::Busy => {
                self.view.note(&format!(
                    "trial {id} was claimed by another process; waiting for it"
                ));
                self.external.push(a.job.index);
            }
            Exit::Interrupted => {
                self.view
                    .note(&format!("stopped {id} (resume by running the sweep again)"));
            }
            other => {
                self.tally.done += 1;
                self.view.note(&format!(
                    "{:<6} {id} ({}/{} done)",
                    format!("{other:?}").to_lowercase(),
                    self.tally.done,
                    self.tally.total
                ));
            }
        }
        Ok(())
    }

    /// Follows trials other processes hold, and redraws the live view.
    fn poll(&mut self) -> anyhow::Result<()> {
        let mut still = Vec::new();
        for index in std::mem::take(&mut self.external) {
            let id = self.plan.trials[index].id.clone();
            let Some(state) = self.store.trial_states_of(&id)? else {
                continue;
            };
            let here = state.host.as_deref() == Some(hostname().as_str());
            match (state.status, state.effective()) {
                (Status::Running, Status::Running) if here => still.push(index),
                (Status::Running, Status::Running) => {
                    self.tally.done += 1;
                    self.view.note(&format!(
                        "trial {id} is running on host {}; left to it",
                        state.host.as_deref().unwrap_or("?")
                    ));
                }
                (Status::Running, _) => {
                    self.store.mark_stale(
                        &id,
                        state.pid,
                        "stale: its process ended without recording an end; recovered by the sweep",
                    )?;
                    self.tally.epochs_done[index] = self.store.latest_epoch(&id)?.epoch;
                    self.queue.push_back(Job { index, attempt: 1 });
                }
                (Status::Queued, _) => self.queue.push_back(Job { index, attempt: 1 }),
                _ => self.tally.done += 1,
            }
        }
        self.external = still;
        let board = board(
            &self.store,
            &self.plan,
            &self.active,
            &self.queue,
            &self.slots,
            &self.tally,
        )?;
        self.view.update(&board);
        Ok(())
    }
}

fn board(
    store: &Store,
    plan: &Plan,
    active: &[Active],
    queue: &VecDeque<Job>,
    slots: &[Slot],
    tally: &Tally,
) -> anyhow::Result<Board> {
    let mut running = Vec::new();
    let mut remaining: i64 = 0;
    let mut moved = tally.progressed;
    for a in active {
        let t = &plan.trials[a.job.index];
        let snap = store.latest_epoch(&t.id)?;
        moved += snap.epoch - a.start_epoch;
        remaining += t.config.train.epochs as i64 - snap.epoch;
        running.push(RunningRow {
            trial: t.id.clone(),
            slot: slots[a.slot].label.clone(),
            attempt: a.job.attempt,
            epoch: snap.epoch,
            epochs: t.config.train.epochs,
            val_score: snap.val_score,
            score_name: snap.score_name,
            images_per_sec: snap.images_per_sec,
        });
    }
    for j in queue {
        remaining += plan.trials[j.index].config.train.epochs as i64 - tally.epochs_done[j.index];
    }
    let elapsed = tally.started.elapsed().as_secs_f64();
    let eta = (moved > 0)
        .then(|| Duration::from_secs_f64(remaining.max(0) as f64 * elapsed / moved as f64));
    Ok(Board {
        running,
        done: tally.done,
        total: tally.total,
        eta,
    })
}

fn seconds_between(start: Option<&str>, end: Option<&str>) -> Option<f64> {
    let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
    let (a, b) = (parse(start?)?, parse(end?)?);
    Some((b - a).num_milliseconds() as f64 / 1000.0)
}

/// Every planned trial's line of the summary, best val top-1 first.
pub fn results(store: &Store, plan: &Plan) -> anyhow::Result<Vec<TrialResult>> {
    let experiment = plan.trials.first().map(|t| t.config.name.clone());
    let summaries = store.trials(experiment.as_deref())?;
    let mut out: Vec<TrialResult> = plan
        .trials
        .iter()
        .map(|t| {
            let s = summaries.iter().find(|s| s.id == t.id);
            TrialResult {
                id: t.id.clone(),
                point: t.describe(),
                status: s.map_or(Status::Queued, |s| s.status),
                best: s.and_then(|s| s.best),
                best_metric: s.map_or_else(String::new, |s| s.best_metric.clone()),
                epochs: s.and_then(|s| s.epochs),
                seconds: s
                    .and_then(|s| seconds_between(s.started_at.as_deref(), s.ended_at.as_deref())),
                error: s.and_then(|s| s.error.clone()),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.best
            .unwrap_or(f64::NEG_INFINITY)
            .total_cmp(&a.best.unwrap_or(f64::NEG_INFINITY))
    });
    Ok(out)
}
