//! The training loop, optimizers and schedules, losses and metrics, checkpoints.

pub mod backend;
pub mod checkpoint;
pub mod ema;
pub mod loss;
pub mod optim;
pub mod pretrained;
mod probe;
pub mod schedule;
mod trial;

pub use probe::probe;
pub use trial::{
    evaluate, run_trial, EpochGate, EpochSummary, Evaluation, Observer, Outcome, TrialRun,
    CLASSES_FILE,
};
