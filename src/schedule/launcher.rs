//! How a trial process is started: `vitrun trial FILE --set … --resume --sweep NAME`, pinned to
//! its slot's device and thread count. A trait, so tests and benchmarks can launch stand-ins.

use std::path::PathBuf;
use std::process::Command;

use super::slots::Slot;
use crate::config::DeviceSpec;
use crate::plan::PlannedTrial;

/// One launch of one trial.
pub struct Launch<'a> {
    pub trial: &'a PlannedTrial,
    pub slot: &'a Slot,
    /// 1 for the first launch in this sweep run, 2 for the first retry, …
    pub attempt: usize,
}

/// Builds the command for a trial process (the scheduler adds stdio, environment and
/// process-group settings).
pub trait Launcher {
    fn command(&self, launch: &Launch<'_>) -> Command;
}

/// Launches `vitrun trial` (the real thing).
pub struct TrialCommand {
    /// The `vitrun` executable.
    pub exe: PathBuf,
    pub file: PathBuf,
    /// The user's own `--set` overrides, applied before the sweep point.
    pub sets: Vec<String>,
    pub sweep: String,
}

/// The `train.device` a trial gets in `slot`: the backend family it asked for, on the slot's
/// device (a GPU slot is always GPU 0 of its `CUDA_VISIBLE_DEVICES`).
pub fn slot_device(asked: DeviceSpec, slot: &Slot) -> DeviceSpec {
    match (slot.gpu, asked) {
        (Some(_), DeviceSpec::TchCuda(_) | DeviceSpec::TchCpu) => DeviceSpec::TchCuda(0),
        (Some(_), DeviceSpec::Cuda(_)) => DeviceSpec::Cuda(0),
        (Some(_), _) => DeviceSpec::Auto,
        (None, DeviceSpec::TchCpu | DeviceSpec::TchCuda(_)) => DeviceSpec::TchCpu,
        (None, _) => DeviceSpec::Cpu,
    }
}

impl Launcher for TrialCommand {
    fn command(&self, launch: &Launch<'_>) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("trial").arg(&self.file);
        for set in self.sets.iter().chain(&launch.trial.sets()) {
            cmd.arg("--set").arg(set);
        }
        let device = slot_device(launch.trial.config.train.device, launch.slot);
        cmd.arg("--set")
            .arg(format!("train.device=\"{device}\""))
            .arg("--set")
            .arg(format!("train.threads={}", launch.slot.threads))
            .args([
                "--resume",
                "--sweep",
                &self.sweep,
                "--trial-id",
                &launch.trial.id,
            ]);
        cmd
    }
}
