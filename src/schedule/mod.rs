//! The sweep scheduler: a queue of planned trials, slots on the GPUs and CPU, one child process
//! per trial (`vitrun trial …`), retries from the last checkpoint, recovery of stale `running`
//! rows, Ctrl-C, and a live view. Early-stopping rules live in [`early_stop`] and run inside
//! each trial's process.

mod devices;
pub mod early_stop;
mod launcher;
mod live;
mod liveness;
mod probe;
mod slots;

pub use devices::{discover, filter_visible, parse_devices, parse_nvidia_smi, Devices, Gpu};
pub use early_stop::{judge, Evidence, Judge, Verdict};
pub use launcher::{slot_device, Launch, Launcher, TrialCommand};
pub use live::{clock, Board, Console, RunningRow, Silent, SweepView};
pub use liveness::vitrun_alive;
pub use probe::{largest, measure, used_by};
pub use slots::{fit, layout, PerGpu, Slot};

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config::DeviceSpec;
use crate::plan::{Plan, PlannedTrial};
use crate::track::{hostname, QueuedTrial, Store};

/// Everything a sweep run needs.
pub struct Sweep<'a> {
    pub plan: &'a Plan,
    /// The experiment file (recorded with the experiment).
    pub file: PathBuf,
    pub store_path: PathBuf,
    pub slots: Vec<Slot>,
    /// Relaunches of a failed trial in this run (each resumes from its last checkpoint).
    pub max_retries: usize,
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
    pub status: String,
    pub best_top1: Option<f64>,
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
}

/// How a trial process ended, as the scheduler classifies it.
#[derive(Debug, Clone, PartialEq)]
pub enum Exit {
    Finished,
    Diverged,
    Pruned,
    /// Stopped by our Ctrl-C.
    Interrupted,
    Failed(String),
}

/// Classifies a trial process's exit; `recorded` is the error the trial itself stored, and
/// `log_tail` the end of its log (for panics and out-of-memory).
pub fn classify(
    status: ExitStatus,
    stopping: bool,
    recorded: Option<&str>,
    log_tail: &str,
) -> Exit {
    let oom = [
        "out of memory",
        "CUDA_ERROR_OUT_OF_MEMORY",
        "memory allocation of",
    ]
    .iter()
    .find_map(|needle| log_tail.lines().rev().find(|l| l.contains(needle)));
    match (status.code(), status.signal()) {
        (Some(0), _) => Exit::Finished,
        (Some(3), _) => Exit::Diverged,
        (Some(4), _) => Exit::Pruned,
        (Some(130), _) if stopping => Exit::Interrupted,
        (_, Some(signal)) => Exit::Failed(match (oom, signal) {
            (Some(line), _) => format!("out of memory: {}", line.trim()),
            (None, 9) => "killed by SIGKILL (the out-of-memory killer, or kill -9)".into(),
            (None, s) => format!("killed by signal {s}"),
        }),
        (code, _) => {
            let code = code.unwrap_or(-1);
            let detail = oom
                .map(|l| format!("out of memory: {}", l.trim()))
                .or_else(|| recorded.map(str::to_string))
                .or_else(|| {
                    log_tail
                        .lines()
                        .rev()
                        .find(|l| l.contains("panicked") || l.contains("error"))
                        .map(|l| l.trim().to_string())
                })
                .unwrap_or_else(|| "no message; see its log.txt".into());
            let what = if code == 101 { "panicked" } else { "exited" };
            Exit::Failed(format!("{what} with code {code}: {detail}"))
        }
    }
}

fn log_path(t: &PlannedTrial) -> PathBuf {
    t.config.trial_dir(&t.id).join("log.txt")
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
    match t.config.train.device.parse() {
        Ok(DeviceSpec::Cuda(_) | DeviceSpec::TchCuda(_)) => true,
        Ok(DeviceSpec::Cpu | DeviceSpec::TchCpu) => false,
        _ => have_gpu,
    }
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
    let started = Instant::now();
    let plan = sweep.plan;
    let Some(first) = plan.trials.first() else {
        anyhow::bail!("the sweep has no trials");
    };
    let experiment = first.config.name.clone();
    let mut store = Store::open(&sweep.store_path)?;
    let queued = queued(plan);
    store.register_sweep(
        &plan.sweep,
        &experiment,
        &sweep.file.display().to_string(),
        &queued,
    )?;
    let have_gpu = sweep.slots.iter().any(|s| s.gpu.is_some());
    let have_cpu = sweep.slots.iter().any(|s| s.gpu.is_none());
    if let Some(t) = plan
        .trials
        .iter()
        .find(|t| (wants_gpu(t, have_gpu) && !have_gpu) || (!wants_gpu(t, have_gpu) && !have_cpu))
    {
        anyhow::bail!(
            "trial {} asks for train.device = {:?} but the sweep has no such slot (slots: {}); set train.device or pass --devices",
            t.id,
            t.config.train.device,
            sweep.slots.iter().map(|s| s.label.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    let host = hostname();
    let states = store.trial_states(&experiment)?;
    let mut queue = VecDeque::new();
    let mut external = Vec::new();
    let mut skipped = 0;
    let view = sweep.view;
    for (index, t) in plan.trials.iter().enumerate() {
        let state = states.get(&t.id);
        match state.map(|s| s.status.as_str()) {
            Some("finished" | "pruned" | "diverged") => skipped += 1,
            Some("running") => {
                let s = state.expect("matched");
                let here = s.host.as_deref() == Some(host.as_str());
                if here && s.pid.is_some_and(vitrun_alive) {
                    view.note(&format!(
                        "trial {} is running in process {} already; waiting for it",
                        t.id,
                        s.pid.unwrap_or(0)
                    ));
                    external.push(index);
                } else if here {
                    let reason = format!(
                        "stale: its process {} on {host} is gone; recovered by the sweep",
                        s.pid.unwrap_or(0)
                    );
                    store.fail_unfinished(&t.id, &reason)?;
                    view.note(&format!("trial {}: {reason}", t.id));
                    queue.push_back(Job { index, attempt: 1 });
                } else {
                    view.note(&format!(
                        "trial {} is running on host {}; left to it",
                        t.id,
                        s.host.as_deref().unwrap_or("?")
                    ));
                    skipped += 1;
                }
            }
            _ => queue.push_back(Job { index, attempt: 1 }),
        }
    }
    view.note(&format!(
        "sweep {}: {} trials ({} already done, {} to run) on {} slots: {}",
        plan.sweep,
        plan.trials.len(),
        skipped,
        queue.len() + external.len(),
        sweep.slots.len(),
        sweep
            .slots
            .iter()
            .map(|s| s.label.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let logged = store.val_epochs(&experiment)?;
    let mut tally = Tally {
        done: skipped,
        total: plan.trials.len(),
        progressed: 0,
        epochs_done: plan
            .trials
            .iter()
            .map(|t| logged.get(&t.id).copied().unwrap_or(0))
            .collect(),
        started,
    };
    let mut active: Vec<Active> = Vec::new();
    let mut busy = vec![false; sweep.slots.len()];
    let mut launched = 0;
    let mut stopping = false;
    let mut last_view = Instant::now() - Duration::from_secs(10);
    loop {
        if !stopping && sweep.stop.load(Ordering::SeqCst) {
            stopping = true;
            view.note("stopping: running trials finish their step and checkpoint state (Ctrl-C again to abort)");
            for a in &active {
                interrupt(&a.child);
            }
        }
        if !stopping {
            for (s, slot) in sweep.slots.iter().enumerate() {
                if busy[s] {
                    continue;
                }
                let fits =
                    |j: &Job| wants_gpu(&plan.trials[j.index], have_gpu) == slot.gpu.is_some();
                let Some(pos) = queue.iter().position(fits) else {
                    continue;
                };
                let job = queue.remove(pos).expect("position is in range");
                let trial = &plan.trials[job.index];
                let start_epoch = tally.epochs_done[job.index];
                let child = spawn(plan, sweep.launcher, &job, slot)?;
                view.note(&format!(
                    "start  {} on {} (attempt {}): {}",
                    trial.id,
                    slot.label,
                    job.attempt,
                    trial.describe()
                ));
                launched += 1;
                busy[s] = true;
                active.push(Active {
                    job,
                    slot: s,
                    child,
                    start_epoch,
                });
            }
        }
        let mut i = 0;
        while i < active.len() {
            let Some(status) = active[i].child.try_wait()? else {
                i += 1;
                continue;
            };
            let a = active.swap_remove(i);
            busy[a.slot] = false;
            let trial = &plan.trials[a.job.index];
            let state = store.trial_states_of(&trial.id)?;
            let now = store.latest_epoch(&trial.id)?.epoch;
            tally.progressed += now - a.start_epoch;
            tally.epochs_done[a.job.index] = now;
            let exit = classify(
                status,
                stopping,
                state.as_ref().and_then(|s| s.error.as_deref()),
                &tail(&log_path(trial)),
            );
            match exit {
                Exit::Failed(cause) => {
                    store.fail_unfinished(&trial.id, &cause)?;
                    if a.job.attempt <= sweep.max_retries && !stopping {
                        let msg = format!(
                            "attempt {} failed ({cause}); retrying from its last checkpoint",
                            a.job.attempt
                        );
                        store.log_event(&trial.id, "retry", &msg)?;
                        view.note(&format!("retry  {}: {msg}", trial.id));
                        queue.push_front(Job {
                            index: a.job.index,
                            attempt: a.job.attempt + 1,
                        });
                    } else {
                        tally.done += 1;
                        view.note(&format!("failed {}: {cause}", trial.id));
                    }
                }
                Exit::Interrupted => {
                    view.note(&format!(
                        "stopped {} (resume by running the sweep again)",
                        trial.id
                    ));
                }
                other => {
                    tally.done += 1;
                    view.note(&format!(
                        "{:<6} {} ({}/{} done)",
                        format!("{other:?}").to_lowercase(),
                        trial.id,
                        tally.done,
                        tally.total
                    ));
                }
            }
        }
        if last_view.elapsed() >= Duration::from_millis(500)
            || (active.is_empty() && queue.is_empty())
        {
            last_view = Instant::now();
            external.retain(|&index| {
                let id = &plan.trials[index].id;
                match store.trial_states_of(id) {
                    Ok(Some(s)) if s.status == "running" && s.pid.is_some_and(vitrun_alive) => true,
                    Ok(Some(s)) if s.status == "running" => {
                        let _ = store.fail_unfinished(id, "stale: its process ended without recording an end; recovered by the sweep");
                        if let Ok(snap) = store.latest_epoch(id) {
                            tally.epochs_done[index] = snap.epoch;
                        }
                        queue.push_back(Job { index, attempt: 1 });
                        false
                    }
                    _ => {
                        tally.done += 1;
                        false
                    }
                }
            });
            let board = board(&store, plan, &active, &queue, &sweep.slots, &tally)?;
            view.update(&board);
        }
        if active.is_empty() && (stopping || (queue.is_empty() && external.is_empty())) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    view.finish();
    Ok(SweepReport {
        results: results(&store, plan)?,
        launched,
        skipped,
        interrupted: stopping,
        wall: started.elapsed(),
    })
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
            val_top1: snap.val_top1,
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

fn results(store: &Store, plan: &Plan) -> anyhow::Result<Vec<TrialResult>> {
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
                status: s
                    .map(|s| s.status.clone())
                    .unwrap_or_else(|| "queued".into()),
                best_top1: s.and_then(|s| s.best_top1),
                epochs: s.and_then(|s| s.epochs),
                seconds: s
                    .and_then(|s| seconds_between(s.started_at.as_deref(), s.ended_at.as_deref())),
                error: s.and_then(|s| s.error.clone()),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.best_top1
            .unwrap_or(f64::NEG_INFINITY)
            .total_cmp(&a.best_top1.unwrap_or(f64::NEG_INFINITY))
    });
    Ok(out)
}
