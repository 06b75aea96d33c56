//! Which trials a report covers: one trial (id or unique prefix), an experiment, or a sweep;
//! by default the experiment that ran last.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::Config;
use crate::track::{MetricRow, Store, TrialSummary};

/// One trial with everything the report reads from the store.
#[derive(Debug, Clone)]
pub struct TrialRecord {
    pub summary: TrialSummary,
    pub config: Config,
    pub metrics: Vec<MetricRow>,
}

/// The trials of a report.
#[derive(Debug, Clone)]
pub struct Selection {
    /// `trial`, `experiment` or `sweep`.
    pub kind: &'static str,
    pub name: String,
    pub trials: Vec<TrialRecord>,
    /// Where the report goes unless `--out` says otherwise.
    pub default_out: PathBuf,
}

impl Selection {
    /// The trial with the best val top-1 (the first one when none has a value yet).
    pub fn best(&self) -> &TrialRecord {
        self.trials
            .iter()
            .max_by(|a, b| {
                let v = |t: &TrialRecord| t.summary.best_top1.unwrap_or(f64::NEG_INFINITY);
                v(a).total_cmp(&v(b))
            })
            .expect("a selection has trials")
    }
}

fn record(store: &Store, summaries: &[TrialSummary], id: &str) -> anyhow::Result<TrialRecord> {
    let (json, _) = store
        .trial_config(id)?
        .with_context(|| format!("trial {id} is not in the store"))?;
    let config: Config = serde_json::from_str(&json)
        .with_context(|| format!("trial {id}: its stored config does not parse"))?;
    let summary = summaries
        .iter()
        .find(|s| s.id == id)
        .cloned()
        .with_context(|| format!("trial {id} is not in the store"))?;
    Ok(TrialRecord {
        summary,
        metrics: store.metrics(id)?,
        config,
    })
}

/// Resolves `target` against the store in `runs_dir`.
pub fn select(store: &Store, runs_dir: &Path, target: Option<&str>) -> anyhow::Result<Selection> {
    let name = match target {
        Some(t) => t.to_string(),
        None => store.latest_experiment()?.context(
            "the run store has no trials yet; run an experiment first (vitrun run FILE)",
        )?,
    };
    let summaries = store.trials(None)?;
    let sweep = store.sweep_trials(&name)?;
    let experiment = store.experiment_trials(&name)?;
    let (kind, ids) = if !sweep.is_empty() {
        ("sweep", sweep)
    } else if !experiment.is_empty() {
        ("experiment", experiment)
    } else {
        let matches = store.trials_with_prefix(&name)?;
        match matches.len() {
            0 => anyhow::bail!(
                "no trial, experiment or sweep named {name:?} in {}; `vitrun ls` lists them",
                runs_dir.join("vitrun.sqlite").display()
            ),
            1 => ("trial", matches),
            _ => anyhow::bail!(
                "{name:?} matches {} trials ({}); give more of the id",
                matches.len(),
                matches.join(", ")
            ),
        }
    };
    let trials = ids
        .iter()
        .map(|id| record(store, &summaries, id))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let first = &trials[0];
    let experiment_dir = runs_dir.join(&first.summary.experiment);
    let (name, default_out) = match kind {
        "trial" => (
            first.summary.id.clone(),
            experiment_dir.join(&first.summary.id).join("report"),
        ),
        _ => (name, experiment_dir.join("report")),
    };
    Ok(Selection {
        kind,
        name,
        trials,
        default_out,
    })
}
