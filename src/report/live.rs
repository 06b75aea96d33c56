//! What a live page (`vitrun serve`) polls: the charts' data as the report embeds it, the
//! running trials' progress (epoch, images/s, time left) and the early-stopping decisions.

use std::path::Path;

use serde::Serialize;

use super::select::{Selection, TrialRecord};
use super::{curves, open_store, select, select_many, views};
use crate::contract::{Event, Status};
use crate::plot::interactive::Page;

/// A running trial's progress.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Progress {
    pub id: String,
    pub label: String,
    /// Epochs finished, of `epochs`.
    pub epoch: i64,
    pub epochs: usize,
    /// The last epoch's training throughput.
    pub images_per_sec: Option<f64>,
    /// Seconds left at the mean epoch time so far.
    pub eta_s: Option<f64>,
}

/// An early-stopping decision (continue or prune) with its reason.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Decision {
    pub trial: String,
    pub time: String,
    pub message: String,
}

/// One poll's answer.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Live {
    pub page: Page,
    pub running: Vec<Progress>,
    /// Newest first, at most [`DECISIONS`].
    pub decisions: Vec<Decision>,
    /// When the store was read (UTC).
    pub updated: String,
}

/// The most early-stopping decisions a poll returns.
pub const DECISIONS: usize = 20;

fn progress(t: &TrialRecord, label: &str) -> Progress {
    let epoch_ends: Vec<&crate::track::MetricRow> = t
        .metrics
        .iter()
        .filter(|m| m.split == "train" && m.name == "loss")
        .collect();
    let epoch = epoch_ends.iter().map(|m| m.epoch).max().unwrap_or(0);
    let epochs = t.config.train.epochs;
    let started = t
        .summary
        .started_at
        .as_deref()
        .and_then(crate::track::timing::seconds);
    let last_end = epoch_ends.iter().map(|m| m.wall_time).reduce(f64::max);
    let eta_s = match (started, last_end) {
        (Some(start), Some(end)) if epoch > 0 && end > start => {
            let per_epoch = (end - start) / epoch as f64;
            Some(per_epoch * (epochs as f64 - epoch as f64).max(0.0))
        }
        _ => None,
    };
    Progress {
        id: t.summary.id.clone(),
        label: label.to_string(),
        epoch,
        epochs,
        images_per_sec: t
            .metrics
            .iter()
            .filter(|m| m.split == "train" && m.name == "images_per_sec")
            .max_by_key(|m| m.step)
            .map(|m| m.value),
        eta_s,
    }
}

/// The live data of `targets` (as `vitrun report` takes them) from the store under `runs_dir`.
pub fn live(runs_dir: &Path, targets: &[String]) -> anyhow::Result<Live> {
    let (store, _) = open_store(runs_dir)?;
    let sel: Selection = if targets.is_empty() {
        select(&store, runs_dir, None, None)?
    } else {
        select_many(&store, runs_dir, targets, None)?
    };
    let labels = views::labels(&sel);
    let drawn = curves::draw(&sel, &labels, None)?;
    let running = sel
        .trials
        .iter()
        .zip(&labels)
        .filter(|(t, _)| t.summary.status == Status::Running)
        .map(|(t, label)| progress(t, label))
        .collect();
    let mut decisions = Vec::new();
    for t in &sel.trials {
        for (time, message) in store.timed_events(&t.summary.id, Event::EarlyStop)? {
            decisions.push(Decision {
                trial: t.summary.id.clone(),
                time,
                message,
            });
        }
    }
    decisions.sort_by(|a, b| b.time.cmp(&a.time));
    decisions.truncate(DECISIONS);
    Ok(Live {
        page: Page {
            charts: drawn.charts,
            trials: if sel.trials.len() > 1 {
                sel.trials
                    .iter()
                    .zip(&labels)
                    .map(|(t, label)| views::view(t, label))
                    .collect()
            } else {
                Vec::new()
            },
        },
        running,
        decisions,
        updated: chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string(),
    })
}
