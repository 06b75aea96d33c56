//! What the cluster subcommands do: `sweep --launcher slurm` (submit, optionally watch),
//! `status`, `cancel`, `sync`, and the hidden `array-task` each SLURM task runs.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::out::{say, Form};

use super::commands::{distinct, SweepOptions};
use super::Console;
use crate::config::{available_cores, Loaded};
use crate::contract::count;
use crate::plan::plan;
use crate::schedule::slurm::{self, JobPlan, Submission, TaskState, PLAN_FILE};
use crate::schedule::{self, slot_device, Slot, SweepReport};
use crate::track::shard::ShardView;
use crate::track::{self, Store};
use crate::train::process::{self, ClusterTrial, TrialEnd, TrialOptions};

/// `vitrun sweep FILE --launcher slurm`: submits one job array of what is missing; with
/// `wait`, follows it until no task is left and returns the sweep's table.
pub fn sweep(
    loaded: &Loaded,
    options: &SweepOptions,
    wait: Option<Duration>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<(Submission, Option<SweepReport>)> {
    let started = Instant::now();
    let plan = if loaded.sweep.method.is_adaptive() {
        super::commands::start_plan(loaded, Some(&crate::search::Proposer::new(loaded)?))?
    } else {
        plan(loaded)?
    };
    let submission = slurm::submit(loaded, &plan, &options.sets)?;
    if submission.arrays.is_empty() {
        say!(
            "nothing to submit: {} done, {} queued or running on the cluster",
            count(submission.done, "trial"),
            submission.in_flight
        );
    }
    for array in &submission.arrays {
        let tasks = match (array.trials, array.workers) {
            (trials, 0) => count(trials, "trial"),
            (0, workers) => format!(
                "{} proposing the search's next trials",
                count(workers, "worker")
            ),
            (trials, workers) => format!(
                "{} and {} proposing the search's next trials",
                count(trials, "trial"),
                count(workers, "worker")
            ),
        };
        say!(
            "submitted job array {}: {tasks} ({} done already, {} queued or running on the cluster); plan and script in {}",
            array.job,
            submission.done,
            submission.in_flight,
            array.dir.display()
        );
    }
    let Some(interval) = wait else {
        say!(
            "watch with `vitrun status {}`; results fold into the store on every read",
            loaded.config.name
        );
        return Ok((submission, None));
    };
    let runs_dir = Path::new(&loaded.config.train.runs_dir);
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut plan = plan;
    let jobs: Vec<String> = submission.arrays.iter().map(|a| a.job.clone()).collect();
    let last_tasks = loop {
        track::sync_before_reading(runs_dir)?;
        if loaded.sweep.method.is_adaptive() {
            // The workers' proposals so far.
            plan =
                super::commands::start_plan(loaded, Some(&crate::search::Proposer::new(loaded)?))?;
        }
        let mut store = Store::open(&loaded.config.store_path())?;
        let tasks = slurm::refresh(&mut store, runs_dir, &loaded.config.name)?;
        let states = store.trial_states(&loaded.config.name)?;
        // A search's worker that has not proposed yet is live only in SLURM's queue.
        let mut live = slurm::queue::squeue(&jobs)?
            .values()
            .filter(|t| t.is_live())
            .count()
            .min(1);
        for t in &plan.trials {
            let (task, state) = tasks.get(&t.id).cloned().unwrap_or_default();
            if state.as_ref().is_some_and(TaskState::is_live) {
                live += 1;
            }
            let line = format!(
                "{} {}",
                states.get(&t.id).map_or("new", |s| s.effective().as_str()),
                state.map_or(String::new(), |s| format!("[{task}: {}]", s.describe()))
            );
            if seen.get(&t.id) != Some(&line) {
                say!("{} {:<12} {line}", schedule::clock(started.elapsed()), t.id);
                seen.insert(t.id.clone(), line);
            }
        }
        if live == 0 {
            break tasks;
        }
        if stop.load(Ordering::SeqCst) {
            say!(
                "stopped watching; the job array keeps running (vitrun status {})",
                loaded.config.name
            );
            break tasks;
        }
        std::thread::sleep(interval);
    };
    let store = Store::open(&loaded.config.store_path())?;
    let mut results = schedule::results(&store, &plan)?;
    // A trial whose task ended before it claimed the trial (a missing executable, a node that
    // failed) is still queued: say what its task did.
    for r in results.iter_mut().filter(|r| !r.status.is_done()) {
        if let Some((task, Some(state))) = last_tasks.get(&r.id) {
            if r.error.is_none() && !state.is_live() {
                r.error = Some(format!(
                    "its SLURM task {task} ended {} without finishing it; see its log (vitrun logs {})",
                    state.describe(),
                    r.id
                ));
            }
        }
    }
    Ok((
        submission.clone(),
        Some(SweepReport {
            results,
            launched: submission.submitted.len()
                + submission.arrays.iter().map(|a| a.workers).sum::<usize>(),
            skipped: submission.done,
            interrupted: stop.load(Ordering::SeqCst),
            wall: started.elapsed(),
        }),
    ))
}

/// One trial of `vitrun status`: its store record joined with its SLURM array task.
#[derive(serde::Serialize)]
struct StatusRow {
    experiment: String,
    id: String,
    status: String,
    /// `job_task`, where a task ran it.
    slurm_task: Option<String>,
    /// The task's state (`RUNNING on n1`), `gone` once SLURM forgot it.
    slurm_state: Option<String>,
    attempts: i64,
    requeues: usize,
    epochs: Option<i64>,
    metric: String,
    best: Option<f64>,
    error: Option<String>,
    /// The last lines of a failed trial's log.
    #[serde(skip)]
    tail: Option<String>,
}

/// `vitrun status [EXPERIMENT]`: every trial's store status joined with its SLURM task, as a
/// table (`--json`: `{"jobs", "trials"}`; `--quiet`: the trial ids).
pub fn status(runs_dir: &Path, experiment: Option<&str>, form: Form) -> anyhow::Result<String> {
    let path = crate::contract::RunsDir::new(runs_dir).store();
    anyhow::ensure!(
        path.exists(),
        "no run store at {}; submit a sweep first (vitrun sweep FILE --launcher slurm) or pass --runs-dir",
        path.display()
    );
    track::sync_before_reading(runs_dir)?;
    let mut store = Store::open(&path)?;
    let experiments: Vec<String> = match experiment {
        Some(e) => vec![e.to_string()],
        None => distinct(store.jobs(None)?.into_iter().map(|j| j.experiment)),
    };
    let mut out = String::new();
    let mut all_jobs = Vec::new();
    let mut all_rows = Vec::new();
    for exp in experiments {
        let tasks = slurm::refresh(&mut store, runs_dir, &exp)?;
        let jobs = store.jobs(Some(&exp))?;
        for job in &jobs {
            out.push_str(&format!(
                "# {exp}: job {} ({}, sweep {}, submitted {}{}) in {}\n",
                job.job,
                crate::contract::count(job.tasks as usize, "task"),
                job.sweep,
                job.submitted_at,
                job.cancelled_at
                    .as_ref()
                    .map(|c| format!(", cancelled {c}"))
                    .unwrap_or_default(),
                job.dir
            ));
        }
        all_jobs.extend(jobs.iter().map(|job| {
            serde_json::json!({
                "experiment": exp,
                "job": job.job,
                "tasks": job.tasks,
                "sweep": job.sweep,
                "submitted_at": job.submitted_at,
                "cancelled_at": job.cancelled_at,
                "dir": job.dir,
            })
        }));
        out.push_str(&format!(
            "{:<12} {:<11} {:<34} {:>8} {:>8} {:>6} {:>9}\n",
            "trial", "status", "slurm", "attempts", "requeues", "epochs", "best"
        ));
        let dir = runs_dir.join(&exp);
        for t in store.trials(Some(&exp))? {
            let task = tasks.get(&t.id);
            let state = task.and_then(|(_, state)| state.as_ref());
            // Requeues the trial made (preemptions) or SLURM made on its own (node failure,
            // `scontrol requeue`): whichever count is larger.
            let preemptions = ShardView::read(&dir.join(&t.id))
                .map(|v| v.preemptions)
                .unwrap_or(0);
            let restarts = state.map_or(0, |s| s.restarts as usize);
            let task_failed = state.is_some_and(|s| !s.is_live() && s.state != "COMPLETED");
            let tail = (t.status.is_failure() || (task_failed && !t.status.is_done()))
                .then(|| {
                    let folder = crate::contract::ExperimentDir::at(&dir).trial(&t.id);
                    super::commands::log_tail(&folder, 3)
                })
                .flatten();
            let row = StatusRow {
                experiment: exp.clone(),
                slurm_task: task.map(|(task, _)| task.to_string()),
                slurm_state: task.map(|_| state.map_or("gone".to_string(), TaskState::describe)),
                attempts: t.attempts,
                requeues: preemptions.max(restarts),
                epochs: t.epochs,
                metric: format!("val/{}", t.best_metric),
                best: t.best,
                error: t.error.clone(),
                status: t.status.to_string(),
                id: t.id,
                tail,
            };
            out.push_str(&status_line(&row));
            all_rows.push(row);
        }
    }
    Ok(match form {
        Form::Quiet => super::out::lines(all_rows.iter().map(|r| &r.id)),
        Form::Json => super::out::json(&serde_json::json!({
            "jobs": all_jobs,
            "trials": all_rows,
        })),
        Form::Text if out.is_empty() => "no SLURM submissions in this run store\n".to_string(),
        Form::Text => out,
    })
}

/// A `vitrun status` row, with a failed trial's log tail under it.
fn status_line(row: &StatusRow) -> String {
    let slurm = match (&row.slurm_task, &row.slurm_state) {
        (Some(task), Some(state)) => format!("{task} {state}"),
        _ => "-".to_string(),
    };
    let mut line = format!(
        "{:<12} {:<11} {:<34} {:>8} {:>8} {:>6} {:>9}{}\n",
        row.id,
        row.status,
        slurm,
        row.attempts,
        row.requeues,
        row.epochs.map_or("-".into(), |e| e.to_string()),
        row.best.map_or("-".into(), |v| {
            format!(
                "{} {:.1}%",
                row.metric.trim_start_matches("val/"),
                v * 100.0
            )
        }),
        row.error
            .as_ref()
            .map(|e| format!("  ({e})"))
            .unwrap_or_default()
    );
    for tail in row.tail.iter().flat_map(|t| t.lines()) {
        line.push_str(&format!("    | {}\n", super::out::printable(tail)));
    }
    line
}

/// `vitrun sync`: folds every shard under the runs folder into the store.
pub fn sync(runs_dir: &Path) -> anyhow::Result<track::FoldReport> {
    Ok(track::sync(runs_dir)?.unwrap_or_default())
}

/// Points this process's stdout and stderr at the trial's log (appending), as the local
/// scheduler does for its children.
fn log_to(path: &Path) -> anyhow::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    std::io::stdout().flush()?;
    // SAFETY: dup2 onto the standard descriptors of this process; `file` stays open until
    // they are duplicated.
    unsafe {
        libc::dup2(file.as_raw_fd(), 1);
        libc::dup2(file.as_raw_fd(), 2);
    }
    Ok(())
}

/// Another live array task running this trial (an attempt without its end marker whose task
/// SLURM still runs), so that two submissions of one trial never train it twice.
fn live_holder(trial_dir: &Path) -> anyhow::Result<Option<String>> {
    let view = ShardView::read(trial_dir)?;
    let Some(job) = view.last_job.filter(|_| view.attempts > 0 && !view.ended) else {
        return Ok(None);
    };
    if Some(&job) == slurm::task_id().as_ref() {
        return Ok(None);
    }
    let (id, _) = job.split_once('_').unwrap_or((&job, ""));
    let live = slurm::queue::squeue(&[id.to_string()])?
        .get(&job)
        .is_some_and(|t| t.state == "RUNNING");
    Ok(live.then_some(job))
}

/// `vitrun array-task DIR`: runs the trial of this SLURM array task (`SLURM_ARRAY_TASK_ID`)
/// from the submission folder `DIR` (its config as planned, not the experiment file as it is
/// now; a search's worker first proposes it), writing its shard. USR2 (or the job's deadline)
/// checkpoints it, marks it preempted and requeues the task within `max_requeues`; TERM
/// (`scancel`) interrupts it. `None`: a worker found the search's budget spent.
pub fn array_task(dir: &Path) -> anyhow::Result<Option<(Loaded, TrialEnd)>> {
    let plan_path = dir.join(PLAN_FILE);
    let mut plan: JobPlan = serde_json::from_str(
        &std::fs::read_to_string(&plan_path)
            .with_context(|| format!("cannot read {}", plan_path.display()))?,
    )
    .with_context(|| format!("{} is not a vitrun job plan", plan_path.display()))?;
    let index: usize = std::env::var("SLURM_ARRAY_TASK_ID")
        .ok()
        .and_then(|v| v.parse().ok())
        .context(
            "vitrun array-task runs inside a SLURM array task (SLURM_ARRAY_TASK_ID is not set)",
        )?;
    let mut task = plan
        .tasks
        .get(index)
        .with_context(|| {
            format!(
                "array index {index} is not in {} ({} tasks)",
                plan_path.display(),
                plan.tasks.len()
            )
        })?
        .clone();
    if task.propose {
        let search = plan.search.as_ref().with_context(|| {
            format!(
                "{}: task {index} proposes, but the plan has no search",
                plan_path.display()
            )
        })?;
        let Some(proposed) = slurm::worker::propose(&plan, search)? else {
            say!(
                "sweep {}: the search's budget is spent (or its space holds no new point); nothing to run",
                plan.sweep
            );
            return Ok(None);
        };
        let trial = proposed.trial;
        say!("proposed trial {}: {}", trial.id, trial.describe());
        // Early stopping judges it against the search's trials, not the plan's (none).
        plan.peers.members = proposed.members;
        task.trial = trial.id.clone();
        let snapshot = task.snapshot(dir);
        let resolved = toml::to_string_pretty(&trial.config)
            .context("cannot render the proposed trial's resolved config")?;
        std::fs::write(&snapshot, resolved)
            .with_context(|| format!("cannot write {}", snapshot.display()))?;
    }
    // --cpus-per-task sets the first; --cpus-per-gpu only the CPUs the job holds on its node.
    let threads = ["SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"]
        .iter()
        .find_map(|name| std::env::var(name).ok()?.parse().ok())
        .unwrap_or_else(available_cores);
    let gpus = std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_default();
    // The trial's config as planned; plans older than snapshots name the file and overrides.
    let snapshot = task.snapshot(dir);
    let (file, mut sets) = if snapshot.is_file() {
        (snapshot, Vec::new())
    } else {
        let mut sets = plan.sets.clone();
        sets.extend(task.sets.iter().cloned());
        (plan.file.clone(), sets)
    };
    let asked = crate::config::load(&file, &sets)?.config.train.device;
    let slot = Slot {
        label: format!("slurm:{}", slurm::task_id().unwrap_or_default()),
        gpu: (!gpus.is_empty()).then_some(0),
        threads,
    };
    sets.push(format!("train.device=\"{}\"", slot_device(asked, &slot)));
    sets.push(format!("train.threads={threads}"));
    let loaded = crate::config::load(&file, &sets)?;
    let trial_dir = loaded.config.trial_dir(&task.trial);
    std::fs::create_dir_all(trial_dir.path())
        .with_context(|| format!("cannot create {}", trial_dir.path().display()))?;
    let log = trial_dir.log();
    say!("trial {} logs to {}", task.trial, log.display());
    log_to(&log)?;
    say!(
        "=== {} SLURM task {} on {} ({threads} threads, CUDA_VISIBLE_DEVICES={gpus:?}, restart {})",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        slurm::task_id().unwrap_or_default(),
        track::hostname(),
        std::env::var("SLURM_RESTART_COUNT").unwrap_or_else(|_| "0".into())
    );
    if let Some(holder) = live_holder(trial_dir.path())? {
        say!(
            "trial {} is already running in SLURM task {holder}; leaving it to that task",
            task.trial
        );
        return Ok(Some((
            loaded,
            TrialEnd::Held {
                pid: 0,
                host: format!("SLURM task {holder}"),
                since: None,
            },
        )));
    }
    let stop = Arc::new(AtomicBool::new(false));
    // A flag per cause that the job's time is up, so the trial records which; TERM (scancel,
    // or the cluster's own preemption, which requeues the job itself) and INT only stop it.
    let causes: [(&'static str, Arc<AtomicBool>); 2] = [
        (
            "USR2 before the time limit",
            Arc::new(AtomicBool::new(false)),
        ),
        ("the job's deadline", Arc::new(AtomicBool::new(false))),
    ];
    signal_hook::flag::register(signal_hook::consts::SIGUSR2, causes[0].1.clone())?;
    for signal in [
        signal_hook::consts::SIGUSR2,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    if let Some(at) = slurm::deadline(plan.signal_seconds) {
        let (stop, deadline) = (stop.clone(), causes[1].1.clone());
        std::thread::spawn(move || {
            if let Ok(wait) = at.duration_since(std::time::SystemTime::now()) {
                std::thread::sleep(wait);
            }
            deadline.store(true, Ordering::SeqCst);
            stop.store(true, Ordering::SeqCst);
        });
    }
    let requeue_dir = dir.to_path_buf();
    let options = TrialOptions {
        resume: true,
        force: false,
        sweep: Some(plan.sweep.clone()),
        expect_id: Some(task.trial.clone()),
        cluster: Some(ClusterTrial {
            job: slurm::task_id(),
            peers: plan.peers.clone(),
            stopped_by: Box::new(move || {
                causes
                    .iter()
                    .find(|(_, flag)| flag.load(Ordering::SeqCst))
                    .map(|(why, _)| *why)
            }),
            requeue: Box::new(move || slurm::requeue_self(&requeue_dir)),
            restarts: std::env::var("SLURM_RESTART_COUNT")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            max_requeues: plan.max_requeues,
        }),
    };
    let end = process::run(&loaded, &options, stop, &mut Console::new(false))?;
    Ok(Some((loaded, end)))
}

/// `vitrun cancel EXPERIMENT`.
pub fn cancel(runs_dir: &Path, experiment: &str) -> anyhow::Result<Vec<String>> {
    anyhow::ensure!(
        crate::config::is_safe_name(experiment),
        "{experiment:?} is not an experiment name"
    );
    slurm::cancel(runs_dir, experiment)
}
