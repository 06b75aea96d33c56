//! The training loop, optimizers and schedules, losses and metrics, checkpoints.

pub mod backend;
pub mod checkpoint;
pub mod loss;
pub mod optim;
pub mod schedule;
mod trial;

pub use trial::{evaluate, num_cpus, run_trial, EpochSummary, Observer, Outcome, TrialRun};
