//! `trials_per_gpu = "auto"`: run `vitrun probe` (a few real training steps of the largest
//! trial) on a GPU and watch its memory with `nvidia-smi`; the slots follow from it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::plan::PlannedTrial;

/// Parses `nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits`:
/// the MiB used by `pid`.
pub fn used_by(text: &str, pid: u32) -> Option<u64> {
    text.lines().find_map(|line| {
        let (p, mib) = line.split_once(',')?;
        (p.trim().parse::<u32>().ok()? == pid)
            .then(|| mib.trim().parse().ok())
            .flatten()
    })
}

/// The trial with the most activations (batch × tokens × width × depth): the one to probe.
pub fn largest(trials: &[PlannedTrial]) -> Option<&PlannedTrial> {
    trials.iter().max_by_key(|t| {
        let c = &t.config;
        let tokens = (c.data.image_size / c.model.patch_size).pow(2) + 1;
        c.train.batch_size * tokens * c.model.embed_dim.unwrap_or(192) * c.model.depth.unwrap_or(12)
    })
}

/// Peak GPU memory (MiB) of a probe run of `trial` on GPU `gpu`, or `None` when it cannot be
/// measured (no `nvidia-smi`, the probe failed).
pub fn measure(
    exe: &Path,
    file: &Path,
    sets: &[String],
    trial: &PlannedTrial,
    gpu: usize,
) -> Option<u64> {
    let mut cmd = Command::new(exe);
    cmd.arg("probe").arg(file);
    for set in sets.iter().chain(&trial.sets()) {
        cmd.arg("--set").arg(set);
    }
    let mut child = cmd
        .env("CUDA_VISIBLE_DEVICES", gpu.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let started = Instant::now();
    let mut peak = None;
    loop {
        if let Ok(out) = Command::new("nvidia-smi")
            .args([
                "--query-compute-apps=pid,used_memory",
                "--format=csv,noheader,nounits",
            ])
            .output()
        {
            if let Some(mib) = used_by(&String::from_utf8_lossy(&out.stdout), child.id()) {
                peak = Some(peak.map_or(mib, |p: u64| p.max(mib)));
            }
        }
        match child.try_wait() {
            Ok(Some(status)) => return status.success().then_some(peak).flatten(),
            Ok(None) if started.elapsed() > Duration::from_secs(300) => {
                let _ = child.kill();
                return None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(_) => return None,
        }
    }
}
