//! Metric names (`split/name`) and which direction is better.

use std::fmt;

use super::event::Split;

/// Whether larger or smaller values of a metric are better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    Maximize,
    Minimize,
}

impl Goal {
    /// Whether `a` is better than `b`.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            Goal::Maximize => a > b,
            Goal::Minimize => a < b,
        }
    }

    /// The best of `values` (the first of equals), if there is one.
    pub fn best(self, values: impl IntoIterator<Item = f64>) -> Option<f64> {
        values
            .into_iter()
            .reduce(|a, b| if self.better(b, a) { b } else { a })
    }

    /// +1 when larger is better, −1 when smaller is: multiplying by it makes larger better.
    pub fn sign(self) -> f64 {
        match self {
            Goal::Maximize => 1.0,
            Goal::Minimize => -1.0,
        }
    }

    /// The goal of any `split/name`, also one not listed in [`Metric::ALL`]: losses (names
    /// that start or end with `loss`) and skipped-image counts are minimised, everything else
    /// maximised. Every task's figures follow this rule (a test holds them to it).
    pub fn of(key: &str) -> Goal {
        let name = key.split_once('/').map_or(key, |(_, name)| name);
        match Metric::find(key) {
            Some(m) => m.goal,
            None if name.starts_with("loss") || name.ends_with("loss") => Goal::Minimize,
            None => Goal::Maximize,
        }
    }
}

/// A metric a trial logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    pub split: Split,
    pub name: &'static str,
    pub goal: Goal,
    /// Whether a sweep may rank or stop trials by it.
    pub rankable: bool,
}

const fn metric(split: Split, name: &'static str, goal: Goal, rankable: bool) -> Metric {
    Metric {
        split,
        name,
        goal,
        rankable,
    }
}

impl Metric {
    pub const TRAIN_LOSS: Metric = metric(Split::Train, "loss", Goal::Minimize, true);
    pub const TRAIN_STEP_LOSS: Metric = metric(Split::Train, "step_loss", Goal::Minimize, false);
    pub const TRAIN_LR: Metric = metric(Split::Train, "lr", Goal::Maximize, false);
    /// The learning rate at the steps `step_loss` is logged at (the warmup, visible).
    pub const TRAIN_STEP_LR: Metric = metric(Split::Train, "step_lr", Goal::Maximize, false);
    pub const TRAIN_IMAGES_PER_SEC: Metric =
        metric(Split::Train, "images_per_sec", Goal::Maximize, true);
    pub const TRAIN_SKIPPED: Metric = metric(Split::Train, "skipped_images", Goal::Minimize, false);
    /// The model's parameter count (every epoch, so a search can rank by it).
    pub const TRAIN_PARAMS: Metric = metric(Split::Train, "params", Goal::Minimize, true);
    /// The trial process's peak resident memory so far, in MiB.
    pub const TRAIN_PEAK_RSS: Metric = metric(Split::Train, "peak_rss_mib", Goal::Minimize, true);
    /// The float16 loss scale at the epoch's end (`train.precision = "f16"`).
    pub const TRAIN_LOSS_SCALE: Metric = metric(Split::Train, "loss_scale", Goal::Maximize, false);
    /// Optimizer steps skipped so far because the scaled gradients overflowed (float16).
    pub const TRAIN_SKIPPED_STEPS: Metric =
        metric(Split::Train, "skipped_steps", Goal::Minimize, false);
    pub const VAL_LOSS: Metric = metric(Split::Val, "loss", Goal::Minimize, true);
    /// A classification trial's top-1 (trials recorded before tasks existed all logged it).
    pub const VAL_TOP1: Metric = metric(Split::Val, "top1", Goal::Maximize, true);
    /// Logged by classification with more than 5 classes.
    pub const VAL_TOP5: Metric = metric(Split::Val, "top5", Goal::Maximize, true);
    pub const VAL_SKIPPED: Metric = metric(Split::Val, "skipped_images", Goal::Minimize, false);
    /// The weight average's validation (`[train.ema]`).
    pub const VAL_EMA_LOSS: Metric = metric(Split::ValEma, "loss", Goal::Minimize, true);
    /// Images the distillation teacher classified in the training pass (`[distill]`).
    pub const TRAIN_TEACHER_FORWARDS: Metric =
        metric(Split::Train, "teacher_forwards", Goal::Minimize, false);
    /// Images whose teacher outputs `distill.cache` gave in the training pass.
    pub const TRAIN_TEACHER_CACHED: Metric =
        metric(Split::Train, "teacher_cached", Goal::Maximize, false);
    /// The same two of the validation pass.
    pub const VAL_TEACHER_FORWARDS: Metric =
        metric(Split::Val, "teacher_forwards", Goal::Minimize, false);
    pub const VAL_TEACHER_CACHED: Metric =
        metric(Split::Val, "teacher_cached", Goal::Maximize, false);

    /// Every metric every trial logs under a fixed name, whatever its task (each task's own
    /// figures are its [`TaskMetrics`]).
    pub const ALL: [Metric; 19] = [
        Metric::TRAIN_LOSS,
        Metric::TRAIN_STEP_LOSS,
        Metric::TRAIN_STEP_LR,
        Metric::TRAIN_LR,
        Metric::TRAIN_IMAGES_PER_SEC,
        Metric::TRAIN_SKIPPED,
        Metric::TRAIN_PARAMS,
        Metric::TRAIN_PEAK_RSS,
        Metric::TRAIN_LOSS_SCALE,
        Metric::TRAIN_SKIPPED_STEPS,
        Metric::VAL_LOSS,
        Metric::VAL_SKIPPED,
        Metric::VAL_EMA_LOSS,
        Metric::VAL_TOP1,
        Metric::VAL_TOP5,
        Metric::TRAIN_TEACHER_FORWARDS,
        Metric::TRAIN_TEACHER_CACHED,
        Metric::VAL_TEACHER_FORWARDS,
        Metric::VAL_TEACHER_CACHED,
    ];

    /// `split/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.split.as_str(), self.name)
    }

    /// The metric named `split/name`, if vitrun logs it.
    pub fn find(key: &str) -> Option<Metric> {
        let (split, name) = key.split_once('/')?;
        Metric::ALL
            .into_iter()
            .find(|m| m.split.as_str() == split && m.name == name)
    }

    /// The metrics a sweep may rank or stop by, as `split/name`.
    pub fn rankable() -> Vec<String> {
        Metric::ALL
            .iter()
            .filter(|m| m.rankable)
            .map(Metric::key)
            .collect()
    }
}

/// What a task logs besides the loss, learning rate and speed every trial logs: defined once,
/// by the task, and read by everything that ranks, stops or draws its trials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskMetrics {
    /// The task's name as `head.task` spells it.
    pub task: &'static str,
    /// Validation figures under `val/` (and `val_ema/` with a weight average), the main one
    /// first: it ranks epochs (`best/`) and trials.
    pub val: &'static [&'static str],
    /// How many of the first `val` figures the epoch's log line shows.
    pub shown: usize,
    /// The prefix of the per-class figures (`iou_` + class name), stored but never ranked.
    pub per_class: Option<&'static str>,
    /// The training score under `train/`.
    pub train: &'static str,
}

impl TaskMetrics {
    /// The main validation metric.
    pub fn main(&self) -> Metric {
        let name = self.val.first().copied().unwrap_or("loss");
        Metric {
            split: Split::Val,
            name,
            goal: Goal::of(name),
            rankable: true,
        }
    }

    /// Whether a trial of this task logs `split/name`.
    pub fn logs(&self, key: &str) -> bool {
        self.rankable().iter().any(|k| k == key) || Metric::find(key).is_some_and(|m| !m.rankable)
    }

    /// Everything a sweep may rank or stop this task's trials by, as `split/name`: the loss,
    /// training score and speed, and each validation figure (also the weight average's).
    pub fn rankable(&self) -> Vec<String> {
        let mut out = vec![
            Metric::TRAIN_LOSS.key(),
            format!("train/{}", self.train),
            Metric::TRAIN_IMAGES_PER_SEC.key(),
            Metric::TRAIN_PARAMS.key(),
            Metric::TRAIN_PEAK_RSS.key(),
            Metric::VAL_LOSS.key(),
        ];
        out.extend(self.val.iter().map(|v| format!("val/{v}")));
        out.push(Metric::VAL_EMA_LOSS.key());
        out.extend(self.val.iter().map(|v| format!("val_ema/{v}")));
        out
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.split.as_str(), self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_are_minimised_and_the_rest_maximised() {
        assert_eq!(Goal::of("val/loss"), Goal::Minimize);
        assert_eq!(Goal::of("val/top1"), Goal::Maximize);
        assert_eq!(Goal::of("val/custom_loss"), Goal::Minimize);
        assert!(Goal::Minimize.better(0.1, 0.2));
        assert_eq!(Goal::of("val/loss_giou"), Goal::Minimize);
        assert_eq!(Metric::find("val/top5"), Some(Metric::VAL_TOP5));
        assert_eq!(Metric::find("top5"), None);
    }
}
