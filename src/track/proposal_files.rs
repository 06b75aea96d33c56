//! Proposals a search's SLURM array tasks make, one file each under
//! `runs/<experiment>/proposals/` (the nodes never write SQLite: a shared filesystem's locks
//! are not to be trusted with it). Each is written whole under a temporary name and renamed,
//! so a reader sees it complete or not at all; `sync` folds them into the store's `proposals`
//! table before the shards, so that their trials exist when their records arrive.

use std::path::{Path, PathBuf};

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::{upsert_experiment, Store};

/// One proposal as an array task recorded it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposalFile {
    pub sweep: String,
    pub experiment: String,
    /// The experiment file, as the store names it.
    pub file: String,
    /// The search's fingerprint.
    pub search: String,
    pub number: usize,
    pub trial: String,
    /// The trial's resolved config (JSON) and seed, to queue it in the store.
    pub config: String,
    pub seed: u64,
    /// The point and the history it was proposed from (JSON), as the store keeps them.
    pub point: String,
    pub history: String,
    pub proposed_at: String,
    /// The SLURM array task (`JOBID_INDEX`) that proposed it, and runs it.
    pub task: Option<String>,
}

impl ProposalFile {
    /// Its file name: the number first, so that names sort in proposal order.
    fn name(&self) -> String {
        format!("{:06}-{}.json", self.number, self.trial)
    }
}

/// Writes `proposal` into `dir` (created if needed): whole, under a temporary name, then
/// renamed into place.
pub fn write(dir: &Path, proposal: &ProposalFile) -> anyhow::Result<PathBuf> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(proposal.name());
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        proposal.name(),
        super::hostname(),
        std::process::id()
    ));
    let text = serde_json::to_string_pretty(proposal)?;
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Every proposal file in `dir`, in proposal order; a file that does not parse is named in
/// the second list and left out.
pub fn read(dir: &Path) -> (Vec<ProposalFile>, Vec<String>) {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|it| {
            it.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.extension().is_some_and(|x| x == "json")
                        && !p
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut problems = Vec::new();
    let files = names
        .into_iter()
        .filter_map(|path| {
            let parsed = std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str::<ProposalFile>(&t).map_err(|e| e.to_string()));
            match parsed {
                Ok(p) if crate::config::is_safe_name(&p.trial) => Some(p),
                Ok(p) => {
                    problems.push(format!(
                        "proposal {}: trial id {:?} is not a trial id; left out",
                        path.display(),
                        p.trial
                    ));
                    None
                }
                Err(e) => {
                    problems.push(format!("proposal {}: {e}; left out", path.display()));
                    None
                }
            }
        })
        .collect();
    (files, problems)
}

/// Removes the proposal files of `trial` from `dir` (`vitrun rm`: else the next fold would
/// record its proposal again).
pub fn remove_trial(dir: &Path, trial: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    let suffix = format!("-{trial}.json");
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().ends_with(&suffix) {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("cannot remove {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Records `p` with its queued trial (a new trial is queued; a known one is left as it is).
pub(super) fn insert(tx: &rusqlite::Transaction<'_>, p: &ProposalFile) -> rusqlite::Result<()> {
    upsert_experiment(tx, &p.experiment, &p.file, &p.proposed_at)?;
    tx.execute(
        "INSERT INTO trials(id, experiment, config, seed, status, attempts, created_at)
         VALUES (?1, ?2, ?3, ?4, 'queued', 0, ?5) ON CONFLICT(id) DO NOTHING",
        params![
            p.trial,
            p.experiment,
            p.config,
            p.seed as i64,
            p.proposed_at
        ],
    )?;
    tx.execute(
        "INSERT OR IGNORE INTO sweep_trials(sweep, trial) VALUES (?1, ?2)",
        params![p.sweep, p.trial],
    )?;
    tx.execute(
        "INSERT INTO proposals(sweep, number, search, trial, point, history, proposed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            p.sweep,
            p.number as i64,
            p.search,
            p.trial,
            p.point,
            p.history,
            p.proposed_at
        ],
    )?;
    Ok(())
}

/// Whether any experiment under `runs_dir` has a proposals folder.
pub fn any(runs_dir: &Path) -> bool {
    std::fs::read_dir(runs_dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|exp| {
            crate::contract::ExperimentDir::at(exp.path())
                .proposals()
                .is_dir()
        })
}

impl Store {
    /// Records the proposal files under `runs_dir` that the store does not have yet (by sweep
    /// and number), each with its queued trial, in one transaction; returns how many were new
    /// and what could not be folded.
    pub fn fold_proposal_files(&mut self, runs_dir: &Path) -> anyhow::Result<(usize, Vec<String>)> {
        let mut found = Vec::new();
        let mut problems = Vec::new();
        for exp in std::fs::read_dir(runs_dir).into_iter().flatten().flatten() {
            let dir = crate::contract::ExperimentDir::at(exp.path()).proposals();
            if dir.is_dir() {
                let (files, bad) = read(&dir);
                found.extend(files);
                problems.extend(bad);
            }
        }
        if found.is_empty() {
            return Ok((0, problems));
        }
        let path = self.path.clone();
        let wrap = super::sql_error(&path);
        let tx = self.begin()?;
        let mut new = 0;
        for p in &found {
            let held: Option<String> = tx
                .query_row(
                    "SELECT trial FROM proposals WHERE sweep = ?1 AND number = ?2",
                    params![p.sweep, p.number as i64],
                    |r| r.get(0),
                )
                .optional()
                .map_err(&wrap)?;
            match held {
                Some(trial) if trial != p.trial => {
                    problems.push(format!(
                        "proposal {} of sweep {} is trial {} in the store but {} in its file; the file is left out",
                        p.number, p.sweep, trial, p.trial
                    ));
                    continue;
                }
                Some(_) => {}
                None => {
                    insert(&tx, p).map_err(&wrap)?;
                    new += 1;
                }
            }
            // The worker's array task now runs this trial, as a planned task's would.
            if let Some((job, idx)) = p.task.as_deref().and_then(|t| t.split_once('_')) {
                tx.execute(
                    "INSERT OR IGNORE INTO slurm_tasks(job, idx, trial)
                     SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM slurm_jobs WHERE job = ?1)",
                    params![job, idx.parse::<i64>().unwrap_or(-1), p.trial],
                )
                .map_err(&wrap)?;
            }
        }
        tx.commit().map_err(&wrap)?;
        Ok((new, problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proposal(number: usize, trial: &str) -> ProposalFile {
        ProposalFile {
            sweep: "s".into(),
            experiment: "s".into(),
            file: "s.toml".into(),
            search: "abc".into(),
            number,
            trial: trial.into(),
            config: "{}".into(),
            seed: 0,
            point: "{\"optimizer.lr\":0.001}".into(),
            history: "[]".into(),
            proposed_at: "2026-12-07T00:00:00.000Z".into(),
            task: Some("77_3".into()),
        }
    }

    /// Folding is idempotent, a file that names another trial than the store's proposal of
    /// that number is left out and named, and a half-written file (a dot-temporary) is never
    /// read.
    #[test]
    fn proposal_files_fold_once_and_a_conflict_is_named() {
        let runs = tempfile::tempdir().unwrap();
        let dir = crate::contract::ExperimentDir::at(runs.path().join("s")).proposals();
        write(&dir, &proposal(0, "aaaaaaaaaaaa")).unwrap();
        write(&dir, &proposal(1, "bbbbbbbbbbbb")).unwrap();
        std::fs::write(dir.join(".000002-cccccccccccc.json.host.1.tmp"), "{").unwrap();
        assert!(any(runs.path()));
        let mut store = Store::open(&runs.path().join("vitrun.sqlite")).unwrap();
        assert_eq!(store.fold_proposal_files(runs.path()).unwrap(), (2, vec![]));
        assert_eq!(store.fold_proposal_files(runs.path()).unwrap(), (0, vec![]));
        assert_eq!(
            store.proposal_history("s", 1).unwrap(),
            Some(("[]".into(), "{\"optimizer.lr\":0.001}".into()))
        );
        write(&dir, &proposal(1, "dddddddddddd")).unwrap();
        let (new, problems) = store.fold_proposal_files(runs.path()).unwrap();
        assert_eq!(new, 0);
        assert_eq!(
            problems,
            ["proposal 1 of sweep s is trial bbbbbbbbbbbb in the store but dddddddddddd in its file; the file is left out"]
        );
        remove_trial(&dir, "dddddddddddd").unwrap();
        assert_eq!(read(&dir).0.len(), 2);
    }
}
