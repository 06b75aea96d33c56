//! Sweep planning and scheduling figures: planner time for a 10,000-point grid (and recording
//! it in the store), makespan against the ideal on a simulated 4-GPU machine with stand-in
//! trials that sleep a known time, and a real sweep of 8 tiny CPU trials on this machine.
//!
//! `cargo bench --bench sweep` (`just bench-sweep`). Prints one `name: value` line per figure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vitrun::config::load_with_env;
use vitrun::plan::{plan, Plan};
use vitrun::schedule::{self, Devices, Gpu, Launch, Launcher, PerGpu, Silent, Sweep, TrialCommand};
use vitrun::track::Store;

/// A stand-in trial: sleeps a fixed time.
struct Sleeper(Duration);

impl Launcher for Sleeper {
    fn command(&self, _launch: &Launch<'_>) -> Command {
        let mut cmd = Command::new("sleep");
        cmd.arg(format!("{:.3}", self.0.as_secs_f64()));
        cmd
    }
}

fn file(dir: &Path, body: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("bench.toml");
    std::fs::write(&path, format!("name = \"bench\"\n{body}")).unwrap();
    path
}

/// `--set train.runs_dir=…`: the bench's trial folders stay in its temp dir.
fn runs_set(dir: &Path) -> Vec<String> {
    vec![format!(
        "train.runs_dir={:?}",
        dir.join("runs").display().to_string()
    )]
}

fn planned(path: &Path) -> Plan {
    let sets = runs_set(path.parent().unwrap());
    plan(&load_with_env(path, &sets, Vec::new()).unwrap()).unwrap()
}

fn planner(dir: &Path) {
    let values = |v: &[&str]| format!("[{}]", v.join(", "));
    let ten = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"];
    let body = format!(
        "[sweep]\n\"optimizer.lr\" = [1e-4, 2e-4, 3e-4, 4e-4, 5e-4, 6e-4, 7e-4, 8e-4, 9e-4, 1e-3]\n\"optimizer.weight_decay\" = [0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09]\n\"train.epochs\" = {}\n\"seed\" = {}\n",
        values(&ten),
        values(&ten)
    );
    let path = file(dir, &body);
    let started = Instant::now();
    let p = planned(&path);
    let plan_s = started.elapsed().as_secs_f64();
    assert_eq!(p.trials.len(), 10_000);
    println!("planner 10000-point grid seconds: {plan_s:.3}");
    println!("planner trials/s: {:.0}", 10_000.0 / plan_s);
    let queued = schedule::queued(&p);
    let mut store = Store::open(&dir.join("runs/vitrun.sqlite")).unwrap();
    let started = Instant::now();
    store
        .register_sweep("bench", "bench", "bench.toml", &queued)
        .unwrap();
    println!(
        "store registration of 10000 trials seconds: {:.3}",
        started.elapsed().as_secs_f64()
    );
    let exe = env!("CARGO_BIN_EXE_vitrun");
    let started = Instant::now();
    let out = Command::new(exe)
        .arg("plan")
        .arg(&path)
        .args(["--set", &runs_set(dir)[0]])
        .output()
        .unwrap();
    assert!(out.status.success());
    println!(
        "`vitrun plan` 10000 trials seconds: {:.3}",
        started.elapsed().as_secs_f64()
    );
}

fn fake_gpus(dir: &Path, trials: usize, per_gpu: usize, sleep: Duration) {
    let lrs: Vec<String> = (1..=trials).map(|i| format!("{i}e-4")).collect();
    let path = file(
        dir,
        &format!("[sweep]\n\"optimizer.lr\" = [{}]\n", lrs.join(", ")),
    );
    let p = planned(&path);
    let devices = Devices {
        gpus: (0..4).map(Gpu::unknown).collect(),
        cpu_cores: 0,
    };
    let slots = schedule::layout(&devices, PerGpu::Count(per_gpu), 0);
    let n_slots = slots.len();
    let report = schedule::run(Sweep {
        plan: p.clone(),
        proposals: None,
        file: path.clone(),
        store_path: dir.join("runs/vitrun.sqlite"),
        slots,
        max_retries: 0,
        retry_on: vec![],
        launcher: &Sleeper(sleep),
        stop: Arc::new(AtomicBool::new(false)),
        view: &mut Silent,
    })
    .unwrap();
    let ideal = sleep.as_secs_f64() * trials as f64 / n_slots as f64;
    let makespan = report.wall.as_secs_f64();
    let rounds = trials.div_ceil(n_slots) as f64;
    println!(
        "simulated 4 GPUs x {per_gpu} slots, {trials} trials of {:.1} s: makespan {makespan:.3} s, ideal {ideal:.3} s, ratio {:.3}, overhead per round of launches {:.1} ms",
        sleep.as_secs_f64(),
        makespan / ideal,
        (makespan - ideal) / rounds * 1000.0
    );
}

fn real_cpu(dir: &Path) {
    let body = "[data]\ndataset = \"synthetic\"\nimage_size = 16\ntrain_size = 1024\nval_size = 128\nclasses = [\"bus\", \"bicycle\", \"car\"]\n[model]\nembed_dim = 48\ndepth = 2\nnum_heads = 3\npatch_size = 4\n[train]\nepochs = 3\nbatch_size = 32\n[sweep]\n\"optimizer.lr\" = [5e-4, 1e-3, 2e-3, 4e-3]\n\"optimizer.weight_decay\" = [0.0, 0.05]\n";
    let path = file(dir, body);
    let p = planned(&path);
    let loaded = load_with_env(&path, &runs_set(dir), Vec::new()).unwrap();
    let devices = Devices {
        gpus: vec![],
        cpu_cores: vitrun::config::available_cores(),
    };
    let slots = schedule::layout(&devices, PerGpu::Count(1), devices.cpu_cores);
    let n_slots = slots.len();
    let launcher = TrialCommand {
        exe: env!("CARGO_BIN_EXE_vitrun").into(),
        file: path.clone(),
        sets: runs_set(dir),
        sweep: p.sweep.clone(),
    };
    let report = schedule::run(Sweep {
        plan: p.clone(),
        proposals: None,
        file: path,
        store_path: dir.join("runs/vitrun.sqlite"),
        slots,
        max_retries: loaded.sweep.max_retries,
        retry_on: loaded.sweep.retry_on.clone(),
        launcher: &launcher,
        stop: Arc::new(AtomicBool::new(false)),
        view: &mut Silent,
    })
    .unwrap();
    assert!(report
        .results
        .iter()
        .all(|r| r.status == vitrun::contract::Status::Finished));
    let sum: f64 = report.results.iter().filter_map(|r| r.seconds).sum();
    let ideal = sum / n_slots as f64;
    let makespan = report.wall.as_secs_f64();
    println!(
        "8 tiny CPU trials on {n_slots} slots ({} cores): makespan {makespan:.2} s, sum of trial times {sum:.2} s, ideal {ideal:.2} s, ratio {:.3}",
        devices.cpu_cores,
        makespan / ideal
    );
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    planner(&dir.path().join("planner"));
    fake_gpus(&dir.path().join("gpu1"), 16, 1, Duration::from_secs(1));
    fake_gpus(&dir.path().join("gpu2"), 32, 2, Duration::from_millis(500));
    real_cpu(&dir.path().join("cpu"));
}
