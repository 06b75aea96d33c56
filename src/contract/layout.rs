//! The runs folder's layout, shared by every process that writes or reads it (trials, the
//! scheduler, SLURM tasks, `sync`, reports): the store, each experiment's folder, each trial's
//! folder and the files in it. No path inside a runs folder is spelled anywhere else.
//!
//! ```text
//! runs/vitrun.sqlite                      the run store
//! runs/.teacher-cache/<teacher>/          distillation teachers' kept outputs (`distill.cache`)
//! runs/<experiment>/report/               the experiment's or sweep's report
//! runs/<experiment>/slurm/<submission>/   SLURM submissions (plan.json, the batch script)
//! runs/<experiment>/<trial>/config.toml   the resolved config
//!                          /classes.json  class names in label order
//!                          /log.txt       a scheduled trial's output
//!                          /last/ /best/  checkpoints (model, optimizer, ema, progress)
//!                          /shards/       a cluster trial's records, folded into the store
//!                          /report/       the trial's report
//! ```

use std::path::{Path, PathBuf};

/// The folder of a trial's shards, in its trial folder.
pub const SHARDS: &str = "shards";

/// A runs folder (`train.runs_dir`, `--runs-dir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunsDir {
    root: PathBuf,
}

impl RunsDir {
    pub fn new(root: impl Into<PathBuf>) -> RunsDir {
        RunsDir { root: root.into() }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The run store: `vitrun.sqlite`.
    pub fn store(&self) -> PathBuf {
        self.root.join("vitrun.sqlite")
    }

    /// The folder of the distillation teachers' kept outputs (`distill.cache`).
    pub fn teacher_cache(&self) -> PathBuf {
        self.root.join(".teacher-cache")
    }

    /// The folder of experiment `name`.
    pub fn experiment(&self, name: &str) -> ExperimentDir {
        ExperimentDir {
            path: self.root.join(name),
        }
    }
}

/// An experiment's folder: its trials' folders, its report, its SLURM submissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExperimentDir {
    path: PathBuf,
}

impl ExperimentDir {
    /// The folder of an experiment at `path` (`runs/<experiment>`).
    pub fn at(path: impl Into<PathBuf>) -> ExperimentDir {
        ExperimentDir { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The folder of trial `id`.
    pub fn trial(&self, id: &str) -> TrialDir {
        TrialDir {
            path: self.path.join(id),
        }
    }

    /// The experiment's (or sweep's) report: `report/`.
    pub fn report(&self) -> PathBuf {
        self.path.join("report")
    }

    /// Where SLURM submissions are written: `slurm/`.
    pub fn submissions(&self) -> PathBuf {
        self.path.join("slurm")
    }

    /// The proposals its searches' SLURM array tasks made (`track::proposal_files`).
    pub fn proposals(&self) -> PathBuf {
        self.path.join("proposals")
    }

    /// Per-rung early-stopping summaries of its cluster trials (`track::rungs`).
    pub fn rungs(&self) -> PathBuf {
        self.path.join("rungs")
    }
}

/// Which of a trial's checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoint {
    /// The latest epoch's, with optimizer state: what a resume continues from.
    Last,
    /// The best epoch's weights by the task's main metric.
    Best,
}

impl Checkpoint {
    /// The folder's name.
    pub fn name(self) -> &'static str {
        match self {
            Checkpoint::Last => "last",
            Checkpoint::Best => "best",
        }
    }
}

/// A trial's folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrialDir {
    path: PathBuf,
}

impl TrialDir {
    /// The folder of a trial at `path` (`runs/<experiment>/<trial>`).
    pub fn at(path: impl Into<PathBuf>) -> TrialDir {
        TrialDir { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The resolved config: `config.toml`.
    pub fn config(&self) -> PathBuf {
        self.path.join("config.toml")
    }

    /// Class names in label order: `classes.json`.
    pub fn classes(&self) -> PathBuf {
        self.path.join("classes.json")
    }

    /// The output of a trial the scheduler or a SLURM task ran: `log.txt`.
    pub fn log(&self) -> PathBuf {
        self.path.join("log.txt")
    }

    /// The trial's report: `report/`.
    pub fn report(&self) -> PathBuf {
        self.path.join("report")
    }

    /// A cluster trial's shards: `shards/`.
    pub fn shards(&self) -> PathBuf {
        self.path.join(SHARDS)
    }

    /// One of its checkpoints.
    pub fn checkpoint(&self, which: Checkpoint) -> CheckpointDir {
        CheckpointDir {
            path: self.path.join(which.name()),
        }
    }

    /// The weights a report or a prediction loads: `best/`'s, else `last/`'s.
    pub fn weights(&self) -> Option<PathBuf> {
        [Checkpoint::Best, Checkpoint::Last]
            .into_iter()
            .map(|c| self.checkpoint(c).model())
            .find(|p| p.is_file())
    }
}

/// The weights file of a folder a user names: a checkpoint folder's `model.safetensors`, else
/// a trial folder's `best/`, else its `last/`.
pub fn weights_in(folder: &Path) -> Option<PathBuf> {
    Some(CheckpointDir::at(folder).model())
        .filter(|p| p.is_file())
        .or_else(|| TrialDir::at(folder).weights())
}

/// A checkpoint folder (`last/`, `best/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointDir {
    path: PathBuf,
}

impl CheckpointDir {
    /// A checkpoint folder at `path`.
    pub fn at(path: impl Into<PathBuf>) -> CheckpointDir {
        CheckpointDir { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The weights: `model.safetensors` (timm's names).
    pub fn model(&self) -> PathBuf {
        self.path.join("model.safetensors")
    }

    /// The optimizer's moments: `optimizer.safetensors`.
    pub fn optimizer(&self) -> PathBuf {
        self.path.join("optimizer.safetensors")
    }

    /// The weight average of `[train.ema]`: `ema.safetensors`.
    pub fn ema(&self) -> PathBuf {
        self.path.join("ema.safetensors")
    }

    /// Epoch, step and best score: `progress.json`, written last (its presence marks the
    /// checkpoint whole).
    pub fn progress(&self) -> PathBuf {
        self.path.join("progress.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout the README documents and stores in the field have.
    #[test]
    fn paths_are_the_documented_ones() {
        let runs = RunsDir::new("runs");
        assert_eq!(runs.store(), Path::new("runs/vitrun.sqlite"));
        let exp = runs.experiment("deit");
        assert_eq!(exp.report(), Path::new("runs/deit/report"));
        assert_eq!(exp.submissions(), Path::new("runs/deit/slurm"));
        let t = exp.trial("abc123");
        assert_eq!(t.log(), Path::new("runs/deit/abc123/log.txt"));
        assert_eq!(t.classes(), Path::new("runs/deit/abc123/classes.json"));
        assert_eq!(t.config(), Path::new("runs/deit/abc123/config.toml"));
        assert_eq!(t.shards(), Path::new("runs/deit/abc123/shards"));
        let last = t.checkpoint(Checkpoint::Last);
        assert_eq!(
            last.model(),
            Path::new("runs/deit/abc123/last/model.safetensors")
        );
        assert_eq!(
            last.progress(),
            Path::new("runs/deit/abc123/last/progress.json")
        );
        assert_eq!(
            t.checkpoint(Checkpoint::Best).ema(),
            Path::new("runs/deit/abc123/best/ema.safetensors")
        );
    }
}
