//! Learning rate per step: linear warmup, then cosine, constant or step decay.

use crate::config::{OptimizerConfig, Schedule};

/// The learning-rate schedule of one trial, in optimizer steps.
#[derive(Debug, Clone)]
pub struct LrSchedule {
    config: OptimizerConfig,
    steps_per_epoch: usize,
    total_steps: usize,
    warmup_steps: usize,
}

impl LrSchedule {
    pub fn new(config: &OptimizerConfig, steps_per_epoch: usize, epochs: usize) -> Self {
        let steps_per_epoch = steps_per_epoch.max(1);
        LrSchedule {
            config: config.clone(),
            steps_per_epoch,
            total_steps: steps_per_epoch * epochs,
            warmup_steps: (config.warmup_epochs * steps_per_epoch as f64).round() as usize,
        }
    }

    /// Learning rate for 0-based optimizer step `step`.
    pub fn lr(&self, step: usize) -> f64 {
        let c = &self.config;
        if step < self.warmup_steps {
            return c.warmup_lr + (c.lr - c.warmup_lr) * step as f64 / self.warmup_steps as f64;
        }
        match c.schedule {
            Schedule::Constant => c.lr,
            Schedule::Step => {
                let epoch = step / self.steps_per_epoch;
                c.lr * c.gamma.powi((epoch / c.step_epochs) as i32)
            }
            Schedule::Cosine => {
                let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
                let t = ((step - self.warmup_steps) as f64 / span).min(1.0);
                c.min_lr + 0.5 * (c.lr - c.min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}
