//! The names the store files a trial's events and artifacts under (`events.kind`,
//! `artifacts.kind`), and the splits its metrics are logged under (`metrics.split`).

use std::fmt;

use super::Status;

/// Something that happened to a trial, recorded with a message in `events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Weights loaded from `model.pretrained`, with what the checkpoint covered.
    Pretrained,
    /// The distillation teacher loaded (`[distill]`), with what it is.
    Teacher,
    /// Training continued from `last/`.
    Resume,
    /// Resumed without optimizer state (`--force`).
    FreshOptimizer,
    /// Resumed without the weight average's state (`--force`).
    FreshEma,
    /// The trial's process started, with its command line.
    Started,
    /// Unreadable images skipped under `data.skip_bad`.
    Skipped,
    /// An early-stopping decision (continue or prune) with its reason.
    EarlyStop,
    /// The scheduler relaunched a failed trial.
    Retry,
    /// The trial ended as this status, with the cause (diverged, interrupted, preempted, a
    /// crash or a vanished process the scheduler saw).
    Ended(Status),
    /// A remark of a tool or a test.
    Note,
}

impl Event {
    /// The word stored in `events.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Pretrained => "pretrained",
            Event::Teacher => "teacher",
            Event::Resume => "resume",
            Event::FreshOptimizer => "fresh_optimizer",
            Event::FreshEma => "fresh_ema",
            Event::Started => "started",
            Event::Skipped => "skipped",
            Event::EarlyStop => "early_stop",
            Event::Retry => "retry",
            Event::Ended(status) => status.as_str(),
            Event::Note => "note",
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A file a trial produced, recorded with its path in `artifacts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Artifact {
    /// The resolved config (`config.toml`).
    Config,
    /// The pretrained weights the trial started from.
    Pretrained,
    /// The distillation teacher's weights.
    Teacher,
    /// `last/model.safetensors`.
    CheckpointLast,
    /// `best/model.safetensors`.
    CheckpointBest,
}

impl Artifact {
    /// The word stored in `artifacts.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Artifact::Config => "config",
            Artifact::Pretrained => "pretrained",
            Artifact::Teacher => "teacher",
            Artifact::CheckpointLast => "checkpoint_last",
            Artifact::CheckpointBest => "checkpoint_best",
        }
    }
}

impl fmt::Display for Artifact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which pass a metric was measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Split {
    /// The training pass.
    Train,
    /// Validation of the weights.
    Val,
    /// Validation of the weight average (`[train.ema]`).
    ValEma,
}

impl Split {
    /// The word stored in `metrics.split` (the part of `split/name` before the slash).
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::ValEma => "val_ema",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
