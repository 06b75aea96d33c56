//! Metric names (`split/name`) and which direction is better.

use std::fmt;

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

    /// +1 when larger is better, −1 when smaller is: multiplying by it makes larger better.
    pub fn sign(self) -> f64 {
        match self {
            Goal::Maximize => 1.0,
            Goal::Minimize => -1.0,
        }
    }

    /// The goal of any `split/name`, also one not listed in [`Metric::ALL`]: losses are
    /// minimised, everything else maximised.
    pub fn of(key: &str) -> Goal {
        match Metric::find(key) {
            Some(m) => m.goal,
            None if key.ends_with("loss") => Goal::Minimize,
            None => Goal::Maximize,
        }
    }
}

/// A metric a trial logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    pub split: &'static str,
    pub name: &'static str,
    pub goal: Goal,
    /// Whether a sweep may rank or stop trials by it.
    pub rankable: bool,
}

const fn metric(split: &'static str, name: &'static str, goal: Goal, rankable: bool) -> Metric {
    Metric {
        split,
        name,
        goal,
        rankable,
    }
}

impl Metric {
    pub const TRAIN_LOSS: Metric = metric("train", "loss", Goal::Minimize, true);
    pub const TRAIN_TOP1: Metric = metric("train", "top1", Goal::Maximize, true);
    pub const TRAIN_STEP_LOSS: Metric = metric("train", "step_loss", Goal::Minimize, false);
    pub const TRAIN_LR: Metric = metric("train", "lr", Goal::Maximize, false);
    pub const TRAIN_IMAGES_PER_SEC: Metric =
        metric("train", "images_per_sec", Goal::Maximize, true);
    pub const TRAIN_SKIPPED: Metric = metric("train", "skipped_images", Goal::Minimize, false);
    pub const VAL_LOSS: Metric = metric("val", "loss", Goal::Minimize, true);
    pub const VAL_TOP1: Metric = metric("val", "top1", Goal::Maximize, true);
    /// Logged only with more than 5 classes.
    pub const VAL_TOP5: Metric = metric("val", "top5", Goal::Maximize, true);
    pub const VAL_SKIPPED: Metric = metric("val", "skipped_images", Goal::Minimize, false);
    /// The weight average's validation (`[train.ema]`).
    pub const VAL_EMA_LOSS: Metric = metric("val_ema", "loss", Goal::Minimize, true);
    pub const VAL_EMA_TOP1: Metric = metric("val_ema", "top1", Goal::Maximize, true);
    pub const VAL_EMA_TOP5: Metric = metric("val_ema", "top5", Goal::Maximize, true);
    /// Segmentation: share of correctly labelled pixels while training.
    pub const TRAIN_PIXEL_ACC: Metric = metric("train", "pixel_acc", Goal::Maximize, true);
    /// Segmentation: mean IoU over the classes present or predicted.
    pub const VAL_MIOU: Metric = metric("val", "miou", Goal::Maximize, true);
    pub const VAL_PIXEL_ACC: Metric = metric("val", "pixel_acc", Goal::Maximize, true);
    /// Binary segmentation: the foreground Dice.
    pub const VAL_DICE: Metric = metric("val", "dice", Goal::Maximize, true);
    pub const VAL_EMA_MIOU: Metric = metric("val_ema", "miou", Goal::Maximize, true);
    pub const VAL_EMA_PIXEL_ACC: Metric = metric("val_ema", "pixel_acc", Goal::Maximize, true);
    pub const VAL_EMA_DICE: Metric = metric("val_ema", "dice", Goal::Maximize, true);

    /// Detection: the share of objects a confident, right-class box frames at IoU ≥ 0.5
    /// while training.
    pub const TRAIN_RECALL50: Metric = metric("train", "recall50", Goal::Maximize, true);
    /// Detection: COCO mAP at IoU 0.5.
    pub const VAL_MAP50: Metric = metric("val", "map50", Goal::Maximize, true);
    /// Detection: COCO mAP averaged over IoU 0.5:0.95.
    pub const VAL_MAP: Metric = metric("val", "map", Goal::Maximize, true);
    pub const VAL_MAP75: Metric = metric("val", "map75", Goal::Maximize, true);
    /// Detection: the last decoder layer's loss terms (class cross-entropy, L1, 1 − GIoU).
    pub const VAL_LOSS_CE: Metric = metric("val", "loss_ce", Goal::Minimize, true);
    pub const VAL_LOSS_BBOX: Metric = metric("val", "loss_bbox", Goal::Minimize, true);
    pub const VAL_LOSS_GIOU: Metric = metric("val", "loss_giou", Goal::Minimize, true);
    pub const VAL_EMA_MAP50: Metric = metric("val_ema", "map50", Goal::Maximize, true);
    pub const VAL_EMA_MAP: Metric = metric("val_ema", "map", Goal::Maximize, true);

    /// Every metric vitrun logs under a fixed name (per-class IoU and AP, `val/iou_<class>`
    /// and `val/ap50_<class>`, aside).
    pub const ALL: [Metric; 29] = [
        Metric::TRAIN_LOSS,
        Metric::TRAIN_TOP1,
        Metric::TRAIN_STEP_LOSS,
        Metric::TRAIN_LR,
        Metric::TRAIN_IMAGES_PER_SEC,
        Metric::TRAIN_SKIPPED,
        Metric::VAL_LOSS,
        Metric::VAL_TOP1,
        Metric::VAL_TOP5,
        Metric::VAL_SKIPPED,
        Metric::VAL_EMA_LOSS,
        Metric::VAL_EMA_TOP1,
        Metric::VAL_EMA_TOP5,
        Metric::TRAIN_PIXEL_ACC,
        Metric::VAL_MIOU,
        Metric::VAL_PIXEL_ACC,
        Metric::VAL_DICE,
        Metric::VAL_EMA_MIOU,
        Metric::VAL_EMA_PIXEL_ACC,
        Metric::VAL_EMA_DICE,
        Metric::TRAIN_RECALL50,
        Metric::VAL_MAP50,
        Metric::VAL_MAP,
        Metric::VAL_MAP75,
        Metric::VAL_LOSS_CE,
        Metric::VAL_LOSS_BBOX,
        Metric::VAL_LOSS_GIOU,
        Metric::VAL_EMA_MAP50,
        Metric::VAL_EMA_MAP,
    ];

    /// `split/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.split, self.name)
    }

    /// The metric named `split/name`, if vitrun logs it.
    pub fn find(key: &str) -> Option<Metric> {
        let (split, name) = key.split_once('/')?;
        Metric::ALL
            .into_iter()
            .find(|m| m.split == split && m.name == name)
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

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.split, self.name)
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
        assert_eq!(Metric::find("val/top5"), Some(Metric::VAL_TOP5));
        assert_eq!(Metric::find("top5"), None);
    }
}
