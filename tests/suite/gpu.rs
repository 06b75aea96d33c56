//! The GPU paths as far as a machine without one can check them: `vitrun doctor` against a
//! fake `nvidia-smi`, a 16-bit precision refused on the CPU before anything is claimed, and
//! the step loop's grouped host reads and gradient checkpointing storing the same trial.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use vitrun::track::Store;

use crate::common::{assert_same_series, config, experiment, runs_set, text, vitrun};

const SMI_ROWS: &str = "0, GPU-aaaa-1111, NVIDIA H100 80GB HBM3, 580.65.06, 81559, 80000\n\
                        1, GPU-bbbb-2222, NVIDIA H100 80GB HBM3, 580.65.06, 81559, 1200\n";

/// A folder holding an `nvidia-smi` that runs `body` (a shell script).
fn fake_smi(dir: &Path, body: &str) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let smi = bin.join("nvidia-smi");
    std::fs::write(&smi, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&smi, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// `vitrun doctor ARGS` with `bin` as the whole PATH and `visible` as CUDA_VISIBLE_DEVICES.
fn doctor(bin: &Path, visible: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = vitrun(&["doctor"]);
    cmd.args(args)
        .env("PATH", bin)
        .env_remove("CUDA_VISIBLE_DEVICES");
    if let Some(v) = visible {
        cmd.env("CUDA_VISIBLE_DEVICES", v);
    }
    cmd.output().unwrap()
}

#[test]
fn doctor_reports_the_backends_the_driver_and_each_visible_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let query = "--query-gpu=index,uuid,name,driver_version,memory.total,memory.free";
    let bin = fake_smi(
        dir.path(),
        &format!(
            "[ \"$1\" = \"{query}\" ] || exit 2\nprintf '{}'",
            SMI_ROWS.replace('\n', "\\n")
        ),
    );
    let out = doctor(&bin, None, &[]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    let version = text(&vitrun(&["--version"]).output().unwrap());
    let backends = version
        .split("backends: ")
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches(')');
    assert!(said.starts_with("vitrun 0.1.0 — backends: "), "{said}");
    assert!(
        said.contains(backends),
        "the backends --version names: {said}"
    );
    assert!(
        said.contains("gpu: 2 devices (CUDA_VISIBLE_DEVICES unset), NVIDIA driver 580.65.06"),
        "{said}"
    );
    assert!(
        said.contains("  cuda:1  NVIDIA H100 80GB HBM3 (#1): 1.2 GiB free of 79.6 GiB"),
        "{said}"
    );
    if !cfg!(any(feature = "cuda", feature = "tch")) {
        assert!(
            said.contains("note: this vitrun has no GPU backend; build one with `just build-gpu`"),
            "{said}"
        );
    }

    let by_uuid = text(&doctor(&bin, Some("GPU-bbbb"), &[]));
    assert!(
        by_uuid.contains("gpu: 1 device (CUDA_VISIBLE_DEVICES=\"GPU-bbbb\")"),
        "{by_uuid}"
    );
    assert!(
        by_uuid.contains("  cuda:0  NVIDIA H100 80GB HBM3 (#1): 1.2 GiB free"),
        "{by_uuid}"
    );
    let hidden = text(&doctor(&bin, Some(""), &[]));
    assert!(
        hidden.contains("gpu: none visible (CUDA_VISIBLE_DEVICES=\"\")"),
        "{hidden}"
    );

    let broken = fake_smi(
        &dir.path().join("broken"),
        "echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\"\nexit 9",
    );
    let said = text(&doctor(&broken, None, &[]));
    assert!(
        said.contains("gpu: none (nvidia-smi failed (exit status: 9): NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.)"),
        "{said}"
    );
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let said = text(&doctor(&empty, None, &[]));
    assert!(
        said.contains("gpu: none (nvidia-smi could not be run"),
        "{said}"
    );
}

#[test]
fn doctor_judges_every_trial_of_a_file_and_fails_when_one_cannot_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = experiment(
        dir.path(),
        "precisions",
        &format!(
            "extends = {:?}\n\n[sweep]\n\"train.precision\" = [\"f32\", \"bf16\"]\n",
            config("micro.toml").display().to_string()
        ),
    );
    let empty = dir.path().join("bin");
    std::fs::create_dir_all(&empty).unwrap();
    let out = doctor(&empty, None, &[file.to_str().unwrap()]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("precisions.toml: 2 trials"), "{said}");
    let lines: Vec<&str> = said
        .lines()
        .filter(|l| l.starts_with("  ok ") || l.starts_with("  NO "))
        .collect();
    assert_eq!(lines.len(), 2, "{said}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("  ok ") && l.contains(" cpu ") && l.contains("fits the host")),
        "{said}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("  NO ")
            && l.contains("train.precision = \"bf16\" needs a backend that computes in 16 bits")),
        "{said}"
    );
    assert!(
        said.contains("1 trial of 2 cannot start on this machine"),
        "{said}"
    );
}

#[test]
fn a_16_bit_precision_on_the_cpu_is_refused_before_anything_is_claimed() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let set_runs = runs_set(&runs);
    let micro = config("micro.toml");
    let micro = micro.to_str().unwrap();
    let want = "train.precision = \"f16\" needs a backend that computes in 16 bits (cuda:N, tch-cuda:N or tch-cpu), but this trial runs on cpu (burn-flex computes in f32 only); set train.precision = \"f32\", or train.device = \"cuda:0\" with a GPU build (`just build-gpu`)";
    for command in ["check", "run"] {
        let out = vitrun(&[
            command,
            micro,
            "--set",
            &set_runs,
            "--set",
            "train.device=\"cpu\"",
            "--set",
            "train.precision=\"f16\"",
        ])
        .output()
        .unwrap();
        let said = text(&out);
        assert!(!out.status.success(), "{command}: {said}");
        assert!(
            said.contains(&format!("micro.toml (train.precision from --set): {want}")),
            "{command}: {said}"
        );
    }
    let sweep = config("tiny_sweep.toml");
    let out = vitrun(&[
        "sweep",
        sweep.to_str().unwrap(),
        "--set",
        &set_runs,
        "--set",
        "train.precision=\"bf16\"",
    ])
    .output()
    .unwrap();
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("asks for a GPU (train.precision = \"bf16\"), and this sweep has none"),
        "{said}"
    );
    let store = runs.join("vitrun.sqlite");
    let claimed = if store.exists() {
        Store::open(&store).unwrap().trials(None).unwrap().len()
    } else {
        0
    };
    assert_eq!(claimed, 0, "no trial was recorded");
}

/// `train.read_every` and `train.grad_checkpointing` say how a trial runs, not what it
/// computes: the same trial id, and bit for bit the same stored metrics.
#[test]
fn grouped_loss_reads_and_gradient_checkpointing_store_the_same_trial() {
    let dir = tempfile::tempdir().unwrap();
    let micro = config("micro.toml");
    let run = |name: &str, sets: &[&str]| -> (Store, String) {
        let runs = dir.path().join(name);
        let set_runs = runs_set(&runs);
        let mut args = vec![
            "run",
            micro.to_str().unwrap(),
            "--quiet",
            "--set",
            &set_runs,
            "--set",
            "train.batch_size=8",
        ];
        for s in sets {
            args.extend(["--set", s]);
        }
        let out = vitrun(&args).output().unwrap();
        assert!(out.status.success(), "{name}: {}", text(&out));
        let store = Store::open(&runs.join("vitrun.sqlite")).unwrap();
        let trials = store.trials(None).unwrap();
        assert_eq!(trials.len(), 1, "{name}");
        let id = trials[0].id.clone();
        (store, id)
    };
    let (every, id) = run("every", &["train.read_every=1"]);
    let (grouped, grouped_id) = run("grouped", &["train.read_every=3"]);
    let (recomputed, recomputed_id) = run(
        "recomputed",
        &["train.read_every=5", "train.grad_checkpointing=true"],
    );
    assert_eq!((&grouped_id, &recomputed_id), (&id, &id), "the same trial");
    let keys = [
        ("train", "loss"),
        ("train", "top1"),
        ("train", "step_loss"),
        ("train", "step_lr"),
        ("val", "loss"),
        ("val", "top1"),
    ];
    let steps = crate::common::series(&every, &id, "train", "step_loss").len();
    assert_eq!(steps, 16, "8 batches of 8 in each of 2 epochs, each logged");
    assert_same_series(&every, &grouped, &id, &keys, None);
    assert_same_series(&every, &recomputed, &id, &keys, None);
}

#[test]
fn host_reads_are_grouped_on_a_gpu_and_every_step_on_the_cpu_unless_set() {
    use vitrun::config::{DeviceSpec, TrainConfig};
    let mut t = TrainConfig::default();
    assert_eq!(t.read_every_on(DeviceSpec::Cuda(0)), 16);
    assert_eq!(t.read_every_on(DeviceSpec::TchCuda(1)), 16);
    assert_eq!(t.read_every_on(DeviceSpec::Cpu), 1);
    t.read_every = Some(5);
    assert_eq!(t.read_every_on(DeviceSpec::Cpu), 5);
    let micro = config("micro.toml");
    let out = vitrun(&[
        "check",
        micro.to_str().unwrap(),
        "--set",
        "train.read_every=0",
    ])
    .output()
    .unwrap();
    let said = text(&out);
    assert!(!out.status.success());
    assert!(
        said.contains("train.read_every")
            && said.contains(
                "must be at least 1 (1 = every step); leave it out for 16 on a GPU, 1 on the CPU"
            ),
        "{said}"
    );
}
