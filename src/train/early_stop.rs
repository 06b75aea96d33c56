//! Early stopping for sweeps: the median rule and asynchronous successive halving (ASHA).
//! The decision runs in the trial's own process at the end of each epoch (after its metrics
//! are committed), reading its peers' values from the store; every decision is recorded.

use crate::config::{StopCriterion, StopRule};
use crate::contract::Goal;
use crate::track::Recorder;

/// Decides after each epoch (metrics and checkpoint committed) whether the trial goes on.
/// Sweeps plug their early-stopping rule in here.
pub trait EpochGate {
    /// `Some(reason)` stops the trial as pruned; the gate records its decisions in the store.
    fn after_epoch(
        &mut self,
        store: &mut dyn Recorder,
        trial: &str,
        epoch: usize,
    ) -> anyhow::Result<Option<String>>;
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Not a decision point (before warm-up, between rungs, too few peers).
    Undecided,
    Keep(String),
    Prune(String),
}

/// What a rule looks at, at the end of `epoch`.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    pub epoch: usize,
    /// This trial's metric at epochs `1..=epoch`.
    pub own: Vec<f64>,
    /// Every other sweep trial that reached `epoch`: its value there and running average.
    pub peers: Vec<PeerAt>,
}

pub use crate::track::PeerAt;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Applies `rule` to the evidence.
pub fn judge(rule: &StopCriterion, ev: &Evidence) -> Verdict {
    let Some(&current) = ev.own.last() else {
        return Verdict::Undecided;
    };
    let m = &rule.metric;
    match &rule.rule {
        StopRule::Median {
            min_epochs,
            min_trials,
        } => {
            if ev.epoch < *min_epochs || ev.peers.len() < *min_trials {
                return Verdict::Undecided;
            }
            let best = ev
                .own
                .iter()
                .copied()
                .reduce(|a, b| if rule.goal.better(b, a) { b } else { a })
                .unwrap_or(current);
            let averages: Vec<f64> = ev.peers.iter().map(|p| p.average).collect();
            let med = median(averages);
            let text = format!(
                "median rule at epoch {}: best {m} so far {best:.4} vs median {med:.4} of {} peers' running averages",
                ev.epoch,
                ev.peers.len()
            );
            if rule.goal.better(med, best) {
                Verdict::Prune(text)
            } else {
                Verdict::Keep(text)
            }
        }
        StopRule::Asha {
            rungs,
            reduction_factor,
        } => {
            if !rungs.contains(&ev.epoch) {
                return Verdict::Undecided;
            }
            let mut values: Vec<f64> = ev.peers.iter().map(|p| p.value).collect();
            values.push(current);
            let n = values.len();
            let keep = n.div_ceil(*reduction_factor);
            values.sort_by(|a, b| match rule.goal {
                Goal::Maximize => b.total_cmp(a),
                Goal::Minimize => a.total_cmp(b),
            });
            let cutoff = values[keep - 1];
            let rank = 1 + values
                .iter()
                .filter(|v| rule.goal.better(**v, current))
                .count();
            let text = format!(
                "ASHA rung {} (epochs): {m} {current:.4} ranks {rank} of {n}; the top {keep} continue (cutoff {cutoff:.4}, reduction factor {reduction_factor})",
                ev.epoch
            );
            if rule.goal.better(cutoff, current) {
                Verdict::Prune(text)
            } else {
                Verdict::Keep(text)
            }
        }
    }
}

/// The [`EpochGate`] a sweep's trial runs with.
pub struct Judge {
    pub sweep: String,
    pub rule: StopCriterion,
}

impl EpochGate for Judge {
    fn after_epoch(
        &mut self,
        store: &mut dyn Recorder,
        trial: &str,
        epoch: usize,
    ) -> anyhow::Result<Option<String>> {
        let metric = &self.rule.metric;
        let ev = Evidence {
            epoch,
            own: store.history(trial, metric, epoch)?,
            peers: store.peers_at(&self.sweep, metric, epoch, trial)?,
        };
        Ok(match judge(&self.rule, &ev) {
            Verdict::Undecided => None,
            Verdict::Keep(reason) => {
                store.record_decision(trial, false, &format!("continue: {reason}"))?;
                None
            }
            Verdict::Prune(reason) => {
                let reason = format!("pruned: {reason}");
                store.record_decision(trial, true, &reason)?;
                Some(reason)
            }
        })
    }
}
