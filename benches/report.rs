//! `vitrun report` on a sweep of 50 trials: one trained for real (so attention maps,
//! predictions and the confusion matrix load its checkpoint), 49 with 10 epochs of stored
//! metrics. Prints the report's wall time and how many images it wrote.
//!
//! `cargo bench --bench report` (`just bench-report`).

use std::process::Command;
use std::time::Instant;

use vitrun::config::load_with_env;
use vitrun::plan::plan;
use vitrun::report::{build, AttentionOptions, Fusion, Ranking};
use vitrun::schedule;
use vitrun::track::{MetricRow, Status, Store, TrialStart};

const BODY: &str = "name = \"bench\"\nseed = 1\n[data]\ndataset = \"synthetic\"\nimage_size = 32\ntrain_size = 256\nval_size = 500\n[model]\nembed_dim = 48\ndepth = 2\nnum_heads = 3\npatch_size = 4\n[train]\nepochs = 1\nbatch_size = 32\n[sweep]\n\"optimizer.lr\" = [1e-4, 2e-4, 3e-4, 4e-4, 5e-4, 6e-4, 7e-4, 8e-4, 9e-4, 1e-3]\n\"optimizer.weight_decay\" = [0.0, 0.01, 0.02, 0.03, 0.04]\n";

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let file = dir.path().join("bench.toml");
    std::fs::write(&file, BODY).unwrap();
    let runs_set = format!("train.runs_dir={:?}", runs.display().to_string());
    let loaded = load_with_env(&file, std::slice::from_ref(&runs_set), Vec::new()).unwrap();
    let p = plan(&loaded).unwrap();
    assert_eq!(p.trials.len(), 50);
    let real = &p.trials[0];
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vitrun"));
    cmd.arg("trial")
        .arg(&file)
        .args(["--quiet", "--set", &runs_set]);
    for set in real.sets() {
        cmd.args(["--set", &set]);
    }
    assert!(cmd.status().unwrap().success());
    let mut store = Store::open(&runs.join("vitrun.sqlite")).unwrap();
    let queued = schedule::queued(&p);
    store
        .register_sweep("bench", "bench", "bench.toml", &queued)
        .unwrap();
    for (i, t) in p.trials.iter().enumerate().skip(1) {
        store
            .claim_trial(
                &TrialStart {
                    id: t.id.clone(),
                    experiment: "bench".into(),
                    file: "bench.toml".into(),
                    config_json: serde_json::to_string(&t.config).unwrap(),
                    seed: t.config.seed,
                    params: t.config.flat_params(),
                    device: "cpu".into(),
                },
                false,
                false,
            )
            .unwrap();
        let epochs = if i % 4 == 0 { 3 } else { 10 };
        let rows: Vec<MetricRow> = (1..=epochs)
            .flat_map(|e| {
                let f = e as f64 / 10.0;
                [
                    ("train", "loss", 1.6 - f),
                    ("val", "loss", 1.7 - f),
                    ("val", "top1", 0.05 + 0.01 * f * (i % 7) as f64),
                    ("val", "top5", 0.9),
                    ("train", "lr", 1e-3 * (1.0 - f)),
                ]
                .map(|(split, name, value)| MetricRow {
                    split: split.into(),
                    name: name.into(),
                    step: e * 100,
                    epoch: e,
                    value,
                    wall_time: 0.0,
                })
            })
            .collect();
        store.log_metrics(&t.id, &rows).unwrap();
        let status = if epochs == 3 {
            Status::Pruned
        } else {
            Status::Finished
        };
        store.set_status(&t.id, status, None).unwrap();
    }
    let options = AttentionOptions {
        fusion: Fusion::Mean,
        discard: 0.9,
        samples: 6,
    };
    let started = Instant::now();
    let report = build(
        &runs,
        Some("bench"),
        None,
        Ranking::new("val/top1"),
        &options,
    )
    .unwrap();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "report of a 50-trial sweep (32 px, 500 val images): {secs:.2} s, {} images, {}",
        report.files.len(),
        report.index.display()
    );
}
