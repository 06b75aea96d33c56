//! The SLURM launcher: SLURM itself is the engine. `submit` writes a frozen plan (array index →
//! trial) and an `sbatch` script under `runs/<experiment>/slurm/`, submits ONE job array of the
//! trials the store does not have done (and that no live task already runs), records the job
//! and returns; nothing stays attached. Each array task runs `vitrun array-task`, which writes
//! its trial's shard; the submit host folds shards into the store ([`crate::track::sync`]).
//! [`refresh`] joins the store with SLURM's view and marks a trial stale when its task is gone
//! while it still reads `running`, as the local scheduler does for dead processes.

pub mod queue;
mod script;
pub mod worker;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use serde::{Deserialize, Serialize};

pub use queue::TaskState;
pub use script::{render, sbatch_path, Script};

use crate::config::Loaded;
use crate::contract::{Event, Status};
use crate::plan::{Plan, PlannedTrial};
use crate::track::{self, JobRecord, PeerSnapshot, Store};

/// The frozen plan of a job array, `plan.json` in its submission folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobPlan {
    pub experiment: String,
    /// The experiment file (absolute).
    pub file: PathBuf,
    /// The user's `--set` overrides, applied before each trial's sweep point.
    pub sets: Vec<String>,
    pub sweep: String,
    /// Array index → trial.
    pub tasks: Vec<TaskPlan>,
    pub peers: PeerSnapshot,
    /// USR2 comes this many seconds before the time limit; the job's deadline less this is
    /// the fallback when no signal arrives.
    pub signal_seconds: u64,
    /// A task is requeued at most this many times (`[sweep.slurm] max_requeues`).
    #[serde(default = "default_max_requeues")]
    pub max_requeues: u32,
    /// A search's submission: its worker tasks propose their trials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<worker::SearchPlan>,
}

fn default_max_requeues() -> u32 {
    crate::config::SlurmSpec::default().max_requeues
}

/// One array task's trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskPlan {
    /// Empty for a search's worker, which proposes its trial when it starts.
    pub trial: String,
    /// A search's worker ([`worker::propose`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub propose: bool,
    /// The sweep point's overrides.
    pub sets: Vec<String>,
    /// The trial's resolved config as planned (TOML), written beside the plan as
    /// `<trial>.toml`: the task runs that, not the experiment file as it is by then.
    #[serde(default, skip_serializing)]
    pub resolved: Option<String>,
}

impl TaskPlan {
    /// The snapshot of the trial's resolved config in submission folder `dir`.
    pub fn snapshot(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.toml", self.trial))
    }
}

/// The plan file of a submission folder.
pub const PLAN_FILE: &str = "plan.json";
/// The `sbatch` script of a submission folder.
pub const SCRIPT_FILE: &str = "job.sbatch";
/// Present in a submission folder once `vitrun cancel` cancelled it: a stopped task then
/// records itself interrupted instead of requeueing.
pub const CANCELLED_FILE: &str = "cancelled";

/// What `submit` did.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The job arrays submitted (one, unless the cluster's MaxArraySize is smaller).
    pub arrays: Vec<SubmittedArray>,
    /// The trials submitted.
    pub submitted: Vec<String>,
    /// Trials already done in the store.
    pub done: usize,
    /// Trials a live SLURM task already runs or waits to run.
    pub in_flight: usize,
}

/// Whether `program` is on `PATH`.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Joins the store with SLURM's view of the experiment's newest task per trial; a trial whose
/// task is gone while the store (after folding its shards) still says `running` is marked
/// stale. Returns each trial's task id and state (where SLURM still knows it).
pub fn refresh(
    store: &mut Store,
    runs_dir: &Path,
    experiment: &str,
) -> anyhow::Result<HashMap<String, (String, Option<TaskState>)>> {
    let newest = store.newest_tasks(experiment)?;
    if newest.is_empty() {
        return Ok(HashMap::new());
    }
    let mut jobs: Vec<String> = newest
        .iter()
        .filter_map(|(_, task)| task.split_once('_').map(|(j, _)| j.to_string()))
        .collect();
    jobs.sort();
    jobs.dedup();
    let states = queue::tasks(&jobs)?;
    let mut gone = Vec::new();
    for (trial, task) in &newest {
        let live = states.get(task).is_some_and(TaskState::is_live);
        if !live {
            gone.push((trial.clone(), task.clone()));
        }
    }
    let still_running = |store: &Store| -> anyhow::Result<Vec<(String, String, Option<i64>)>> {
        let rows = store.trial_states(experiment)?;
        Ok(gone
            .iter()
            .filter_map(|(trial, task)| {
                let row = rows.get(trial)?;
                (row.status == Status::Running && row.job.as_deref() == Some(task.as_str()))
                    .then(|| (trial.clone(), task.clone(), row.pid))
            })
            .collect())
    };
    if !still_running(store)?.is_empty() {
        // A task that ended a moment ago may have records not folded yet: fold, then look again.
        store.fold_shards(&track::find_shards(runs_dir))?;
        for (trial, task, pid) in still_running(store)? {
            let what = states
                .get(&task)
                .map_or("gone from the queue".to_string(), |s| s.describe());
            store.mark_stale(
                &trial,
                pid,
                &format!("stale: its SLURM task {task} is {what} but the trial recorded no end; the next sweep resubmits it"),
            )?;
        }
    }
    Ok(newest
        .into_iter()
        .map(|(trial, task)| {
            let state = states.get(&task).cloned();
            (trial, (task, state))
        })
        .collect())
}

/// Refuses a submission that asks for GPUs (`gpus_per_trial`, or a trial whose `train.device`
/// names one) when the binary the nodes run has no GPU backend: it would hold the GPUs and
/// train on the CPU. The binary is this one, or `[sweep.slurm] vitrun` (asked with `--version`).
fn refuse_gpus_without_a_gpu_backend(
    gpus: usize,
    trials: &[&PlannedTrial],
    configured: &Option<String>,
    exe: &Path,
) -> anyhow::Result<()> {
    let device_gpu = trials
        .iter()
        .find(|t| t.config.train.device.is_gpu() == Some(true));
    if gpus == 0 && device_gpu.is_none() {
        return Ok(());
    }
    let (has_gpu, backends) = match configured {
        None => (
            crate::train::backend::HAS_GPU_BACKEND,
            crate::train::backend::BACKENDS.to_string(),
        ),
        Some(_) => {
            let version = Command::new(exe)
                .arg("--version")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            (
                crate::train::backend::version_has_gpu_backend(&version),
                version.trim().to_string(),
            )
        }
    };
    if has_gpu {
        return Ok(());
    }
    let asked = match device_gpu {
        Some(t) => format!(
            "trial {} has train.device = \"{}\"",
            t.id, t.config.train.device
        ),
        None => format!("[sweep.slurm] gpus_per_trial = {gpus}"),
    };
    anyhow::bail!(
        "{asked}, and {} has no GPU backend ({backends}): its tasks would hold GPUs and train on the CPU; build one with `cargo build --release --features cuda` (or `tch`) and name it in [sweep.slurm] vitrun, or ask for no GPU",
        exe.display()
    )
}

/// Submits one job array of the plan's trials that are not done and not in flight.
pub fn submit(loaded: &Loaded, plan: &Plan, sets: &[String]) -> anyhow::Result<Submission> {
    let config = &loaded.config;
    let runs_dir = PathBuf::from(&config.train.runs_dir);
    let base = config.experiment_dir().submissions();
    std::fs::create_dir_all(&base).with_context(|| {
        format!(
            "cannot create {}: the SLURM launcher keeps its plans and scripts there; make train.runs_dir a writable folder on a filesystem the nodes share",
            base.display()
        )
    })?;
    // One submission of an experiment at a time: two `sweep --launcher slurm` started together
    // would otherwise both see a trial as not in flight and both submit it.
    let _lock = SubmitLock::take(&base.join(".submit.lock"))?;
    track::sync(&runs_dir)?;
    let mut store = Store::open(&config.store_path())?;
    store.register_sweep(
        &plan.sweep,
        &config.name,
        &loaded.file.display().to_string(),
        &super::queued(plan),
    )?;
    let tasks = refresh(&mut store, &runs_dir, &config.name)?;
    let states = store.trial_states(&config.name)?;
    // A search: one worker task per proposal its budget has left, each proposing when it
    // starts from what the others have found by then.
    let search = match loaded.sweep.method.is_adaptive() {
        true => {
            let proposer = crate::search::Proposer::new(loaded)?;
            let prior = proposer.records(&store)?;
            let runs_dir = std::fs::canonicalize(&runs_dir)
                .with_context(|| format!("cannot resolve {}", runs_dir.display()))?;
            Some((
                proposer.budget().saturating_sub(prior.len()),
                worker::SearchPlan {
                    runs_dir,
                    prior,
                    search: proposer.search().to_string(),
                },
            ))
        }
        false => None,
    };
    let workers = search.as_ref().map_or(0, |(n, _)| *n);
    let (mut done, mut in_flight) = (0, 0);
    let mut pending = Vec::new();
    for t in &plan.trials {
        let status = states.get(&t.id).map(|s| s.effective());
        if status.is_some_and(Status::is_done) {
            done += 1;
        } else if tasks
            .get(&t.id)
            .and_then(|(_, s)| s.as_ref())
            .is_some_and(TaskState::is_live)
        {
            in_flight += 1;
        } else {
            pending.push(t);
        }
    }
    let mut submission = Submission {
        arrays: Vec::new(),
        submitted: Vec::new(),
        done,
        in_flight,
    };
    if pending.is_empty() && workers == 0 {
        return Ok(submission);
    }
    anyhow::ensure!(
        on_path("sbatch"),
        "sbatch is not on PATH: the SLURM launcher submits with it; run on a cluster's login node, or leave out --launcher slurm to run locally"
    );
    let slurm = &loaded.sweep.slurm;
    let exe = match &slurm.vitrun {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe().context("cannot find the vitrun executable")?,
    };
    refuse_gpus_without_a_gpu_backend(slurm.gpus(), &pending, &slurm.vitrun, &exe)?;
    let workdir = std::env::current_dir().context("cannot read the current folder")?;
    let criterion = crate::task::stop_criterion(loaded)?;
    let metric = criterion.as_ref().map(|c| c.metric.as_str());
    let members: Vec<String> = plan.trials.iter().map(|t| t.id.clone()).collect();
    let mut job_plan = JobPlan {
        experiment: config.name.clone(),
        file: std::fs::canonicalize(&loaded.file)
            .with_context(|| format!("cannot resolve {}", loaded.file.display()))?,
        sets: sets.to_vec(),
        sweep: plan.sweep.clone(),
        tasks: Vec::new(),
        peers: PeerSnapshot::from_store(&store, &plan.sweep, members, metric)?,
        signal_seconds: slurm.signal_seconds,
        max_requeues: slurm.max_requeues,
        search: search.map(|(_, plan)| plan),
    };
    // One array, unless the cluster's MaxArraySize is smaller than the sweep.
    let per_array = slurm.max_array_size.unwrap_or_else(queue::max_array_size);
    let mut all_tasks = pending
        .iter()
        .map(|t| {
            Ok(TaskPlan {
                trial: t.id.clone(),
                propose: false,
                sets: t.sets(),
                resolved: Some(
                    toml::to_string_pretty(&t.config)
                        .context("cannot render a trial's resolved config")?,
                ),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    all_tasks.extend((0..workers).map(|_| TaskPlan {
        trial: String::new(),
        propose: true,
        sets: Vec::new(),
        resolved: None,
    }));
    for chunk in all_tasks.chunks(per_array) {
        job_plan.tasks = chunk.to_vec();
        let submitted = submit_array(&workdir.join(&base), &workdir, &exe, loaded, &job_plan)?;
        // A worker's trial is known once it proposes (the fold records its task then).
        let trials: Vec<String> = chunk
            .iter()
            .filter(|t| !t.propose)
            .map(|t| t.trial.clone())
            .collect();
        store.record_job(
            &JobRecord {
                job: submitted.job.clone(),
                experiment: config.name.clone(),
                sweep: plan.sweep.clone(),
                dir: submitted.dir.display().to_string(),
                tasks: chunk.len() as i64,
                submitted_at: chrono::Utc::now()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                cancelled_at: None,
            },
            &trials,
        )?;
        submission.arrays.push(submitted);
        submission.submitted.extend(trials);
    }
    Ok(submission)
}

/// One submission of an experiment at a time: an exclusive `flock` on a file, released when
/// dropped (or when the process ends); where the filesystem has no `flock` (Lustre mounted
/// without `-o flock`, some NFS setups), a lock file created with `O_EXCL` and removed when
/// dropped, taken over when its holder is gone or older than [`LOCKFILE_STALE`].
pub(crate) enum SubmitLock {
    /// The locked file, unlocked when closed.
    Flock {
        _file: std::fs::File,
    },
    File(PathBuf),
}

/// A lock file this old is taken over: no submission takes this long.
const LOCKFILE_STALE: std::time::Duration = std::time::Duration::from_secs(600);

impl SubmitLock {
    pub(crate) fn take(path: &Path) -> anyhow::Result<SubmitLock> {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: flock on a descriptor this function owns; it blocks until the lock is ours.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc == 0 && std::env::var("VITRUN_NO_FLOCK").is_err() {
            return Ok(SubmitLock::Flock { _file: file });
        }
        let error = std::io::Error::last_os_error();
        let unsupported = rc == 0
            || matches!(
                error.raw_os_error(),
                Some(libc::ENOLCK | libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL)
            );
        anyhow::ensure!(unsupported, "cannot lock {}: {error}", path.display());
        drop(file);
        Self::take_file(&path.with_extension("lockfile"))
    }

    /// The `O_EXCL` lock file: waits while a live holder has it.
    fn take_file(path: &Path) -> anyhow::Result<SubmitLock> {
        use std::io::Write;
        let started = std::time::Instant::now();
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
            {
                Ok(mut f) => {
                    let _ = writeln!(f, "{} {}", crate::track::hostname(), std::process::id());
                    return Ok(SubmitLock::File(path.to_path_buf()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if lockfile_is_stale(path) {
                        let _ = std::fs::remove_file(path);
                        continue;
                    }
                    anyhow::ensure!(
                        started.elapsed() < LOCKFILE_STALE,
                        "{} has been held for {} s by another submission ({}); wait for it, or remove the file if no submission is running",
                        path.display(),
                        started.elapsed().as_secs(),
                        std::fs::read_to_string(path).unwrap_or_default().trim()
                    );
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", path.display()))
                }
            }
        }
    }
}

/// A lock file whose holder on this host is gone, or that is older than any submission.
fn lockfile_is_stale(path: &Path) -> bool {
    let old = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > LOCKFILE_STALE);
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut it = text.split_whitespace();
    let gone = match (it.next(), it.next().and_then(|p| p.parse::<i32>().ok())) {
        (Some(host), Some(pid)) if host == crate::track::hostname() => {
            // SAFETY: signal 0 only asks whether the process exists.
            let missing = unsafe { libc::kill(pid, 0) } != 0;
            missing && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
        }
        _ => false,
    };
    old || gone
}

impl Drop for SubmitLock {
    fn drop(&mut self) {
        if let SubmitLock::File(path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// One submitted job array.
#[derive(Debug, Clone)]
pub struct SubmittedArray {
    pub job: String,
    /// Its submission folder.
    pub dir: PathBuf,
    /// How many planned trials its tasks run.
    pub trials: usize,
    /// How many of its tasks are a search's workers, each proposing the trial it runs.
    pub workers: usize,
}

/// Writes a submission folder (plan and script) under `base` and runs `sbatch` on it; the
/// folder is removed again when SLURM refuses the job.
fn submit_array(
    base: &Path,
    workdir: &Path,
    exe: &Path,
    loaded: &Loaded,
    job_plan: &JobPlan,
) -> anyhow::Result<SubmittedArray> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
    let dir = base.join(format!("submit-{stamp}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| {
        format!(
            "cannot create the submission folder {}; make the runs folder writable (train.runs_dir)",
            dir.display()
        )
    })?;
    let written = (|| -> anyhow::Result<()> {
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
        };
        for task in &job_plan.tasks {
            if let Some(resolved) = &task.resolved {
                write(&format!("{}.toml", task.trial), resolved.clone())?;
            }
        }
        write(PLAN_FILE, serde_json::to_string_pretty(job_plan)?)?;
        write(
            SCRIPT_FILE,
            render(&Script {
                experiment: &job_plan.experiment,
                tasks: job_plan.tasks.len(),
                dir: &dir,
                workdir,
                exe,
                slurm: &loaded.sweep.slurm,
            })?,
        )
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    let out = Command::new("sbatch")
        .arg("--parsable")
        .arg(dir.join(SCRIPT_FILE))
        .output()
        .context("cannot run sbatch")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let job = out
        .status
        .success()
        .then(|| parse_job_id(&stdout))
        .flatten();
    let Some(job) = job else {
        let _ = std::fs::remove_dir_all(&dir);
        anyhow::bail!(
            "sbatch refused the job array: {}; check [sweep.slurm] in {} (partition, account, qos, time, gpus_per_trial)",
            [String::from_utf8_lossy(&out.stderr).trim(), stdout.trim()]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("; "),
            loaded.file.display()
        );
    };
    let _ = std::os::unix::fs::symlink(dir.file_name().unwrap_or_default(), base.join(&job));
    let workers = job_plan.tasks.iter().filter(|t| t.propose).count();
    Ok(SubmittedArray {
        job,
        dir,
        trials: job_plan.tasks.len() - workers,
        workers,
    })
}

/// The job id in `sbatch --parsable`'s answer (`JOBID` or `JOBID;CLUSTER`), also when a site's
/// wrapper prints other lines around it.
pub fn parse_job_id(stdout: &str) -> Option<String> {
    stdout.lines().rev().find_map(|line| {
        let id = line.trim().split(';').next()?;
        (!id.is_empty() && id.chars().all(|c| c.is_ascii_digit())).then(|| id.to_string())
    })
}

/// Cancels the experiment's live job arrays (`scancel`); their unfinished trials become
/// `interrupted`. Returns the cancelled job ids.
pub fn cancel(runs_dir: &Path, experiment: &str) -> anyhow::Result<Vec<String>> {
    track::sync(runs_dir)?;
    let mut store = Store::open(&crate::contract::RunsDir::new(runs_dir).store())?;
    let jobs: Vec<JobRecord> = store
        .jobs(Some(experiment))?
        .into_iter()
        .filter(|j| j.cancelled_at.is_none())
        .collect();
    anyhow::ensure!(
        !jobs.is_empty(),
        "experiment {experiment} has no SLURM job to cancel (vitrun status {experiment} lists its trials)"
    );
    let ids: Vec<String> = jobs.iter().map(|j| j.job.clone()).collect();
    let live = queue::squeue(&ids)?;
    let mut cancelled = Vec::new();
    for job in &jobs {
        let marker = Path::new(&job.dir).join(CANCELLED_FILE);
        std::fs::write(&marker, "cancelled with vitrun cancel\n")
            .with_context(|| format!("cannot write {}", marker.display()))?;
        if live.keys().any(|k| k.starts_with(&format!("{}_", job.job))) {
            let out = Command::new("scancel")
                .arg(&job.job)
                .output()
                .context("cannot run scancel")?;
            anyhow::ensure!(
                out.status.success(),
                "scancel {} failed: {}",
                job.job,
                String::from_utf8_lossy(&out.stderr).trim()
            );
            cancelled.push(job.job.clone());
        }
        store.mark_job_cancelled(&job.job)?;
    }
    track::sync(runs_dir)?;
    let rows = store.trial_states(experiment)?;
    for (trial, task) in store.newest_tasks(experiment)? {
        let job = task.split_once('_').map_or("", |(j, _)| j);
        if !cancelled.iter().any(|c| c == job) {
            continue;
        }
        if let Some(row) = rows.get(&trial) {
            if matches!(
                row.status,
                Status::Queued | Status::Running | Status::Preempted
            ) {
                let why = format!("cancelled with vitrun cancel (SLURM task {task})");
                store.set_status(&trial, Status::Interrupted, Some(&why))?;
                store.log_event(&trial, Event::Ended(Status::Interrupted), &why)?;
            }
        }
    }
    Ok(cancelled)
}

/// The `JOBID_INDEX` of the array task this process runs in, from SLURM's environment.
pub fn task_id() -> Option<String> {
    let job = std::env::var("SLURM_ARRAY_JOB_ID").ok()?;
    let index = std::env::var("SLURM_ARRAY_TASK_ID").ok()?;
    Some(format!("{job}_{index}"))
}

/// Requeues this process's array task.
pub fn requeue_self(dir: &Path) -> Result<(), String> {
    if dir.join(CANCELLED_FILE).exists() {
        return Err("its job was cancelled with vitrun cancel".into());
    }
    let task = task_id().ok_or("not running in a SLURM array task")?;
    let out = Command::new("scontrol")
        .args(["requeue", &task])
        .output()
        .map_err(|e| format!("cannot run scontrol: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    // Refused: a cancelled task stays down; otherwise SLURM is already requeueing it itself
    // (its own preemption), or will not (a partition without requeue) and the next sweep
    // resubmits the preempted trial.
    let state = queue::scontrol_job(&task)
        .ok()
        .and_then(|tasks| tasks.get(&task).map(|t| t.state.clone()))
        .unwrap_or_default();
    if state.starts_with("CANCELLED") {
        Err(format!("its task {task} was cancelled"))
    } else {
        Ok(())
    }
}

/// When this job must stop: its end time (from `squeue`) less `margin` seconds, if it has one.
pub fn deadline(margin: u64) -> Option<std::time::SystemTime> {
    let job = std::env::var("SLURM_JOB_ID").ok()?;
    let out = Command::new("squeue")
        .args(["-h", "-j", &job, "-o", "%e"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let end = chrono::NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%dT%H:%M:%S").ok()?;
    let end = end.and_local_timezone(chrono::Local).single()?;
    let at = end.timestamp() - margin as i64;
    Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(at.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_parse_from_sbatch_answers() {
        assert_eq!(parse_job_id("1234\n").as_deref(), Some("1234"));
        assert_eq!(parse_job_id("1234;cluster2\n").as_deref(), Some("1234"));
        assert_eq!(
            parse_job_id("Site notice: be nice\n5678\n").as_deref(),
            Some("5678")
        );
        assert_eq!(parse_job_id("sbatch: error\n"), None);
    }

    #[test]
    fn the_lock_file_without_flock_is_taken_in_turn_and_taken_over_from_a_dead_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".submit.lockfile");
        let first = SubmitLock::take_file(&path).unwrap();
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let second = {
            let (path, order) = (path.clone(), order.clone());
            std::thread::spawn(move || {
                let _lock = SubmitLock::take_file(&path).unwrap();
                order.lock().unwrap().push("second");
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(500));
        order.lock().unwrap().push("first done");
        drop(first);
        second.join().unwrap();
        assert_eq!(*order.lock().unwrap(), ["first done", "second"]);
        assert!(!path.exists(), "released");
        // A holder on this host that is gone (no such pid) leaves a stale file.
        std::fs::write(
            &path,
            format!("{} {}\n", crate::track::hostname(), i32::MAX),
        )
        .unwrap();
        let _lock = SubmitLock::take_file(&path).unwrap();
    }
}
