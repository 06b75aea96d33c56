//! End to end through the `vitrun` binary: training learns, the store and checkpoints are
//! complete, a killed trial resumes to the same numbers, divergence and bad input are reported.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use vitrun::contract::Status;
use vitrun::track::Store;

use crate::common::series;

const TINY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/configs/tiny_synthetic.toml"
);
const METRICS: [(&str, &str); 8] = [
    ("train", "loss"),
    ("train", "top1"),
    ("train", "lr"),
    ("train", "images_per_sec"),
    ("train", "skipped_images"),
    ("val", "loss"),
    ("val", "top1"),
    ("val", "skipped_images"),
];

const TINY_LESIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/configs/tiny_lesions.toml"
);

const TINY_DETECTION: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/configs/tiny_detection.toml"
);

fn vitrun(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vitrun"));
    cmd.args(args).env_remove("VITRUN_TRAIN__EPOCHS");
    cmd
}

fn run(runs: &Path, extra: &[&str]) -> Output {
    let runs_set = format!("train.runs_dir={:?}", runs.display().to_string());
    let mut args = vec!["run", TINY, "--quiet", "--set", &runs_set];
    args.extend_from_slice(extra);
    vitrun(&args).output().unwrap()
}

/// Runs the tiny experiment and asserts it finished.
fn run_ok(runs: &Path, extra: &[&str]) -> Output {
    let out = run(runs, extra);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Starts the tiny experiment in the background.
fn spawn_run(runs: &Path, extra: &[&str]) -> Child {
    let runs_set = format!("train.runs_dir={:?}", runs.display().to_string());
    let mut args = vec!["run", TINY, "--quiet", "--set", &runs_set];
    args.extend_from_slice(extra);
    vitrun(&args).spawn().unwrap()
}

/// Polls the (only) trial's `last/progress.json` until `ready` accepts it; returns its text.
fn wait_for_progress(runs: &Path, ready: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    let entries = |dir: &Path| std::fs::read_dir(dir).into_iter().flatten().flatten();
    loop {
        let found = entries(runs)
            .filter(|experiment| experiment.path().is_dir())
            .flat_map(|experiment| entries(&experiment.path()))
            .find_map(|trial| {
                std::fs::read_to_string(trial.path().join("last/progress.json")).ok()
            });
        if let Some(p) = found.filter(|p| ready(p)) {
            return p;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs the experiment file `config` into `runs` and asserts it finished; returns the store,
/// the trial's id and what it printed.
fn run_tiny(config: &str, runs: &Path) -> (Store, String, String) {
    let runs_set = format!("train.runs_dir={:?}", runs.display().to_string());
    let out = vitrun(&["run", config, "--quiet", "--set", &runs_set])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = Store::open(&runs.join("vitrun.sqlite")).unwrap();
    let id = store.trials(None).unwrap()[0].id.clone();
    (store, id, String::from_utf8_lossy(&out.stdout).into_owned())
}

fn only_trial(runs: &Path) -> (Store, String, PathBuf) {
    let store = Store::open(&runs.join("vitrun.sqlite")).unwrap();
    let trials = store.trials(None).unwrap();
    assert_eq!(trials.len(), 1);
    let id = trials[0].id.clone();
    let dir = runs.join("tiny_synthetic").join(&id);
    (store, id, dir)
}

#[test]
fn training_learns_and_records_every_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_ok(tmp.path(), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("finished: best val top1"), "{stdout}");
    let (store, id, dir) = only_trial(tmp.path());
    assert_eq!(store.status(&id).unwrap(), Some(Status::Finished));
    for (split, name) in METRICS {
        let epochs = store
            .count(&format!("SELECT COUNT(DISTINCT epoch) FROM metrics WHERE trial = ?1 AND split = '{split}' AND name = '{name}'"), &id)
            .unwrap();
        let rows = store
            .count(&format!("SELECT COUNT(*) FROM metrics WHERE trial = ?1 AND split = '{split}' AND name = '{name}'"), &id)
            .unwrap();
        assert_eq!((epochs, rows), (10, 10), "{split}/{name}");
    }
    assert_eq!(
        store
            .count(
                "SELECT COUNT(*) FROM metrics WHERE trial = ?1 AND name = 'top5'",
                &id
            )
            .unwrap(),
        0,
        "top-5 of 2 classes is always 100 %: not logged"
    );
    assert!(
        store
            .count(
                "SELECT COUNT(*) FROM metrics WHERE trial = ?1 AND name = 'step_loss'",
                &id
            )
            .unwrap()
            >= 10
    );
    let train_loss = series(&store, &id, "train", "loss");
    let val_loss = series(&store, &id, "val", "loss");
    let top1 = series(&store, &id, "val", "top1");
    assert!(
        train_loss[9] < 0.9 * train_loss[0],
        "train loss falls: {train_loss:?}"
    );
    assert!(val_loss[9] < val_loss[0], "val loss falls: {val_loss:?}");
    assert!(top1[9] >= 0.7, "two classes, chance is 0.5: {top1:?}");
    let lr = series(&store, &id, "train", "lr");
    assert!(lr[9] < lr[1], "cosine decays: {lr:?}");
    for file in [
        "config.toml",
        "last/model.safetensors",
        "last/optimizer.safetensors",
        "last/progress.json",
        "best/model.safetensors",
    ] {
        assert!(dir.join(file).is_file(), "missing {file}");
    }
    assert_eq!(
        store
            .count("SELECT COUNT(*) FROM artifacts WHERE trial = ?1", &id)
            .unwrap(),
        3
    );
    assert_eq!(store.count("SELECT COUNT(*) FROM params WHERE trial = ?1 AND key = 'optimizer.lr' AND value = '0.002'", &id).unwrap(), 1);
    assert_eq!(store.count("SELECT COUNT(*) FROM trials WHERE id = ?1 AND burn_version = '0.21.0' AND host IS NOT NULL AND seed = 7", &id).unwrap(), 1);
    let best = vitrun::model::read_state_dict(&dir.join("best/model.safetensors")).unwrap();
    assert_eq!(
        best["blocks.0.attn.qkv.weight"].shape,
        [144, 48],
        "timm layout"
    );

    let ls = vitrun(&["ls", "--runs-dir", tmp.path().to_str().unwrap()])
        .output()
        .unwrap();
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(ls.contains(&id) && ls.contains("finished"), "{ls}");
}

#[test]
fn conv_stem_vits_learn_and_export_refuses_them() {
    let mut last = None;
    // Two plain convs per stage start slower (the default conv init shrinks the signal at
    // each ReLU), so that stem gets 20 epochs where the others, BatchNorm's too, get the
    // file's 10.
    for (kind, depth, norm, epochs) in [
        ("strided", 1, "none", 10),
        ("pooled", 1, "none", 10),
        ("pooled", 2, "none", 20),
        ("pooled", 2, "batch", 10),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let kind_set = format!("model.conv_stem_kind=\"{kind}\"");
        let depth_set = format!("model.conv_stem_depth={depth}");
        let norm_set = format!("model.conv_stem_norm=\"{norm}\"");
        let epochs_set = format!("train.epochs={epochs}");
        run_ok(
            tmp.path(),
            &[
                "--set",
                "model.conv_stem=[8, 16]",
                "--set",
                &kind_set,
                "--set",
                &depth_set,
                "--set",
                &norm_set,
                "--set",
                &epochs_set,
            ],
        );
        let (store, id, dir) = only_trial(tmp.path());
        let train_loss = series(&store, &id, "train", "loss");
        let top1 = series(&store, &id, "val", "top1");
        let case = format!("{kind} × {depth}, norm {norm}");
        assert_eq!(train_loss.len(), epochs);
        assert!(
            train_loss[epochs - 1] < 0.9 * train_loss[0],
            "{case}: train loss falls: {train_loss:?}"
        );
        assert!(
            top1[epochs - 1] >= 0.7,
            "{case}: two classes, chance is 0.5: {top1:?}"
        );
        let best = vitrun::model::read_state_dict(&dir.join("best/model.safetensors")).unwrap();
        let mut shapes = vec![[8, 3, 3, 3]];
        if depth == 2 {
            shapes.push([8, 8, 3, 3]);
        }
        shapes.push([16, 8, 3, 3]);
        if depth == 2 {
            shapes.push([16, 16, 3, 3]);
        }
        for (index, shape) in shapes.iter().enumerate() {
            let name = format!("patch_embed.stem.{index}.weight");
            assert_eq!(best[&name].shape, shape, "{case}: {name}");
            let norm_name = |what: &str| format!("patch_embed.stem_norm.{index}.{what}");
            if norm == "none" {
                assert!(!best.contains_key(&norm_name("weight")), "{case}");
                continue;
            }
            for what in ["weight", "bias", "running_mean", "running_var"] {
                assert_eq!(best[&norm_name(what)].shape, [shape[0]], "{case}: {what}");
            }
            let moved = |what: &str, start: f32| {
                best[&norm_name(what)]
                    .data
                    .iter()
                    .any(|&v| (v - start).abs() > 1e-3)
            };
            assert!(
                moved("running_mean", 0.0) && moved("running_var", 1.0),
                "{case}: the running statistics are trained and saved"
            );
        }
        assert!(!best.contains_key(&format!("patch_embed.stem.{}.weight", shapes.len())));
        assert_eq!(best["patch_embed.proj.weight"].shape, [48, 16, 1, 1]);
        assert_eq!(
            best["pos_embed"].shape,
            [1, 17, 48],
            "a 4×4 grid, as patch 4"
        );
        last = Some((tmp, id));
    }
    let (tmp, id) = last.expect("four runs");

    let out = tmp.path().join("model.safetensors");
    let export = vitrun(&[
        "export",
        &id,
        "--out",
        out.to_str().unwrap(),
        "--runs-dir",
        tmp.path().to_str().unwrap(),
    ])
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&export.stderr);
    assert_eq!(export.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("model.conv_stem = [8, 16]") && stderr.contains("vitrun predict"),
        "{stderr}"
    );
    assert!(!out.exists());
}

#[test]
fn a_killed_trial_resumes_to_the_same_numbers() {
    killed_and_resumed_matches_straight(&[]);
}

/// The stem's BatchNorm running statistics are part of what a checkpoint restores.
#[test]
fn a_killed_batch_norm_stem_trial_resumes_to_the_same_numbers() {
    killed_and_resumed_matches_straight(&[
        "--set",
        "model.conv_stem=[8, 16]",
        "--set",
        "model.conv_stem_kind=\"pooled\"",
        "--set",
        "model.conv_stem_norm=\"batch\"",
    ]);
}

/// A trial killed (-9) after its second or third epoch and resumed ends with the same metrics
/// and weights as one run straight through.
fn killed_and_resumed_matches_straight(extra: &[&str]) {
    let args = [&["--set", "train.epochs=6"][..], extra].concat();
    let straight = tempfile::tempdir().unwrap();
    run_ok(straight.path(), &args);

    let killed = tempfile::tempdir().unwrap();
    let mut child = spawn_run(killed.path(), &args);
    let progress = wait_for_progress(killed.path(), |p| {
        p.contains("\"epoch\": 2") || p.contains("\"epoch\": 3")
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!progress.contains("\"epoch\": 6"));
    let (store, id, _) = only_trial(killed.path());
    assert_eq!(
        store.status(&id).unwrap(),
        Some(Status::Running),
        "a kill -9 leaves it running"
    );
    drop(store);

    run_ok(killed.path(), &[&args[..], &["--resume"][..]].concat());
    let (a, a_id, a_dir) = only_trial(straight.path());
    let (b, b_id, b_dir) = only_trial(killed.path());
    let weights = |dir: &Path| {
        vitrun::model::read_state_dict(&dir.join("best/model.safetensors"))
            .unwrap()
            .into_iter()
            .map(|(name, t)| (name, t.data))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    assert!(
        weights(&a_dir) == weights(&b_dir),
        "the best weights differ"
    );
    assert_eq!(a_id, b_id, "same config, same trial id");
    assert_eq!(b.status(&b_id).unwrap(), Some(Status::Finished));
    for (split, name) in METRICS.iter().filter(|(_, n)| *n != "images_per_sec") {
        assert_eq!(
            series(&a, &a_id, split, name),
            series(&b, &b_id, split, name),
            "{split}/{name}"
        );
    }
    assert_eq!(
        b.count(
            "SELECT COUNT(*) FROM metrics WHERE trial = ?1 AND split = 'val' AND name = 'top1'",
            &b_id
        )
        .unwrap(),
        6,
        "no duplicate rows"
    );
    assert_eq!(
        b.count("SELECT attempts FROM trials WHERE id = ?1", &b_id)
            .unwrap(),
        2
    );
}

/// DeiT's ingredients at once: RandAugment, Mixup + CutMix with soft targets, repeated
/// augmentation and a weight average (milder than DeiT's, with normalised inputs and more
/// images, so that the tiny model learns within seconds whatever the seed: 86–88 % for
/// seeds 1–4).
const RECIPE: [&str; 20] = [
    "--set",
    "augment.normalize.enabled=true",
    "--set",
    "augment.rand_augment.enabled=true",
    "--set",
    "augment.rand_augment.magnitude=3",
    "--set",
    "augment.mixup.enabled=true",
    "--set",
    "augment.cutmix.enabled=true",
    "--set",
    "data.repeated_aug=2",
    "--set",
    "data.train_size=1600",
    "--set",
    "train.ema.enabled=true",
    "--set",
    "train.ema.decay=0.9",
    "--set",
    "train.epochs=8",
];

#[test]
fn the_deit_recipe_learns_and_a_killed_trial_resumes_to_the_same_average() {
    let straight = tempfile::tempdir().unwrap();
    run_ok(straight.path(), &RECIPE);
    let (a, a_id, a_dir) = only_trial(straight.path());
    let train_loss = series(&a, &a_id, "train", "loss");
    let ema_top1 = series(&a, &a_id, "val_ema", "top1");
    assert!(
        train_loss[7] < 0.95 * train_loss[0],
        "soft-target loss falls: {train_loss:?}"
    );
    assert_eq!(ema_top1.len(), 8, "the average is validated every epoch");
    assert!(
        ema_top1[7] >= 0.7,
        "two classes, chance is 0.5: {ema_top1:?}"
    );
    assert!(a_dir.join("last/ema.safetensors").is_file());

    let killed = tempfile::tempdir().unwrap();
    let mut child = spawn_run(killed.path(), &RECIPE);
    let progress = wait_for_progress(killed.path(), |p| {
        p.contains("\"epoch\": 3") || p.contains("\"epoch\": 4")
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!progress.contains("\"epoch\": 8"));
    let mut resume = RECIPE.to_vec();
    resume.push("--resume");
    run_ok(killed.path(), &resume);
    let (b, b_id, b_dir) = only_trial(killed.path());
    assert_eq!(a_id, b_id);
    for (split, name) in [
        ("train", "loss"),
        ("train", "top1"),
        ("val", "loss"),
        ("val", "top1"),
        ("val_ema", "loss"),
        ("val_ema", "top1"),
    ] {
        assert_eq!(
            series(&a, &a_id, split, name),
            series(&b, &b_id, split, name),
            "{split}/{name}"
        );
    }
    for file in [
        "last/ema.safetensors",
        "last/model.safetensors",
        "best/model.safetensors",
    ] {
        assert!(
            std::fs::read(a_dir.join(file)).unwrap() == std::fs::read(b_dir.join(file)).unwrap(),
            "{file} differs after the kill and resume"
        );
    }
}

/// Ctrl-C in the middle of an epoch saves where the epoch stood (weights, optimizer, weight
/// average, running sums, the next batch); `vitrun resume` continues from that batch and ends
/// with the very numbers and weights of an uninterrupted run, with dropout, drop-path,
/// gradient accumulation, Mixup/CutMix and repeated augmentation all drawing at random.
#[test]
fn ctrl_c_mid_epoch_resumes_from_the_next_batch_to_the_same_numbers() {
    let mut args = RECIPE[..RECIPE.len() - 2].to_vec();
    args.extend([
        "--set",
        "train.epochs=4",
        "--set",
        "model.dropout=0.1",
        "--set",
        "model.drop_path=0.1",
        "--set",
        "train.grad_accumulation=2",
    ]);
    let straight = tempfile::tempdir().unwrap();
    run_ok(straight.path(), &args);

    let stopped = tempfile::tempdir().unwrap();
    let mut child = spawn_run(stopped.path(), &args);
    wait_for_progress(stopped.path(), |p| p.contains("\"epoch\": 1"));
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let (store, id, dir) = only_trial(stopped.path());
    let progress = std::fs::read_to_string(dir.join("last/progress.json")).unwrap();
    assert!(
        progress.contains("\"partial\"") && progress.contains("\"batches_done\""),
        "a mid-epoch checkpoint: {progress}"
    );
    let error = store
        .count(
            "SELECT COUNT(*) FROM trials WHERE id = ?1 AND error LIKE '%continues in epoch % after batch % of %'",
            &id,
        )
        .unwrap();
    assert_eq!(error, 1, "the hint names the batch it continues after");
    drop(store);
    let runs = stopped.path().display().to_string();
    let out = vitrun(&["resume", &id, "--runs-dir", &runs, "--quiet"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (a, a_id, a_dir) = only_trial(straight.path());
    let (b, b_id, b_dir) = only_trial(stopped.path());
    assert_eq!(a_id, b_id);
    for (split, name) in [
        ("train", "loss"),
        ("train", "top1"),
        ("train", "step_loss"),
        ("train", "lr"),
        ("val", "loss"),
        ("val", "top1"),
        ("val_ema", "loss"),
        ("val_ema", "top1"),
    ] {
        let (x, y) = (
            series(&a, &a_id, split, name),
            series(&b, &b_id, split, name),
        );
        assert!(!x.is_empty(), "{split}/{name}");
        assert_eq!(x, y, "{split}/{name}");
    }
    for file in [
        "last/ema.safetensors",
        "last/model.safetensors",
        "last/optimizer.safetensors",
        "best/model.safetensors",
    ] {
        assert!(
            std::fs::read(a_dir.join(file)).unwrap() == std::fs::read(b_dir.join(file)).unwrap(),
            "{file} differs after the mid-epoch stop and resume"
        );
    }
}

#[test]
fn the_weight_average_only_watches_the_training() {
    let plain = tempfile::tempdir().unwrap();
    run_ok(plain.path(), &["--set", "train.epochs=3"]);
    let averaged = tempfile::tempdir().unwrap();
    run_ok(
        averaged.path(),
        &["--set", "train.epochs=3", "--set", "train.ema.enabled=true"],
    );
    let (a, a_id, _) = only_trial(plain.path());
    let (b, b_id, _) = only_trial(averaged.path());
    for (split, name) in [("train", "loss"), ("val", "loss"), ("val", "top1")] {
        assert_eq!(
            series(&a, &a_id, split, name),
            series(&b, &b_id, split, name),
            "{split}/{name}: enabling train.ema changed the training"
        );
    }
    assert_eq!(series(&b, &b_id, "val_ema", "loss").len(), 3);
}

#[test]
fn a_diverging_trial_stops_with_status_diverged() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(
        tmp.path(),
        &[
            "--set",
            "optimizer.lr=1e12",
            "--set",
            "optimizer.grad_clip=0",
            "--set",
            "optimizer.warmup_epochs=0",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("diverged"));
    let (store, id, _) = only_trial(tmp.path());
    assert_eq!(store.status(&id).unwrap(), Some(Status::Diverged));
    assert_eq!(
        store
            .count(
                "SELECT COUNT(*) FROM events WHERE trial = ?1 AND kind = 'diverged'",
                &id
            )
            .unwrap(),
        1
    );
}

#[test]
fn bad_input_exits_1_with_a_one_line_cause() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(tmp.path(), &["--set", "model.patch_size=5"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("vitrun: error: ") && err.contains("model.patch_size"),
        "{err}"
    );
    let out = run(
        tmp.path(),
        &[
            "--set",
            "data.dataset=\"idx\"",
            "--set",
            "data.path=\"/no/such/dir\"",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("(--set): `data.path`: /no/such/dir does not exist; fix the path"),
        "{err}"
    );
    assert!(
        !tmp.path().join("vitrun.sqlite").exists(),
        "a typo in a data path leaves no failed trial behind"
    );
    let check = vitrun(&[
        "check",
        TINY,
        "--set",
        "data.dataset=\"image_folder\"",
        "--set",
        &format!("data.path={:?}", TINY),
    ])
    .output()
    .unwrap();
    assert_eq!(check.status.code(), Some(1));
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(
        err.contains("`data.path`: ") && err.contains("is not a folder"),
        "{err}"
    );
}

#[test]
fn check_prints_each_value_with_its_source() {
    let out = vitrun(&["check", TINY, "--set", "optimizer.lr=5e-4"])
        .env("VITRUN_TRAIN__BATCH_SIZE", "8")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} ")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line("optimizer.lr").contains("0.0005") && line("optimizer.lr").ends_with("# --set"),
        "{text}"
    );
    assert!(
        line("train.batch_size").ends_with("# env VITRUN_TRAIN__BATCH_SIZE"),
        "{text}"
    );
    assert!(
        line("train.epochs").ends_with(&format!("# {TINY}:30")),
        "the file and line: {text}"
    );
    assert!(line("optimizer.eps").ends_with("# default"), "{text}");
}

#[test]
fn report_without_a_store_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let out = vitrun(&["report", "--runs-dir", runs.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no run store at") && err.contains("vitrun run FILE"),
        "{err}"
    );
}

#[test]
fn ctrl_c_stops_cleanly_and_resume_finishes_the_trial() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = spawn_run(tmp.path(), &["--set", "train.epochs=8"]);
    wait_for_progress(tmp.path(), |_| true);
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    let (store, id, _) = only_trial(tmp.path());
    assert_eq!(status.code(), Some(130), "Ctrl-C exits 130");
    assert_eq!(store.status(&id).unwrap(), Some(Status::Interrupted));
    let hint = format!("interrupted during epoch%`vitrun resume {id}`%");
    let error = store
        .count(
            &format!("SELECT COUNT(*) FROM trials WHERE id = ?1 AND error LIKE '{hint}'"),
            &id,
        )
        .unwrap();
    assert_eq!(error, 1);
    drop(store);
    // The hint needs neither the file nor the --set overrides: the trial folder has its config.
    let runs = tmp.path().display().to_string();
    let out = vitrun(&["resume", &id[..6], "--runs-dir", &runs, "--quiet"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (store, again, _) = only_trial(tmp.path());
    assert_eq!(
        again, id,
        "the same trial, not the one without the overrides"
    );
    assert_eq!(store.status(&id).unwrap(), Some(Status::Finished));
    assert_eq!(series(&store, &id, "val", "top1").len(), 8);
    let attempts = store
        .count("SELECT attempts FROM trials WHERE id = ?1", &id)
        .unwrap();
    drop(store);

    // A finished trial is neither resumed nor retrained by surprise: both refuse with its
    // result, and its rows stay as they were; --force retrains it as a new attempt.
    for extra in [&["--resume"][..], &[]] {
        let out = run(
            tmp.path(),
            &[&["--set", "train.epochs=8"][..], extra].concat(),
        );
        let msg = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{msg}");
        assert!(
            msg.contains(&id) && msg.contains("finished") && msg.contains("--force"),
            "{msg}"
        );
        let (store, _, _) = only_trial(tmp.path());
        assert_eq!(series(&store, &id, "val", "top1").len(), 8);
        assert_eq!(
            store
                .count("SELECT attempts FROM trials WHERE id = ?1", &id)
                .unwrap(),
            attempts
        );
    }
    let out = vitrun(&["resume", &id, "--runs-dir", &runs])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("finished"));
    run_ok(tmp.path(), &["--set", "train.epochs=8", "--force"]);
    let (store, _, _) = only_trial(tmp.path());
    assert_eq!(
        store
            .count("SELECT attempts FROM trials WHERE id = ?1", &id)
            .unwrap(),
        attempts + 1
    );
    assert_eq!(
        series(&store, &id, "val", "top1").len(),
        8,
        "replaced, not appended"
    );
}

/// A tiny segmentation run: the pixel loss falls, and mIoU and Dice end well above predicting
/// background everywhere (mIoU = background IoU / 2, at most 0.5; Dice 0), all of it in the
/// store.
#[test]
fn a_tiny_segmentation_learns_lesion_masks() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, id, stdout) = run_tiny(TINY_LESIONS, tmp.path());
    assert!(stdout.starts_with("finished: best val miou"), "{stdout}");
    let loss = series(&store, &id, "train", "loss");
    let miou = series(&store, &id, "val", "miou");
    let dice = series(&store, &id, "val", "dice");
    assert_eq!((loss.len(), miou.len()), (12, 12));
    assert_eq!(series(&store, &id, "train", "pixel_acc").len(), 12);
    assert!(loss[11] < 0.7 * loss[0], "pixel loss falls: {loss:?}");
    assert!(
        miou[11] > 0.62,
        "mIoU {miou:?} vs all-background's at most 0.5"
    );
    assert_eq!(series(&store, &id, "val", "iou_lesion").len(), 12);
    assert!(dice[11] > 0.35, "lesion Dice {dice:?}");
    assert!(
        series(&store, &id, "val", "top1").is_empty(),
        "no classification metric"
    );
    let dir = tmp.path().join("tiny_lesions").join(&id);
    assert!(dir.join("best/model.safetensors").is_file());
    // ls, report and predict know the task: mIoU is the best column and the ranking metric,
    // and predict writes masks.
    let runs = tmp.path().display().to_string();
    let ls = vitrun(&["ls", "--runs-dir", &runs]).output().unwrap();
    let ls = String::from_utf8_lossy(&ls.stdout);
    let best = miou.iter().cloned().fold(f64::MIN, f64::max);
    assert!(ls.contains(&format!("miou {:.1}%", best * 100.0)), "{ls}");
    let report = vitrun(&["report", "--runs-dir", &runs]).output().unwrap();
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let report_dir = tmp.path().join("tiny_lesions").join("report");
    for panel in [
        "predictions.png",
        "per_class.png",
        "augmentations.png",
        "attention.png",
    ] {
        assert!(report_dir.join(panel).is_file(), "{panel}: {text}");
    }
    crate::report::browser_check(&report_dir);
    predict_writes_masks(tmp.path(), &id);
}

/// A segmentation run on NIfTI volumes (the committed fixtures: three 6×5×4 volumes, one held
/// out) goes end to end: slices are read, windowed, resized, trained on and validated.
#[test]
fn a_segmentation_trains_on_nifti_volumes() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("scans.toml");
    let scans = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nifti/scans");
    std::fs::write(
        &file,
        format!(
            "name = \"scans\"\n[data]\ndataset = \"nifti\"\npath = {:?}\nimage_size = 8\nchannels = 1\nval_split = 0.34\n[model]\nembed_dim = 16\ndepth = 1\nnum_heads = 2\npatch_size = 4\n[head]\ntask = \"segmentation\"\n[train]\nepochs = 2\nbatch_size = 4\nruns_dir = {:?}\n",
            scans.display().to_string(),
            tmp.path().join("runs").display().to_string()
        ),
    )
    .unwrap();
    let out = vitrun(&["run", file.to_str().unwrap(), "--quiet"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = Store::open(&tmp.path().join("runs/vitrun.sqlite")).unwrap();
    let id = store.trials(None).unwrap()[0].id.clone();
    assert_eq!(series(&store, &id, "val", "miou").len(), 2);
    assert_eq!(
        series(&store, &id, "val", "iou_background").len(),
        2,
        "the default class names"
    );
    // predict on a volume: a uint8 label volume on the input's grid with its affine.
    let runs = tmp.path().join("runs").display().to_string();
    let input = scans.join("images/case_b.nii");
    let out = tmp.path().join("labelled");
    let refused = vitrun(&["predict", "--runs-dir", &runs, &id, input.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains(
            "a volume's labels are written as a label volume; give them a folder with --out DIR"
        ),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let run = vitrun(&[
        "predict",
        "--runs-dir",
        &runs,
        &id,
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ])
    .output()
    .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&run.stdout).trim()).unwrap();
    let areas: u64 = line["areas"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(areas, 6 * 5 * 4);
    let labels = vitrun::data::nifti::read(&out.join("case_b.labels.nii.gz"), 1 << 20).unwrap();
    let image = vitrun::data::nifti::read(&input, 1 << 20).unwrap();
    assert_eq!(labels.dims, [6, 5, 4]);
    assert_eq!(
        labels.affine.map(|r| r.map(|v| v as f32)),
        image.affine.map(|r| r.map(|v| v as f32))
    );
    assert!(labels
        .voxels
        .iter()
        .all(|&v| v == 0.0 || v == 1.0 || v == 2.0));
}

/// Segmenter's mask transformer and the U-Net decoder (skips from both blocks; half the epochs,
/// its full-resolution convs cost 3× the linear decoder's step) learn the lesion masks too:
/// the loss falls and mIoU ends well above all-background's at most 0.5; predict runs on them.
#[test]
fn the_mask_and_unet_decoders_learn_lesion_masks() {
    for (decoder, epochs) in [("mask", 12), ("unet", 6)] {
        let tmp = tempfile::tempdir().unwrap();
        let runs = tmp.path().display().to_string();
        let out = vitrun(&[
            "run",
            TINY_LESIONS,
            "--quiet",
            "--set",
            &format!("train.runs_dir={runs:?}"),
            "--set",
            &format!("head.decoder={decoder:?}"),
            "--set",
            &format!("train.epochs={epochs}"),
        ])
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "{decoder}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let store = Store::open(&tmp.path().join("vitrun.sqlite")).unwrap();
        let id = store.trials(None).unwrap()[0].id.clone();
        let loss = series(&store, &id, "train", "loss");
        let miou = series(&store, &id, "val", "miou");
        assert!(
            loss[loss.len() - 1] < 0.7 * loss[0],
            "{decoder}: loss {loss:?}"
        );
        let best = miou.iter().cloned().fold(f64::MIN, f64::max);
        assert!(best > 0.6, "{decoder}: mIoU {miou:?}");
        predict_writes_masks(tmp.path(), &id);
    }
    // Segmenter's own mask norm standardises two scores to ±1: refused, with the way out.
    let tmp = tempfile::tempdir().unwrap();
    let out = vitrun(&[
        "run",
        TINY_LESIONS,
        "--quiet",
        "--set",
        &format!("train.runs_dir={:?}", tmp.path().display().to_string()),
        "--set",
        "head.decoder=\"mask\"",
        "--set",
        "head.mask_norm=\"segmenter\"",
    ])
    .output()
    .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && e.contains(
                "head.mask_norm = \"segmenter\" standardises each patch's 2 class scores"
            )
            && e.contains("remove head.mask_norm"),
        "{e}"
    );
}

/// `vitrun predict --out` of a segmenter: per image a palette mask of class ids at the image's
/// own size, an overlay, probability maps whose argmax is the mask, and a JSON line of class
/// areas; `--probs` without `--out` is refused.
fn predict_writes_masks(runs: &Path, id: &str) {
    let scan = runs.join("scan.png");
    image::GrayImage::from_fn(80, 48, |x, y| {
        let d = (x as f32 - 30.0).hypot(y as f32 - 20.0);
        image::Luma([if d < 9.0 { 230 } else { 60 }])
    })
    .save(&scan)
    .unwrap();
    let out = runs.join("predicted");
    let (runs_s, scan_s, out_s) = (
        runs.display().to_string(),
        scan.display().to_string(),
        out.display().to_string(),
    );
    let refused = vitrun(&["predict", "--runs-dir", &runs_s, id, &scan_s, "--probs"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("--probs writes files: give it a folder with --out DIR"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let predict = vitrun(&[
        "predict",
        "--runs-dir",
        &runs_s,
        id,
        &scan_s,
        "--out",
        &out_s,
        "--probs",
        "--json",
    ])
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&predict.stderr);
    assert!(predict.status.success(), "{stderr}");
    assert!(stderr.contains("resize: bilinear"), "{stderr}");
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&predict.stdout).trim()).unwrap();
    assert_eq!(line["size"], serde_json::json!([48, 80]));
    let areas = &line["areas"];
    assert_eq!(
        areas["background"].as_u64().unwrap() + areas["lesion"].as_u64().unwrap(),
        48 * 80
    );
    let mask_file = out.join("scan.mask.png");
    assert_eq!(line["files"]["mask.png"], mask_file.display().to_string());
    let mut decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&mask_file).unwrap(),
    ));
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder.read_info().unwrap();
    assert_eq!(reader.info().color_type, png::ColorType::Indexed);
    assert_eq!((reader.info().width, reader.info().height), (80, 48));
    let mut mask = vec![0; reader.output_buffer_size().unwrap()];
    reader.next_frame(&mut mask).unwrap();
    assert!(mask.iter().all(|&l| l <= 1));
    assert_eq!(
        mask.iter().filter(|&&l| l == 1).count() as u64,
        areas["lesion"].as_u64().unwrap()
    );
    let probs = std::fs::read(out.join("scan.probs.npy")).unwrap();
    let header = u16::from_le_bytes([probs[8], probs[9]]) as usize;
    let values: Vec<f32> = probs[10 + header..]
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let plane = 48 * 80;
    assert_eq!(values.len(), 2 * plane);
    for (p, &label) in mask.iter().enumerate() {
        let lesion = values[plane + p] > values[p];
        assert_eq!(lesion, label == 1, "pixel {p}");
    }
    let overlay = image::open(out.join("scan.overlay.png")).unwrap();
    assert_eq!((overlay.width(), overlay.height()), (80, 48));
    let lines = std::fs::read_to_string(out.join("predictions.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 1);
    // Export: the encoder under timm's names, the head and decoder under decode_head., and
    // the JSON scripts/check_segmentation_export.py rebuilds the model from.
    let (meta, weights) = export_trial(runs, id, "export.safetensors");
    assert_eq!(meta["task"], "segmentation");
    assert_eq!(meta["model_args"]["num_classes"], 0);
    assert_eq!(
        meta["label_names"],
        serde_json::json!(["background", "lesion"])
    );
    let names: Vec<String> = weights.into_keys().collect();
    assert!(
        names.iter().any(|n| n == "blocks.0.attn.qkv.weight"),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("decode_head.")),
        "{names:?}"
    );
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("head.") || n.starts_with("decoder.")),
        "{names:?}"
    );
    // Explain: Grad-CAM of the lesion class (its logits over the pixels predicted lesion), and
    // the encoder's attention, over the scan as the model saw it.
    for (method, class) in [("gradcam", "lesion"), ("attention", "")] {
        let mut args = vec![
            "explain",
            "--runs-dir",
            &runs_s,
            id,
            &scan_s,
            "--out",
            &out_s,
            "--method",
            method,
        ];
        if !class.is_empty() {
            args.extend(["--class", class]);
        }
        let run = vitrun(&args).output().unwrap();
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(
            run.status.success(),
            "{method}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let expected = if class.is_empty() {
            format!("{method} →")
        } else {
            format!("{method} of {class} →")
        };
        assert!(stdout.contains(&expected), "{stdout}");
        let values = std::fs::read(out.join(format!("scan.{method}.npy"))).unwrap();
        assert_eq!(
            values.len() - (10 + u16::from_le_bytes([values[8], values[9]]) as usize),
            4 * 32 * 32
        );
        assert!(out.join(format!("scan.{method}.png")).is_file());
    }
}

/// A tiny DETR run on generated scenes: the set loss falls, objects start being found, and
/// mAP@0.5 beats predicting no boxes (0); every detection metric is stored each epoch, and
/// `ls` and the report know the task.
#[test]
fn a_tiny_detection_learns_scene_boxes() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, id, stdout) = run_tiny(TINY_DETECTION, tmp.path());
    assert!(stdout.starts_with("finished: best val map50"), "{stdout}");
    let loss = series(&store, &id, "train", "loss");
    let map50 = series(&store, &id, "val", "map50");
    let epochs = loss.len();
    assert_eq!(epochs, 10);
    for name in ["map", "map75", "loss", "loss_ce", "loss_bbox", "loss_giou"] {
        assert_eq!(series(&store, &id, "val", name).len(), epochs, "val/{name}");
    }
    let recall = series(&store, &id, "train", "recall50");
    assert_eq!(recall.len(), epochs);
    assert!(
        loss[epochs - 1] < 0.85 * loss[0],
        "set loss falls: {loss:?}"
    );
    assert!(
        recall[epochs - 1] > 0.03 && recall[epochs - 1] > 5.0 * recall[0],
        "objects found: {recall:?}"
    );
    // No boxes score 0, and the untrained model about 0.0002 (one machine: 0.036 at best).
    let best = map50.iter().cloned().fold(f64::MIN, f64::max);
    assert!(
        best > 0.01 && best > 10.0 * map50[0],
        "mAP@0.5 {map50:?} vs no boxes' 0"
    );
    let classes = store
        .metrics(&id)
        .unwrap()
        .into_iter()
        .filter(|m| m.split == "val" && m.name.starts_with("ap50_") && m.epoch == 1)
        .count();
    assert!(classes >= 4, "per-class AP of the classes in validation");
    let runs = tmp.path().display().to_string();
    let ls = vitrun(&["ls", "--runs-dir", &runs]).output().unwrap();
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(ls.contains(&format!("map50 {:.1}%", best * 100.0)), "{ls}");
    let report = vitrun(&["report", "--runs-dir", &runs]).output().unwrap();
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let report_dir = tmp.path().join("tiny_detection").join("report");
    for panel in [
        "predictions.png",
        "per_class.png",
        "curve_map50.png",
        "augmentations.png",
        "attention.png",
        "box_attention.png",
    ] {
        assert!(report_dir.join(panel).is_file(), "{panel}");
    }
    crate::report::browser_check(&report_dir);
    let html = |extra: &[&str]| {
        let mut args = vec!["report", "--runs-dir", &runs, "--samples", "3"];
        args.extend_from_slice(extra);
        let out = vitrun(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(report_dir.join("index.html")).unwrap()
    };
    assert!(
        html(&["--score-threshold", "1"]).contains(
            "Boxes scoring ≥ 1 are drawn (--score-threshold; display only). 3 of 3 images had none"
        ),
        "no box scores 1: each image shows its best one"
    );
    let all = html(&["--score-threshold", "0"]);
    assert!(all.contains("0 of 3 images had none"));
    assert!(all.contains("box_attention.png") && all.contains("Box attention"));
    // Every box drawn is matched or a false positive; every object found or missed.
    let errors = all
        .split("over these 3 images: ")
        .nth(1)
        .and_then(|rest| rest.split('.').next())
        .unwrap_or_else(|| panic!("no errors note: {all}"));
    let numbers: Vec<usize> = errors
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let [found, objects, false_positives, missed] = numbers[..] else {
        panic!("{errors}")
    };
    assert_eq!(found + missed, objects, "{errors}");
    assert!(objects >= 1 && false_positives > 0, "{errors}");
    let bad = vitrun(&["report", "--runs-dir", &runs, "--score-threshold", "1.5"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr)
        .contains("--score-threshold 1.5: use a score in [0, 1], e.g. --score-threshold 0.2"));
    predict_writes_coco_results(tmp.path(), &id);
}

/// `vitrun predict --out` of a detector: the boxes of each image in its own pixels, an
/// overlay, and `detections.json` as COCO results numbered by `--coco`'s file when given.
fn predict_writes_coco_results(runs: &Path, id: &str) {
    let scene = runs.join("scene.png");
    image::RgbImage::from_fn(96, 64, |x, y| {
        let inside = (20..50).contains(&x) && (10..40).contains(&y);
        image::Rgb(if inside { [220, 40, 40] } else { [90, 110, 90] })
    })
    .save(&scene)
    .unwrap();
    let out = runs.join("detected");
    let (runs_s, scene_s, out_s) = (
        runs.display().to_string(),
        scene.display().to_string(),
        out.display().to_string(),
    );
    let predict = |extra: &[&str]| {
        let mut args = vec![
            "predict",
            "--runs-dir",
            &runs_s,
            id,
            &scene_s,
            "--out",
            &out_s,
        ];
        args.extend(extra);
        vitrun(&args).output().unwrap()
    };
    // Explaining a detector draws its best box's query's cross-attention, DETR's figure.
    let maps = runs.join("explained");
    let explain = |extra: &[&str]| {
        let mut args = vec![
            "explain",
            "--runs-dir",
            &runs_s,
            id,
            &scene_s,
            "--method",
            "attention",
            "--out",
            maps.to_str().unwrap(),
            "--json",
        ];
        args.extend(extra);
        let run = vitrun(&args).output().unwrap();
        assert!(run.status.success(), "{}", crate::common::text(&run));
        serde_json::from_slice::<serde_json::Value>(&run.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", crate::common::text(&run)))
    };
    let line = explain(&[]);
    let region: Vec<f64> = serde_json::from_value(line["box"].clone()).unwrap();
    assert!(
        region.len() == 4 && region[0] < region[2] && region[1] < region[3],
        "{line}"
    );
    assert!(line["class"].is_string(), "{line}");
    assert!(
        maps.join("scene.attention.png").is_file() && maps.join("scene.attention.npy").is_file()
    );
    // --class picks the box: that class's best-scoring query.
    let line = explain(&["--class", "truck"]);
    assert_eq!(line["class"], "truck", "{line}");
    let run = predict(&["--threshold", "0", "--json"]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&run.stdout).trim()).unwrap();
    let boxes = line["boxes"].as_array().unwrap();
    assert!(!boxes.is_empty(), "every query scores above 0: {line}");
    let results: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("detections.json")).unwrap())
            .unwrap();
    assert_eq!(results.len(), boxes.len());
    let classes: Vec<String> = serde_json::from_str(
        &std::fs::read_to_string(runs.join("tiny_detection").join(id).join("classes.json"))
            .unwrap(),
    )
    .unwrap();
    for (r, b) in results.iter().zip(boxes) {
        assert_eq!(r["image_id"], 1);
        assert_eq!(r["bbox"], b["bbox"]);
        assert_eq!(r["score"], b["score"]);
        let category = r["category_id"].as_u64().unwrap() as usize;
        assert_eq!(classes[category - 1], b["class"].as_str().unwrap());
        let bbox: Vec<f64> = serde_json::from_value(r["bbox"].clone()).unwrap();
        assert!(bbox[0] >= 0.0 && bbox[1] >= 0.0 && bbox[0] + bbox[2] <= 96.0 + 1e-9);
        assert!(bbox[1] + bbox[3] <= 64.0 + 1e-9 && bbox[2] >= 0.0 && bbox[3] >= 0.0);
    }
    let overlay = image::open(out.join("scene.overlay.png")).unwrap();
    assert_eq!((overlay.width(), overlay.height()), (96, 64));

    let coco = runs.join("coco.json");
    let categories: Vec<serde_json::Value> = classes
        .iter()
        .enumerate()
        .map(|(k, name)| serde_json::json!({"id": 100 + k, "name": name}))
        .collect();
    std::fs::write(
        &coco,
        serde_json::json!({"images": [{"id": 42, "file_name": "scene.png"}], "categories": categories, "annotations": []})
            .to_string(),
    )
    .unwrap();
    let coco_s = coco.display().to_string();
    let run = predict(&["--threshold", "0", "--coco", &coco_s]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let numbered: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("detections.json")).unwrap())
            .unwrap();
    assert_eq!(numbered.len(), results.len());
    for (n, r) in numbered.iter().zip(&results) {
        assert_eq!(n["image_id"], 42);
        assert_eq!(
            n["category_id"].as_u64().unwrap(),
            r["category_id"].as_u64().unwrap() + 99
        );
    }
    std::fs::write(
        &coco,
        serde_json::json!({"images": [{"id": 1, "file_name": "other.png"}], "categories": categories})
            .to_string(),
    )
    .unwrap();
    let run = predict(&["--coco", &coco_s]);
    let e = String::from_utf8_lossy(&run.stderr);
    assert!(
        !run.status.success()
            && e.contains("scene.png: no entry of")
            && e.contains("coco.json's `images` has this file_name"),
        "{e}"
    );
    // Export of the trial: the encoder under timm's names, DETR's decoder under detr. (the
    // fixture test in parity.rs checks it against PyTorch), one query group of the two.
    let (meta, weights) = export_trial(runs, id, "detr.safetensors");
    assert_eq!(
        (
            &meta["task"],
            &meta["decoder"]["kind"],
            &meta["decoder"]["queries"]
        ),
        (
            &serde_json::json!("detection"),
            &serde_json::json!("detr"),
            &serde_json::json!(6)
        )
    );
    assert_eq!(weights["detr.query_embed.weight"].shape, [6, 48]);
    assert_eq!(
        weights["detr.decoder.layers.1.multihead_attn.in_proj_weight"].shape,
        [3 * 48, 48]
    );
    assert!(weights.contains_key("blocks.1.attn.qkv.weight"));
}

/// `vitrun export` of trial `id` of the store in `runs` to `runs/file`: its JSON and weights.
fn export_trial(
    runs: &Path,
    id: &str,
    file: &str,
) -> (serde_json::Value, vitrun::model::StateDict) {
    let export = runs.join(file);
    let run = vitrun(&[
        "export",
        "--runs-dir",
        runs.to_str().unwrap(),
        id,
        "--out",
        export.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(run.status.success(), "{}", crate::common::text(&run));
    let meta =
        serde_json::from_str(&std::fs::read_to_string(export.with_extension("json")).unwrap())
            .unwrap();
    (meta, vitrun::model::read_state_dict(&export).unwrap())
}

/// A detection trial killed mid-run resumes to the same losses and mAP as one run straight
/// through: the matcher, the set loss and the mAP tally keep no state outside the
/// checkpoint.
#[test]
fn a_killed_detection_trial_resumes_to_the_same_numbers() {
    let args = |runs: &Path, resume: bool| {
        let runs_set = format!("train.runs_dir={:?}", runs.display().to_string());
        let mut cmd = vitrun(&[
            "run",
            TINY_DETECTION,
            "--quiet",
            "--set",
            &runs_set,
            "--set",
            "train.epochs=4",
            "--set",
            "data.train_size=320",
        ]);
        if resume {
            cmd.arg("--resume");
        }
        cmd
    };
    let straight = tempfile::tempdir().unwrap();
    assert!(args(straight.path(), false).status().unwrap().success());
    let killed = tempfile::tempdir().unwrap();
    let mut child = args(killed.path(), false).spawn().unwrap();
    let progress = wait_for_progress(killed.path(), |p| {
        p.contains("\"epoch\": 1") || p.contains("\"epoch\": 2")
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!progress.contains("\"epoch\": 4"));
    assert!(args(killed.path(), true).status().unwrap().success());
    let open = |runs: &Path| {
        let store = Store::open(&runs.join("vitrun.sqlite")).unwrap();
        let id = store.trials(None).unwrap()[0].id.clone();
        (store, id)
    };
    let (a, a_id) = open(straight.path());
    let (b, b_id) = open(killed.path());
    assert_eq!(a_id, b_id);
    for (split, name) in [
        ("train", "loss"),
        ("train", "recall50"),
        ("val", "loss"),
        ("val", "map50"),
        ("val", "map"),
        ("val", "loss_giou"),
    ] {
        let (x, y) = (
            series(&a, &a_id, split, name),
            series(&b, &b_id, split, name),
        );
        assert_eq!(x.len(), 4, "{split}/{name}");
        assert_eq!(x, y, "{split}/{name}");
    }
}

/// A ResNet is a classification backbone like the ViT: `model.arch = "resnet18"` trains on
/// the same data and recipe (and learns), and `export` writes timm's names (`fc`,
/// `downsample.0`), the very keys of timm's own state dict of that model.
#[test]
fn a_resnet_trains_and_exports_under_timms_names() {
    let tmp = tempfile::tempdir().unwrap();
    let args = [
        "--set",
        "model.arch=\"resnet18\"",
        "--set",
        "model.widths=[8, 16, 32, 64]",
        "--set",
        "data.image_size=32",
        "--set",
        "train.epochs=6",
    ];
    run_ok(tmp.path(), &args);
    let (store, id, dir) = only_trial(tmp.path());
    let loss = series(&store, &id, "train", "loss");
    let top1 = series(&store, &id, "val", "top1");
    assert!(loss[5] < 0.6 * loss[0], "the loss falls: {loss:?}");
    assert!(top1[5] >= 0.85, "two classes, chance is 0.5: {top1:?}");
    assert!(dir.join("last/model.safetensors").is_file());

    let out = tmp.path().join("export/resnet.safetensors");
    let runs = tmp.path().display().to_string();
    let export = vitrun(&[
        "export",
        &id,
        "--runs-dir",
        &runs,
        "--out",
        out.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let args: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(args["architecture"], "resnet18");
    assert_eq!(args["timm_name"], "resnet18");
    assert_eq!(
        args["pretrained_cfg"]["classifier"],
        serde_json::json!(["fc"])
    );
    assert_eq!(args["pretrained_cfg"]["num_classes"], 2);
    assert_eq!(
        args["model_args"]["channels"],
        serde_json::json!([8, 16, 32, 64])
    );
    assert_eq!(args["model_args"]["num_classes"], 2);
    let ours: std::collections::BTreeSet<String> = vitrun::model::read_state_dict(&out)
        .unwrap()
        .into_keys()
        .collect();
    let timm: std::collections::BTreeSet<String> = vitrun::model::read_state_dict(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/resnet/resnet18_w8.safetensors"),
    )
    .unwrap()
    .into_keys()
    .filter(|k| !k.ends_with("num_batches_tracked"))
    .collect();
    assert_eq!(ours, timm);
}
