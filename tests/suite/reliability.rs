//! Hostile inputs through the binary, one test per defect class: each asserts the exit code,
//! what the store recorded (or that nothing was), and that the message names the key or file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{config, experiment, micro, micro_command, runs_set, text, vitrun, wait_until};
use vitrun::contract::Event;
use vitrun::contract::Status;
use vitrun::track::Store;

fn store(runs: &Path) -> Store {
    Store::open(&runs.join("vitrun.sqlite")).unwrap()
}

fn only_trial(runs: &Path) -> (Store, String) {
    let s = store(runs);
    let trials = s.trials(None).unwrap();
    assert_eq!(trials.len(), 1, "{trials:?}");
    let id = trials[0].id.clone();
    (s, id)
}

fn error_of(s: &Store, id: &str) -> String {
    s.trials(None)
        .unwrap()
        .into_iter()
        .find(|t| t.id == id)
        .and_then(|t| t.error)
        .unwrap_or_default()
}

#[test]
fn hostile_values_are_refused_before_anything_runs_and_name_their_key() {
    let runs = tempfile::tempdir().unwrap();
    let cases = [
        (
            "augment.random_resized_crop.ratio=[1.0, inf]",
            "augment.random_resized_crop.ratio",
        ),
        (
            "augment.color_jitter.contrast=inf",
            "augment.color_jitter.contrast",
        ),
        ("augment.center_crop.ratio=1e9", "augment.center_crop.ratio"),
        ("optimizer.lr=nan", "optimizer.lr"),
        ("optimizer.eps=inf", "optimizer.eps"),
        ("optimizer.betas=[0.9, 0.99, 0.1]", "optimizer.betas"),
        ("optimizer.warmup_epochs=inf", "optimizer.warmup_epochs"),
        (
            "augment.normalize.std=[inf, 1.0, 1.0]",
            "augment.normalize.std",
        ),
        ("model.mlp_ratio=1e-9", "model.mlp_ratio"),
        ("data.image_size=100000", "data.image_size"),
        ("data.train_size=10000000000", "data.train_size"),
        ("data.prefetch=1000000000", "data.prefetch"),
        ("data.workers=100000", "data.workers"),
        ("train.threads=100000", "train.threads"),
        ("name=\"..\"", "name"),
        ("name=\".\"", "name"),
        ("name=\"a/b\"", "name"),
        ("train.device=\"cuda:x\"", "train.device"),
    ];
    for (set, key) in cases {
        let out = micro(runs.path(), &["--set", set]);
        let msg = text(&out);
        assert_eq!(out.status.code(), Some(1), "{set}: {msg}");
        assert!(msg.contains(&format!("`{key}`")), "{set}: {msg}");
        assert!(!msg.contains("panicked"), "{set}: {msg}");
    }
    assert!(
        !runs.path().join("vitrun.sqlite").exists(),
        "a refused config records nothing"
    );
    assert!(
        !runs.path().parent().unwrap().join("micro").exists(),
        "nothing is written outside runs_dir"
    );
}

#[test]
fn sweeps_are_counted_before_they_are_expanded() {
    let dir = tempfile::tempdir().unwrap();
    let base = "name = \"s\"\n[train]\nepochs = 1\n";
    let cases = [
        (
            "[sweep]\n\"optimizer.lr\" = { uniform = [0.0, inf] }\nsamples = 2\n",
            "sweep.optimizer.lr",
        ),
        (
            "[sweep]\n\"optimizer.lr\" = { log_uniform = [1e-5, inf] }\nsamples = 2\n",
            "sweep.optimizer.lr",
        ),
        (
            "[sweep]\n\"optimizer.lr\" = { uniform = [-1e308, 1e308] }\nsamples = 2\n",
            "sweep.optimizer.lr",
        ),
        (
            "[sweep]\n\"optimizer.lr\" = { uniform = [0.1, 0.2] }\nsamples = 9223372036854775807\n",
            "sweep.max_trials",
        ),
        (
            "[sweep]\n\"optimizer.lr\" = [0.1, 0.2]\nretry_on = [\"finished\"]\n",
            "sweep.retry_on",
        ),
    ];
    for (i, (sweep, key)) in cases.iter().enumerate() {
        let file = experiment(dir.path(), &format!("case{i}"), &format!("{base}{sweep}"));
        for cmd in ["check", "plan"] {
            let out = vitrun(&[cmd, file.to_str().unwrap()]).output().unwrap();
            let msg = text(&out);
            assert_eq!(out.status.code(), Some(1), "{cmd} {sweep}: {msg}");
            assert!(msg.contains(&format!("`{key}`")), "{cmd} {sweep}: {msg}");
        }
    }
    let zips: String = (0..64)
        .map(|_| "[[sweep.zip]]\n\"optimizer.lr\" = [0.1, 0.2]\n")
        .collect();
    let ten_million: String = [
        "model.depth",
        "seed",
        "train.epochs",
        "train.batch_size",
        "model.patch_size",
        "optimizer.step_epochs",
        "data.image_size",
    ]
    .iter()
    .map(|k| format!("\"{k}\" = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n"))
    .collect();
    for (name, sweep, count) in [
        ("zips", zips, "2^64 or more points"),
        ("grid", format!("[sweep]\n{ten_million}"), "10000000 points"),
    ] {
        let file = experiment(dir.path(), name, &format!("{base}{sweep}"));
        let started = std::time::Instant::now();
        let out = vitrun(&["check", file.to_str().unwrap()]).output().unwrap();
        let msg = text(&out);
        assert_eq!(out.status.code(), Some(1), "{msg}");
        assert!(msg.contains(count) && msg.contains("max_trials"), "{msg}");
        assert!(started.elapsed().as_secs() < 10, "counting must not expand");
    }
}

#[test]
fn printing_into_a_closed_pipe_ends_quietly() {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} plan {} | head -c 10 >/dev/null",
            env!("CARGO_BIN_EXE_vitrun"),
            config("tiny_sweep.toml").display()
        ))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn unusable_devices_and_slots_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = config("tiny_sweep.toml");
    let set = runs_set(dir.path());
    for (flag, value, expect) in [
        ("--devices", "cuda:7", "--devices cuda:7"),
        ("--cpu-slots", "0", "--cpu-slots 0"),
    ] {
        let out = vitrun(&["sweep", file.to_str().unwrap(), "--set", &set, flag, value])
            .output()
            .unwrap();
        let msg = text(&out);
        assert_eq!(out.status.code(), Some(1), "{msg}");
        assert!(msg.contains(expect), "{msg}");
    }
}

#[test]
fn report_targets_cannot_leave_the_runs_folder() {
    let runs = tempfile::tempdir().unwrap();
    assert!(micro(runs.path(), &[]).status.success());
    let dir = runs.path().display().to_string();
    for target in ["..", "../x", "/tmp"] {
        let out = vitrun(&["report", target, "--runs-dir", &dir])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{target}: {}", text(&out));
        assert!(text(&out).contains("not a trial id"), "{}", text(&out));
    }
}

/// An IDX folder whose images file has the given header dims (and `payload` bytes of data).
fn idx_folder(dir: &Path, dims: [u32; 3], payload: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut images = vec![0u8, 0, 8, 3];
    for d in dims {
        images.extend_from_slice(&d.to_be_bytes());
    }
    images.extend(std::iter::repeat_n(7u8, payload));
    std::fs::write(dir.join("train-images-idx3-ubyte"), images).unwrap();
    let mut labels = vec![0u8, 0, 8, 1];
    labels.extend_from_slice(&dims[0].to_be_bytes());
    labels.extend((0..dims[0].min(64)).map(|i| (i % 2) as u8));
    std::fs::write(dir.join("train-labels-idx1-ubyte"), labels).unwrap();
}

#[test]
fn broken_idx_headers_fail_the_trial_naming_the_file() {
    for (dims, payload, expect) in [
        ([4, 0, 28], 0, "zero size"),
        ([4, 28, 0], 0, "zero size"),
        (
            [u32::MAX, u32::MAX, u32::MAX],
            16,
            "above data.max_image_pixels",
        ),
        ([u32::MAX, 9000, 9000], 16, "truncated or corrupt"),
        ([8, 4, 4], 100, "truncated or corrupt"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("idx");
        idx_folder(&data, dims, payload);
        let path = format!("data.path={:?}", data.display().to_string());
        let out = micro(
            &tmp.path().join("runs"),
            &[
                "--set",
                "data.dataset=\"idx\"",
                "--set",
                &path,
                "--set",
                "data.channels=1",
            ],
        );
        let msg = text(&out);
        assert_eq!(out.status.code(), Some(1), "{dims:?}: {msg}");
        assert!(
            msg.contains("train-images-idx3-ubyte") && msg.contains(expect),
            "{dims:?}: {msg}"
        );
        let (s, id) = only_trial(&tmp.path().join("runs"));
        assert_eq!(s.status(&id).unwrap(), Some(Status::Failed), "{dims:?}");
        assert!(error_of(&s, &id).contains("train-images-idx3-ubyte"));
    }
}

fn png(path: &Path, size: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_fn(size, size, |x, y| {
        image::Rgb([(x * 16) as u8, (y * 16) as u8, 90])
    })
    .save(path)
    .unwrap();
}

/// An image folder with `train/{a,b}` and `val/{a,b}` of readable PNGs.
fn image_folder(root: &Path, per_class: usize) {
    for split in ["train", "val"] {
        for class in ["a", "b"] {
            for i in 0..per_class {
                png(&root.join(format!("{split}/{class}/{i}.png")), 8);
            }
        }
    }
}

fn folder_run(runs: &Path, data: &Path, extra: &[&str]) -> std::process::Output {
    let path = format!("data.path={:?}", data.display().to_string());
    let mut args = vec![
        "--set",
        "data.dataset=\"image_folder\"",
        "--set",
        &path,
        "--set",
        "data.classes=[\"a\", \"b\"]",
    ];
    args.extend_from_slice(extra);
    micro(runs, &args)
}

#[test]
fn a_split_without_a_readable_image_is_an_error_not_a_finished_trial() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    for split in ["train", "val"] {
        for class in ["a", "b"] {
            let dir = data.join(format!("{split}/{class}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("x.png"), b"not an image").unwrap();
        }
    }
    let runs = tmp.path().join("runs");
    let out = folder_run(&runs, &data, &["--set", "data.skip_bad=true"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains("every training image of epoch 1 was unreadable"),
        "{msg}"
    );
    let (s, id) = only_trial(&runs);
    assert_eq!(s.status(&id).unwrap(), Some(Status::Failed));
    assert_eq!(
        s.count("SELECT COUNT(*) FROM metrics WHERE trial = ?1", &id)
            .unwrap(),
        0,
        "no metric that was not measured"
    );

    let flat = tmp.path().join("flat");
    for class in ["a", "b"] {
        png(&flat.join(format!("{class}/0.png")), 8);
    }
    let out = folder_run(
        &tmp.path().join("runs2"),
        &flat,
        &["--set", "data.val_split=0.0"],
    );
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains("validation split has no usable image") && msg.contains("data.val_split"),
        "{msg}"
    );
}

#[test]
fn skipped_images_are_counted_in_both_splits_and_fifos_are_never_opened() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    image_folder(&data, 4);
    std::fs::write(data.join("train/a/bad.png"), b"junk").unwrap();
    std::fs::write(data.join("val/b/bad.png"), b"junk").unwrap();
    let fifo = data.join("train/b/pipe.png");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let runs = tmp.path().join("runs");
    let out = folder_run(
        &runs,
        &data,
        &["--set", "data.skip_bad=true", "--set", "train.epochs=1"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let (s, id) = only_trial(&runs);
    let value = |split: &str| {
        s.metrics(&id)
            .unwrap()
            .into_iter()
            .find(|m| m.split == split && m.name == "skipped_images")
            .map(|m| m.value)
    };
    assert_eq!(value("train"), Some(1.0));
    assert_eq!(value("val"), Some(1.0));
    let skipped = s.events(&id, Event::Skipped).unwrap().join(" ");
    assert!(
        skipped.contains("train/a/bad.png") && skipped.contains("val/b/bad.png"),
        "{skipped}"
    );
    assert!(!skipped.contains("pipe.png"), "a FIFO is not an image file");
}

#[test]
fn a_store_deleted_during_a_run_fails_it_loudly() {
    let runs = tempfile::tempdir().unwrap();
    let child = micro_command(runs.path(), &["--set", "train.epochs=400"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let db = runs.path().join("vitrun.sqlite");
    wait_until(60, "a logged epoch", || {
        Store::open(&db)
            .ok()
            .and_then(|s| s.trials(None).ok())
            .and_then(|t| t.first().and_then(|t| t.epochs))
            .is_some()
    });
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let out = child.wait_with_output().unwrap();
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(msg.contains("deleted or replaced"), "{msg}");
}

/// Trains the micro experiment with `extra` into `runs`; returns its trial id and `last/`.
fn trained_micro(runs: &Path, extra: &[&str]) -> (String, PathBuf) {
    assert!(micro(runs, extra).status.success());
    let (s, id) = only_trial(runs);
    drop(s);
    let last = runs.join("micro").join(&id).join("last");
    (id, last)
}

/// Marks a finished trial interrupted, as a Ctrl-C in its last epoch would leave it, so that
/// `--resume` takes it up (a finished trial refuses to resume).
fn mark_interrupted(runs: &Path, id: &str) {
    let c = rusqlite::Connection::open(runs.join("vitrun.sqlite")).unwrap();
    let n = c
        .execute(
            "UPDATE trials SET status = 'interrupted' WHERE id = ?1",
            [id],
        )
        .unwrap();
    assert_eq!(n, 1);
}

/// Runs the micro experiment with `extra`, expects a refusal (exit 1, no panic); returns the
/// message.
fn refused(runs: &Path, extra: &[&str]) -> String {
    let out = micro(runs, extra);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(!msg.contains("panicked"), "{msg}");
    msg
}

#[test]
fn resuming_without_the_weight_average_is_refused_unless_forced() {
    let runs = tempfile::tempdir().unwrap();
    let ema = ["--set", "train.ema.enabled=true"];
    let resume = [&ema[..], &["--resume"]].concat();
    let (id, last) = trained_micro(runs.path(), &ema);
    let average = last.join("ema.safetensors");
    std::fs::remove_file(&average).unwrap();
    mark_interrupted(runs.path(), &id);
    let msg = refused(runs.path(), &resume);
    assert!(
        msg.contains("ema.safetensors is missing") && msg.contains("--force"),
        "{msg}"
    );
    let out = micro(runs.path(), &[&ema[..], &["--resume", "--force"]].concat());
    assert!(out.status.success(), "{}", text(&out));
    let (s, _) = only_trial(runs.path());
    assert_eq!(s.events(&id, Event::FreshEma).unwrap().len(), 1);
    drop(s);

    let other = tempfile::tempdir().unwrap();
    let narrow = [&ema[..], &["--set", "model.embed_dim=32"]].concat();
    let (_, other_last) = trained_micro(other.path(), &narrow);
    std::fs::copy(other_last.join("ema.safetensors"), &average).unwrap();
    mark_interrupted(runs.path(), &id);
    let msg = refused(runs.path(), &resume);
    assert!(
        msg.contains("ema.safetensors") && msg.contains("mis-shaped"),
        "a foreign average is named, not blended: {msg}"
    );
}

#[test]
fn resuming_without_or_with_a_foreign_optimizer_state_is_refused() {
    let runs = tempfile::tempdir().unwrap();
    let (id, last) = trained_micro(runs.path(), &[]);
    let opt = last.join("optimizer.safetensors");
    let saved = std::fs::read(&opt).unwrap();
    std::fs::remove_file(&opt).unwrap();
    mark_interrupted(runs.path(), &id);
    let msg = refused(runs.path(), &["--resume"]);
    assert!(
        msg.contains("optimizer.safetensors is missing") && msg.contains("--force"),
        "{msg}"
    );
    let (s, _) = only_trial(runs.path());
    assert_eq!(s.status(&id).unwrap(), Some(Status::Failed));
    drop(s);

    let out = micro(runs.path(), &["--resume", "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    let (s, _) = only_trial(runs.path());
    assert_eq!(s.events(&id, Event::FreshOptimizer).unwrap().len(), 1);
    drop(s);

    let other = tempfile::tempdir().unwrap();
    let (_, other_last) = trained_micro(other.path(), &["--set", "model.embed_dim=32"]);
    let foreign = other_last.join("optimizer.safetensors");
    assert_ne!(std::fs::read(&foreign).unwrap(), saved);
    std::fs::copy(&foreign, &opt).unwrap();
    mark_interrupted(runs.path(), &id);
    let msg = refused(runs.path(), &["--resume"]);
    assert!(
        msg.contains("optimizer.safetensors") && msg.contains("does not belong to this model"),
        "{msg}"
    );
    let (s, _) = only_trial(runs.path());
    assert_eq!(
        s.status(&id).unwrap(),
        Some(Status::Failed),
        "not left running"
    );
}

#[test]
fn a_killed_run_shows_as_stale_in_ls() {
    let runs = tempfile::tempdir().unwrap();
    let mut child = micro_command(runs.path(), &["--set", "train.epochs=400"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let db = runs.path().join("vitrun.sqlite");
    wait_until(60, "the claim", || {
        Store::open(&db)
            .ok()
            .and_then(|s| s.trials(None).ok())
            .is_some_and(|t| t.first().is_some_and(|t| t.status == Status::Running))
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let out = vitrun(&["ls", "--runs-dir", &runs.path().display().to_string()])
        .output()
        .unwrap();
    let listing = text(&out);
    assert!(listing.contains(" stale "), "{listing}");
    let (s, id) = only_trial(runs.path());
    assert_eq!(
        s.status(&id).unwrap(),
        Some(Status::Running),
        "ls only reads"
    );
}

#[test]
fn identical_runs_started_together_train_once() {
    let runs = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..3)
        .map(|_| {
            micro_command(runs.path(), &["--set", "train.epochs=3"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let winners = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(
        winners,
        1,
        "{:?}",
        outs.iter().map(text).collect::<Vec<_>>()
    );
    for o in outs.iter().filter(|o| !o.status.success()) {
        assert_eq!(o.status.code(), Some(1));
        assert!(
            text(o).contains("is already running in process"),
            "{}",
            text(o)
        );
    }
    let (s, id) = only_trial(runs.path());
    assert_eq!(s.status(&id).unwrap(), Some(Status::Finished));
    assert_eq!(
        s.count("SELECT attempts FROM trials WHERE id = ?1", &id)
            .unwrap(),
        1
    );
}

#[test]
fn two_sweeps_of_one_file_train_every_trial_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let file = experiment(
        dir.path(),
        "twice",
        &format!(
            "{}\n[sweep]\n\"optimizer.lr\" = [1e-3, 2e-3, 3e-3]\n\"seed\" = [1, 2]\n",
            std::fs::read_to_string(config("micro.toml"))
                .unwrap()
                .replace("name = \"micro\"", "name = \"twice\"")
        ),
    );
    let set = runs_set(&runs);
    let sweeps: Vec<_> = (0..2)
        .map(|_| {
            vitrun(&[
                "sweep",
                file.to_str().unwrap(),
                "--set",
                &set,
                "--cpu-slots",
                "2",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for c in sweeps {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
    let s = store(&runs);
    let trials = s.trials(Some("twice")).unwrap();
    assert_eq!(trials.len(), 6);
    for t in &trials {
        assert_eq!((t.status, t.attempts), (Status::Finished, 1), "{}", t.id);
    }
}

#[test]
fn a_gzip_idx_bomb_is_refused_before_it_is_inflated() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("idx");
    idx_folder(&data, [8, 28, 28], 8 * 28 * 28);
    let raw = std::fs::read(data.join("train-images-idx3-ubyte")).unwrap();
    std::fs::remove_file(data.join("train-images-idx3-ubyte")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&raw).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        gz.write_all(&zeros).unwrap();
    }
    let gz = gz.finish().unwrap();
    assert!(
        gz.len() < 1 << 20,
        "256 MiB of zeros pack into {} bytes",
        gz.len()
    );
    std::fs::write(data.join("train-images-idx3-ubyte.gz"), gz).unwrap();
    let path = format!("data.path={:?}", data.display().to_string());
    let out = micro(
        &tmp.path().join("runs"),
        &[
            "--set",
            "data.dataset=\"idx\"",
            "--set",
            &path,
            "--set",
            "data.channels=1",
        ],
    );
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains("train-images-idx3-ubyte.gz") && msg.contains("uncompressed"),
        "{msg}"
    );
}
