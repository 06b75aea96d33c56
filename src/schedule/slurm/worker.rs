//! A search's array task, a worker: under the proposals folder's lock it reads the search's
//! proposals (those the store had at submission, and the files other tasks wrote since), each
//! trial's outcome from its shards, proposes the next point from that history (running and
//! queued trials count as pending: the constant liar) and records it as a proposal file; then it
//! runs that trial as any array task does. No process stays on the login node, and the nodes
//! never write SQLite.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{JobPlan, SubmitLock};
use crate::contract::{ExperimentDir, Status};
use crate::plan::PlannedTrial;
use crate::search::Proposer;
use crate::track::proposal_files::{self, ProposalFile};
use crate::track::shard::ShardView;
use crate::track::ProposalRecord;

/// What a search's workers need beyond the job plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchPlan {
    /// The run store's folder (absolute): the experiment's proposals and shards are under it.
    pub runs_dir: std::path::PathBuf,
    /// The search's proposals in the store at submission, with their trials' outcomes then.
    pub prior: Vec<ProposalRecord>,
    /// The search's fingerprint at submission: a worker whose experiment file no longer
    /// gives it refuses to propose.
    pub search: String,
}

/// The trial a worker runs, and the search's trials so far (its early-stopping peers).
pub struct Proposed {
    pub trial: PlannedTrial,
    pub members: Vec<String>,
}

/// The trial this worker runs: the one it proposed before a requeue, else a new proposal
/// (recorded in a proposal file); none once the search's budget is spent or its space holds
/// no new point.
pub fn propose(plan: &JobPlan, search: &SearchPlan) -> anyhow::Result<Option<Proposed>> {
    let mut sets = plan.sets.clone();
    let runs = toml::Value::String(search.runs_dir.display().to_string());
    sets.insert(0, format!("train.runs_dir={runs}"));
    let loaded = crate::config::load(&plan.file, &sets)?;
    let proposer = Proposer::new(&loaded)?;
    anyhow::ensure!(
        proposer.search() == search.search,
        "{} changed since the search was submitted (search {} then, {} now): a worker proposes only for the search it was submitted for; cancel the job (vitrun cancel {}) and submit again",
        plan.file.display(),
        search.search,
        proposer.search(),
        plan.experiment
    );
    let dir = ExperimentDir::at(search.runs_dir.join(&loaded.config.name)).proposals();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let _lock = SubmitLock::take(&dir.join(".lock"))?;
    let (files, problems) = proposal_files::read(&dir);
    for problem in problems {
        eprintln!("vitrun: warning: {problem}");
    }
    let files: Vec<ProposalFile> = files
        .into_iter()
        .filter(|f| f.sweep == plan.sweep && f.search == proposer.search())
        .collect();
    let me = super::task_id();
    let planned = |f: &ProposalFile| -> anyhow::Result<PlannedTrial> {
        let trial = proposer.trial_of(&f.point)?;
        anyhow::ensure!(
            trial.id == f.trial,
            "proposal {} of {} was trial {}, but its point resolves to {} today; the experiment file changed under the search",
            f.number,
            plan.sweep,
            f.trial,
            trial.id
        );
        Ok(trial)
    };
    let members = |extra: Option<&str>| -> Vec<String> {
        let mut all: Vec<String> = search.prior.iter().map(|r| r.trial.clone()).collect();
        all.extend(files.iter().map(|f| f.trial.clone()));
        all.extend(extra.map(str::to_string));
        all.sort();
        all.dedup();
        all
    };
    if let Some(mine) = files.iter().find(|f| f.task.is_some() && f.task == me) {
        return Ok(Some(Proposed {
            trial: planned(mine)?,
            members: members(None),
        }));
    }
    let mut records = search.prior.clone();
    for f in &files {
        if !records.iter().any(|r| r.number == f.number) {
            records.push(ProposalRecord {
                number: f.number,
                trial: f.trial.clone(),
                point: f.point.clone(),
                status: Status::Queued,
                objectives: vec![Vec::new(); proposer.metrics().len()],
            });
        }
    }
    records.sort_by_key(|r| r.number);
    for r in &mut records {
        outcome_from_shards(
            r,
            &search.runs_dir.join(&loaded.config.name),
            proposer.metrics(),
        );
    }
    let number = records.iter().map(|r| r.number + 1).max().unwrap_or(0);
    let Some((trial, proposal)) = proposer.make(&records, number)? else {
        return Ok(None);
    };
    proposal_files::write(
        &dir,
        &ProposalFile {
            sweep: plan.sweep.clone(),
            experiment: loaded.config.name.clone(),
            file: proposer.file().to_string(),
            search: proposer.search().to_string(),
            number,
            trial: trial.id.clone(),
            config: proposal.trial.config_json,
            seed: proposal.trial.seed,
            point: proposal.point,
            history: proposal.history,
            proposed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            task: me,
        },
    )?;
    Ok(Some(Proposed {
        members: members(Some(&trial.id)),
        trial,
    }))
}

/// `record` with its trial's status and objective values as its shards have them, where it
/// has any (a trial run before the submission keeps what the store said then).
fn outcome_from_shards(record: &mut ProposalRecord, experiment_dir: &Path, metrics: &[String]) {
    let Ok(view) = ShardView::read(&experiment_dir.join(&record.trial)) else {
        return;
    };
    let Some(status) = view.status else {
        return;
    };
    record.status = status;
    record.objectives = metrics
        .iter()
        .map(|metric| {
            let (split, name) = metric.split_once('/').unwrap_or(("val", metric));
            let mut series: Vec<(i64, i64, f64)> = view
                .metrics
                .values()
                .filter(|m| m.split == split && m.name == name)
                .map(|m| (m.epoch, m.step, m.value))
                .collect();
            series.sort_by_key(|(epoch, step, _)| (*epoch, *step));
            series.into_iter().map(|(e, _, v)| (e, v)).collect()
        })
        .collect();
}
