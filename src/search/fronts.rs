//! The Pareto front of an experiment's multi-objective search, read back from the store: which
//! objectives its `[sweep]` names (from a trial's stored config) and each finished trial's
//! values, for `vitrun ls`, `export-metrics` and the sweep report.

use std::collections::HashMap;

use super::pareto;
use crate::config::{Config, Objective};
use crate::contract::{Goal, Status};
use crate::track::{Store, TrialSummary};

/// One finished trial of a multi-objective search.
#[derive(Debug, Clone, PartialEq)]
pub struct FrontPoint {
    pub trial: String,
    /// The best value of each objective it logged.
    pub values: Vec<f64>,
    pub on_front: bool,
}

/// An experiment's objectives and its finished trials' place relative to their front.
#[derive(Debug, Clone, PartialEq)]
pub struct Front {
    pub experiment: String,
    pub objectives: Vec<Objective>,
    pub points: Vec<FrontPoint>,
}

/// The objectives of a trial's search when it has two or more (from its stored config).
fn objectives_of(config_json: &str) -> Option<Vec<Objective>> {
    let config: Config = serde_json::from_str(config_json).ok()?;
    let table = config.sweep.as_ref()?;
    let spec = crate::config::SweepSpec {
        objectives: table
            .get("objectives")?
            .as_array()?
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<String>>>()?,
        ..Default::default()
    };
    let objectives = spec
        .resolve_objectives(crate::task::metrics(config.head.task))
        .ok()?;
    (objectives.len() > 1).then_some(objectives)
}

/// The fronts of the experiments among `trials` whose search has several objectives.
pub fn fronts(store: &Store, trials: &[TrialSummary]) -> anyhow::Result<Vec<Front>> {
    let mut by_experiment: HashMap<&str, Vec<&TrialSummary>> = HashMap::new();
    for t in trials {
        by_experiment.entry(&t.experiment).or_default().push(t);
    }
    let mut out = Vec::new();
    let mut names: Vec<&&str> = by_experiment.keys().collect();
    names.sort();
    for name in names {
        let members = &by_experiment[*name];
        let Some(objectives) = members
            .iter()
            .find_map(|t| store.trial_config(&t.id).ok().flatten())
            .and_then(|(json, _)| objectives_of(&json))
        else {
            continue;
        };
        let mut points = Vec::new();
        for t in members.iter().filter(|t| t.status == Status::Finished) {
            let values: Option<Vec<f64>> = objectives
                .iter()
                .map(|o| -> anyhow::Result<Option<f64>> {
                    let rows = store.metric_rows(&t.id, &o.metric)?;
                    Ok(o.goal
                        .best(rows.iter().map(|(_, v)| *v).filter(|v| v.is_finite())))
                })
                .collect::<anyhow::Result<Option<Vec<f64>>>>()?;
            if let Some(values) = values {
                points.push(FrontPoint {
                    trial: t.id.clone(),
                    values,
                    on_front: false,
                });
            }
        }
        let goals: Vec<Goal> = objectives.iter().map(|o| o.goal).collect();
        let values: Vec<Vec<f64>> = points.iter().map(|p| p.values.clone()).collect();
        for (p, on) in points.iter_mut().zip(pareto::front(&values, &goals)) {
            p.on_front = on;
        }
        out.push(Front {
            experiment: name.to_string(),
            objectives,
            points,
        });
    }
    Ok(out)
}

/// The trials on a front, by id.
pub fn on_front(fronts: &[Front]) -> std::collections::HashSet<String> {
    fronts
        .iter()
        .flat_map(|f| {
            f.points
                .iter()
                .filter(|p| p.on_front)
                .map(|p| p.trial.clone())
        })
        .collect()
}
