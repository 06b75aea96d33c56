//! Sweeps end to end through the `vitrun` binary: every trial runs once, a grown grid runs only
//! its new points, crashed and killed trials are retried from their checkpoints, a killed or
//! interrupted scheduler resumes, stale rows are recovered, early stopping prunes, and
//! concurrent writers lose nothing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vitrun::contract::Event;
use vitrun::plan::plan;
use vitrun::schedule::{self, Launch, Launcher, Silent, Sweep, TrialCommand};
use vitrun::track::{MetricRow, Store};

const EXE: &str = env!("CARGO_BIN_EXE_vitrun");

/// A sweep file in a temp dir whose runs go to `<dir>/runs`; `body` adds keys and `[sweep]`.
fn sweep_file(dir: &Path, train_size: usize, epochs: usize, sweep: &str) -> PathBuf {
    let text = format!(
        r#"name = "s"
seed = 3
[data]
dataset = "synthetic"
image_size = 16
train_size = {train_size}
val_size = 64
classes = ["bus", "bicycle"]
[model]
embed_dim = 32
depth = 1
num_heads = 2
patch_size = 4
[optimizer]
lr = 2e-3
[train]
epochs = {epochs}
batch_size = 32
runs_dir = "{}"
{sweep}"#,
        dir.join("runs").display()
    );
    let path = dir.join("sweep.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn vitrun(args: &[&str]) -> Command {
    let mut cmd = Command::new(EXE);
    cmd.args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("VITRUN_")) {
        cmd.env_remove(k);
    }
    cmd
}

fn sweep(file: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["sweep", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    vitrun(&args).output().unwrap()
}

fn sweep_ok(file: &Path, extra: &[&str]) -> String {
    let out = sweep(file, extra);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn store(dir: &Path) -> Store {
    Store::open(&dir.join("runs/vitrun.sqlite")).unwrap()
}

fn count(store: &Store, sql: &str, trial: &str) -> i64 {
    store.count(sql, trial).unwrap()
}

fn val_epochs(store: &Store, trial: &str) -> i64 {
    count(
        store,
        "SELECT COUNT(*) FROM metrics WHERE trial = ?1 AND split = 'val' AND name = 'top1'",
        trial,
    )
}

fn rows(store: &Store, trial: &str) -> i64 {
    count(
        store,
        "SELECT COUNT(*) FROM metrics WHERE trial = ?1",
        trial,
    )
}

fn attempts(store: &Store, trial: &str) -> i64 {
    count(store, "SELECT attempts FROM trials WHERE id = ?1", trial)
}

fn status_of(store: &Store, trial: &str) -> String {
    store
        .status(trial)
        .unwrap()
        .map(|s| s.to_string())
        .unwrap_or_default()
}

fn ids(file: &Path) -> Vec<String> {
    let loaded = vitrun::config::load_with_env(file, &[], Vec::new()).unwrap();
    plan(&loaded)
        .unwrap()
        .trials
        .into_iter()
        .map(|t| t.id)
        .collect()
}

/// Polls until `ready` holds (a fresh store connection each time), or fails after 2 minutes.
fn wait_until(dir: &Path, what: &str, ready: impl Fn(&Store) -> bool) {
    let started = Instant::now();
    loop {
        if dir.join("runs/vitrun.sqlite").exists() && ready(&store(dir)) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "timed out waiting: {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn running_with_an_epoch(store: &Store, ids: &[String]) -> Option<(String, i64)> {
    ids.iter().find_map(|id| {
        (status_of(store, id) == "running" && val_epochs(store, id) >= 1).then(|| {
            let pid = count(
                store,
                "SELECT COALESCE(pid, 0) FROM trials WHERE id = ?1",
                id,
            );
            (id.clone(), pid)
        })
    })
}

fn kill(pid: i64, signal: &str) {
    let ok = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn every_point_runs_once_and_a_grown_grid_runs_only_new_points() {
    let dir = tempfile::tempdir().unwrap();
    let file = sweep_file(
        dir.path(),
        256,
        2,
        "[sweep]\n\"optimizer.lr\" = [2e-3, 1e-3]\n\"optimizer.weight_decay\" = [0.0, 0.05]\n",
    );
    let first = ids(&file);
    let out = sweep_ok(&file, &[]);
    assert!(
        out.contains("4 trials, 0 already done before this run, 4 processes started"),
        "{out}"
    );
    let s = store(dir.path());
    for id in &first {
        assert_eq!(status_of(&s, id), "finished");
        assert_eq!((val_epochs(&s, id), attempts(&s, id)), (2, 1));
        assert!(dir.path().join(format!("runs/s/{id}/log.txt")).exists());
        assert_eq!(
            count(
                &s,
                "SELECT COUNT(*) FROM sweep_trials WHERE sweep = 's' AND trial = ?1",
                id
            ),
            1
        );
    }
    let again = sweep_ok(&file, &[]);
    assert!(
        again.contains("4 already done before this run, 0 processes started"),
        "{again}"
    );
    let plan_text = vitrun(&["plan", file.to_str().unwrap()]).output().unwrap();
    assert!(String::from_utf8_lossy(&plan_text.stdout).contains("4 trials (4 finished)"));

    let file = sweep_file(dir.path(), 256, 2, "[sweep]\n\"optimizer.lr\" = [0.002, 1e-3, 5e-4]\n\"optimizer.weight_decay\" = [0.0, 5e-2]\n");
    let grown = ids(&file);
    assert!(
        first.iter().all(|id| grown.contains(id)),
        "old points keep their ids"
    );
    let out = sweep_ok(&file, &[]);
    assert!(
        out.contains("6 trials, 4 already done before this run, 2 processes started"),
        "{out}"
    );
    let s = store(dir.path());
    for id in &grown {
        assert_eq!(
            (status_of(&s, id).as_str(), attempts(&s, id)),
            ("finished", 1),
            "{id}"
        );
    }
}

#[test]
fn a_trial_killed_mid_run_is_retried_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let file = sweep_file(
        dir.path(),
        2048,
        4,
        "[sweep]\n\"optimizer.lr\" = [2e-3, 1e-3]\nmax_retries = 1\n",
    );
    let ids = ids(&file);
    let scheduler: Child = vitrun(&["sweep", file.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let victim = std::sync::Mutex::new(None);
    wait_until(dir.path(), "a trial with an epoch checkpointed", |s| {
        let found = running_with_an_epoch(s, &ids).filter(|(id, _)| {
            dir.path()
                .join(format!("runs/s/{id}/last/progress.json"))
                .exists()
        });
        *victim.lock().unwrap() = found;
        victim.lock().unwrap().is_some()
    });
    let (victim, pid) = victim.into_inner().unwrap().unwrap();
    kill(pid, "-9");
    let out = scheduler.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("ended crashed (killed by signal 9)") && stdout.contains("retrying"),
        "{stdout}"
    );
    let s = store(dir.path());
    assert_eq!(attempts(&s, &victim), 2);
    for id in &ids {
        assert_eq!(status_of(&s, id), "finished");
        assert_eq!(val_epochs(&s, id), 4);
    }
    assert_eq!(
        rows(&s, &ids[0]),
        rows(&s, &ids[1]),
        "the retried trial has exactly the rows of an uninterrupted one"
    );
    let log = std::fs::read_to_string(dir.path().join(format!("runs/s/{victim}/log.txt"))).unwrap();
    assert!(
        log.contains("attempt 2") && log.contains("resuming after epoch"),
        "{log}"
    );
    assert_eq!(
        count(
            &s,
            "SELECT COUNT(*) FROM events WHERE trial = ?1 AND kind = 'retry'",
            &victim
        ),
        1
    );
}

/// Launches a stand-in that panics for the first attempt of the first trial, the real trial
/// otherwise.
struct PanicsOnce(TrialCommand, String);

impl Launcher for PanicsOnce {
    fn command(&self, launch: &Launch<'_>) -> Command {
        if launch.trial.id == self.1 && launch.attempt == 1 {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", "echo epoch 1; echo \"thread 'main' panicked at src/train/trial.rs:9:9:\" >&2; exit 101"]);
            cmd
        } else {
            self.0.command(launch)
        }
    }
}

#[test]
fn a_panicking_trial_is_retried_and_the_rest_finish() {
    let dir = tempfile::tempdir().unwrap();
    let file = sweep_file(
        dir.path(),
        256,
        2,
        "[sweep]\n\"optimizer.lr\" = [2e-3, 1e-3, 5e-4]\nmax_retries = 2\n",
    );
    let loaded = vitrun::config::load_with_env(&file, &[], Vec::new()).unwrap();
    let plan = plan(&loaded).unwrap();
    let first = plan.trials[0].id.clone();
    let launcher = PanicsOnce(
        TrialCommand {
            exe: EXE.into(),
            file: file.clone(),
            sets: vec![],
            sweep: plan.sweep.clone(),
        },
        first.clone(),
    );
    let slots = schedule::layout(
        &schedule::Devices {
            gpus: vec![],
            cpu_cores: 2,
        },
        schedule::PerGpu::Count(1),
        2,
    );
    let report = schedule::run(Sweep {
        plan: plan.clone(),
        proposals: None,
        file: file.clone(),
        store_path: dir.path().join("runs/vitrun.sqlite"),
        slots,
        max_retries: loaded.sweep.max_retries,
        retry_on: loaded.sweep.retry_on.clone(),
        launcher: &launcher,
        stop: Arc::new(AtomicBool::new(false)),
        view: &mut Silent,
    })
    .unwrap();
    assert_eq!(report.launched, 4, "three trials and one retry");
    assert!(
        report
            .results
            .iter()
            .all(|r| r.status == vitrun::contract::Status::Finished),
        "{:?}",
        report.results
    );
    let s = store(dir.path());
    let why = count(
        &s,
        "SELECT COUNT(*) FROM events WHERE trial = ?1 AND kind = 'retry' AND message LIKE '%panicked with code 101: thread ''main'' panicked at src/train/trial.rs%'",
        &first,
    );
    assert_eq!(why, 1);
    assert_eq!(val_epochs(&s, &first), 2);
}

#[test]
fn kill_9_of_the_scheduler_then_a_rerun_finishes_every_trial_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = sweep_file(
        dir.path(),
        2048,
        4,
        "[sweep]\n\"optimizer.lr\" = [2e-3, 1e-3, 5e-4, 2.5e-4]\n",
    );
    let ids = ids(&file);
    let mut scheduler = vitrun(&["sweep", file.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(dir.path(), "one trial finished and another mid-run", |s| {
        ids.iter().any(|id| status_of(s, id) == "finished")
            && running_with_an_epoch(s, &ids).is_some()
    });
    scheduler.kill().unwrap();
    scheduler.wait().unwrap();
    let finished_before: Vec<String> = {
        let s = store(dir.path());
        ids.iter()
            .filter(|id| status_of(&s, id) == "finished")
            .cloned()
            .collect()
    };
    wait_until(
        dir.path(),
        "the trial processes to die with the scheduler",
        |s| {
            ids.iter().all(|id| {
                status_of(s, id) != "running"
                    || !vitrun::track::vitrun_alive(count(
                        s,
                        "SELECT COALESCE(pid, 0) FROM trials WHERE id = ?1",
                        id,
                    ))
            })
        },
    );
    let stale = {
        let s = store(dir.path());
        ids.iter()
            .filter(|id| status_of(&s, id) == "running")
            .count()
    };
    assert!(
        stale >= 1,
        "a killed scheduler leaves its running rows behind"
    );
    let out = sweep_ok(&file, &[]);
    assert!(out.contains("stale: its process"), "{out}");
    let s = store(dir.path());
    let full = rows(&s, &finished_before[0]);
    for id in &ids {
        assert_eq!(status_of(&s, id), "finished");
        assert_eq!(val_epochs(&s, id), 4, "{id}");
        assert_eq!(
            rows(&s, id),
            full,
            "{id}: no lost or duplicated metric rows"
        );
    }
    for id in &finished_before {
        assert_eq!(attempts(&s, id), 1, "finished trials are not run again");
    }
}

#[test]
fn ctrl_c_stops_the_sweep_cleanly_and_a_rerun_continues() {
    let dir = tempfile::tempdir().unwrap();
    let file = sweep_file(
        dir.path(),
        2048,
        4,
        "[sweep]\n\"optimizer.lr\" = [2e-3, 1e-3, 5e-4]\n",
    );
    let ids = ids(&file);
    let scheduler = vitrun(&["sweep", file.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(dir.path(), "a trial mid-run", |s| {
        running_with_an_epoch(s, &ids).is_some()
    });
    kill(scheduler.id() as i64, "-INT");
    let out = scheduler.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let s = store(dir.path());
    for id in &ids {
        let st = status_of(&s, id);
        assert_ne!(st, "running", "no trial is left running after Ctrl-C");
        if st == "interrupted" {
            let why = count(
                &s,
                "SELECT COUNT(*) FROM trials WHERE id = ?1 AND error LIKE 'interrupted%'",
                id,
            );
            assert_eq!(why, 1);
        }
    }
    sweep_ok(&file, &[]);
    let s = store(dir.path());
    for id in &ids {
        assert_eq!(
            (status_of(&s, id).as_str(), val_epochs(&s, id)),
            ("finished", 4)
        );
    }
}

#[test]
fn a_stale_running_row_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let file = sweep_file(dir.path(), 256, 2, "[sweep]\n\"optimizer.lr\" = [2e-3]\n");
    let id = ids(&file).remove(0);
    sweep_ok(&file, &[]);
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let db = rusqlite::Connection::open(dir.path().join("runs/vitrun.sqlite")).unwrap();
    db.execute(
        "UPDATE trials SET status = 'running', pid = ?1, ended_at = NULL WHERE id = ?2",
        rusqlite::params![dead, id],
    )
    .unwrap();
    let out = sweep_ok(&file, &[]);
    assert!(out.contains(&format!("stale: its process {dead}")), "{out}");
    let s = store(dir.path());
    assert_eq!(status_of(&s, &id), "finished");
    assert_eq!(attempts(&s, &id), 2);
    assert_eq!(val_epochs(&s, &id), 2);
    assert_eq!(count(&s, "SELECT COUNT(*) FROM events WHERE trial = ?1 AND kind = 'stale' AND message LIKE 'stale%'", &id), 1);
}

#[test]
fn early_stopping_prunes_a_clearly_worse_trial() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"name = "es"
seed = 7
[data]
dataset = "synthetic"
image_size = 16
train_size = 800
val_size = 200
classes = ["bus", "bicycle"]
[model]
embed_dim = 48
depth = 2
num_heads = 3
patch_size = 4
[optimizer]
label_smoothing = 0.1
[train]
epochs = 4
batch_size = 32
runs_dir = "{}"
[sweep]
"optimizer.lr" = [2e-3, 1e-7]
[sweep.early_stop]
rule = "asha"
metric = "val/loss"
rungs = [2]
"#,
        dir.path().join("runs").display()
    );
    let file = dir.path().join("es.toml");
    std::fs::write(&file, text).unwrap();
    let ids = ids(&file);
    let out = sweep_ok(&file, &["--cpu-slots", "1"]);
    let s = store(dir.path());
    let (good, bad) = (&ids[0], &ids[1]);
    assert_eq!(
        (status_of(&s, good).as_str(), val_epochs(&s, good)),
        ("finished", 4),
        "{out}"
    );
    assert_eq!(
        (status_of(&s, bad).as_str(), val_epochs(&s, bad)),
        ("pruned", 2),
        "{out}"
    );
    let reason = count(&s, "SELECT COUNT(*) FROM trials WHERE id = ?1 AND error LIKE 'pruned: ASHA rung 2 (epochs): val/loss % ranks 2 of 2%'", bad);
    assert_eq!(reason, 1, "{out}");
    assert_eq!(count(&s, "SELECT COUNT(*) FROM events WHERE trial = ?1 AND kind = 'early_stop' AND message LIKE 'continue: ASHA rung 2%'", good), 1);
    assert!(out.contains("pruned"), "{out}");
    let again = sweep_ok(&file, &[]);
    assert!(
        again.contains("2 already done before this run, 0 processes started"),
        "pruned trials stay pruned: {again}"
    );
}

#[test]
fn concurrent_writers_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vitrun.sqlite");
    let mut s = Store::open(&path).unwrap();
    s.register_sweep(
        "w",
        "w",
        "w.toml",
        &(0..6)
            .map(|i| vitrun::track::QueuedTrial {
                id: format!("t{i}"),
                config_json: "{}".into(),
                seed: 0,
            })
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let writers: Vec<_> = (0..6)
        .map(|w| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut store = Store::open(&path).unwrap();
                for batch in 0..200i64 {
                    let rows: Vec<MetricRow> = (0..10)
                        .map(|k| MetricRow {
                            split: "train".into(),
                            name: "step_loss".into(),
                            step: batch * 10 + k,
                            epoch: batch,
                            value: k as f64,
                            wall_time: 0.0,
                        })
                        .collect();
                    store.log_metrics(&format!("t{w}"), &rows).unwrap();
                    store.log_event(&format!("t{w}"), Event::Note, "x").unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("a writer failed (database is locked?)");
    }
    for w in 0..6 {
        assert_eq!(rows(&s, &format!("t{w}")), 2000);
    }
}
