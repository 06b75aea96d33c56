//! `vitrun report` on a sweep of 50 and of 1,000 trials: one trained for real (so attention
//! maps, predictions and the confusion matrix load its checkpoint), the rest with up to 10
//! epochs of stored metrics (the 1,000-trial sweep has 4 seeds per configuration). Prints each
//! report's wall time, how many images it wrote and the size of its folder.
//!
//! `cargo bench --bench report` (`just bench-report`); `REPORT_KEEP=1` keeps the folders.

use std::process::Command;
use std::time::Instant;

use vitrun::config::load_with_env;
use vitrun::plan::plan;
use vitrun::report::{build, Fusion, PanelOptions, Ranking};
use vitrun::schedule;
use vitrun::track::{MetricRow, Status, Store, TrialStart};

const BODY: &str = "name = \"bench\"\nseed = 1\n[data]\ndataset = \"synthetic\"\nimage_size = 32\ntrain_size = 256\nval_size = 500\n[model]\nembed_dim = 48\ndepth = 2\nnum_heads = 3\npatch_size = 4\n[train]\nepochs = 1\nbatch_size = 32\n";

/// The `[sweep]` of a sweep of `lrs` × `decays` × `seeds` trials.
fn sweep(lrs: usize, decays: usize, seeds: usize) -> String {
    let list = |n: usize, f: &dyn Fn(usize) -> String| (0..n).map(f).collect::<Vec<_>>().join(", ");
    let mut out = format!(
        "[sweep]\n\"optimizer.lr\" = [{}]\n\"optimizer.weight_decay\" = [{}]\n",
        list(lrs, &|i| format!("{:e}", 1e-4 * (i + 1) as f64)),
        list(decays, &|i| format!("{:.3}", 0.01 * i as f64)),
    );
    if seeds > 1 {
        out.push_str(&format!(
            "seed = [{}]\n",
            list(seeds, &|i| (i + 1).to_string())
        ));
    }
    out
}

fn main() {
    for (lrs, decays, seeds) in [(10, 5, 1), (25, 10, 4)] {
        bench(lrs, decays, seeds);
    }
}

fn bench(lrs: usize, decays: usize, seeds: usize) {
    let n = lrs * decays * seeds;
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let file = dir.path().join("bench.toml");
    std::fs::write(&file, format!("{BODY}{}", sweep(lrs, decays, seeds))).unwrap();
    let runs_set = format!("train.runs_dir={:?}", runs.display().to_string());
    let loaded = load_with_env(&file, std::slice::from_ref(&runs_set), Vec::new()).unwrap();
    let p = plan(&loaded).unwrap();
    assert_eq!(p.trials.len(), n);
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
                    main_metric: "top1".into(),
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
                    (
                        "val",
                        "top1",
                        0.01 + 0.004 * f * (i % 7) as f64 + f * t.config.optimizer.lr / 25e-3,
                    ),
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
    let options = PanelOptions {
        fusion: Fusion::Mean,
        discard: 0.9,
        samples: "6".parse().expect("a sample count"),
        score_threshold: None,
    };
    let started = Instant::now();
    let report = build(
        &runs,
        &["bench".to_string()],
        None,
        Some(Ranking::new("val/top1")),
        &options,
    )
    .unwrap();
    let secs = started.elapsed().as_secs_f64();
    let folder = report.index.parent().unwrap();
    let kib: u64 = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum::<u64>()
        / 1024;
    let page = std::fs::metadata(&report.index).unwrap().len() / 1024;
    println!(
        "report of a {n}-trial sweep (32 px, 500 val images): {secs:.2} s, {} images, folder {kib} KiB, index.html {page} KiB, {}",
        report.files.len(),
        report.index.display()
    );
    // What a live page (`vitrun serve`) asks for every two seconds.
    let started = Instant::now();
    let polls = 5;
    let mut bytes = 0;
    for _ in 0..polls {
        let live = vitrun::report::live::live(&runs, &["bench".to_string()]).unwrap();
        bytes = serde_json::to_vec(&live).unwrap().len();
    }
    println!(
        "live poll of the same sweep (/api/r/bench): {:.0} ms each, {} KiB of JSON",
        started.elapsed().as_secs_f64() * 1000.0 / polls as f64,
        bytes / 1024
    );
    if std::env::var_os("REPORT_KEEP").is_some() {
        let _ = dir.keep();
    }
}
