//! What crosses a process boundary or the run store, defined once: a trial's status, the exit
//! codes of `vitrun run`/`vitrun trial`, and metric names with the direction that is better.
//! Every other module writes and parses these through the types here, never as loose strings
//! or numbers.

mod exit;
mod metric;
mod status;

pub use exit::TrialExit;
pub use metric::{Goal, Metric};
pub use status::{ParseStatusError, Status};
