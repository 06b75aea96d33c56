//! The SLURM launcher against a real single-node cluster (`.ci/slurm-cluster start`, as CI
//! does). Without a cluster these tests say so and pass, unless VITRUN_REQUIRE_SLURM=1.
//! They run one at a time: the node has few CPUs and the requeue test is timing-sensitive.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::common::{experiment, text, vitrun};
use vitrun::contract::Status;
use vitrun::track::shard::ShardView;
use vitrun::track::Store;

static CLUSTER: Mutex<()> = Mutex::new(());

/// Waits (polling every 200 ms) until `ready`, failing after `secs` seconds.
fn poll(secs: u64, what: &str, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether a cluster answers (waiting up to a minute for its node to take jobs, as after a
/// fresh start; a controller that does not answer is not waited for); panics when one is
/// required and absent.
fn cluster_up() -> bool {
    static UP: OnceLock<bool> = OnceLock::new();
    let up = *UP.get_or_init(|| {
        let sinfo = || match Command::new("sinfo").args(["-h", "-o", "%T"]).output() {
            Ok(o) => (
                o.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ),
            ),
            Err(e) => (false, e.to_string()),
        };
        let usable = |said: &str| {
            ["idle", "mix", "alloc", "complet"]
                .iter()
                .any(|w| said.contains(w))
        };
        let started = Instant::now();
        let (mut answers, mut said) = sinfo();
        while answers && !usable(&said) && started.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_secs(1));
            (answers, said) = sinfo();
        }
        let up = answers && usable(&said);
        if !up {
            assert!(
                std::env::var("VITRUN_REQUIRE_SLURM").is_err(),
                "VITRUN_REQUIRE_SLURM is set but no SLURM cluster takes jobs (sinfo: {said:?}); start one with .ci/slurm-cluster start"
            );
        }
        up
    });
    if !up {
        eprintln!("skipped: no SLURM cluster (start one with .ci/slurm-cluster start)");
    }
    up
}

/// The cluster to oneself for one test, when there is one.
fn cluster() -> Option<MutexGuard<'static, ()>> {
    let one = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    cluster_up().then_some(one)
}

/// A micro-sized experiment with a sweep and a `[sweep.slurm]` table.
fn sweep_file(dir: &Path, name: &str, sweep: &str, extra: &str) -> PathBuf {
    experiment(
        dir,
        name,
        &format!(
            r#"name = "{name}"
seed = 3
[data]
dataset = "synthetic"
image_size = 16
train_size = 128
val_size = 32
classes = ["bus", "car"]
[model]
embed_dim = 24
depth = 1
num_heads = 2
patch_size = 4
[train]
epochs = 2
batch_size = 32
threads = 1
runs_dir = "{runs}"
{extra}
[sweep]
{sweep}
[sweep.slurm]
cpus_per_trial = 1
mem = "1G"
"#,
            runs = dir.join("runs").display()
        ),
    )
}

/// Replaces `from` with `to` in the file at `path`.
fn rewrite(path: &Path, from: &str, to: &str) {
    let body = std::fs::read_to_string(path).unwrap();
    assert!(body.contains(from), "{from:?} is not in {}", path.display());
    std::fs::write(path, body.replace(from, to)).unwrap();
}

/// A trial long enough to be stopped mid-epoch (a few seconds per epoch).
const SLOW: &str = "[optimizer]\nlr = 1e-3\n";

fn slow_file(dir: &Path, name: &str) -> PathBuf {
    let path = sweep_file(dir, name, "seed = [5]", SLOW);
    rewrite(&path, "image_size = 16", "image_size = 32");
    rewrite(&path, "train_size = 128", "train_size = 3072");
    rewrite(&path, "epochs = 2", "epochs = 4");
    path
}

fn run(args: &[&str]) -> String {
    let out = vitrun(args).output().unwrap();
    let t = text(&out);
    assert!(out.status.success(), "vitrun {args:?} failed:\n{t}");
    t
}

/// `vitrun sweep FILE --launcher slurm EXTRA…`, not run yet.
fn submit_command(file: &Path, extra: &[&str]) -> Command {
    let mut args = vec!["sweep", file.to_str().unwrap(), "--launcher", "slurm"];
    args.extend_from_slice(extra);
    vitrun(&args)
}

/// [`submit_command`] run to its end (without waiting for the trials); it must succeed.
fn submit(file: &Path, extra: &[&str]) -> String {
    let out = submit_command(file, extra).output().unwrap();
    let t = text(&out);
    assert!(out.status.success(), "submission failed:\n{t}");
    t
}

fn slurm_sweep(file: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "sweep",
        file.to_str().unwrap(),
        "--launcher",
        "slurm",
        "--wait",
        "--poll-seconds",
        "1",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// (trial, status, epoch, split/name, value) rows of a store's training and validation loss
/// and top-1, sorted.
fn outcomes(store: &Path) -> Vec<(String, String, i64, String, f64)> {
    let c = rusqlite::Connection::open(store).unwrap();
    let mut stmt = c
        .prepare(
            "SELECT t.id, t.status, m.epoch, m.split || '/' || m.name, m.value FROM trials t
             JOIN metrics m ON m.trial = t.id
             WHERE m.split IN ('train', 'val') AND m.name IN ('loss', 'top1')
             ORDER BY t.id, m.split, m.name, m.epoch",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .unwrap()
    .map(|r| r.unwrap())
    .collect()
}

fn assert_same(a: &[(String, String, i64, String, f64)], b: &[(String, String, i64, String, f64)]) {
    assert_eq!(a.len(), b.len(), "{a:?}\nvs\n{b:?}");
    for (x, y) in a.iter().zip(b) {
        assert_eq!((&x.0, &x.1, x.2, &x.3), (&y.0, &y.1, y.2, &y.3));
        assert!(
            (x.4 - y.4).abs() <= 1e-6 * x.4.abs().max(1.0),
            "{x:?} vs {y:?}"
        );
    }
}

/// The folder of the experiment's trial that ran on the cluster (has shards), once it has.
fn cluster_trial(runs: &Path, exp: &str) -> Option<PathBuf> {
    std::fs::read_dir(runs.join(exp))
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.join("shards").is_dir())
}

/// The experiment's trials as `ls` reads them, after folding the cluster's shards.
fn trials(runs: &Path, exp: &str) -> Vec<vitrun::track::TrialSummary> {
    vitrun::track::sync(runs).unwrap();
    Store::open(&runs.join("vitrun.sqlite"))
        .unwrap()
        .trials(Some(exp))
        .unwrap()
}

/// Whether SLURM has no task of `job` left.
fn gone(job: &str) -> bool {
    let q = Command::new("squeue")
        .args(["-h", "-j", job])
        .output()
        .unwrap();
    q.stdout.is_empty()
}

fn newest_job(runs: &Path, exp: &str) -> String {
    let store = Store::open(&runs.join("vitrun.sqlite")).unwrap();
    store
        .jobs(Some(exp))
        .unwrap()
        .pop()
        .expect("a job was recorded")
        .job
}

#[test]
fn a_slurm_sweep_gives_the_local_sweeps_results_and_growing_it_submits_only_new_points() {
    let Some(_one) = cluster() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let axes = "\"optimizer.lr\" = [1e-3, 3e-3, 1e-2]\nseed = [1, 2]";
    let file = sweep_file(dir.path(), "parity", axes, "");
    let out = slurm_sweep(&file, &["--set", "sweep.slurm.max_parallel=2"]);
    assert!(
        out.contains("submitted job array") && out.contains("6 trials"),
        "{out}"
    );
    let runs = dir.path().join("runs");
    let script = std::fs::read_dir(runs.join("parity/slurm"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("job.sbatch"))
        .find(|p| p.is_file())
        .unwrap();
    assert!(std::fs::read_to_string(&script)
        .unwrap()
        .contains("#SBATCH --array=0-5%2"));

    let local_dir = tempfile::tempdir().unwrap();
    let local = sweep_file(local_dir.path(), "parity", axes, "");
    run(&["sweep", local.to_str().unwrap(), "--cpu-slots", "2"]);
    let remote = outcomes(&runs.join("vitrun.sqlite"));
    assert_eq!(remote.len(), 6 * 2 * 4, "{remote:?}");
    assert!(remote.iter().all(|r| r.1 == "finished"), "{remote:?}");
    assert_same(
        &remote,
        &outcomes(&local_dir.path().join("runs/vitrun.sqlite")),
    );
    let ls = run(&["ls", "parity", "--runs-dir", runs.to_str().unwrap()]);
    assert_eq!(ls.matches("finished").count(), 6, "{ls}");

    let again = submit(&file, &[]);
    assert!(
        again.contains("nothing to submit: 6 trials done"),
        "{again}"
    );
    let grown = sweep_file(
        dir.path(),
        "parity",
        "\"optimizer.lr\" = [1e-3, 3e-3, 1e-2, 3e-2]\nseed = [1, 2]",
        "",
    );
    // Asking for GPUs with a binary that has no GPU backend is refused before submitting.
    let refused = submit_command(&grown, &["--set", "sweep.slurm.gpus_per_trial=1"])
        .output()
        .unwrap();
    let t = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{t}");
    assert!(
        t.contains("has no GPU backend") && t.contains("gpus_per_trial = 1"),
        "{t}"
    );
    assert_eq!(
        Store::open(&runs.join("vitrun.sqlite"))
            .unwrap()
            .jobs(Some("parity"))
            .unwrap()
            .len(),
        1
    );
    // A binary the nodes run that says it has one (here a wrapper of this CPU build, so that
    // SLURM's GRES hand out the fake GPUs): two new points, in arrays of one trial each.
    let wrapper = dir.path().join("vitrun-gpu");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n[ \"$1\" = --version ] && {{ echo 'vitrun 0 (backends: cpu (burn-flex), cuda (burn-cuda))'; exit 0; }}\nexec {} \"$@\"\n",
            env!("CARGO_BIN_EXE_vitrun")
        ),
    )
    .unwrap();
    let mut perms = std::fs::metadata(&wrapper).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&wrapper, perms).unwrap();
    let exe = format!("sweep.slurm.vitrun={:?}", wrapper.display().to_string());
    let out = slurm_sweep(
        &grown,
        &[
            "--set",
            "sweep.slurm.gpus_per_trial=1",
            "--set",
            "sweep.slurm.max_array_size=1",
            "--set",
            &exe,
        ],
    );
    assert_eq!(
        out.matches(": 1 trial (6 done already").count(),
        2,
        "two arrays of one trial: {out}"
    );
    let store = Store::open(&runs.join("vitrun.sqlite")).unwrap();
    let jobs = store.jobs(Some("parity")).unwrap();
    assert_eq!(
        jobs.iter().map(|j| j.tasks).collect::<Vec<_>>(),
        vec![6, 1, 1]
    );
    assert_eq!(
        store
            .trials(Some("parity"))
            .unwrap()
            .iter()
            .filter(|t| t.status == Status::Finished)
            .count(),
        8
    );
    // The new points asked for a GPU each: SLURM gave each task one of the node's (fake) GPUs.
    let logs: Vec<String> = std::fs::read_dir(runs.join("parity"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path().join("log.txt")).ok())
        .collect();
    let with_gpu = logs
        .iter()
        .filter(|l| {
            l.contains("CUDA_VISIBLE_DEVICES=\"0\"") || l.contains("CUDA_VISIBLE_DEVICES=\"1\"")
        })
        .count();
    assert_eq!(with_gpu, 2, "{logs:?}");
}

#[test]
fn a_time_limit_stops_the_trial_before_slurm_kills_it_and_requeues_it() {
    let Some(_one) = cluster() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = slow_file(dir.path(), "limited");
    rewrite(&file, "epochs = 4", "epochs = 40");
    let runs = dir.path().join("runs");
    // A one-minute limit, warned 45 s ahead: the trial must stop about 15 s in.
    submit(
        &file,
        &[
            "--set",
            "sweep.slurm.time=\"1\"",
            "--set",
            "sweep.slurm.signal_seconds=45",
        ],
    );
    let started = Instant::now();
    poll(50, "the trial to stop for its time limit", || {
        cluster_trial(&runs, "limited")
            .is_some_and(|d| ShardView::read(&d).unwrap().preemptions >= 1)
    });
    assert!(started.elapsed() < Duration::from_secs(50));
    // The shard records the preemption before the process prints it: wait for the line.
    let log_file = cluster_trial(&runs, "limited").unwrap().join("log.txt");
    let said =
        || std::fs::read_to_string(&log_file).is_ok_and(|log| log.contains("preempted in epoch"));
    poll(10, "the log to say the trial was preempted", said);
    let log = std::fs::read_to_string(&log_file).unwrap();
    assert!(log.contains("preempted in epoch"), "{log}");
    let status = run(&["status", "limited", "--runs-dir", runs.to_str().unwrap()]);
    assert!(
        status.contains("preempted (USR2 before the time limit)")
            || status.contains("preempted (the job's deadline)"),
        "{status}"
    );
    let out = vitrun(&[
        "status",
        "limited",
        "--json",
        "--runs-dir",
        runs.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    let trial = &json["trials"][0];
    assert_eq!(json["jobs"][0]["experiment"], "limited", "{json}");
    assert_eq!(trial["experiment"], "limited", "{json}");
    assert!(trial["requeues"].as_u64().unwrap() >= 1, "{json}");
    assert!(
        trial["slurm_task"].as_str().unwrap().contains('_'),
        "{json}"
    );
    let id = trial["id"].as_str().unwrap();
    let quiet = run(&[
        "status",
        "limited",
        "-q",
        "--runs-dir",
        runs.to_str().unwrap(),
    ]);
    assert_eq!(quiet, format!("{id}\n"));
    run(&["cancel", "limited", "--runs-dir", runs.to_str().unwrap()]);
}

#[test]
fn usr2_mid_epoch_requeues_the_trial_and_it_finishes_as_an_uninterrupted_run() {
    let Some(_one) = cluster() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = slow_file(dir.path(), "preempt");
    // Drop-path draws at random in every batch: the resumed half must draw what it would have.
    rewrite(&file, "patch_size = 4", "patch_size = 4\ndrop_path = 0.1");
    let runs = dir.path().join("runs");
    let out = submit(&file, &[]);
    assert!(out.contains("submitted job array"), "{out}");
    let job = newest_job(&runs, "preempt");
    // Once the first epoch is committed, the second is under way: stop it there.
    poll(120, "the first epoch in the shard", || {
        cluster_trial(&runs, "preempt")
            .and_then(|d| ShardView::read(&d).ok())
            .is_some_and(|v| v.values("val/loss", 9, false).len() == 1)
    });
    // Past the first epoch's checkpoint, into the second epoch's batches.
    std::thread::sleep(Duration::from_millis(300));
    let sent = Command::new("scancel")
        .args(["--signal=USR2", "--batch", &format!("{job}_0")])
        .status()
        .unwrap();
    assert!(sent.success());
    let view = |d: &Path| ShardView::read(d).unwrap();
    let dir_of_trial = cluster_trial(&runs, "preempt").unwrap();
    poll(60, "the preempted end marker", || {
        view(&dir_of_trial).preemptions == 1
    });
    let status = run(&["status", "preempt", "--runs-dir", runs.to_str().unwrap()]);
    assert!(status.contains("preempted"), "{status}");
    // The requeued task resumes from the checkpoint and finishes; --wait follows it.
    let out = slurm_sweep(&file, &[]);
    assert!(
        out.contains("nothing to submit"),
        "a preempted trial is not resubmitted: {out}"
    );
    let v = view(&dir_of_trial);
    assert_eq!(
        (v.status, v.attempts, v.preemptions),
        (Some(Status::Finished), 2, 1)
    );
    let log = std::fs::read_to_string(dir_of_trial.join("log.txt")).unwrap();
    assert!(
        log.contains("preempted in epoch 2") && log.contains("resuming in epoch 2 after batch"),
        "{log}"
    );

    let plain = tempfile::tempdir().unwrap();
    let same = slow_file(plain.path(), "preempt");
    rewrite(&same, "patch_size = 4", "patch_size = 4\ndrop_path = 0.1");
    run(&["run", same.to_str().unwrap(), "--quiet", "--set", "seed=5"]);
    let resumed = outcomes(&runs.join("vitrun.sqlite"));
    assert_eq!(resumed.len(), 4 * 4);
    assert_same(
        &resumed,
        &outcomes(&plain.path().join("runs/vitrun.sqlite")),
    );
    let status = run(&["status", "preempt", "--runs-dir", runs.to_str().unwrap()]);
    let line = status.lines().find(|l| l.contains("finished")).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&fields[4..6], ["2", "1"], "attempts and requeues: {status}");
}

#[test]
fn a_killed_task_reads_stale_and_the_next_sweep_resubmits_it() {
    let Some(_one) = cluster() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = slow_file(dir.path(), "killed");
    let runs = dir.path().join("runs");
    submit(&file, &[]);
    let job = newest_job(&runs, "killed");
    poll(120, "the trial to run", || {
        trials(&runs, "killed")[0].status == Status::Running
    });
    let killed = Command::new("scancel")
        .args(["--signal=KILL", "--batch", &format!("{job}_0")])
        .status()
        .unwrap();
    assert!(killed.success());
    let runs_arg = runs.to_str().unwrap();
    poll(60, "the killed task to read stale", || {
        run(&["status", "killed", "--runs-dir", runs_arg])
            .lines()
            .any(|l| l.contains(" stale ") && l.contains(&format!("{job}_0")))
    });
    let out = slurm_sweep(&file, &[]);
    assert!(
        out.contains("submitted job array") && out.contains(": 1 trial ("),
        "{out}"
    );
    let trial = &trials(&runs, "killed")[0];
    assert_eq!((trial.status, trial.attempts), (Status::Finished, 2));
}

#[test]
fn cancel_stops_the_experiments_jobs_and_interrupts_their_trials() {
    let Some(_one) = cluster() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = slow_file(dir.path(), "cancelled");
    rewrite(&file, "seed = [5]", "seed = [5, 6, 7]");
    let runs = dir.path().join("runs");
    submit(&file, &["--set", "sweep.slurm.max_parallel=1"]);
    poll(120, "a running trial", || {
        trials(&runs, "cancelled")
            .iter()
            .any(|t| t.status == Status::Running)
    });
    let out = run(&["cancel", "cancelled", "--runs-dir", runs.to_str().unwrap()]);
    assert!(out.contains("cancelled job arrays"), "{out}");
    let job = newest_job(&runs, "cancelled");
    poll(60, "the job to leave the queue", || gone(&job));
    poll(30, "every trial to read interrupted", || {
        trials(&runs, "cancelled")
            .iter()
            .all(|t| t.status == Status::Interrupted)
    });
}

#[test]
fn asha_prunes_the_same_trials_on_the_cluster_as_locally() {
    let Some(_one) = cluster() else {
        return;
    };
    let axes = "\"optimizer.lr\" = [3e-3, 1e-4, 1e-2, 3e-5]\n[sweep.early_stop]\nrule = \"asha\"\nmetric = \"val/loss\"\nmode = \"min\"\nrungs = [1]\nreduction_factor = 2";
    let dir = tempfile::tempdir().unwrap();
    let file = sweep_file(dir.path(), "asha", axes, "");
    rewrite(&file, "epochs = 2", "epochs = 3");
    slurm_sweep(&file, &["--set", "sweep.slurm.max_parallel=1"]);
    let local_dir = tempfile::tempdir().unwrap();
    let local = sweep_file(local_dir.path(), "asha", axes, "");
    rewrite(&local, "epochs = 2", "epochs = 3");
    run(&["sweep", local.to_str().unwrap(), "--cpu-slots", "1"]);
    let statuses = |store: &Path| {
        let mut v: Vec<(String, Status)> = Store::open(store)
            .unwrap()
            .trials(Some("asha"))
            .unwrap()
            .into_iter()
            .map(|t| (t.id, t.status))
            .collect();
        v.sort();
        v
    };
    let remote = statuses(&dir.path().join("runs/vitrun.sqlite"));
    assert!(
        remote.iter().any(|(_, s)| *s == Status::Pruned),
        "{remote:?}"
    );
    assert_eq!(
        remote,
        statuses(&local_dir.path().join("runs/vitrun.sqlite"))
    );
}

#[test]
fn submission_errors_are_named_before_anything_is_recorded() {
    let _one = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let file = sweep_file(dir.path(), "refused", "seed = [1, 2]", "");
    let runs = dir.path().join("runs");
    let jobs = || {
        Store::open(&runs.join("vitrun.sqlite"))
            .unwrap()
            .jobs(Some("refused"))
            .unwrap()
            .len()
    };
    let out = submit_command(&file, &[])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("sbatch is not on PATH"),
        "{}",
        text(&out)
    );
    assert_eq!(jobs(), 0);

    let bad = submit_command(&file, &["--set", "sweep.slurm.partiton=\"x\""])
        .output()
        .unwrap();
    assert!(
        text(&bad).contains("sweep.slurm.partition"),
        "{}",
        text(&bad)
    );

    if cluster_up() {
        let out = submit_command(
            &file,
            &["--set", "sweep.slurm.partition=\"no_such_partition\""],
        )
        .output()
        .unwrap();
        let t = text(&out);
        assert!(!out.status.success());
        assert!(
            t.contains("sbatch refused the job array") && t.contains("partition"),
            "{t}"
        );
        assert_eq!(jobs(), 0);
        let slurm_dir = runs.join("refused/slurm");
        let submissions = std::fs::read_dir(&slurm_dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("submit-")
            })
            .count();
        assert_eq!(submissions, 0, "the refused submission's folder is removed");
    }

    let blocked = dir.path().join("file");
    std::fs::write(&blocked, "").unwrap();
    let set = format!(
        "train.runs_dir={:?}",
        blocked.join("runs").display().to_string()
    );
    let out = submit_command(&file, &["--set", &set]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&blocked.join("runs").display().to_string()),
        "{}",
        text(&out)
    );
}

#[test]
fn a_second_task_of_a_running_trial_leaves_it_to_the_first() {
    let Some(_one) = cluster() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = slow_file(dir.path(), "twice");
    let runs = dir.path().join("runs");
    submit(&file, &[]);
    let first = newest_job(&runs, "twice");
    poll(120, "the first task to claim the trial", || {
        cluster_trial(&runs, "twice").is_some()
    });
    // The same script submitted again by hand, past the launcher's own check.
    let store = Store::open(&runs.join("vitrun.sqlite")).unwrap();
    let submission = PathBuf::from(&store.jobs(Some("twice")).unwrap()[0].dir);
    let again = Command::new("sbatch")
        .arg("--parsable")
        .arg(submission.join("job.sbatch"))
        .output()
        .unwrap();
    let second = String::from_utf8_lossy(&again.stdout).trim().to_string();
    poll(120, "the second task to end", || gone(&second));
    let trial = cluster_trial(&runs, "twice").unwrap();
    let out = std::fs::read_to_string(trial.join("log.txt")).unwrap();
    assert!(
        out.contains(&format!("already running in SLURM task {first}_0")),
        "{out}"
    );
    let view = ShardView::read(&trial).unwrap();
    assert_eq!(view.attempts, 1, "the second task claimed nothing");
    run(&["cancel", "twice", "--runs-dir", runs.to_str().unwrap()]);
}

#[test]
fn two_submissions_at_once_and_a_local_sweep_never_run_a_trial_twice() {
    let Some(_one) = cluster() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = slow_file(dir.path(), "once");
    rewrite(&file, "seed = [5]", "seed = [5, 6, 7]");
    let runs = dir.path().join("runs");
    let submit = || {
        submit_command(&file, &["--set", "sweep.slurm.max_parallel=1"])
            .spawn()
            .unwrap()
    };
    let (a, b) = (submit(), submit());
    for mut child in [a, b] {
        assert!(child.wait().unwrap().success());
    }
    let c = rusqlite::Connection::open(runs.join("vitrun.sqlite")).unwrap();
    let per_trial: Vec<i64> = c
        .prepare("SELECT COUNT(*) FROM slurm_tasks GROUP BY trial")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(per_trial, vec![1, 1, 1], "each trial submitted once");
    // A local sweep of the same file leaves the cluster's trials to it.
    let out = run(&["sweep", file.to_str().unwrap()]);
    assert_eq!(out.matches("left to it").count(), 3, "{out}");
    assert!(out.contains("0 processes started"), "{out}");
    run(&["cancel", "once", "--runs-dir", runs.to_str().unwrap()]);
}

/// Sends `signal` to the batch shell of the job's first task (which `exec`s the trial).
fn signal_task(job: &str, signal: &str) {
    let sent = Command::new("scancel")
        .args([
            &format!("--signal={signal}"),
            "--batch",
            &format!("{job}_0"),
        ])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// Waits until the trial's shard has `epochs` validation epochs.
fn wait_for_epochs(runs: &Path, exp: &str, epochs: usize) {
    poll(120, &format!("{epochs} epochs in the shard"), || {
        cluster_trial(runs, exp)
            .and_then(|d| ShardView::read(&d).ok())
            .is_some_and(|v| v.values("val/loss", 99, false).len() >= epochs)
    });
}

#[test]
fn a_plain_scancel_ends_the_trial_interrupted_and_nothing_requeues_it() {
    let Some(_one) = cluster() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = slow_file(dir.path(), "scancelled");
    rewrite(&file, "epochs = 4", "epochs = 40");
    let runs = dir.path().join("runs");
    submit(&file, &[]);
    let job = newest_job(&runs, "scancelled");
    wait_for_epochs(&runs, "scancelled", 1);
    let cancelled = Command::new("scancel").arg(&job).status().unwrap();
    assert!(cancelled.success());
    poll(60, "the job to leave the queue", || gone(&job));
    // Past the ~10 s a requeued task waits before it may start again.
    std::thread::sleep(Duration::from_secs(15));
    assert!(gone(&job), "a cancelled job is not requeued");
    let trial = &trials(&runs, "scancelled")[0];
    assert_eq!(trial.status, Status::Interrupted, "{:?}", trial.error);
    let view = ShardView::read(&cluster_trial(&runs, "scancelled").unwrap()).unwrap();
    assert_eq!((view.attempts, view.preemptions), (1, 0));
}

#[test]
fn requeues_stop_at_max_requeues_and_after_an_attempt_without_progress() {
    let Some(_one) = cluster() else {
        return;
    };
    // max_requeues = 0: the first USR2 ends the trial, named.
    let dir = tempfile::tempdir().unwrap();
    let file = slow_file(dir.path(), "capped");
    rewrite(&file, "epochs = 4", "epochs = 40");
    let runs = dir.path().join("runs");
    submit(&file, &["--set", "sweep.slurm.max_requeues=0"]);
    let job = newest_job(&runs, "capped");
    wait_for_epochs(&runs, "capped", 1);
    signal_task(&job, "USR2");
    poll(60, "the job to end", || gone(&job));
    let trial = &trials(&runs, "capped")[0];
    assert_eq!(trial.status, Status::Interrupted);
    let error = trial.error.clone().unwrap_or_default();
    assert!(error.contains("max_requeues = 0 is used up"), "{error}");

    // A requeued attempt stopped again before it completed an epoch is not requeued again.
    let dir = tempfile::tempdir().unwrap();
    let file = slow_file(dir.path(), "stuck");
    rewrite(&file, "epochs = 4", "epochs = 40");
    let runs = dir.path().join("runs");
    submit(&file, &[]);
    let job = newest_job(&runs, "stuck");
    wait_for_epochs(&runs, "stuck", 1);
    signal_task(&job, "USR2");
    let shard = || ShardView::read(&cluster_trial(&runs, "stuck").unwrap()).unwrap();
    poll(120, "the requeued attempt to start", || {
        shard().attempts == 2
    });
    signal_task(&job, "USR2");
    poll(60, "the job to end", || gone(&job));
    let view = shard();
    assert_eq!((view.attempts, view.preemptions), (2, 1));
    let trial = &trials(&runs, "stuck")[0];
    assert_eq!(trial.status, Status::Interrupted);
    let error = trial.error.clone().unwrap_or_default();
    assert!(error.contains("without completing an epoch"), "{error}");
}

#[test]
fn wait_fails_when_a_task_dies_before_its_trial_finishes() {
    let Some(_one) = cluster() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = sweep_file(dir.path(), "broken", "seed = [1]", "");
    // What the nodes run does not exist there: the task ends 127 before claiming its trial.
    let missing = dir.path().join("not-installed/vitrun");
    let set = format!("sweep.slurm.vitrun={:?}", missing.display().to_string());
    let out = submit_command(&file, &["--set", &set, "--wait", "--poll-seconds", "1"])
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let runs = dir.path().join("runs");
    let id = &trials(&runs, "broken")[0].id;
    assert!(
        t.contains(id.as_str()) && t.contains("without finishing it"),
        "{t}"
    );
}

#[test]
fn the_submission_runs_the_configs_it_planned_even_when_the_file_is_edited() {
    let Some(_one) = cluster() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = sweep_file(dir.path(), "edited", "seed = [1, 2]", "");
    let runs = dir.path().join("runs");
    let planned = run(&["plan", file.to_str().unwrap()]);
    // One task at a time, so the second starts after the edit.
    submit(&file, &["--set", "sweep.slurm.max_parallel=1"]);
    rewrite(&file, "embed_dim = 24", "embed_dim = 32");
    let job = newest_job(&runs, "edited");
    poll(300, "both tasks to end", || gone(&job));
    let done = trials(&runs, "edited");
    assert_eq!(done.len(), 2);
    for t in &done {
        assert_eq!(t.status, Status::Finished, "{:?}", t.error);
        assert!(
            planned.contains(&t.id[..12]),
            "{} was not planned:\n{planned}",
            t.id
        );
    }
}

#[test]
fn setup_lines_run_before_the_trial_and_a_failing_one_is_named() {
    let Some(_one) = cluster() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = sweep_file(dir.path(), "setup", "seed = [1]", "");
    let marker = dir.path().join("setup-ran");
    let line = format!("touch {}", marker.display());
    rewrite(
        &file,
        "[sweep.slurm]\n",
        &format!("[sweep.slurm]\nsetup = [{line:?}, \"export VITRUN_SETUP_SAW=yes\"]\n"),
    );
    slurm_sweep(&file, &[]);
    assert!(marker.is_file());
    let runs = dir.path().join("runs");
    assert_eq!(trials(&runs, "setup")[0].status, Status::Finished);

    let failing = sweep_file(dir.path(), "setup2", "seed = [1]", "");
    rewrite(
        &failing,
        "[sweep.slurm]\n",
        "[sweep.slurm]\nsetup = [\"false\"]\n",
    );
    let out = submit_command(&failing, &["--wait", "--poll-seconds", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let logs = run(&[
        "logs",
        &trials(&runs, "setup2")[0].id,
        "--runs-dir",
        runs.to_str().unwrap(),
    ]);
    assert!(logs.contains("setup line failed: false"), "{logs}");
}

/// A TPE search on the cluster: one job array of workers, each proposing its own trial under
/// the proposals folder's lock from what the others found by then (running ones pending), with
/// nothing left on the login node. The proposals fold into the store numbered in order, each
/// replays from the history recorded with it, the budget is the total, and `vitrun rm` of a
/// proposed trial stays removed.
#[test]
fn a_search_runs_as_an_array_of_workers_that_propose_their_own_trials() {
    let Some(_one) = cluster() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = sweep_file(
        dir.path(),
        "tpe_cluster",
        "method = \"tpe\"\ntrials = 5\nstartup = 2\n\"optimizer.lr\" = { log_uniform = [1e-4, 1e-2] }",
        "",
    );
    rewrite(&file, "mem = \"1G\"", "mem = \"1G\"\nmax_parallel = 2");
    let out = slurm_sweep(&file, &[]);
    assert!(
        out.contains(": 5 workers proposing the search's next trials (0 done already"),
        "{out}"
    );
    let runs = dir.path().join("runs");
    let ts = trials(&runs, "tpe_cluster");
    assert_eq!(ts.len(), 5, "{ts:?}");
    assert!(ts.iter().all(|t| t.status == Status::Finished), "{ts:?}");

    let store = Store::open(&runs.join("vitrun.sqlite")).unwrap();
    let loaded = vitrun::config::load(&file, &[]).unwrap();
    let proposer = vitrun::search::Proposer::new(&loaded).unwrap();
    let mut ids: Vec<String> = Vec::new();
    for number in 0..5 {
        let (history, point) = store
            .proposal_history("tpe_cluster", number)
            .unwrap()
            .unwrap_or_else(|| panic!("proposal {number} is in the store"));
        let history: Vec<vitrun::search::Observation> = serde_json::from_str(&history).unwrap();
        let taken: std::collections::HashSet<String> = ids.iter().cloned().collect();
        let trial = proposer.propose(number, &history, &taken).unwrap().unwrap();
        assert_eq!(
            proposer.trial_of(&point).unwrap().id,
            trial.id,
            "proposal {number} replays from its recorded history"
        );
        if number >= 2 {
            assert!(
                history.len() >= 2,
                "proposal {number} saw the workers before it: {history:?}"
            );
        }
        ids.push(trial.id);
    }
    assert_eq!(
        ids.iter().collect::<std::collections::HashSet<_>>().len(),
        5,
        "no point proposed twice"
    );
    // Every trial is joined with the worker task that ran it.
    let status = vitrun(&[
        "status",
        "tpe_cluster",
        "--json",
        "--runs-dir",
        runs.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let rows = json["trials"].as_array().unwrap();
    assert!(
        rows.iter().all(|r| r["slurm_task"].as_str().is_some()),
        "{json}"
    );

    let again = submit(&file, &[]);
    assert!(
        again.contains("nothing to submit: 5 trials done"),
        "{again}"
    );
    run(&["rm", &ids[4], "--runs-dir", runs.to_str().unwrap()]);
    assert_eq!(
        trials(&runs, "tpe_cluster").len(),
        4,
        "a removed proposal stays removed"
    );
}

/// Early stopping composes with a search on the cluster: a worker's trial is judged against
/// the search's trials (those proposed by then), and a pruned trial enters the next
/// proposals' history with its value at its rung.
#[test]
fn asha_prunes_a_clusters_search_trials_and_they_feed_the_search() {
    let Some(_one) = cluster() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = sweep_file(
        dir.path(),
        "tpe_asha",
        "method = \"tpe\"\ntrials = 6\nstartup = 2\n\"optimizer.lr\" = { log_uniform = [1e-4, 1e-2] }\n[sweep.early_stop]\nrule = \"asha\"\nmetric = \"val/loss\"\nmode = \"min\"\nrungs = [1]\nreduction_factor = 2",
        "",
    );
    rewrite(&file, "epochs = 2", "epochs = 3");
    rewrite(&file, "mem = \"1G\"", "mem = \"1G\"\nmax_parallel = 1");
    slurm_sweep(&file, &[]);
    let runs = dir.path().join("runs");
    let ts = trials(&runs, "tpe_asha");
    assert_eq!(ts.len(), 6, "{ts:?}");
    let pruned: Vec<&String> = ts
        .iter()
        .filter(|t| t.status == Status::Pruned)
        .map(|t| &t.id)
        .collect();
    assert!(!pruned.is_empty(), "{ts:?}");
    let store = Store::open(&runs.join("vitrun.sqlite")).unwrap();
    let (history, point) = store.proposal_history("tpe_asha", 5).unwrap().unwrap();
    let history: Vec<vitrun::search::Observation> = serde_json::from_str(&history).unwrap();
    assert_eq!(
        history.len(),
        5,
        "one worker at a time: every earlier trial is scored"
    );
    let loaded = vitrun::config::load(&file, &[]).unwrap();
    let last = vitrun::search::Proposer::new(&loaded)
        .unwrap()
        .trial_of(&point)
        .unwrap()
        .id;
    let pruned_before = pruned.iter().filter(|id| ***id != last).count();
    let pruned_seen = history
        .iter()
        .filter(|o| matches!(o.outcome, vitrun::search::Outcome::Pruned { step: 1, .. }))
        .count();
    assert_eq!(pruned_seen, pruned_before, "{history:?}");
}
