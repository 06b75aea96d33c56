//! Early stopping at cluster scale: WRITERS concurrent processes (default 1,000), each a trial
//! of one sweep writing its shard and judging every epoch against all its peers (ASHA with its
//! rung at the last epoch, so every writer runs every epoch and reads its peers every epoch:
//! the worst case), once with peers read from their shards (plans before the rung summaries)
//! and once from the per-rung summaries (`track::rungs`). All writers start together; prints
//! the time of each epoch wave (from the last writer done with epoch e−1 to the last done with
//! e), the judges' time summed over the writers, the decisions at the rung (which must agree,
//! since by then every peer has written every epoch), and `vitrun sync` of the shards.
//!
//! `cargo bench --bench shard_wave` (`just bench-shards`); `WRITERS=N`, `EPOCHS=E` and
//! `RUNS=/path` (a folder on the filesystem to measure, e.g. an NFS mount) change the setup.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use vitrun::config::{StopCriterion, StopRule};
use vitrun::contract::{Goal, Status};
use vitrun::track::{MetricRow, PeerSnapshot, Recorder, ShardRecorder, TrialStart};
use vitrun::train::{EpochGate, Judge};

const CHILD: &str = "SHARD_WAVE_CHILD";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn member(i: usize) -> String {
    format!("t{i:05}")
}

/// A trial's val loss at an epoch: spread so that ASHA prunes about two thirds per rung.
fn loss(i: usize, epoch: usize) -> f64 {
    let quality = ((i * 7919) % 1000) as f64 / 1000.0;
    0.2 + quality / epoch as f64
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// One writer: claims its trial, logs each epoch, judges it, prints `epoch time verdict`.
fn child(spec: &str) {
    let parts: Vec<&str> = spec.split(':').collect();
    let (dir, index, rungs, writers, epochs) = (
        PathBuf::from(parts[0]),
        parts[1].parse::<usize>().unwrap(),
        parts[2] == "rungs",
        parts[3].parse::<usize>().unwrap(),
        parts[4].parse::<usize>().unwrap(),
    );
    let id = member(index);
    let snapshot = PeerSnapshot {
        sweep: "s".into(),
        members: (0..writers).map(member).collect(),
        stored: Default::default(),
        metric: rungs.then(|| "val/loss".to_string()),
    };
    let mut rec = ShardRecorder::new(&dir, &id, None, snapshot);
    let start = TrialStart {
        id: id.clone(),
        experiment: "wave".into(),
        file: "wave.toml".into(),
        config_json: "{}".into(),
        seed: index as u64,
        params: Vec::new(),
        device: "cpu".into(),
        main_metric: "loss".into(),
    };
    rec.claim(&start, false, false).unwrap();
    let go = dir.join("go");
    while !go.exists() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // At the rung every peer must have written the last epoch, so that the decision does not
    // depend on who came first: a finish line the writers wait at before the last judge.
    let line = dir.join("line");
    let mut judge = Judge {
        sweep: "s".into(),
        rule: StopCriterion {
            rule: StopRule::Asha {
                rungs: vec![epochs],
                reduction_factor: 3,
            },
            metric: "val/loss".into(),
            goal: Goal::Minimize,
        },
    };
    for epoch in 1..=epochs {
        let row = MetricRow {
            split: "val".into(),
            name: "loss".into(),
            step: epoch as i64,
            epoch: epoch as i64,
            value: loss(index, epoch),
            wall_time: 0.0,
        };
        rec.log_metrics(&id, &[row]).unwrap();
        if epoch == epochs {
            std::fs::create_dir_all(&line).unwrap();
            std::fs::File::create(line.join(&id)).unwrap();
            while std::fs::read_dir(&line).unwrap().count() < writers {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        let t = Instant::now();
        let verdict = judge.after_epoch(&mut rec, &id, epoch).unwrap();
        let judged = t.elapsed().as_nanos();
        let pruned = verdict.is_some();
        let said = if pruned { "pruned" } else { "kept" };
        println!("{epoch} {} {judged} {said}", now_ns());
    }
    rec.set_status(&id, Status::Finished, None).unwrap();
}

/// What one run of the writers measured.
struct Measured {
    /// Seconds of each epoch wave (the last one includes the wait at the finish line).
    waves: Vec<f64>,
    /// The judges' seconds per epoch, summed over the writers.
    judging: Vec<f64>,
    /// From the start signal to the last writer done.
    total: f64,
    /// "trial:epoch:verdict" of the last epoch, sorted.
    decisions: Vec<String>,
}

/// Runs the writers in `dir` concurrently, started together.
fn wave(dir: &Path, rungs: bool, writers: usize, epochs: usize) -> Measured {
    let exe = std::env::current_exe().unwrap();
    let mode = if rungs { "rungs" } else { "shards" };
    let children: Vec<_> = (0..writers)
        .map(|i| {
            Command::new(&exe)
                .env(
                    CHILD,
                    format!("{}:{i}:{mode}:{writers}:{epochs}", dir.display()),
                )
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Every writer has had time to start and wait: go.
    std::thread::sleep(std::time::Duration::from_millis(500 + 5 * writers as u64));
    let started = now_ns();
    std::fs::File::create(dir.join("go")).unwrap();
    let mut last_done = vec![started; epochs + 1];
    let mut judging = vec![0.0; epochs + 1];
    let mut decisions = Vec::new();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "writer {i} failed");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (epoch, at): (usize, u128) = (f[0].parse().unwrap(), f[1].parse().unwrap());
            last_done[epoch] = last_done[epoch].max(at);
            judging[epoch] += f[2].parse::<f64>().unwrap() / 1e9;
            if epoch == epochs {
                decisions.push(format!("{}:{epoch}:{}", member(i), f[3]));
            }
        }
    }
    decisions.sort();
    Measured {
        waves: (1..=epochs)
            .map(|e| last_done[e].saturating_sub(last_done[e - 1]) as f64 / 1e9)
            .collect(),
        judging: judging[1..].to_vec(),
        total: (last_done[epochs] - started) as f64 / 1e9,
        decisions,
    }
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        child(&spec);
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let writers = env_or("WRITERS", 1000);
    let epochs = env_or("EPOCHS", 3);
    let root = std::env::var("RUNS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            std::env::temp_dir().join(format!("vitrun-shard-wave-{}", std::process::id()))
        });
    println!(
        "writers: {writers} processes, {epochs} epochs each, every writer judging every epoch, ASHA (reduction factor 3) at the last, in {}",
        root.display()
    );
    let mut runs = Vec::new();
    for rungs in [false, true] {
        let name = if rungs {
            "rung summaries"
        } else {
            "peer shards"
        };
        let base = root.join(if rungs { "rungs" } else { "shards" });
        let dir = base.join("wave");
        std::fs::create_dir_all(&dir).unwrap();
        let m = wave(&dir, rungs, writers, epochs);
        let list = |v: &[f64]| {
            v.iter()
                .map(|w| format!("{w:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "{name}: epoch waves {} s (the last includes the finish line); judges' time per wave, summed over writers: {} s; start to last writer done: {:.2} s",
            list(&m.waves),
            list(&m.judging),
            m.total
        );
        let t = Instant::now();
        let report = vitrun::track::sync(&base).unwrap().unwrap();
        println!(
            "{name}: sync of {} shards ({} records): {:.2} s",
            report.shards,
            report.records,
            t.elapsed().as_secs_f64()
        );
        runs.push(m);
    }
    let pruned = runs[1]
        .decisions
        .iter()
        .filter(|d| d.ends_with("pruned"))
        .count();
    println!(
        "decisions at the rung agree: {} ({pruned} of {writers} pruned)",
        runs[0].decisions == runs[1].decisions
    );
    let sum = |m: &Measured| m.judging.iter().sum::<f64>();
    let first_waves = |m: &Measured| m.waves[..epochs - 1].iter().sum::<f64>();
    println!(
        "rung summaries vs peer shards: judges' time {:.1}x less; epoch waves before the rung {:.1}x shorter",
        sum(&runs[0]) / sum(&runs[1]).max(1e-9),
        first_waves(&runs[0]) / first_waves(&runs[1]).max(1e-9)
    );
    if std::env::var("RUNS").is_err() {
        let _ = std::fs::remove_dir_all(&root);
    }
}
