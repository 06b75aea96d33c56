//! The training loop, optimizers and schedules, losses and metrics, checkpoints.

pub mod backend;
pub mod checkpoint;
pub mod early_stop;
pub mod ema;
pub mod gpus;
mod grads;
pub mod loss_scale;
pub mod optim;
pub mod pretrained;
mod probe;
pub mod process;
pub mod schedule;
pub mod teacher;
pub mod teacher_cache;
mod trial;

pub use early_stop::{EpochGate, Judge};
pub use probe::{probe, ProbeReport, ProbeSteps};
pub use trial::{
    evaluate, run_trial, EpochSummary, Eval, Evaluation, Observer, Outcome, TrialModel, TrialRun,
};
