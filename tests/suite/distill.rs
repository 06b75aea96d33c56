//! DeiT's distillation: the loss equals DeiT's `DistillationLoss` on committed logits (made by
//! scripts/make_distill_fixtures.py with PyTorch and timm); a student learns from a teacher
//! trial vitrun trained (a ResNet), which runs in eval mode and is never written; a broken
//! teacher fails the run before the trial is claimed; a killed student resumes exactly.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use vitrun::config::{DistillConfig, DistillType};
use vitrun::model::{read_state_dict, StateDict};
use vitrun::task::classification::distill::DistillLoss;
use vitrun::task::classification::loss::{cross_entropy, soft_cross_entropy};
use vitrun::track::Store;

use crate::common::{assert_same_series, runs_set, series, vitrun};

const TINY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/configs/tiny_synthetic.toml"
);

fn fixture() -> StateDict {
    read_state_dict(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/distill/losses.safetensors"),
    )
    .unwrap()
}

fn logits(t: &vitrun::model::StateTensor) -> Tensor<Flex, 2> {
    Tensor::from_data(
        TensorData::new(t.data.clone(), t.shape.clone()),
        &Default::default(),
    )
}

#[test]
fn hard_and_soft_losses_equal_deits_distillation_loss() {
    let f = fixture();
    let labels: Vec<i64> = f["labels"].data.iter().map(|&l| l as i64).collect();
    let mut checked = 0;
    for kind in [DistillType::Hard, DistillType::Soft] {
        for (alpha, tau) in [(0.5, 1.0), (0.7, 3.0), (0.1, 0.5)] {
            for base in ["smooth", "mixed"] {
                let loss = DistillLoss::new(&DistillConfig {
                    kind,
                    alpha,
                    tau,
                    ..DistillConfig::default()
                })
                .unwrap();
                let cls = logits(&f["cls"]);
                let base_term = match base {
                    "smooth" => cross_entropy(cls, &labels, 0.1),
                    _ => soft_cross_entropy(cls, &f["mixed"].data),
                };
                let term = loss.distillation(logits(&f["dist"]), &f["teacher"].data);
                let ours: f32 = loss.combine(base_term, term).into_scalar();
                let name = format!(
                    "{}_{alpha:?}_{tau:?}_{base}",
                    format!("{kind:?}").to_lowercase()
                );
                let theirs = f[&name].data[0];
                assert!(
                    (ours - theirs).abs() <= 1e-5 * theirs.abs().max(1.0),
                    "{name}: ours {ours}, DeiT's {theirs}"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 12);
}

/// `vitrun run TINY` into `runs` with `extra`.
fn run(runs: &Path, extra: &[&str]) -> Output {
    let runs_set = runs_set(runs);
    let mut args = vec!["run", TINY, "--quiet", "--set", &runs_set];
    args.extend_from_slice(extra);
    vitrun(&args).output().unwrap()
}

fn run_ok(runs: &Path, extra: &[&str]) {
    let out = run(runs, extra);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A ResNet teacher trained by vitrun in experiment `teacher` with `extra`; its id and folder.
fn teacher(runs: &Path, extra: &[&str]) -> (String, PathBuf) {
    let mut args = vec![
        "--set",
        "name=\"teacher\"",
        "--set",
        "model.arch=\"resnet18\"",
        "--set",
        "model.widths=[8, 16, 32, 64]",
        "--set",
        "train.epochs=4",
    ];
    args.extend_from_slice(extra);
    run_ok(runs, &args);
    let store = Store::open(&runs.join("vitrun.sqlite")).unwrap();
    let id = store.trials(Some("teacher")).unwrap()[0].id.clone();
    (id.clone(), runs.join("teacher").join(id))
}

fn student_args(teacher: &str, kind: &str) -> Vec<String> {
    [
        "--set",
        "model.distilled=true",
        "--set",
        &format!("distill.type=\"{kind}\""),
        "--set",
        &format!("distill.teacher=\"{teacher}\""),
        "--set",
        "train.epochs=4",
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn a_student_learns_from_a_resnet_teacher_trial_that_runs_in_eval_mode_and_is_never_written() {
    let tmp = tempfile::tempdir().unwrap();
    let (id, dir) = teacher(tmp.path(), &[]);
    let before = std::fs::read(dir.join("best/model.safetensors")).unwrap();
    let store = Store::open(&tmp.path().join("vitrun.sqlite")).unwrap();
    let teacher_top1 = store.trials(Some("teacher")).unwrap()[0].best.unwrap();
    assert!(teacher_top1 >= 0.85, "the teacher learned: {teacher_top1}");
    drop(store);
    for kind in ["hard", "soft"] {
        let mut args = student_args(&format!("trial:{}", &id[..8]), kind);
        args.extend(["--set", "train.epochs=8"].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_ok(tmp.path(), &args);
    }
    assert!(
        std::fs::read(dir.join("best/model.safetensors")).unwrap() == before,
        "the teacher's weights are never written"
    );
    let store = Store::open(&tmp.path().join("vitrun.sqlite")).unwrap();
    let students = store.trials(Some("tiny_synthetic")).unwrap();
    assert_eq!(students.len(), 2);
    let mut hard_students = 0;
    for s in &students {
        // In eval mode (BatchNorm on its running statistics) the teacher scores on the
        // validation split exactly what its own best epoch scored.
        let t = series(&store, &s.id, "val", "teacher_top1");
        assert_eq!(t.len(), 8);
        assert!(
            t.iter().all(|v| (v - teacher_top1).abs() < 1e-9),
            "{t:?} vs {teacher_top1}"
        );
        let agreement = series(&store, &s.id, "val", "teacher_agreement");
        let dist = series(&store, &s.id, "train", "loss_dist");
        let cls = series(&store, &s.id, "train", "loss_cls");
        assert_eq!((agreement.len(), dist.len(), cls.len()), (8, 8, 8));
        let hard = store
            .count(
                "SELECT COUNT(*) FROM trials WHERE id = ?1 AND config LIKE '%\"type\":\"hard\"%'",
                &s.id,
            )
            .unwrap()
            == 1;
        if hard {
            hard_students += 1;
            assert!(
                dist[3] < 0.97 * dist[0],
                "the distillation head learns the teacher: {dist:?}"
            );
            assert!(
                agreement[3] > 0.55,
                "two classes, chance is 0.5: {agreement:?}"
            );
        }
        for name in ["top1_cls", "top1_dist"] {
            assert_eq!(series(&store, &s.id, "val", name).len(), 8, "{name}");
        }
        let events = store.count(
            "SELECT COUNT(*) FROM events WHERE trial = ?1 AND kind = 'teacher' AND message LIKE 'teacher resnet18 at 16 px%'",
            &s.id,
        ).unwrap();
        assert_eq!(events, 1);
    }
    assert_eq!(hard_students, 1);
    // A distilled trial's report draws its heads against the teacher's line.
    let runs = tmp.path().display().to_string();
    let out = vitrun(&["report", &students[0].id, "--runs-dir", &runs])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = tmp
        .path()
        .join("tiny_synthetic")
        .join(&students[0].id)
        .join("report");
    assert!(page.join("curve_distillation_heads.png").is_file());
    let html = std::fs::read_to_string(page.join("index.html")).unwrap();
    assert!(html.contains("each head against the teacher"), "{html}");
}

/// Each way a teacher can be wrong is one error naming `distill.teacher`, and the student's
/// trial is never claimed (no row in the store).
#[test]
fn a_wrong_missing_or_corrupt_teacher_fails_before_the_trial_is_claimed() {
    let tmp = tempfile::tempdir().unwrap();
    let (three, _) = teacher(
        tmp.path(),
        &[
            "--set",
            "data.classes=[\"bus\", \"car\", \"truck\"]",
            "--set",
            "train.epochs=1",
        ],
    );
    let corrupt = tmp.path().join("corrupt.safetensors");
    std::fs::write(&corrupt, b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": 1}").unwrap();
    let resnet = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/resnet/resnet18_w8.safetensors")
        .display()
        .to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (student_args(&format!("trial:{three}"), "hard"), "classes"),
        (student_args("trial:ffffffffff", "hard"), "ffffffffff"),
        (
            [
                student_args(&corrupt.display().to_string(), "soft"),
                vec!["--set".into(), "distill.teacher_model=\"resnet18\"".into()],
            ]
            .concat(),
            "corrupt.safetensors",
        ),
        (
            // timm's resnet18 layout with five classes, the data has two.
            [
                student_args(&resnet, "hard"),
                vec![
                    "--set".into(),
                    "distill.teacher_model={ arch = \"resnet18\", widths = [8, 16, 32, 64] }"
                        .into(),
                ],
            ]
            .concat(),
            "5 classes",
        ),
    ];
    for (args, named) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(tmp.path(), &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("distill.teacher") && err.contains(named),
            "{named}: {err}"
        );
        let store = Store::open(&tmp.path().join("vitrun.sqlite")).unwrap();
        assert!(
            store.trials(Some("tiny_synthetic")).unwrap().is_empty(),
            "no student trial is claimed: {err}"
        );
    }
}

/// A student killed in the middle of an epoch and resumed ends with the numbers of one run
/// straight through: the teacher's logits of every batch are what they were.
#[test]
fn a_killed_distillation_trial_resumes_to_the_same_metrics() {
    let teachers = tempfile::tempdir().unwrap();
    let (_, dir) = teacher(teachers.path(), &[]);
    let weights = dir.join("best/model.safetensors").display().to_string();
    let mut args = student_args(&weights, "soft");
    args.extend(
        [
            "--set",
            "distill.teacher_model={ arch = \"resnet18\", widths = [8, 16, 32, 64] }",
            "--set",
            "distill.tau=2.0",
            "--set",
            "train.epochs=3",
            "--set",
            "data.train_size=1600",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let straight = tempfile::tempdir().unwrap();
    run_ok(straight.path(), &args);

    let stopped = tempfile::tempdir().unwrap();
    let runs_set = runs_set(stopped.path());
    let mut full = vec!["run", TINY, "--quiet", "--set", &runs_set];
    full.extend_from_slice(&args);
    let mut child = vitrun(&full).spawn().unwrap();
    let progress = |runs: &Path| -> Option<String> {
        std::fs::read_dir(runs.join("tiny_synthetic"))
            .ok()?
            .flatten()
            .find_map(|t| std::fs::read_to_string(t.path().join("last/progress.json")).ok())
    };
    let started = std::time::Instant::now();
    while !progress(stopped.path()).is_some_and(|p| p.contains("\"epoch\": 1")) {
        assert!(started.elapsed().as_secs() < 120, "no first epoch");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let mut resume = full.clone();
    resume.push("--resume");
    let out = vitrun(&resume).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let a = Store::open(&straight.path().join("vitrun.sqlite")).unwrap();
    let b = Store::open(&stopped.path().join("vitrun.sqlite")).unwrap();
    let id = a.trials(None).unwrap()[0].id.clone();
    let keys = [
        ("train", "loss"),
        ("train", "loss_cls"),
        ("train", "loss_dist"),
        ("val", "top1"),
        ("val", "teacher_agreement"),
        ("val", "top1_dist"),
    ];
    assert_same_series(&a, &b, &id, &keys, Some(3));
}

/// The sum of a trial's `split/name` over its epochs.
fn total(store: &Store, id: &str, split: &str, name: &str) -> f64 {
    series(store, id, split, name).iter().sum()
}

/// `distill.cache`: a second student that sees the same images (another alpha, same seed and
/// stream) runs no teacher forward at all; a student whose cache was filled by another run
/// ends with the bits of a run that computed every output; an entry damaged on disk is
/// recomputed, never trusted; `ls` shows the forwards saved.
#[test]
fn the_teacher_cache_serves_students_of_one_stream_the_bits_a_recompute_gives() {
    let teachers = tempfile::tempdir().unwrap();
    let (_, dir) = teacher(teachers.path(), &["--set", "train.epochs=2"]);
    let weights = dir.join("best/model.safetensors").display().to_string();
    let (first, second) = (
        cached_student(&weights, "0.5"),
        cached_student(&weights, "0.7"),
    );
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    let second: Vec<&str> = second.iter().map(String::as_str).collect();

    let shared = tempfile::tempdir().unwrap();
    run_ok(shared.path(), &first);
    run_ok(shared.path(), &second);
    let store = Store::open(&shared.path().join("vitrun.sqlite")).unwrap();
    let trials = store.trials(Some("tiny_synthetic")).unwrap();
    assert_eq!(trials.len(), 2);
    // Newest first. The first student computed each training batch once (every epoch draws
    // other crops) and the validation split once (the second epoch's is the first's); the
    // second student found every output the first computed.
    let (later, earlier) = (&trials[0].id, &trials[1].id);
    let work = |id: &str, split: &str| {
        [
            total(&store, id, split, "teacher_forwards"),
            total(&store, id, split, "teacher_cached"),
        ]
    };
    assert_eq!(work(earlier, "train"), [640.0, 0.0]);
    assert_eq!(work(earlier, "val"), [64.0, 64.0]);
    assert_eq!(work(later, "train"), [0.0, 640.0]);
    assert_eq!(work(later, "val"), [0.0, 128.0]);
    let runs = shared.path().display().to_string();
    let ls = vitrun(&["ls", "--runs-dir", &runs]).output().unwrap();
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(
        ls.contains("answered by distill.cache"),
        "ls shows the forwards saved: {ls}"
    );

    // A fresh run, and a run on the first run's cache with one entry damaged: the same bits.
    let fresh = tempfile::tempdir().unwrap();
    run_ok(fresh.path(), &first);
    let reused = tempfile::tempdir().unwrap();
    let cache = shared.path().join(".teacher-cache");
    let copy = reused.path().join(".teacher-cache");
    Command::new("cp")
        .args([
            "-r",
            &cache.display().to_string(),
            &copy.display().to_string(),
        ])
        .status()
        .unwrap();
    let entry = walk(&copy)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "bin"))
        .unwrap();
    let mut bytes = std::fs::read(&entry).unwrap();
    let last = bytes.len() - 40;
    bytes[last] ^= 0x40;
    std::fs::write(&entry, bytes).unwrap();
    run_ok(reused.path(), &first);
    let a = Store::open(&fresh.path().join("vitrun.sqlite")).unwrap();
    let b = Store::open(&reused.path().join("vitrun.sqlite")).unwrap();
    let id = a.trials(None).unwrap()[0].id.clone();
    let keys = [
        ("train", "loss"),
        ("train", "loss_dist"),
        ("val", "loss"),
        ("val", "top1"),
        ("val", "teacher_agreement"),
    ];
    assert_same_series(&a, &b, &id, &keys, Some(2));
    let recomputed =
        total(&b, &id, "train", "teacher_forwards") + total(&b, &id, "val", "teacher_forwards");
    assert!(
        (1.0..=32.0).contains(&recomputed),
        "only the damaged entry's batch is recomputed: {recomputed}"
    );
}

/// A soft student of the teacher file `weights` with `distill.cache` on, Mixup on, weight
/// `alpha`: 2 epochs of 320 images.
fn cached_student(weights: &str, alpha: &str) -> Vec<String> {
    let mut args = student_args(weights, "soft");
    args.extend(
        [
            "--set",
            "distill.teacher_model={ arch = \"resnet18\", widths = [8, 16, 32, 64] }",
            "--set",
            "distill.cache=true",
            "--set",
            &format!("distill.alpha={alpha}"),
            "--set",
            "augment.mixup.enabled=true",
            "--set",
            "train.epochs=2",
            "--set",
            "data.train_size=320",
            "--set",
            "data.val_size=64",
        ]
        .map(String::from),
    );
    args
}

/// Two students that share a cache run at once: each writes and reads entries the other may
/// be writing, and each ends with the numbers it has alone.
#[test]
fn students_running_at_once_share_the_teacher_cache_safely() {
    let teachers = tempfile::tempdir().unwrap();
    let (_, dir) = teacher(teachers.path(), &["--set", "train.epochs=2"]);
    let weights = dir.join("best/model.safetensors").display().to_string();
    let students = [
        cached_student(&weights, "0.5"),
        cached_student(&weights, "0.7"),
    ];
    let shared = tempfile::tempdir().unwrap();
    let runs_set = runs_set(shared.path());
    let children: Vec<_> = students
        .iter()
        .map(|args| {
            let mut full = vec!["run", TINY, "--quiet", "--set", &runs_set];
            full.extend(args.iter().map(String::as_str));
            vitrun(&full).spawn().unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let together = Store::open(&shared.path().join("vitrun.sqlite")).unwrap();
    for args in &students {
        let alone = tempfile::tempdir().unwrap();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_ok(alone.path(), &args);
        let alone = Store::open(&alone.path().join("vitrun.sqlite")).unwrap();
        let id = alone.trials(None).unwrap()[0].id.clone();
        let keys = [
            ("train", "loss"),
            ("val", "loss"),
            ("val", "teacher_agreement"),
        ];
        assert_same_series(&together, &alone, &id, &keys, None);
    }
    let leftovers: Vec<PathBuf> = walk(&shared.path().join(".teacher-cache"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary file is left: {leftovers:?}"
    );
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// `vitrun check` says what the teacher takes: its size, and the resize of the student's
/// images when the sizes differ; of a missing trial teacher it says so.
#[test]
fn check_names_the_teachers_input_size_and_the_resize() {
    let resnet = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/resnet/resnet18_w8.safetensors")
        .display()
        .to_string();
    let tmp = tempfile::tempdir().unwrap();
    let runs_set = runs_set(tmp.path());
    let check = |teacher: &str, extra: &[&str]| {
        let mut args = vec!["check", TINY, "--set", &runs_set];
        let student = student_args(teacher, "hard");
        args.extend(student.iter().map(String::as_str));
        args.extend_from_slice(extra);
        let out = vitrun(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let model = "distill.teacher_model={ arch = \"resnet18\", widths = [8, 16, 32, 64] }";
    let resized = check(
        &resnet,
        &["--set", model, "--set", "distill.teacher_image_size=32"],
    );
    assert!(
        resized.contains("# distill: teacher resnet18 (")
            && resized.contains(
                "takes 32 px: the student's 16 px images are resized to it on the fly (bilinear, the teacher's data.interpolation); it sees the augmented batch before Mixup/CutMix"
            ),
        "{resized}"
    );
    let bicubic = check(
        &resnet,
        &[
            "--set",
            model,
            "--set",
            "distill.teacher_image_size=32",
            "--set",
            "data.interpolation=\"bicubic\"",
        ],
    );
    assert!(
        bicubic.contains("resized to it on the fly (bicubic, the teacher's data.interpolation)"),
        "{bicubic}"
    );
    let same = check(
        &resnet,
        &["--set", model, "--set", "distill.teacher_input=\"mixed\""],
    );
    assert!(
        same.contains("takes 16 px: the student's size, no resize; it sees the augmented batch after Mixup/CutMix"),
        "{same}"
    );
    let missing = check("trial:abcdef", &[]);
    assert!(
        missing.contains("# distill: teacher trial:abcdef: ") && missing.contains("abcdef"),
        "{missing}"
    );
}
