//! Which trials a report covers: one trial (id or unique prefix), an experiment, or a sweep;
//! by default the experiment that ran last.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::{is_safe_name, Config};
use crate::contract::{Event, Goal};
use crate::track::{MetricRow, Store, TrialLookup, TrialSummary};

/// One trial with everything the report reads from the store.
#[derive(Debug, Clone)]
pub struct TrialRecord {
    pub summary: TrialSummary,
    pub config: Config,
    pub metrics: Vec<MetricRow>,
    /// The command line of its latest attempt's process (`started` event), where recorded.
    pub command: Option<String>,
}

#[cfg(test)]
impl TrialRecord {
    /// A finished trial of experiment `e` with `config` and `metrics`, for tests.
    pub(crate) fn example(id: &str, config: Config, metrics: Vec<MetricRow>) -> TrialRecord {
        TrialRecord {
            summary: TrialSummary {
                id: id.into(),
                experiment: "e".into(),
                status: crate::contract::Status::Finished,
                attempts: 1,
                device: None,
                started_at: None,
                ended_at: None,
                best: None,
                best_metric: "top1".into(),
                last_val_loss: None,
                epochs: None,
                error: None,
                host: None,
                git_commit: None,
            },
            config,
            metrics,
            command: None,
        }
    }
}

/// The metric trials are ranked by: `split/name`, and whether larger is better.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranking {
    pub metric: String,
    pub goal: Goal,
}

impl Ranking {
    /// `val/top1` style; losses rank lowest first, everything else highest first.
    pub fn new(metric: &str) -> Ranking {
        Ranking {
            metric: metric.to_string(),
            goal: Goal::of(metric),
        }
    }
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
    pub ranking: Ranking,
}

impl Selection {
    /// A trial's best value of the ranking metric over its epochs, if it logged any.
    pub fn score(&self, t: &TrialRecord) -> Option<f64> {
        let (split, name) = self
            .ranking
            .metric
            .split_once('/')
            .unwrap_or(("val", &self.ranking.metric));
        let values = t
            .metrics
            .iter()
            .filter(|m| m.split == split && m.name == name)
            .map(|m| m.value);
        match self.ranking.goal {
            Goal::Maximize => values.reduce(f64::max),
            Goal::Minimize => values.reduce(f64::min),
        }
    }

    /// Trial indices, best first (trials without a value last).
    pub fn ranked(&self) -> Vec<usize> {
        let key = |i: usize| {
            let v = self.score(&self.trials[i]);
            match (v, self.ranking.goal) {
                (Some(v), Goal::Maximize) => v,
                (Some(v), Goal::Minimize) => -v,
                (None, _) => f64::NEG_INFINITY,
            }
        };
        let mut order: Vec<usize> = (0..self.trials.len()).collect();
        order.sort_by(|&a, &b| key(b).total_cmp(&key(a)));
        order
    }

    /// The best trial by the ranking metric (the first one when none has a value yet).
    pub fn best(&self) -> &TrialRecord {
        &self.trials[self.ranked()[0]]
    }
}

fn record(store: &Store, summaries: &[TrialSummary], id: &str) -> anyhow::Result<TrialRecord> {
    let (json, _) = store
        .trial_config(id)?
        .with_context(|| format!("trial {id} is not in the store"))?;
    let config = Config::from_stored(&json, id).map_err(anyhow::Error::msg)?;
    let summary = summaries
        .iter()
        .find(|s| s.id == id)
        .cloned()
        .with_context(|| format!("trial {id} is not in the store"))?;
    Ok(TrialRecord {
        summary,
        metrics: store.metrics(id)?,
        command: store.events(id, Event::Started)?.pop(),
        config,
    })
}

/// Resolves several targets into one comparison: their trials together (each once), named by
/// the targets, reported into the first trial's experiment's `report/compare-<targets>/`.
pub fn select_many(
    store: &Store,
    runs_dir: &Path,
    targets: &[String],
    ranking: Option<Ranking>,
) -> anyhow::Result<Selection> {
    if let [one] = targets {
        return select(store, runs_dir, Some(one), ranking);
    }
    let mut trials: Vec<TrialRecord> = Vec::new();
    let mut first_ranking = None;
    let mut first_out = None;
    for target in targets {
        let sel = select(store, runs_dir, Some(target), ranking.clone())?;
        first_ranking.get_or_insert(sel.ranking.clone());
        first_out.get_or_insert(sel.default_out.clone());
        for t in sel.trials {
            if !trials.iter().any(|k| k.summary.id == t.summary.id) {
                trials.push(t);
            }
        }
    }
    let name = targets.join("+");
    let experiment =
        crate::contract::RunsDir::new(runs_dir).experiment(&trials[0].summary.experiment);
    let mut folder = format!("compare-{}", targets.join("-"));
    folder.truncate(100);
    Ok(Selection {
        kind: "comparison",
        name,
        trials,
        default_out: experiment.report().join(folder),
        ranking: first_ranking.unwrap_or_else(|| Ranking::new("val/loss")),
    })
}

/// Resolves `target` against the store in `runs_dir`.
/// `ranking` unset ranks by the task's main validation metric (`val/top1`, `val/miou`) of the
/// first trial's experiment.
pub fn select(
    store: &Store,
    runs_dir: &Path,
    target: Option<&str>,
    ranking: Option<Ranking>,
) -> anyhow::Result<Selection> {
    let name = match target {
        Some(t) => {
            anyhow::ensure!(
                is_safe_name(t),
                "{t:?} is not a trial id, experiment or sweep name (letters, digits, '-', '_' and '.', not starting with '.'); `vitrun ls` lists them"
            );
            t.to_string()
        }
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
        match store.unique_trial(&name) {
            Ok(id) => ("trial", vec![id]),
            Err(TrialLookup::NotFound { .. }) => anyhow::bail!(
                "no trial, experiment or sweep named {name:?} in {}; `vitrun ls` lists them",
                crate::contract::RunsDir::new(runs_dir).store().display()
            ),
            Err(e) => return Err(e.into()),
        }
    };
    let trials = ids
        .iter()
        .map(|id| record(store, &summaries, id))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let first = &trials[0];
    anyhow::ensure!(
        is_safe_name(&first.summary.experiment),
        "the store names experiment {:?}, which is not a safe folder name; rename it in the store before reporting",
        first.summary.experiment
    );
    let experiment_dir =
        crate::contract::RunsDir::new(runs_dir).experiment(&first.summary.experiment);
    let (name, default_out) = match kind {
        "trial" => (
            first.summary.id.clone(),
            experiment_dir.trial(&first.summary.id).report(),
        ),
        _ => (name, experiment_dir.report()),
    };
    let ranking = ranking.unwrap_or_else(|| {
        Ranking::new(&crate::task::metrics(first.config.head.task).main().key())
    });
    Ok(Selection {
        kind,
        name,
        trials,
        default_out,
        ranking,
    })
}
