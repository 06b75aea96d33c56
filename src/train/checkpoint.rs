//! Trial checkpoints: `last/` (model, optimizer, weight average, progress) for resume and
//! `best/` (model) by the task's main validation metric. Model weights are timm-named `.safetensors`; folders are
//! swapped in atomically.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::contract::{Checkpoint, CheckpointDir, TrialDir};
use crate::model::{read_state_dict, write_safetensors, CheckpointError, StateDict};

/// Progress saved with a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Progress {
    /// Epochs completed (1-based count).
    pub epoch: usize,
    /// Optimizer steps taken.
    pub step: u64,
    /// The best validation value of the task's main metric (top-1, mIoU) so far.
    /// Before the first epoch ends (a mid-epoch checkpoint in epoch 1) there is none: −∞,
    /// written as JSON's `null`.
    #[serde(alias = "best_top1", deserialize_with = "null_is_no_score")]
    pub best_score: f64,
    pub best_epoch: usize,
    /// Whether `best/` holds the weight average (`[train.ema]`) rather than the weights.
    #[serde(default)]
    pub best_is_ema: bool,
    /// Set in a checkpoint saved during epoch `epoch + 1` (a stop signal mid-epoch): how far
    /// into it the weights are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<PartialEpoch>,
    /// The float16 loss scaler's state (`train.precision = "f16"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<super::loss_scale::LossScale>,
}

/// Reads a best score, `null` (JSON's spelling of −∞) as no score yet.
fn null_is_no_score<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NEG_INFINITY))
}

/// The part of an epoch trained before a mid-epoch checkpoint, with the running sums its
/// epoch figures continue from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PartialEpoch {
    /// Batches of the epoch trained (the index of the next one).
    pub batches_done: usize,
    /// Batches the whole epoch has.
    pub batches: usize,
    /// Sum of batch loss × batch images so far.
    pub loss_sum: f64,
    /// Sum of the task's training score × images so far.
    pub score_sum: f64,
    /// Images trained on so far.
    pub seen: usize,
    /// Images skipped as unreadable so far.
    pub skipped: usize,
    /// Sums of the loss's named parts × batch images so far (`loss_cls`, `loss_dist`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<(String, f64)>,
}

impl PartialEpoch {
    /// Adds a batch's loss parts (batch means) weighted by its `images`.
    pub fn add_parts(&mut self, parts: &[(&'static str, f64)], images: usize) {
        for &(name, value) in parts {
            let weighted = value * images as f64;
            match self.parts.iter_mut().find(|(n, _)| n == name) {
                Some((_, sum)) => *sum += weighted,
                None => self.parts.push((name.to_string(), weighted)),
            }
        }
    }
}

impl Progress {
    /// Where training continues from this progress: `after epoch 3`, or `in epoch 4 after
    /// batch 12 of 40`.
    pub fn resume_point(&self) -> String {
        match &self.partial {
            None => format!("after epoch {}", self.epoch),
            Some(p) => format!(
                "in epoch {} after batch {} of {}",
                self.epoch + 1,
                p.batches_done,
                p.batches
            ),
        }
    }
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

/// The checkpoint folder `which` of `trial` with a suffix (`last.new`, `last.old`).
fn beside(trial: &TrialDir, which: Checkpoint, suffix: &str) -> CheckpointDir {
    CheckpointDir::at(trial.path().join(format!("{}.{suffix}", which.name())))
}

/// Writes checkpoint `which` of `trial` via a `.new` folder and a rename, so a crash leaves
/// the old one; returns the model's file.
pub fn save(
    trial: &TrialDir,
    which: Checkpoint,
    weights: Weights<'_>,
    progress: &Progress,
) -> Result<PathBuf, CheckpointError> {
    let target = trial.checkpoint(which);
    let fresh = beside(trial, which, "new");
    let old = beside(trial, which, "old");
    let _ = std::fs::remove_dir_all(fresh.path());
    std::fs::create_dir_all(fresh.path()).map_err(|e| io_err(fresh.path(), e))?;
    write_safetensors(&fresh.model(), weights.model)?;
    if let Some(opt) = weights.optimizer {
        write_safetensors(&fresh.optimizer(), opt)?;
    }
    if let Some(ema) = weights.ema {
        write_safetensors(&fresh.ema(), ema)?;
    }
    let json = serde_json::to_string_pretty(progress).expect("progress serialises");
    std::fs::write(fresh.progress(), json).map_err(|e| io_err(fresh.path(), e))?;
    let (target, fresh, old) = (target.path(), fresh.path(), old.path());
    let _ = std::fs::remove_dir_all(old);
    if target.exists() {
        std::fs::rename(target, old).map_err(|e| io_err(target, e))?;
    }
    std::fs::rename(fresh, target).map_err(|e| io_err(target, e))?;
    let _ = std::fs::remove_dir_all(old);
    Ok(trial.checkpoint(which).model())
}

/// The progress of `trial`'s `last/` checkpoint (or its `.old` copy), without its tensors.
pub fn progress_of(trial: &TrialDir) -> Option<Progress> {
    [
        trial.checkpoint(Checkpoint::Last),
        beside(trial, Checkpoint::Last, "old"),
    ]
    .iter()
    .find_map(|c| std::fs::read_to_string(c.progress()).ok())
    .and_then(|text| serde_json::from_str(&text).ok())
}

/// Reads checkpoint `which` of `trial` (or the `.old` copy a crash mid-swap left behind), if
/// any.
pub fn load(trial: &TrialDir, which: Checkpoint) -> Result<Option<Loaded>, CheckpointError> {
    let Some(folder) = [trial.checkpoint(which), beside(trial, which, "old")]
        .into_iter()
        .find(|c| c.progress().is_file())
    else {
        return Ok(None);
    };
    let progress_path = folder.progress();
    let text = std::fs::read_to_string(&progress_path).map_err(|e| CheckpointError::Read {
        file: progress_path.display().to_string(),
        reason: e.to_string(),
    })?;
    let progress: Progress = serde_json::from_str(&text).map_err(|e| CheckpointError::Read {
        file: progress_path.display().to_string(),
        reason: e.to_string(),
    })?;
    let model = read_state_dict(&folder.model())?;
    let optional = |path: PathBuf| -> Result<Option<StateDict>, CheckpointError> {
        path.is_file().then(|| read_state_dict(&path)).transpose()
    };
    Ok(Some(Loaded {
        model,
        optimizer: optional(folder.optimizer())?,
        ema: optional(folder.ema())?,
        progress,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkpoint saved mid-way through epoch 1 has no best score yet; it reads back as such.
    #[test]
    fn a_mid_epoch_progress_without_a_best_score_reads_back_exactly() {
        let progress = Progress {
            epoch: 0,
            step: 7,
            best_score: f64::NEG_INFINITY,
            best_epoch: 0,
            best_is_ema: false,
            partial: Some(PartialEpoch {
                batches_done: 7,
                batches: 25,
                loss_sum: 0.1 + 0.2,
                score_sum: 1.0 / 3.0,
                seen: 224,
                skipped: 1,
                parts: vec![("loss_dist".into(), 0.7)],
            }),
            loss_scale: Some(crate::train::loss_scale::LossScale {
                scale: 1024.0,
                good_steps: 3,
                skipped: 9,
            }),
        };
        let text = serde_json::to_string(&progress).unwrap();
        let back: Progress = serde_json::from_str(&text).unwrap();
        assert_eq!(back, progress);
        assert_eq!(back.resume_point(), "in epoch 1 after batch 7 of 25");
        let old = r#"{"epoch": 3, "step": 30, "best_top1": 0.5, "best_epoch": 2}"#;
        let old: Progress = serde_json::from_str(old).unwrap();
        assert_eq!(old.resume_point(), "after epoch 3");
        assert_eq!(old.partial, None);
    }
}
