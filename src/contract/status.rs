//! A trial's lifecycle state as the store records it.

use std::fmt;
use std::str::FromStr;

/// Where a trial stands. Failures are split by cause so that a sweep can choose which to
/// retry (`[sweep] retry_on`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Planned by a sweep, not started yet.
    Queued,
    /// Claimed by a live process (its pid and host are in the row).
    Running,
    Finished,
    /// The trial stopped on an error it reported itself (bad data, bad checkpoint, …).
    Failed,
    /// The process died: a panic, a non-zero exit without a recorded cause, or a signal.
    Crashed,
    /// Killed under memory pressure, or an allocation failed.
    Oom,
    /// The loss became NaN or infinite.
    Diverged,
    /// Stopped on request (Ctrl-C, SIGTERM); resumes from its last checkpoint.
    Interrupted,
    /// Recorded as running, but its process is gone (kill -9, a lost machine).
    Stale,
    /// Stopped early by the sweep's rule.
    Pruned,
    /// Stopped by its cluster (preemption, time limit) after checkpointing, and requeued: it
    /// resumes from its checkpoint and is never counted as failed.
    Preempted,
}

impl Status {
    /// Every status, in the order the schema lists them.
    pub const ALL: [Status; 11] = [
        Status::Queued,
        Status::Running,
        Status::Finished,
        Status::Failed,
        Status::Crashed,
        Status::Oom,
        Status::Diverged,
        Status::Interrupted,
        Status::Stale,
        Status::Pruned,
        Status::Preempted,
    ];

    /// The word stored in `trials.status` and shown by `vitrun ls`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Finished => "finished",
            Status::Failed => "failed",
            Status::Crashed => "crashed",
            Status::Oom => "oom",
            Status::Diverged => "diverged",
            Status::Interrupted => "interrupted",
            Status::Stale => "stale",
            Status::Pruned => "pruned",
            Status::Preempted => "preempted",
        }
    }

    /// A trial that reached an end a re-run would not change: a sweep skips it.
    pub fn is_done(self) -> bool {
        matches!(self, Status::Finished | Status::Pruned | Status::Diverged)
    }

    /// A trial that ended badly and may be run again (`retry_on` picks which).
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Status::Failed | Status::Crashed | Status::Oom | Status::Interrupted | Status::Stale
        )
    }

    /// The failure kinds, for `retry_on` and its error message.
    pub fn failures() -> impl Iterator<Item = Status> {
        Status::ALL.into_iter().filter(|s| s.is_failure())
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A status word that is not one of [`Status::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown trial status {0:?}; known: queued, running, finished, failed, crashed, oom, diverged, interrupted, stale, pruned, preempted")]
pub struct ParseStatusError(pub String);

impl FromStr for Status {
    type Err = ParseStatusError;

    fn from_str(s: &str) -> Result<Status, ParseStatusError> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| ParseStatusError(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_parses_back_from_its_word() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>(), Ok(s));
        }
        assert!("done".parse::<Status>().is_err());
    }
}
