//! Comparing trials: seed replicates with their statistics, metric export round trips, the
//! diff of two trials, conditional sweep axes, and a 1,000-trial report in a browser.

use std::path::{Path, PathBuf};

use crate::common::{browser_dom, experiment, page_data, probe_page, text, vitrun};
use arrow_array::{Array, Float64Array, Int64Array, StringArray};
use vitrun::config::{load_with_env, Config};
use vitrun::contract::Status;
use vitrun::plan::plan;
use vitrun::report::groups;
use vitrun::track::{MetricRow, Store, TrialStart};

/// Records a finished trial of `config` with `val/top1` per epoch and a falling loss.
fn record(store: &mut Store, config: &Config, top1: &[f64]) -> String {
    let id = config.trial_id();
    store
        .claim_trial(
            &TrialStart {
                id: id.clone(),
                experiment: config.name.clone(),
                file: "hand-made.toml".into(),
                config_json: serde_json::to_string(config).unwrap(),
                seed: config.seed,
                params: config.flat_params(),
                device: "cpu".into(),
                main_metric: "top1".into(),
            },
            false,
            false,
        )
        .unwrap();
    let rows: Vec<MetricRow> = top1
        .iter()
        .enumerate()
        .flat_map(|(e, v)| {
            let epoch = e as i64 + 1;
            [("val", "top1", *v), ("val", "loss", 2.0 - v)].map(|(split, name, value)| MetricRow {
                split: split.into(),
                name: name.into(),
                step: epoch * 10,
                epoch,
                value,
                wall_time: 1000.0 + epoch as f64,
            })
        })
        .collect();
    store.log_metrics(&id, &rows).unwrap();
    store.set_status(&id, Status::Finished, None).unwrap();
    id
}

fn config(name: &str, lr: f64, seed: u64) -> Config {
    let mut c = Config {
        name: name.into(),
        seed,
        ..Config::default()
    };
    c.optimizer.lr = lr;
    c.resolve_model();
    c
}

/// Two learning rates × three seeds, and one lone trial.
fn hand_made(runs: &Path) -> Vec<(f64, u64, String)> {
    let mut store = Store::open(&runs.join("vitrun.sqlite")).unwrap();
    let mut ids = Vec::new();
    for (lr, finals) in [(1e-3, [0.80, 0.82, 0.84]), (3e-4, [0.70, 0.75, 0.71])] {
        for (seed, top1) in finals.iter().enumerate() {
            let c = config("reps", lr, seed as u64 + 1);
            ids.push((
                lr,
                seed as u64 + 1,
                record(&mut store, &c, &[top1 - 0.1, *top1]),
            ));
        }
    }
    let lone = config("reps", 1e-4, 1);
    ids.push((1e-4, 1, record(&mut store, &lone, &[0.5, 0.6])));
    ids
}

#[test]
fn seeds_group_into_replicates_with_mean_std_and_interval() {
    let s = groups::stats(&[0.80, 0.82, 0.84]).unwrap();
    assert!((s.mean - 0.82).abs() < 1e-12);
    assert!((s.std.unwrap() - 0.02).abs() < 1e-12);
    let (lo, hi) = s.ci95.unwrap();
    let half = 4.303 * 0.02 / 3f64.sqrt();
    assert!((lo - (0.82 - half)).abs() < 1e-9 && (hi - (0.82 + half)).abs() < 1e-9);
    let two = groups::stats(&[0.5, 0.7]).unwrap();
    assert!(two.ci95.is_none(), "no interval below three seeds");
    assert!(groups::stats(&[0.5]).unwrap().std.is_none());

    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    hand_made(&runs);
    let out = vitrun(&["ls", "--group", "--runs-dir", runs.to_str().unwrap()])
        .output()
        .unwrap();
    let listing = text(&out);
    assert!(out.status.success(), "{listing}");
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 4, "a header and three groups: {listing}");
    assert!(
        lines[1].contains("82.00%")
            && lines[1].contains("± 2.00")
            && lines[1].contains("[77.03, 86.97]"),
        "the best group first, with its std and interval: {listing}"
    );
    assert!(
        lines[1].contains("optimizer.lr=0.001") && lines[1].starts_with("  3"),
        "{listing}"
    );
    assert!(
        lines[2].contains("72.00%") && lines[2].contains("optimizer.lr=0.0003"),
        "{listing}"
    );
    assert!(
        lines[3].contains("60.00%") && lines[3].starts_with("  1"),
        "{listing}"
    );
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.split_whitespace().nth(1) == Some("top1")),
        "each row names its metric: {listing}"
    );
    let out = vitrun(&[
        "ls",
        "--group",
        "--json",
        "--runs-dir",
        runs.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    let groups: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(groups[0]["n"], 3);
    assert_eq!(groups[0]["metric"], "val/top1");
    assert!((groups[0]["mean"].as_f64().unwrap() - 0.82).abs() < 1e-9);
    assert_eq!(groups[0]["trials"].as_array().unwrap().len(), 3);
    assert!(groups[2]["ci95"].is_null() && groups[2]["std"].is_null());
}

fn export(runs: &Path, args: &[&str]) -> PathBuf {
    let out = vitrun(
        &[
            &[
                "export-metrics",
                "reps",
                "--runs-dir",
                runs.to_str().unwrap(),
            ],
            args,
        ]
        .concat(),
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let path = args[args.iter().position(|a| *a == "--out").unwrap() + 1];
    PathBuf::from(path)
}

/// The store's metric rows as (trial, split, name, step, epoch, value), sorted.
fn store_rows(runs: &Path) -> Vec<(String, String, String, i64, i64, f64)> {
    let store = Store::open(&runs.join("vitrun.sqlite")).unwrap();
    let mut rows = Vec::new();
    for t in store.trials(Some("reps")).unwrap() {
        for m in store.metrics(&t.id).unwrap() {
            rows.push((t.id.clone(), m.split, m.name, m.step, m.epoch, m.value));
        }
    }
    rows.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    rows
}

fn sorted(
    mut rows: Vec<(String, String, String, i64, i64, f64)>,
) -> Vec<(String, String, String, i64, i64, f64)> {
    rows.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    rows
}

#[test]
fn exports_read_back_equal_to_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    hand_made(&runs);
    let expected = store_rows(&runs);
    assert_eq!(expected.len(), 7 * 4);

    let csv_path = dir.path().join("m.csv");
    export(&runs, &["--out", csv_path.to_str().unwrap()]);
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert!(
        header.contains(&"optimizer.lr".to_string()) && header.contains(&"seed".to_string()),
        "swept parameters are columns: {header:?}"
    );
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (
                r[col("trial")].to_string(),
                r[col("split")].to_string(),
                r[col("name")].to_string(),
                r[col("step")].parse().unwrap(),
                r[col("epoch")].parse().unwrap(),
                r[col("value")].parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(sorted(rows), expected, "CSV");

    // `--out -` writes the same bytes to stdout, and the count to stderr.
    let stdout = vitrun(&[
        "export-metrics",
        "reps",
        "--runs-dir",
        runs.to_str().unwrap(),
        "--out",
        "-",
        "--format",
        "csv",
    ])
    .output()
    .unwrap();
    assert!(stdout.status.success(), "{}", text(&stdout));
    assert_eq!(stdout.stdout, std::fs::read(&csv_path).unwrap());
    assert!(
        text(&stdout).contains("export: 28 rows to stdout"),
        "{}",
        text(&stdout)
    );
    let no_format = vitrun(&[
        "export-metrics",
        "reps",
        "--runs-dir",
        runs.to_str().unwrap(),
        "--out",
        "-",
    ])
    .output()
    .unwrap();
    assert_eq!(no_format.status.code(), Some(1));
    assert!(
        text(&no_format).contains("pass --format"),
        "{}",
        text(&no_format)
    );

    let json_path = dir.path().join("m.json");
    export(&runs, &["--out", json_path.to_str().unwrap()]);
    let records: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert!(
        records[0]["optimizer.lr"].is_f64(),
        "numbers stay numbers: {}",
        records[0]
    );
    let rows = records
        .iter()
        .map(|r| {
            (
                r["trial"].as_str().unwrap().to_string(),
                r["split"].as_str().unwrap().to_string(),
                r["name"].as_str().unwrap().to_string(),
                r["step"].as_i64().unwrap(),
                r["epoch"].as_i64().unwrap(),
                r["value"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(sorted(rows), expected, "JSON");

    let pq_path = dir.path().join("m.parquet");
    export(&runs, &["--out", pq_path.to_str().unwrap()]);
    let file = std::fs::File::open(&pq_path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let text = |n: &str| {
            batch
                .column_by_name(n)
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone()
        };
        let int = |n: &str| {
            batch
                .column_by_name(n)
                .unwrap()
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .clone()
        };
        let float = |n: &str| {
            batch
                .column_by_name(n)
                .unwrap()
                .as_any()
                .downcast_ref::<Float64Array>()
                .unwrap()
                .clone()
        };
        let (trial, split, name) = (text("trial"), text("split"), text("name"));
        let (step, epoch, value) = (int("step"), int("epoch"), float("value"));
        assert!(
            float("optimizer.lr").len() == batch.num_rows(),
            "typed parameter column"
        );
        for i in 0..batch.num_rows() {
            rows.push((
                trial.value(i).to_string(),
                split.value(i).to_string(),
                name.value(i).to_string(),
                step.value(i),
                epoch.value(i),
                value.value(i),
            ));
        }
    }
    assert_eq!(sorted(rows), expected, "Parquet");

    let wide_path = dir.path().join("w.csv");
    export(&runs, &["--wide", "--out", wide_path.to_str().unwrap()]);
    let mut reader = csv::Reader::from_path(&wide_path).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 7, "one row per trial");
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("{name} in {header:?}"))
    };
    for r in &records {
        let best: f64 = r[col("val_top1_best")].parse().unwrap();
        let last: f64 = r[col("val_top1_final")].parse().unwrap();
        let loss_best: f64 = r[col("val_loss_best")].parse().unwrap();
        assert_eq!(best, last, "top-1 rose, so its best is its last");
        assert!(
            (loss_best - (2.0 - last)).abs() < 1e-12,
            "losses: lowest is best"
        );
    }

    let out = vitrun(&[
        "export-metrics",
        "reps",
        "--runs-dir",
        runs.to_str().unwrap(),
        "--out",
        "x.txt",
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("--format"), "{}", text(&out));
}

#[test]
fn diff_shows_only_what_differs() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let ids = hand_made(&runs);
    let (a, b) = (&ids[0].2, &ids[4].2);
    let out = vitrun(&[
        "diff",
        &a[..6],
        &b[..6],
        "--runs-dir",
        runs.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    let diff = text(&out);
    assert!(out.status.success(), "{diff}");
    assert!(diff.contains("config (2 keys differ)"), "{diff}");
    let config: Vec<&str> = diff
        .split("config (")
        .nth(1)
        .unwrap()
        .split("provenance")
        .next()
        .unwrap()
        .lines()
        .skip(2)
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(config.len(), 2, "{diff}");
    assert!(
        config
            .iter()
            .any(|l| l.contains("optimizer.lr") && l.contains("0.001") && l.contains("0.0003")),
        "{diff}"
    );
    assert!(
        config
            .iter()
            .any(|l| l.contains("seed") && l.contains('1') && l.contains('2')),
        "{diff}"
    );
    assert!(diff.contains("vitrun_version"), "{diff}");
    assert!(
        diff.contains("val/top1") && diff.contains("(A better)"),
        "{diff}"
    );
    let json = |args: &[&str]| -> serde_json::Value {
        let out = vitrun(args).output().unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
    };
    let runs_arg = runs.to_str().unwrap();
    let d = json(&["diff", &a[..6], &b[..6], "--json", "--runs-dir", runs_arg]);
    assert_eq!(
        (d["a"].as_str(), d["b"].as_str()),
        (Some(&a[..]), Some(&b[..]))
    );
    let keys: Vec<&str> = d["config"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["optimizer.lr", "seed"]);
    let top1 = d["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "val/top1")
        .unwrap();
    assert_eq!(top1["better"], "a");
    assert!(top1["a"].as_f64().unwrap() > top1["b"].as_f64().unwrap());
    let out = vitrun(&["diff", &a[..6], &b[..6], "-q", "--runs-dir", runs_arg])
        .output()
        .unwrap();
    assert_eq!(text(&out), "optimizer.lr\nseed\n");
    let out = vitrun(&[
        "diff",
        "zzzz",
        &a[..6],
        "--runs-dir",
        runs.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("no trial id starts with \"zzzz\""),
        "{}",
        text(&out)
    );
}

#[test]
fn conditional_axes_create_only_the_points_that_apply() {
    let dir = tempfile::tempdir().unwrap();
    let file = experiment(
        dir.path(),
        "cond",
        "name = \"cond\"\n[train]\nepochs = 1\n[sweep]\n\"optimizer.name\" = [\"adamw\", \"sgd\"]\n\"optimizer.momentum\" = { values = [0.8, 0.9, 0.95], when = { \"optimizer.name\" = \"sgd\" } }\n\"model.depth\" = [2, 6]\n\"model.drop_path\" = { values = [0.0, 0.1], when = { \"model.depth\" = { min = 6 } } }\n",
    );
    let loaded = load_with_env(&file, &[], Vec::new()).unwrap();
    let p = plan(&loaded).unwrap();
    // adamw: depth 2 (1) + depth 6 × drop_path 2 = 3; sgd × 3 momenta: (1 + 2) each = 9.
    assert_eq!(
        p.trials.len(),
        12,
        "{:?}",
        p.trials.iter().map(|t| t.describe()).collect::<Vec<_>>()
    );
    assert_eq!(p.points, 24);
    assert_eq!(p.not_applicable, 12);
    for t in &p.trials {
        let has = |k: &str| t.point.iter().any(|(key, _)| key == k);
        assert_eq!(
            has("optimizer.momentum"),
            t.config.optimizer.name == vitrun::config::OptimizerKind::Sgd,
            "{}",
            t.describe()
        );
        assert_eq!(
            has("model.drop_path"),
            t.config.model.depth == Some(6),
            "{}",
            t.describe()
        );
    }
    let ids: std::collections::HashSet<&String> = p.trials.iter().map(|t| &t.id).collect();
    assert_eq!(ids.len(), 12, "no duplicates");
    let out = vitrun(&["plan", file.to_str().unwrap()]).output().unwrap();
    assert!(
        text(&out).contains("12 points not created: a conditional axis does not apply"),
        "{}",
        text(&out)
    );
    // --json: the same trials with their values; --quiet: only their ids, in plan order.
    let out = vitrun(&["plan", file.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["not_applicable"], 12);
    let rows = json["trials"].as_array().unwrap();
    assert_eq!(rows.len(), 12);
    for (row, t) in rows.iter().zip(&p.trials) {
        assert_eq!(row["id"], t.id.as_str());
        assert_eq!(row["status"], "new");
        let values = row["values"].as_object().unwrap();
        assert_eq!(values.len(), t.point.len(), "{row}");
        assert_eq!(
            values["optimizer.name"].as_str().unwrap(),
            t.point
                .iter()
                .find(|(k, _)| k == "optimizer.name")
                .and_then(|(_, v)| v.as_str())
                .unwrap()
        );
    }
    let out = vitrun(&["plan", file.to_str().unwrap(), "-q"])
        .output()
        .unwrap();
    let ids: Vec<&str> = p.trials.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(text(&out), format!("{}\n", ids.join("\n")));
    let out = vitrun(&["plan", file.to_str().unwrap(), "-q", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "--quiet and --json conflict");

    for (when, expect) in [
        (
            "{ \"optimizer.nme\" = \"sgd\" }",
            "`optimizer.nme` is not a config key; did you mean `optimizer.name`?",
        ),
        (
            "{ \"optimizer.momentum\" = 0.9 }",
            "cannot depend on itself",
        ),
        (
            "{ \"model.depth\" = { above = 3 } }",
            "unknown test `above`",
        ),
        ("\"sgd\"", "`when` is a table"),
    ] {
        let bad = experiment(
            dir.path(),
            "bad",
            &format!("name = \"bad\"\n[sweep]\n\"optimizer.momentum\" = {{ values = [0.9], when = {when} }}\n"),
        );
        let out = vitrun(&["check", bad.to_str().unwrap()]).output().unwrap();
        let msg = text(&out);
        assert_eq!(out.status.code(), Some(1), "{msg}");
        assert!(
            msg.contains("bad.toml:3")
                && msg.contains("sweep.optimizer.momentum.when")
                && msg.contains(expect),
            "{msg}"
        );
    }
}

/// A store with `n` trials of a sweep over lr × weight decay × seed, 10 epochs of metrics each.
fn big_sweep(runs: &Path, n: usize) {
    let mut store = Store::open(&runs.join("vitrun.sqlite")).unwrap();
    let lrs = n / 20;
    for i in 0..n {
        let mut c = config("big", 1e-4 * (1 + i % lrs) as f64, (i / lrs % 4) as u64);
        c.optimizer.weight_decay = 0.01 * (i / lrs / 4) as f64;
        let quality = (i % lrs) as f64 / lrs as f64;
        let curve: Vec<f64> = (1..=10)
            .map(|e| 0.2 + 0.6 * quality * e as f64 / 10.0 + 0.01 * ((i * 7 + e) % 5) as f64)
            .collect();
        record(&mut store, &c, &curve);
    }
}

#[test]
fn a_thousand_trial_report_stays_usable_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    big_sweep(&runs, 1000);
    let started = std::time::Instant::now();
    let out = vitrun(&["report", "big", "--runs-dir", runs.to_str().unwrap()])
        .output()
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", text(&out));
    let report = runs.join("big/report");
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    let page_kib = std::fs::read_dir(&report)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum::<u64>()
        / 1024;
    println!(
        "1000-trial report: {secs:.1} s, {page_kib} KiB in its folder, index.html {} KiB",
        html.len() / 1024
    );
    assert!(secs < 60.0, "{secs:.1} s");
    assert!(html.contains("class=\"sortable\"") && html.contains("Parameter importance"));
    assert!(
        html.contains("Replicates (seeds)"),
        "seed groups are summarised"
    );
    let svg = std::fs::metadata(report.join("curve_val_top1.svg"))
        .unwrap()
        .len();
    assert!(
        svg < 400_000,
        "top-k and a density, not 1000 lines: {svg} bytes"
    );

    let probe = report.join("probe.html");
    probe_page(
        &probe,
        r#"const images = Array.from(doc.images);
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).length;
  const table = doc.querySelector('table.sortable');
  const col = Array.from(table.tHead.rows[0].cells).findIndex(c => c.textContent.startsWith('best'));
  const first = () => table.tBodies[0].rows[0].cells[col].textContent;
  const before = first();
  table.tHead.rows[0].cells[col].click();
  const ascending = first();
  const box = doc.querySelector('input.filter');
  box.value = 'no-such-row'; box.dispatchEvent(new Event('input'));
  const visible = Array.from(table.tBodies[0].rows).filter(r => r.style.display !== 'none').length;
  out('IMAGES ' + images.length + ' BROKEN ' + broken + ' ROWS ' + table.tBodies[0].rows.length +
    ' FIRST ' + before + ' ASC ' + ascending + ' VISIBLE ' + visible + ' END');"#,
    );
    let Some(dom) = browser_dom(&probe) else {
        return;
    };
    let found = &dom[dom
        .find("IMAGES ")
        .unwrap_or_else(|| panic!("the probe did not run: {dom}"))..];
    println!(
        "browser: {}",
        &found[..found.find(" END").unwrap_or(found.len())]
    );
    let field = |name: &str| {
        found
            .split(&format!("{name} "))
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_string()
    };
    assert!(field("IMAGES").parse::<usize>().unwrap() >= 4, "{found}");
    let charts = page_data(&html);
    let lines = charts["charts"][0]["lines"].as_array().unwrap().len();
    assert_eq!(lines, 50, "the browser charts draw the best 50 trials");
    assert!(
        html.len() < 6_000_000,
        "a thousand trial views stay light: {} bytes",
        html.len()
    );
    assert_eq!(field("BROKEN"), "0", "{found}");
    assert_eq!(field("ROWS"), "1000", "{found}");
    let pct = |s: String| s.trim_end_matches('%').parse::<f64>().unwrap();
    assert!(
        pct(field("FIRST")) > pct(field("ASC")),
        "a click sorts ascending: {found}"
    );
    assert_eq!(
        field("VISIBLE"),
        "0",
        "the filter hides what does not match: {found}"
    );
}

#[test]
fn a_parameter_unset_for_some_trials_exports_as_null_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let mut store = Store::open(&runs.join("vitrun.sqlite")).unwrap();
    let plain = config("reps", 1e-3, 1);
    let mut tuned = config("reps", 1e-3, 1);
    tuned.model.pretrained = Some("weights.safetensors".into());
    let plain_id = record(&mut store, &plain, &[0.5]);
    record(&mut store, &tuned, &[0.6]);
    let pq = dir.path().join("m.parquet");
    export(&runs, &["--wide", "--out", pq.to_str().unwrap()]);
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&pq).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap();
    for batch in reader {
        let batch = batch.unwrap();
        let trials = batch
            .column_by_name("trial")
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .clone();
        let column = batch.column_by_name("model.pretrained").unwrap();
        for i in 0..batch.num_rows() {
            assert_eq!(column.is_null(i), trials.value(i) == plain_id, "row {i}");
        }
    }
    let json = dir.path().join("m.json");
    export(&runs, &["--wide", "--out", json.to_str().unwrap()]);
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for r in &rows {
        let unset = r["trial"] == plain_id.as_str();
        assert_eq!(r["model.pretrained"].is_null(), unset, "{r}");
    }
}
