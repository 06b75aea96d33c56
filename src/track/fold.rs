//! Folding cluster shards into the store, on the submit host. Each shard is read from where
//! the previous fold stopped (`shard_folds.bytes`), and its new complete records are applied
//! in the same transaction that moves that mark, so folding is idempotent: the same shard
//! folded twice, or folded while it grows and again later, gives the same rows.

use std::path::{Path, PathBuf};

use rusqlite::{params, OptionalExtension, Transaction};

use super::shard::{self, Record};
use super::{
    now, upsert_experiment, write_metrics, Store, BURN_VERSION, INSERT_PARAM, SET_STATUS,
    UPSERT_ARTIFACT, VITRUN_VERSION,
};

/// What a fold did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FoldReport {
    /// Shard files found.
    pub shards: usize,
    /// Shard files that had new records.
    pub grown: usize,
    /// Records applied.
    pub records: usize,
    /// Shards that could not be read (the rest were folded), one message each.
    pub problems: Vec<String>,
}

/// Every attempt shard under `runs_dir` (`<experiment>/<trial>/shards/attempt-*.jsonl`),
/// in path order, so that a trial's attempts fold oldest first.
pub fn find_shards(runs_dir: &Path) -> Vec<PathBuf> {
    let dirs = |p: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(p)
            .map(|it| {
                it.filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out: Vec<PathBuf> = dirs(runs_dir)
        .iter()
        .flat_map(|exp| dirs(exp))
        .flat_map(|trial| shard::attempts(&trial))
        .collect();
    out.sort();
    out
}

/// Folds the shards under `runs_dir` into its store; `None` (and no store opened) when there
/// are none, as on a machine that never ran a cluster sweep.
pub fn sync(runs_dir: &Path) -> anyhow::Result<Option<FoldReport>> {
    let shards = find_shards(runs_dir);
    if shards.is_empty() {
        return Ok(None);
    }
    let mut store = Store::open(&crate::contract::RunsDir::new(runs_dir).store())?;
    Ok(Some(store.fold_shards(&shards)?))
}

impl Store {
    /// Applies the new complete records of each shard, all in one transaction.
    pub fn fold_shards(&mut self, shards: &[PathBuf]) -> anyhow::Result<FoldReport> {
        let path = self.path.clone();
        let wrap = super::sql_error(&path);
        let tx = self.begin()?;
        let mut report = FoldReport {
            shards: shards.len(),
            ..FoldReport::default()
        };
        for file in shards {
            let key = file.display().to_string();
            let done: Option<(i64, i64)> = tx
                .query_row(
                    "SELECT bytes, records FROM shard_folds WHERE path = ?1",
                    [&key],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(&wrap)?;
            let (bytes, records) = done.unwrap_or((0, 0));
            let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
            if size <= bytes as u64 {
                continue;
            }
            let read = match shard::read_from(file, bytes as u64) {
                Ok(read) => read,
                Err(e) => {
                    report.problems.push(e.to_string());
                    continue;
                }
            };
            if read.records.is_empty() {
                continue;
            }
            let mut trial = String::new();
            for record in &read.records {
                trial = apply(&tx, record).map_err(&wrap)?;
            }
            tx.execute(
                "INSERT INTO shard_folds(path, trial, bytes, records, folded_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(path) DO UPDATE SET bytes = excluded.bytes,
                    records = excluded.records, folded_at = excluded.folded_at",
                params![
                    key,
                    trial,
                    read.end as i64,
                    records + read.records.len() as i64,
                    now()
                ],
            )
            .map_err(&wrap)?;
            report.grown += 1;
            report.records += read.records.len();
        }
        tx.commit().map_err(&wrap)?;
        Ok(report)
    }
}

/// Applies one record as the direct write it stands for; returns its trial id.
fn apply(tx: &Transaction<'_>, record: &Record) -> rusqlite::Result<String> {
    match record {
        Record::Claim {
            trial,
            experiment,
            file,
            config,
            seed,
            params: values,
            device,
            host,
            pid,
            job,
            git_commit,
            time,
            main_metric,
        } => {
            upsert_experiment(tx, experiment, file, time)?;
            tx.execute(
                "INSERT INTO trials(id, experiment, config, seed, status, attempts, device, host,
                                    pid, git_commit, vitrun_version, burn_version, created_at,
                                    started_at, job, main_metric)
                 VALUES (?1, ?2, ?3, ?4, 'running', 1, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12, ?13)
                 ON CONFLICT(id) DO UPDATE SET status = 'running', attempts = attempts + 1,
                    device = excluded.device, host = excluded.host, pid = excluded.pid,
                    git_commit = excluded.git_commit, vitrun_version = excluded.vitrun_version,
                    burn_version = excluded.burn_version, started_at = excluded.started_at,
                    ended_at = NULL, error = NULL, job = excluded.job,
                    main_metric = COALESCE(excluded.main_metric, trials.main_metric)",
                params![
                    trial,
                    experiment,
                    config,
                    *seed as i64,
                    device,
                    host,
                    pid,
                    git_commit,
                    VITRUN_VERSION,
                    BURN_VERSION,
                    time,
                    job,
                    main_metric
                ],
            )?;
            let mut stmt = tx.prepare_cached(INSERT_PARAM)?;
            for (k, v) in values {
                stmt.execute(params![trial, k, v])?;
            }
            Ok(trial.clone())
        }
        Record::ClearMetrics { trial } => {
            tx.execute("DELETE FROM metrics WHERE trial = ?1", [trial])?;
            Ok(trial.clone())
        }
        Record::Metrics { trial, rows } => {
            write_metrics(tx, trial, rows)?;
            Ok(trial.clone())
        }
        Record::Status {
            trial,
            status,
            error,
            time,
        } => {
            let ended =
                (!matches!(status, super::Status::Running | super::Status::Queued)).then_some(time);
            tx.execute(SET_STATUS, params![trial, status.as_str(), error, ended])?;
            Ok(trial.clone())
        }
        Record::Artifact {
            trial,
            kind,
            path,
            time,
        } => {
            tx.execute(UPSERT_ARTIFACT, params![trial, kind, path, time])?;
            Ok(trial.clone())
        }
        Record::Event {
            trial,
            kind,
            message,
            time,
        } => {
            tx.execute(
                "INSERT INTO events(trial, time, kind, message)
                 SELECT ?1, ?2, ?3, ?4 WHERE NOT EXISTS (SELECT 1 FROM events
                    WHERE trial = ?1 AND time = ?2 AND kind = ?3 AND message = ?4)",
                params![trial, time, kind, message],
            )?;
            Ok(trial.clone())
        }
    }
}

/// [`sync`] before a command reads the store: shards that cannot be read are named on stderr
/// and left out; the rest is folded.
pub fn sync_before_reading(runs_dir: &Path) -> anyhow::Result<()> {
    if let Some(report) = sync(runs_dir)? {
        for problem in &report.problems {
            eprintln!("vitrun: warning: {problem}");
        }
    }
    Ok(())
}
