//! What crosses a process boundary or the run store, defined once: a trial's status, the exit
//! codes of `vitrun run`/`vitrun trial`, metric names with the direction that is better, the
//! runs folder's layout, and the names of events, artifacts and splits. Every other module
//! writes and parses these through the types here, never as loose strings or numbers. It also
//! holds the words every message shares ([`count`]: "1 trial", "3 trials").

mod event;
mod exit;
pub mod layout;
mod metric;
mod status;
mod words;

pub use event::{Artifact, Event, Split};
pub use exit::TrialExit;
pub use layout::{weights_in, Checkpoint, CheckpointDir, ExperimentDir, RunsDir, TrialDir};
pub use metric::{Goal, Metric, TaskMetrics};
pub use status::{ParseStatusError, Status};
pub use words::count;
