//! Folding cluster shards into the store, on the submit host. Each shard is read from where
//! the previous fold stopped (`shard_progress.bytes`), and its new complete records are applied
//! in the same transaction that moves that mark, so folding is idempotent: the same shard
//! folded twice, or folded while it grows and again later, gives the same rows.
//!
//! A shard is known by what it is — its trial and its attempt (`<trial>/attempt-NNNN.jsonl`)
//! — never by the path it was found under, so a runs folder spelled another way (absolute,
//! through a symlink, mounted elsewhere, copied) folds nothing twice. An attempt that a newer
//! claim superseded (the trial taken over and run again, here or on another node) never writes
//! over the newer attempt: its status, metrics and fresh starts are left out, its events and
//! artifacts kept as history.

use std::path::{Path, PathBuf};

use rusqlite::{params, OptionalExtension, Transaction};

use super::shard::{self, Record};
use super::{
    now, upsert_experiment, write_metrics, Store, BURN_VERSION, INSERT_PARAM, SET_STATUS,
    UPSERT_ARTIFACT, VITRUN_VERSION,
};
use crate::config::is_safe_name;

/// What a fold did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FoldReport {
    /// Shard files found.
    pub shards: usize,
    /// Shard files that had new records.
    pub grown: usize,
    /// Records applied.
    pub records: usize,
    /// Proposals of searches' array tasks newly recorded.
    pub proposals: usize,
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

/// Folds the proposal files and then the shards under `runs_dir` into its store; `None` (and
/// no store opened) when there are none, as on a machine that never ran a cluster sweep.
pub fn sync(runs_dir: &Path) -> anyhow::Result<Option<FoldReport>> {
    let shards = find_shards(runs_dir);
    let proposals = super::proposal_files::any(runs_dir);
    if shards.is_empty() && !proposals {
        return Ok(None);
    }
    let mut store = Store::open(&crate::contract::RunsDir::new(runs_dir).store())?;
    let (folded, problems) = if proposals {
        store.fold_proposal_files(runs_dir)?
    } else {
        (0, Vec::new())
    };
    let mut report = store.fold_shards(&shards)?;
    report.proposals = folded;
    report.problems.extend(problems);
    Ok(Some(report))
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
            let Some((trial, key)) = shard_key(file) else {
                report.problems.push(format!(
                    "shard {}: not in a trial folder's shards/ under a safe trial id; left out",
                    file.display()
                ));
                continue;
            };
            let done: Option<(i64, i64)> = tx
                .query_row(
                    "SELECT bytes, records FROM shard_progress WHERE shard = ?1",
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
            if let Some(other) = read.records.iter().find(|r| r.trial() != trial) {
                report.problems.push(format!(
                    "shard {} holds records of trial {:?}, not of its folder's trial {trial}; left out",
                    file.display(),
                    other.trial()
                ));
                continue;
            }
            let holder = format!("shard:{key}");
            for record in &read.records {
                apply(&tx, record, &holder).map_err(&wrap)?;
            }
            tx.execute(
                "INSERT INTO shard_progress(shard, trial, bytes, records, folded_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(shard) DO UPDATE SET bytes = excluded.bytes,
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

/// What a shard file is: its trial (the folder two levels up, a safe id) and its key
/// (`<trial>/<attempt file>`), whatever path it was found under.
pub(crate) fn shard_key(file: &Path) -> Option<(String, String)> {
    let name = file.file_name()?.to_str()?;
    let shards = file.parent()?;
    let trial = shards.parent()?.file_name()?.to_str()?;
    let is_shards = shards
        .file_name()
        .is_some_and(|n| n == crate::contract::layout::SHARDS);
    (is_shards && is_safe_name(trial)).then(|| (trial.to_string(), format!("{trial}/{name}")))
}

/// Moves the fold progress of stores older than schema 5, kept by the path a shard was found
/// under, to [`shard_key`]s: several spellings of one shard keep the furthest read.
pub(crate) fn rekey_shard_progress(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    let rows: Vec<(String, i64, i64, String)> = {
        let mut stmt = tx.prepare("SELECT path, bytes, records, folded_at FROM shard_folds")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for (path, bytes, records, folded_at) in rows {
        let Some((trial, key)) = shard_key(Path::new(&path)) else {
            continue;
        };
        tx.execute(
            "INSERT INTO shard_progress(shard, trial, bytes, records, folded_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(shard) DO UPDATE SET bytes = MAX(bytes, excluded.bytes),
                records = MAX(records, excluded.records)",
            params![key, trial, bytes, records, folded_at],
        )?;
    }
    tx.execute_batch("DROP TABLE shard_folds;")
}

/// Who holds trial `trial` now (`direct`, `shard:<key>`, or unknown for rows older than the
/// column) and since when.
fn holder_of(
    tx: &Transaction<'_>,
    trial: &str,
) -> rusqlite::Result<Option<(Option<String>, Option<String>)>> {
    tx.query_row(
        "SELECT claim, started_at FROM trials WHERE id = ?1",
        [trial],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

/// Whether the attempt `holder` (`shard:<key>`) is superseded: another attempt claimed the
/// trial after it (a row without a recorded holder predates the column and is not).
fn superseded(tx: &Transaction<'_>, trial: &str, holder: &str) -> rusqlite::Result<bool> {
    Ok(holder_of(tx, trial)?
        .and_then(|(claim, _)| claim)
        .is_some_and(|claim| claim != holder))
}

/// Applies one record of the attempt `holder` as the direct write it stands for, unless a
/// newer attempt superseded it; returns its trial id.
fn apply(tx: &Transaction<'_>, record: &Record, holder: &str) -> rusqlite::Result<String> {
    let trial = record.trial().to_string();
    let writes_state = matches!(
        record,
        Record::ClearMetrics { .. } | Record::Metrics { .. } | Record::Status { .. }
    );
    if let Record::Claim { time, .. } = record {
        // A claim older than the trial's current one (a shard found only now, say) is history.
        let newer = holder_of(tx, &trial)?.is_some_and(|(claim, started)| {
            claim.is_some_and(|c| c != holder)
                && started.is_some_and(|s| s.as_str() > time.as_str())
        });
        if newer {
            return Ok(trial);
        }
    } else if writes_state && superseded(tx, &trial, holder)? {
        return Ok(trial);
    }
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
                                    started_at, job, main_metric, claim)
                 VALUES (?1, ?2, ?3, ?4, 'running', 1, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12, ?13,
                         ?14)
                 ON CONFLICT(id) DO UPDATE SET status = 'running', attempts = attempts + 1,
                    device = excluded.device, host = excluded.host, pid = excluded.pid,
                    git_commit = excluded.git_commit, vitrun_version = excluded.vitrun_version,
                    burn_version = excluded.burn_version, started_at = excluded.started_at,
                    ended_at = NULL, error = NULL, job = excluded.job,
                    main_metric = COALESCE(excluded.main_metric, trials.main_metric),
                    claim = excluded.claim",
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
                    main_metric,
                    holder
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
