//! The proposer of a search: turns the store's record of a search into a history, asks the
//! searcher for the next point (the unconditional axes, then the conditional ones that apply
//! there), resolves it into a trial that is not already one of the search's, and records it.

use std::collections::{BTreeMap, HashSet};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

use super::history::{Observation, Outcome};
use super::space::{Dim, Space};
use super::{searcher, Ask, Searcher};
use crate::config::{ConfigError, Loaded, Objective, Resolver};
use crate::contract::{Goal, Status};
use crate::plan::PlannedTrial;
use crate::track::{NewProposal, ProposalRecord, QueuedTrial, SearchKey, Store};

/// Proposes the trials of one experiment's search.
pub struct Proposer<'a> {
    loaded: &'a Loaded,
    resolver: Resolver<'a>,
    space: Space,
    searcher: Box<dyn Searcher>,
    objectives: Vec<Objective>,
    /// The objectives' metrics, `split/name` each.
    metrics: Vec<String>,
    /// The search's fingerprint.
    search: String,
    file: String,
}

impl<'a> Proposer<'a> {
    /// The proposer of `loaded`'s search (`[sweep] method = "tpe"` or `"random"`).
    pub fn new(loaded: &'a Loaded) -> Result<Proposer<'a>, ConfigError> {
        crate::task::check(loaded)?;
        let objectives = crate::task::objectives(loaded)?;
        let resolver = loaded.resolver()?;
        let space = Space::of(&loaded.sweep);
        let base = resolver.resolve(&[])?.trial_id();
        let spec = &loaded.sweep;
        let identity = format!(
            "{base}|{}|{}|{}|{}|{}",
            spec.method.as_str(),
            space.describe(),
            describe(&objectives),
            spec.seed,
            spec.startup
        );
        let search = hex::encode(&Sha256::digest(identity.as_bytes())[..6]);
        Ok(Proposer {
            loaded,
            resolver,
            searcher: searcher(spec.method, spec.startup),
            space,
            metrics: objectives.iter().map(|o| o.metric.clone()).collect(),
            objectives,
            search,
            file: loaded.file.display().to_string(),
        })
    }

    /// The search's fingerprint: what the store files its proposals under.
    pub fn search(&self) -> &str {
        &self.search
    }

    /// How many trials the search makes in all (`[sweep] trials`).
    pub fn budget(&self) -> usize {
        self.loaded.sweep.trials
    }

    /// What the search optimises.
    pub fn objectives(&self) -> &[Objective] {
        &self.objectives
    }

    fn goals(&self) -> Vec<Goal> {
        self.objectives.iter().map(|o| o.goal).collect()
    }

    fn key(&self) -> SearchKey<'_> {
        SearchKey {
            sweep: &self.loaded.config.name,
            search: &self.search,
            experiment: &self.loaded.config.name,
            file: &self.file,
            metrics: &self.metrics,
        }
    }

    /// The store's record of the search's proposals, in proposal order.
    pub fn records(&self, store: &Store) -> anyhow::Result<Vec<ProposalRecord>> {
        Ok(store.proposals(&self.key())?)
    }

    /// The search's proposals so far, as trials to run (resolved again from their points).
    pub fn planned(&self, store: &Store) -> anyhow::Result<Vec<PlannedTrial>> {
        self.records(store)?
            .iter()
            .map(|r| {
                let trial = self.trial_of(&r.point).map_err(|e| {
                    anyhow::anyhow!(
                        "proposal {} of sweep {} in the store: {e:#}; remove its trial {} with `vitrun rm` to propose again",
                        r.number,
                        self.loaded.config.name,
                        r.trial
                    )
                })?;
                anyhow::ensure!(
                    trial.id == r.trial,
                    "proposal {} of sweep {} was trial {}, but its point resolves to {} today; the experiment changed under the search without changing its fingerprint (re-run with a new `[sweep] seed` to start a new search)",
                    r.number,
                    self.loaded.config.name,
                    r.trial,
                    trial.id
                );
                Ok(trial)
            })
            .collect()
    }

    /// The trial a recorded point (JSON `{key: value}`) resolves to today.
    pub fn trial_of(&self, point: &str) -> anyhow::Result<PlannedTrial> {
        let mut point =
            point_of(point).map_err(|e| anyhow::anyhow!("an unreadable point ({e})"))?;
        point.sort_by_key(|(k, _)| self.space.dims.iter().position(|d| &d.key == k));
        Ok(self.trial(point)?)
    }

    /// Proposes the next trial and records it in `store` (queued), or none when the budget is
    /// spent or every point of the space is a trial of the search already.
    pub fn next(&self, store: &mut Store) -> anyhow::Result<Option<PlannedTrial>> {
        let mut made = None;
        store.propose(&self.key(), |records, number| {
            Ok(self.make(records, number)?.map(|(trial, proposal)| {
                made = Some(trial);
                proposal
            }))
        })?;
        Ok(made)
    }

    /// Proposal `number` after `records` (the search's proposals so far, with their trials'
    /// outcomes): the trial and what to record of it; none when the budget is spent or every
    /// point of the space is a trial of the search already.
    pub fn make(
        &self,
        records: &[ProposalRecord],
        number: usize,
    ) -> anyhow::Result<Option<(PlannedTrial, NewProposal)>> {
        if records.len() >= self.budget() {
            return Ok(None);
        }
        let history = self.history(records);
        let taken: HashSet<String> = records.iter().map(|r| r.trial.clone()).collect();
        let Some(trial) = self.propose(number, &history, &taken)? else {
            return Ok(None);
        };
        let point: BTreeMap<&str, &toml::Value> =
            trial.point.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let proposal = NewProposal {
            trial: QueuedTrial {
                id: trial.id.clone(),
                config_json: serde_json::to_string(&trial.config)?,
                seed: trial.config.seed,
            },
            point: serde_json::to_string(&point)?,
            history: serde_json::to_string(&history)?,
        };
        Ok(Some((trial, proposal)))
    }

    /// The objectives' metrics (`split/name`), in order.
    pub fn metrics(&self) -> &[String] {
        &self.metrics
    }

    /// The experiment file, as the store names it.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The history the store's records give: each proposal's point in today's space and its
    /// trial's outcome (a trial that diverged or finished without the objective is left out).
    pub fn history(&self, records: &[ProposalRecord]) -> Vec<Observation> {
        let goals = self.goals();
        records
            .iter()
            .filter_map(|r| {
                let outcome = outcome(r, &goals)?;
                let point: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(&r.point).ok()?;
                let values = point
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), self.space.dim(k)?.domain.internal(v)?)))
                    .collect();
                Some(Observation {
                    number: r.number,
                    values,
                    outcome,
                })
            })
            .collect()
    }

    /// Proposal `number` made from `history`: the first candidate whose trial is not in
    /// `taken`. The same number and history give the same proposal.
    pub fn propose(
        &self,
        number: usize,
        history: &[Observation],
        taken: &HashSet<String>,
    ) -> Result<Option<PlannedTrial>, ConfigError> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.loaded.sweep.seed);
        rng.set_stream(number as u64);
        let ask = Ask {
            space: &self.space,
            searcher: self.searcher.as_ref(),
            goals: self.goals(),
        };
        ask.point(
            history,
            &mut rng,
            |point| self.applicable(point),
            |point| {
                let trial = self.trial(point)?;
                Ok((!taken.contains(&trial.id)).then_some(trial))
            },
        )
    }

    /// The conditional dimensions whose condition holds on the config `point` gives.
    fn applicable(&self, point: &[(String, toml::Value)]) -> Result<Vec<&Dim>, ConfigError> {
        let conditional: Vec<&Dim> = self.space.dims.iter().filter(|d| d.conditional).collect();
        if conditional.is_empty() {
            return Ok(conditional);
        }
        let config = self.resolver.resolve(&crate::plan::as_overrides(point))?;
        let config = serde_json::to_value(&config).expect("a config serialises");
        Ok(conditional
            .into_iter()
            .filter(|d| {
                self.loaded
                    .sweep
                    .when
                    .get(&d.key)
                    .is_none_or(|w| w.holds(&config))
            })
            .collect())
    }

    /// The trial a point makes, resolved and validated like the file (an invalid point is
    /// the planner's error, naming the axis value or the combination).
    fn trial(&self, point: Vec<(String, toml::Value)>) -> Result<PlannedTrial, ConfigError> {
        let overrides = crate::plan::as_overrides(&point);
        let mut config = self
            .resolver
            .resolve(&overrides)
            .map_err(|e| crate::plan::blame(self.loaded, &self.resolver, &overrides, e))?;
        let id = config.trial_id();
        config.sweep = self.loaded.config.sweep.clone();
        Ok(PlannedTrial { id, point, config })
    }
}

/// A trial's outcome for the search: finished with the best value it logged of each
/// objective, pruned with the values at its last epoch, pending while it may still run; none
/// for a trial that diverged or finished without every objective.
fn outcome(r: &ProposalRecord, goals: &[Goal]) -> Option<Outcome> {
    match r.status {
        Status::Finished => {
            let values = r
                .objectives
                .iter()
                .zip(goals)
                .map(|(series, goal)| {
                    goal.best(series.iter().map(|(_, v)| *v).filter(|v| v.is_finite()))
                })
                .collect::<Option<Vec<f64>>>()?;
            Some(Outcome::Complete { values })
        }
        Status::Pruned => {
            let step = r
                .objectives
                .iter()
                .filter_map(|s| s.last())
                .map(|(e, _)| *e)
                .max();
            let values = r
                .objectives
                .iter()
                .map(|s| s.last().filter(|(e, _)| Some(*e) == step).map(|(_, v)| *v))
                .collect::<Option<Vec<f64>>>()
                .unwrap_or_default();
            Some(Outcome::Pruned {
                step: step.unwrap_or(0),
                values,
            })
        }
        Status::Diverged | Status::Failed => None,
        _ => Some(Outcome::Pending),
    }
}

/// Objectives as `vitrun plan` and the fingerprint spell them: `metric:max, metric:min`.
pub fn describe(objectives: &[Objective]) -> String {
    objectives
        .iter()
        .map(Objective::describe)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A recorded point read back as `(key, value)` pairs.
fn point_of(json: &str) -> anyhow::Result<Vec<(String, toml::Value)>> {
    let map: BTreeMap<String, toml::Value> = serde_json::from_str(json)?;
    Ok(map.into_iter().collect())
}

/// The trials `loaded`'s search has proposed so far (none before the store exists).
pub fn planned(loaded: &Loaded) -> anyhow::Result<Vec<PlannedTrial>> {
    let path = loaded.config.store_path();
    if !path.exists() {
        return Ok(Vec::new());
    }
    let store = Store::open(&path)?;
    Proposer::new(loaded)?.planned(&store)
}
