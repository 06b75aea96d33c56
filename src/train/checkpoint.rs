//! Trial checkpoints: `last/` (model, optimizer, weight average, progress) for resume and
//! `best/` (model) by the task's main validation metric. Model weights are timm-named `.safetensors`; folders are
//! swapped in atomically.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{read_state_dict, write_safetensors, CheckpointError, StateDict};

/// Progress saved with a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Progress {
    /// Epochs completed (1-based count).
    pub epoch: usize,
    /// Optimizer steps taken.
    pub step: u64,
    /// The best validation value of the task's main metric (top-1, mIoU) so far.
    #[serde(alias = "best_top1")]
    pub best_score: f64,
    pub best_epoch: usize,
    /// Whether `best/` holds the weight average (`[train.ema]`) rather than the weights.
    #[serde(default)]
    pub best_is_ema: bool,
}

/// A checkpoint as read back.
pub struct Loaded {
    pub model: StateDict,
    pub optimizer: Option<StateDict>,
    /// The weight average (`ema.safetensors`), when the trial keeps one.
    pub ema: Option<StateDict>,
    pub progress: Progress,
}

/// The files of one checkpoint besides its progress.
pub struct Weights<'a> {
    pub model: &'a StateDict,
    pub optimizer: Option<&'a StateDict>,
    pub ema: Option<&'a StateDict>,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Write {
        file: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Writes `dir/<name>/` via `dir/<name>.new/` and a rename, so a crash leaves the old one.
pub fn save(
    dir: &Path,
    name: &str,
    weights: Weights<'_>,
    progress: &Progress,
) -> Result<PathBuf, CheckpointError> {
    let target = dir.join(name);
    let fresh = dir.join(format!("{name}.new"));
    let old = dir.join(format!("{name}.old"));
    let _ = std::fs::remove_dir_all(&fresh);
    std::fs::create_dir_all(&fresh).map_err(|e| io_err(&fresh, e))?;
    write_safetensors(&fresh.join("model.safetensors"), weights.model)?;
    if let Some(opt) = weights.optimizer {
        write_safetensors(&fresh.join("optimizer.safetensors"), opt)?;
    }
    if let Some(ema) = weights.ema {
        write_safetensors(&fresh.join("ema.safetensors"), ema)?;
    }
    let json = serde_json::to_string_pretty(progress).expect("progress serialises");
    std::fs::write(fresh.join("progress.json"), json).map_err(|e| io_err(&fresh, e))?;
    let _ = std::fs::remove_dir_all(&old);
    if target.exists() {
        std::fs::rename(&target, &old).map_err(|e| io_err(&target, e))?;
    }
    std::fs::rename(&fresh, &target).map_err(|e| io_err(&target, e))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(target)
}

/// Reads `dir/<name>/` (or the `.old` copy a crash mid-swap left behind), if any.
pub fn load(dir: &Path, name: &str) -> Result<Option<Loaded>, CheckpointError> {
    let Some(folder) = [dir.join(name), dir.join(format!("{name}.old"))]
        .into_iter()
        .find(|p| p.join("progress.json").is_file())
    else {
        return Ok(None);
    };
    let progress_path = folder.join("progress.json");
    let text = std::fs::read_to_string(&progress_path).map_err(|e| CheckpointError::Read {
        file: progress_path.display().to_string(),
        reason: e.to_string(),
    })?;
    let progress: Progress = serde_json::from_str(&text).map_err(|e| CheckpointError::Read {
        file: progress_path.display().to_string(),
        reason: e.to_string(),
    })?;
    let model = read_state_dict(&folder.join("model.safetensors"))?;
    let optional = |file: &str| -> Result<Option<StateDict>, CheckpointError> {
        let path = folder.join(file);
        path.is_file().then(|| read_state_dict(&path)).transpose()
    };
    Ok(Some(Loaded {
        model,
        optimizer: optional("optimizer.safetensors")?,
        ema: optional("ema.safetensors")?,
        progress,
    }))
}
