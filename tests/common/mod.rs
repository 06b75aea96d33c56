//! Helpers shared by the tests that drive the `vitrun` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The `vitrun` binary, with no `VITRUN_*` variables leaking in from the environment.
pub fn vitrun(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vitrun"));
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("VITRUN_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// `tests/configs/NAME`.
pub fn config(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/configs")
        .join(name)
}

/// `--set train.runs_dir="RUNS"`.
pub fn runs_set(runs: &Path) -> String {
    format!("train.runs_dir={:?}", runs.display().to_string())
}

/// Stdout and stderr together.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Writes `body` as an experiment file in `dir` and returns its path.
pub fn experiment(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, body).unwrap();
    path
}

/// Polls `ready` every 5 ms for up to `secs` seconds.
pub fn wait_until(secs: u64, what: &str, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
