//! SLURM launcher figures: submission latency of a 1,000-trial job array (plan + script +
//! `sbatch`), folding 1,000 shards of 20 epochs into the store, and the makespan of a 16-trial
//! sweep on the cluster against the same sweep under the local scheduler.
//!
//! `cargo bench --bench slurm` (`just bench-slurm`) with a cluster up (`.ci/slurm-cluster
//! start`); without one only the fold figures are printed. One `name: value` line per figure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use vitrun::track::{MetricRow, PeerSnapshot, Recorder, ShardRecorder, TrialStart};

const TRIAL: &str = r#"seed = 3
[data]
dataset = "synthetic"
image_size = 16
train_size = 2048
val_size = 64
classes = ["bus", "car"]
[model]
embed_dim = 24
depth = 2
num_heads = 2
patch_size = 4
[train]
epochs = 3
batch_size = 32
threads = 1
"#;

fn vitrun(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_vitrun"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vitrun {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn experiment(dir: &Path, name: &str, sweep: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "name = \"{name}\"\n{TRIAL}runs_dir = {:?}\n[sweep]\n{sweep}\n[sweep.slurm]\ncpus_per_trial = 1\nmem = \"1G\"\n",
            dir.join("runs").display().to_string()
        ),
    )
    .unwrap();
    path
}

fn cluster_up() -> bool {
    Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("idle"))
}

fn submission(dir: &Path) {
    let seeds: Vec<String> = (0..1000).map(|s| s.to_string()).collect();
    let file = experiment(dir, "submit1000", &format!("seed = [{}]", seeds.join(", ")));
    let started = Instant::now();
    vitrun(&["sweep", file.to_str().unwrap(), "--launcher", "slurm"]);
    println!(
        "slurm_submit_1000_trials_s: {:.2}",
        started.elapsed().as_secs_f64()
    );
    let runs = dir.join("runs");
    vitrun(&["cancel", "submit1000", "--runs-dir", runs.to_str().unwrap()]);
}

fn fold(dir: &Path) {
    let runs = dir.join("runs");
    let exp = runs.join("folded");
    let started = Instant::now();
    for t in 0..1000 {
        let id = format!("{t:012x}");
        let mut r = ShardRecorder::new(&exp, &id, Some(format!("1_{t}")), PeerSnapshot::default());
        r.claim(
            &TrialStart {
                id: id.clone(),
                experiment: "folded".into(),
                file: "folded.toml".into(),
                config_json: "{}".into(),
                seed: t,
                params: vec![("seed".into(), t.to_string())],
                device: "cpu".into(),
                main_metric: "top1".into(),
            },
            false,
            true,
        )
        .unwrap();
        r.clear_metrics(&id).unwrap();
        for epoch in 1..=20i64 {
            // As a trial logs: 20 step losses and 8 epoch figures per epoch.
            let rows: Vec<MetricRow> = (0..28)
                .map(|k| MetricRow {
                    split: if k < 24 { "train" } else { "val" }.into(),
                    name: format!("m{k}"),
                    step: epoch * 100 + k,
                    epoch,
                    value: 1.0 / (epoch + k) as f64,
                    wall_time: 0.0,
                })
                .collect();
            r.log_metrics(&id, &rows).unwrap();
        }
        r.set_status(&id, vitrun::contract::Status::Finished, None)
            .unwrap();
    }
    println!(
        "shards_written_1000x20_s: {:.2}",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let report = vitrun::track::sync(&runs).unwrap().unwrap();
    println!(
        "sync_1000_shards_20_epochs_s: {:.2} ({} records)",
        started.elapsed().as_secs_f64(),
        report.records
    );
    let started = Instant::now();
    vitrun::track::sync(&runs).unwrap();
    println!(
        "sync_again_nothing_new_s: {:.3}",
        started.elapsed().as_secs_f64()
    );
}

fn makespan(dir: &Path) {
    let sweep = "\"optimizer.lr\" = [1e-4, 3e-4, 1e-3, 3e-3]\nseed = [1, 2, 3, 4]";
    let file = experiment(&dir.join("cluster"), "makespan", sweep);
    let started = Instant::now();
    vitrun(&[
        "sweep",
        file.to_str().unwrap(),
        "--launcher",
        "slurm",
        "--wait",
        "--poll-seconds",
        "1",
    ]);
    let cluster = started.elapsed().as_secs_f64();
    let file = experiment(&dir.join("local"), "makespan", sweep);
    let started = Instant::now();
    vitrun(&["sweep", file.to_str().unwrap()]);
    let local = started.elapsed().as_secs_f64();
    // SLURM's own dispatch cost on this cluster: 16 tasks that only sleep 0.1 s.
    let started = Instant::now();
    let job = Command::new("sbatch")
        .args([
            "--parsable",
            "--array=0-15",
            "-c",
            "1",
            "--mem=100M",
            "-o",
            "/dev/null",
            "--wrap",
            "sleep 0.1",
        ])
        .output()
        .unwrap();
    let job = String::from_utf8_lossy(&job.stdout).trim().to_string();
    while Command::new("squeue")
        .args(["-h", "-j", &job])
        .output()
        .is_ok_and(|o| !o.stdout.is_empty())
    {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let floor = started.elapsed().as_secs_f64();
    println!("makespan_16_sleep_tasks_slurm_floor_s: {floor:.1}");
    println!("makespan_16_trials_slurm_s: {cluster:.1}");
    println!("makespan_16_trials_local_s: {local:.1}");
    println!("makespan_slurm_over_local: {:.2}", cluster / local);
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    fold(&dir.path().join("fold"));
    if !cluster_up() {
        println!("no SLURM cluster: start one with .ci/slurm-cluster start for the submission and makespan figures");
        return;
    }
    submission(&dir.path().join("submit"));
    makespan(&dir.path().join("makespan"));
}
