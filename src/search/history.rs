//! What a search knows when it proposes: each earlier proposal's point and how its trial
//! ended, in the form recorded with every proposal so that it replays exactly.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::contract::Goal;

/// How an earlier proposal's trial stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum Outcome {
    /// Finished with these objective values (one per objective).
    Complete {
        #[serde(rename = "objectives")]
        values: Vec<f64>,
    },
    /// Stopped early at epoch `step` with the objectives' values there (none when it stopped
    /// before its first validation).
    Pruned {
        step: i64,
        #[serde(rename = "objectives")]
        values: Vec<f64>,
    },
    /// Queued or running: counted among the worse trials (the "constant liar"), so that
    /// parallel workers do not propose next to it.
    Pending,
}

impl Outcome {
    /// The objective values the search ranks the trial by (none while pending).
    pub fn values(&self) -> &[f64] {
        match self {
            Outcome::Complete { values } | Outcome::Pruned { values, .. } => values,
            Outcome::Pending => &[],
        }
    }
}

/// One earlier proposal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// The proposal's number in its search.
    pub number: usize,
    /// The internal number of each axis it set, by key (an axis that did not apply, or whose
    /// value is outside today's space, is absent).
    pub values: BTreeMap<String, f64>,
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl Observation {
    /// The internal numbers of `keys`, if it has them all.
    pub fn point(&self, keys: &[&str]) -> Option<Vec<f64>> {
        keys.iter().map(|k| self.values.get(*k).copied()).collect()
    }

    /// Whether its trial has a result (finished or pruned).
    pub fn is_scored(&self) -> bool {
        !matches!(self.outcome, Outcome::Pending)
    }
}

/// A value to minimise: the objective, negated when it is maximised.
pub fn loss(value: f64, goal: Goal) -> f64 {
    match goal {
        Goal::Minimize => value,
        Goal::Maximize => -value,
    }
}
