//! The SQLite run store: trials, their params, metrics, artifacts and events.
//! WAL mode, a busy timeout, short `BEGIN IMMEDIATE` transactions, batched idempotent writes.
//! Every write first checks that the file is still the one that was opened, so a store deleted
//! or replaced under a running trial fails the trial instead of writing into the void.

mod cluster;
mod fold;
pub mod host_lease;
mod liveness;
pub mod proposal_files;
mod proposals;
mod recorder;
mod remove;
mod reports;
mod rungs;
mod schema;
pub mod shard;
mod sharded;
mod sweeps;
pub mod timing;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ValueRef};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

pub use crate::contract::Status;
use crate::contract::{Artifact, Event, Metric};
pub use cluster::JobRecord;
pub use fold::{find_shards, sync, sync_before_reading, FoldReport};
pub use liveness::{effective_status, vitrun_alive};
pub use proposals::{NewProposal, ProposalRecord, SearchKey};
pub use recorder::Recorder;
pub use remove::Removal;
pub use reports::TrialLookup;
pub use rungs::PeerAt;
pub use schema::MIGRATIONS;
pub use sharded::{PeerSnapshot, ShardRecorder};
pub use sweeps::{EpochSnapshot, QueuedTrial, TrialState};

/// A store error names the database file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("run store {path}: {source}")]
    Sql {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("run store {path} was deleted or replaced while this process had it open, so what it records now would be lost; leave the runs folder in place while trials run")]
    Replaced { path: PathBuf },
    #[error("run store {path} cannot be written from this host: {why}")]
    OtherHost { path: PathBuf, why: String },
    #[error("run store {path} has schema version {found}, newer than the {known} this vitrun knows: a newer vitrun wrote it, and this one could misread or damage it; use that vitrun (vitrun --version says which this is)")]
    Newer {
        path: PathBuf,
        found: usize,
        known: usize,
    },
}

type Result<T> = std::result::Result<T, StoreError>;

impl FromSql for Status {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

/// One metric value.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetricRow {
    pub split: String,
    pub name: String,
    pub step: i64,
    pub epoch: i64,
    pub value: f64,
    pub wall_time: f64,
}

/// What is recorded when a trial starts.
#[derive(Debug, Clone)]
pub struct TrialStart {
    pub id: String,
    pub experiment: String,
    pub file: String,
    pub config_json: String,
    pub seed: u64,
    pub params: Vec<(String, String)>,
    pub device: String,
    /// The name of the task's main metric under `val/` (what `best` means for this trial).
    pub main_metric: String,
}

/// The answer to [`Store::claim_trial`].
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// This process now holds the trial (attempt number in the row).
    Taken { attempt: i64 },
    /// Another process holds it.
    Held {
        pid: i64,
        host: String,
        since: Option<String>,
    },
    /// It already reached an end a re-run would not change (only when asked to skip those).
    Done(Status),
}

/// The row fields a claim is decided on.
struct Holder {
    status: Status,
    pid: Option<i64>,
    host: Option<String>,
    since: Option<String>,
}

/// A trial as `vitrun ls` shows it.
#[derive(Debug, Clone)]
pub struct TrialSummary {
    pub id: String,
    pub experiment: String,
    /// As stored, except that a `running` row whose process is gone reads `stale`.
    pub status: Status,
    pub attempts: i64,
    pub device: Option<String>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    /// The best value of the trial's main validation metric (`val/<best_metric>`).
    pub best: Option<f64>,
    /// The main metric's name under `val/`: its task's (`top1`, `miou`).
    pub best_metric: String,
    pub last_val_loss: Option<f64>,
    pub epochs: Option<i64>,
    pub error: Option<String>,
    /// The machine its process ran on.
    pub host: Option<String>,
    /// The git commit of the working tree it was started from.
    pub git_commit: Option<String>,
}

/// The crate and burn versions written with every trial.
pub const VITRUN_VERSION: &str = env!("CARGO_PKG_VERSION");
/// burn is pinned to this exact version in Cargo.toml.
pub const BURN_VERSION: &str = "0.21.0";

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// An open run store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// (device, inode) of the file when it was opened.
    identity: (u64, u64),
    /// This host's lease, when the store is on a network filesystem.
    lease: Option<host_lease::HostLease>,
}

fn sql_error(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sql {
        path: path.to_path_buf(),
        source,
    }
}

fn identity_of(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

impl Store {
    /// Opens (creating and migrating as needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        let wrap = sql_error(path);
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path).map_err(&wrap)?;
        conn.busy_timeout(Duration::from_secs(60)).map_err(&wrap)?;
        // A newer vitrun's store is refused before anything here writes to it.
        let found: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(&wrap)?;
        if found as usize > MIGRATIONS.len() {
            return Err(StoreError::Newer {
                path: path.to_path_buf(),
                found: found as usize,
                known: MIGRATIONS.len(),
            });
        }
        // On a network filesystem: one writing host (a lease beside the store) and a rollback
        // journal, since WAL's shared memory cannot be seen from another host.
        let network = path.parent().and_then(host_lease::network_fs);
        let lease = match network {
            Some(fs) => Some(
                host_lease::HostLease::take(path, fs)
                    .map_err(|e| StoreError::OtherHost {
                        path: path.to_path_buf(),
                        why: format!("its host lease cannot be written: {e}"),
                    })?
                    .map_err(|held| StoreError::OtherHost {
                        path: path.to_path_buf(),
                        why: held.to_string(),
                    })?,
            ),
            None => None,
        };
        let (journal, sync) = match lease {
            Some(_) => ("DELETE", "FULL"),
            None => ("WAL", "NORMAL"),
        };
        // Switching a new file to WAL can answer SQLITE_BUSY without waiting on the busy
        // handler when another process opens it at the same moment.
        retry_busy(|| conn.pragma_update(None, "journal_mode", journal)).map_err(&wrap)?;
        conn.pragma_update(None, "synchronous", sync)
            .map_err(&wrap)?;
        let identity = identity_of(path).ok_or_else(|| StoreError::Replaced {
            path: path.to_path_buf(),
        })?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
            identity,
            lease,
        };
        // Migrations rebuild tables that other tables reference; SQLite checks foreign keys
        // on such a DROP unless they are off, and the pragma is a no-op inside a transaction
        // (and the bundled SQLite turns them on by default), so it is set here, outside.
        store
            .conn
            .pragma_update(None, "foreign_keys", "OFF")
            .map_err(&wrap)?;
        retry_busy(|| store.migrate()).map_err(&wrap)?;
        store
            .conn
            .pragma_update(None, "foreign_keys", "ON")
            .map_err(&wrap)?;
        Ok(store)
    }

    fn wrap(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sql {
            path: self.path.clone(),
            source,
        }
    }

    /// Fails when the file at the store's path is no longer the one this process opened, or
    /// (on a network filesystem) when another host has taken the store over.
    pub fn check_identity(&self) -> Result<()> {
        if let Some(lease) = &self.lease {
            lease.renew().map_err(|held| StoreError::OtherHost {
                path: self.path.clone(),
                why: held.to_string(),
            })?;
        }
        if identity_of(&self.path) == Some(self.identity) {
            Ok(())
        } else {
            Err(StoreError::Replaced {
                path: self.path.clone(),
            })
        }
    }

    /// A write transaction (`BEGIN IMMEDIATE`) on the file this process opened.
    fn begin(&mut self) -> Result<Transaction<'_>> {
        self.check_identity()?;
        let path = self.path.clone();
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| sql_error(&path)(e))
    }

    /// One write statement, after the identity check.
    fn write(&self, sql: &str, args: impl rusqlite::Params) -> Result<usize> {
        self.check_identity()?;
        self.conn.execute(sql, args).map_err(|e| self.wrap(e))
    }

    /// The path this store was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version (`PRAGMA user_version`).
    pub fn version(&self) -> Result<usize> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
            .map(|v| v as usize)
            .map_err(|e| self.wrap(e))
    }

    /// Brings the schema to the newest version in one `BEGIN IMMEDIATE` transaction.
    fn migrate(&mut self) -> rusqlite::Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            tx.execute_batch(sql)?;
            if i + 1 == schema::SHARD_KEYS_VERSION {
                fold::rekey_shard_progress(&tx)?;
            }
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        }
        tx.commit()
    }

    /// Claims a trial for this process in one `BEGIN IMMEDIATE` transaction: records it as
    /// running (a new attempt) with its config, params, pid, host and provenance, unless a
    /// live process already holds it, or (with `skip_done`, as a sweep's trials do) it is
    /// already finished, pruned or diverged. A claim by a dead process on this host is taken
    /// over as stale; one by another host is taken over only with `force`.
    pub fn claim_trial(&mut self, t: &TrialStart, force: bool, skip_done: bool) -> Result<Claim> {
        let git = git_commit();
        let host = hostname();
        let path = self.path.clone();
        let wrap = sql_error(&path);
        let tx = self.begin()?;
        let holder = tx
            .query_row(
                "SELECT status, pid, host, started_at FROM trials WHERE id = ?1",
                [&t.id],
                |r| {
                    Ok(Holder {
                        status: r.get(0)?,
                        pid: r.get(1)?,
                        host: r.get(2)?,
                        since: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(&wrap)?;
        if let Some(done) = holder
            .as_ref()
            .map(|h| h.status)
            .filter(|s| skip_done && s.is_done())
        {
            return Ok(Claim::Done(done));
        }
        if let Some(h) = holder.filter(|h| h.status == Status::Running) {
            let theirs = h.host.unwrap_or_default();
            let live = if theirs == host {
                h.pid.is_some_and(vitrun_alive)
            } else {
                !force
            };
            if live {
                return Ok(Claim::Held {
                    pid: h.pid.unwrap_or(0),
                    host: theirs,
                    since: h.since,
                });
            }
        }
        let time = now();
        upsert_experiment(&tx, &t.experiment, &t.file, &time).map_err(&wrap)?;
        tx.execute(
            "INSERT INTO trials(id, experiment, config, seed, status, attempts, device, host, pid,
                                git_commit, vitrun_version, burn_version, created_at, started_at,
                                main_metric, claim)
             VALUES (?1, ?2, ?3, ?4, 'running', 1, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12, 'direct')
             ON CONFLICT(id) DO UPDATE SET status = 'running', attempts = attempts + 1,
                device = excluded.device, host = excluded.host, pid = excluded.pid,
                git_commit = excluded.git_commit, vitrun_version = excluded.vitrun_version,
                burn_version = excluded.burn_version, started_at = excluded.started_at,
                ended_at = NULL, error = NULL, job = NULL, main_metric = excluded.main_metric,
                claim = 'direct'",
            params![
                t.id,
                t.experiment,
                t.config_json,
                t.seed as i64,
                t.device,
                host,
                std::process::id(),
                git,
                VITRUN_VERSION,
                BURN_VERSION,
                time,
                t.main_metric
            ],
        )
        .map_err(&wrap)?;
        {
            let mut stmt = tx.prepare(INSERT_PARAM).map_err(&wrap)?;
            for (k, v) in &t.params {
                stmt.execute(params![t.id, k, v]).map_err(&wrap)?;
            }
        }
        let attempt: i64 = tx
            .query_row("SELECT attempts FROM trials WHERE id = ?1", [&t.id], |r| {
                r.get(0)
            })
            .map_err(&wrap)?;
        tx.commit().map_err(&wrap)?;
        Ok(Claim::Taken { attempt })
    }

    /// Deletes a trial's metrics (a fresh, non-resumed run of the same trial).
    pub fn clear_metrics(&mut self, trial: &str) -> Result<()> {
        self.write("DELETE FROM metrics WHERE trial = ?1", [trial])
            .map(|_| ())
    }

    /// Writes metric rows in one transaction; the same (trial, split, name, step) replaces.
    pub fn log_metrics(&mut self, trial: &str, rows: &[MetricRow]) -> Result<()> {
        let path = self.path.clone();
        let wrap = sql_error(&path);
        let tx = self.begin()?;
        write_metrics(&tx, trial, rows).map_err(&wrap)?;
        tx.commit().map_err(&wrap)
    }

    /// Sets a trial's final (or current) status, with an error message for failures.
    pub fn set_status(&mut self, trial: &str, status: Status, error: Option<&str>) -> Result<()> {
        let ended = (status != Status::Running && status != Status::Queued).then(now);
        self.write(SET_STATUS, params![trial, status.as_str(), error, ended])
            .map(|_| ())
    }

    /// Records a file a trial produced.
    pub fn add_artifact(&mut self, trial: &str, kind: Artifact, path: &Path) -> Result<()> {
        self.write(
            UPSERT_ARTIFACT,
            params![trial, kind.as_str(), path.display().to_string(), now()],
        )
        .map(|_| ())
    }

    /// Appends an event with its message (skipped files, divergence, interruption, …).
    pub fn log_event(&mut self, trial: &str, kind: Event, message: &str) -> Result<()> {
        self.write(
            "INSERT INTO events(trial, time, kind, message) VALUES (?1, ?2, ?3, ?4)",
            params![trial, now(), kind.as_str(), message],
        )
        .map(|_| ())
    }

    /// A trial's events of one kind, oldest first.
    pub fn events(&self, trial: &str, kind: Event) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT message FROM events WHERE trial = ?1 AND kind = ?2 ORDER BY rowid")
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map([trial, kind.as_str()], |r| r.get(0))
            .map_err(|e| self.wrap(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.wrap(e))
    }

    /// A trial's events of one kind with their times (RFC 3339), oldest first.
    pub fn timed_events(&self, trial: &str, kind: Event) -> Result<Vec<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT time, message FROM events WHERE trial = ?1 AND kind = ?2 ORDER BY rowid",
            )
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map([trial, kind.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.wrap(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.wrap(e))
    }

    /// A trial's status as stored, if the store has it.
    pub fn status(&self, trial: &str) -> Result<Option<Status>> {
        self.conn
            .query_row("SELECT status FROM trials WHERE id = ?1", [trial], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.wrap(e))
    }

    /// All metric rows of a trial, ordered by split, name and step.
    pub fn metrics(&self, trial: &str) -> Result<Vec<MetricRow>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT split, name, step, epoch, value, wall_time FROM metrics
                 WHERE trial = ?1 ORDER BY split, name, step",
            )
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map([trial], |r| {
                Ok(MetricRow {
                    split: r.get(0)?,
                    name: r.get(1)?,
                    step: r.get(2)?,
                    epoch: r.get(3)?,
                    value: r.get(4)?,
                    wall_time: r.get(5)?,
                })
            })
            .map_err(|e| self.wrap(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.wrap(e))
    }

    /// Trials with the best value of their task's main validation metric (top-1, mIoU),
    /// newest first (optionally of one experiment).
    pub fn trials(&self, experiment: Option<&str>) -> Result<Vec<TrialSummary>> {
        let loss = Metric::VAL_LOSS;
        let main_metric = main_metric_sql();
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT t.id, t.experiment, t.status, t.attempts, t.device, t.started_at, t.ended_at,
                    (SELECT MAX(value) FROM metrics m WHERE m.trial = t.id AND m.split = ?2 AND m.name = {main_metric}),
                    (SELECT value FROM metrics m WHERE m.trial = t.id AND m.split = ?2 AND m.name = ?3
                        ORDER BY step DESC LIMIT 1),
                    (SELECT MAX(epoch) FROM metrics m WHERE m.trial = t.id AND m.split = ?2),
                    t.error, t.pid, t.host, {main_metric}, t.git_commit
                 FROM trials t WHERE (?1 IS NULL OR t.experiment = ?1)
                 ORDER BY t.started_at DESC"
            ))
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map(params![experiment, loss.split.as_str(), loss.name], |r| {
                let pid: Option<i64> = r.get(11)?;
                let host: Option<String> = r.get(12)?;
                Ok(TrialSummary {
                    id: r.get(0)?,
                    experiment: r.get(1)?,
                    status: effective_status(r.get(2)?, pid, host.as_deref()),
                    attempts: r.get(3)?,
                    device: r.get(4)?,
                    started_at: r.get(5)?,
                    ended_at: r.get(6)?,
                    best: r.get(7)?,
                    last_val_loss: r.get(8)?,
                    epochs: r.get(9)?,
                    error: r.get(10)?,
                    best_metric: r.get(13)?,
                    host,
                    git_commit: r.get(14)?,
                })
            })
            .map_err(|e| self.wrap(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.wrap(e))
    }

    /// What distillation teachers did for the trials (of one experiment): images they
    /// classified and images `distill.cache` answered, over every pass; `None` when no trial
    /// had a teacher.
    pub fn teacher_work(&self, experiment: Option<&str>) -> Result<Option<TeacherWork>> {
        let (forwards, cached) = (Metric::TRAIN_TEACHER_FORWARDS, Metric::TRAIN_TEACHER_CACHED);
        let (rows, forwards, cached): (i64, Option<f64>, Option<f64>) = self
            .conn
            .query_row(
                "SELECT COUNT(*), SUM(CASE WHEN m.name = ?2 THEN m.value END),
                        SUM(CASE WHEN m.name = ?3 THEN m.value END)
                 FROM metrics m JOIN trials t ON t.id = m.trial
                 WHERE (?1 IS NULL OR t.experiment = ?1) AND m.name IN (?2, ?3)",
                params![experiment, forwards.name, cached.name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(|e| self.wrap(e))?;
        Ok((rows > 0).then(|| TeacherWork {
            forwards: forwards.unwrap_or(0.0) as u64,
            cached: cached.unwrap_or(0.0) as u64,
        }))
    }

    /// Runs a read-only query returning one `i64` (for tests and tools).
    pub fn count(&self, sql: &str, trial: &str) -> Result<i64> {
        self.conn
            .query_row(sql, [trial], |r| r.get(0))
            .map_err(|e| self.wrap(e))
    }
}

/// Images distillation teachers classified, and images their cache answered instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TeacherWork {
    pub forwards: u64,
    pub cached: u64,
}

impl TeacherWork {
    /// One line for `ls` and reports: "teacher: 5,000 images classified, 15,000 answered by
    /// distill.cache (75% of its forwards saved)".
    pub fn describe(&self) -> String {
        let total = self.forwards + self.cached;
        let saved = if total == 0 {
            0.0
        } else {
            100.0 * self.cached as f64 / total as f64
        };
        format!(
            "teacher: {} images classified, {} answered by distill.cache ({saved:.0}% of its forwards saved)",
            thousands(self.forwards),
            thousands(self.cached)
        )
    }
}

/// `12345` as `12,345`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// SQL giving the name of trial `t`'s main validation metric, as it recorded it.
pub(crate) fn main_metric_sql() -> String {
    format!(
        "COALESCE(t.main_metric, {})",
        schema::MAIN_METRIC_OF_OLD_TRIALS
    )
}

/// Sets a trial's status, error and end time (`?1`–`?4`).
const SET_STATUS: &str = "UPDATE trials SET status = ?2, error = ?3, ended_at = ?4 WHERE id = ?1";
/// Records a trial's artifact (`trial`, `kind`, `path`, `created_at`).
const UPSERT_ARTIFACT: &str =
    "INSERT INTO artifacts(trial, kind, path, created_at) VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT(trial, kind, path) DO UPDATE SET created_at = excluded.created_at";
/// Records one flattened config value of a trial.
const INSERT_PARAM: &str = "INSERT OR REPLACE INTO params(trial, key, value) VALUES (?1, ?2, ?3)";

/// Writes metric rows; the same (trial, split, name, step) replaces.
fn write_metrics(tx: &Transaction<'_>, trial: &str, rows: &[MetricRow]) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO metrics(trial, split, name, step, epoch, value, wall_time)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT(trial, split, name, step) DO UPDATE SET
            epoch = excluded.epoch, value = excluded.value, wall_time = excluded.wall_time",
    )?;
    for r in rows {
        stmt.execute(params![
            trial,
            r.split,
            r.name,
            r.step,
            r.epoch,
            r.value,
            r.wall_time
        ])?;
    }
    Ok(())
}

/// Runs `op` again while SQLite answers busy or locked, for up to a minute.
fn retry_busy<T>(mut op: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let started = std::time::Instant::now();
    loop {
        match op() {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && started.elapsed() < Duration::from_secs(60) =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Records an experiment (its file is updated when it moves).
fn upsert_experiment(
    tx: &rusqlite::Transaction<'_>,
    name: &str,
    file: &str,
    time: &str,
) -> rusqlite::Result<usize> {
    tx.execute(
        "INSERT INTO experiments(name, file, created_at) VALUES (?1, ?2, ?3)
         ON CONFLICT(name) DO UPDATE SET file = excluded.file",
        params![name, file, time],
    )
}

/// This machine's name, as trials record it (read once per process: every stale check of a
/// listed row compares against it).
pub fn hostname() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "unknown".into())
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_accepts_every_status() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let start = TrialStart {
            id: "t".into(),
            experiment: "e".into(),
            file: "f".into(),
            config_json: "{}".into(),
            seed: 0,
            params: vec![],
            device: "cpu".into(),
            main_metric: "top1".into(),
        };
        assert_eq!(
            store.claim_trial(&start, false, false).unwrap(),
            Claim::Taken { attempt: 1 }
        );
        for s in Status::ALL {
            store.set_status("t", s, None).unwrap();
            assert_eq!(store.status("t").unwrap(), Some(s));
        }
    }

    #[test]
    fn a_replaced_store_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let mut store = Store::open(&path).unwrap();
        store.clear_metrics("t").unwrap();
        std::fs::remove_file(&path).unwrap();
        let err = store.clear_metrics("t").unwrap_err();
        assert!(matches!(err, StoreError::Replaced { .. }), "{err}");
    }
}

#[cfg(test)]
mod migration_tests {
    use super::*;

    /// A store written by the first schema, with a trial and its rows, opens under the newest
    /// one with every row kept (table rebuilds must not trip the foreign keys).
    #[test]
    fn a_populated_first_version_store_upgrades_with_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vitrun.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "foreign_keys", "OFF").unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute_batch(
                "INSERT INTO experiments VALUES ('old', NULL, '2026-01-01');
                 INSERT INTO trials (id, experiment, config, seed, status, created_at)
                     VALUES ('abc123', 'old', '{}', 1, 'finished', '2026-01-01');
                 INSERT INTO params VALUES ('abc123', 'head.task', 'classification');
                 INSERT INTO metrics VALUES ('abc123', 'val', 'top1', 10, 1, 0.75, 0.0);",
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.version().unwrap(), MIGRATIONS.len());
        let trials = store.trials(None).unwrap();
        assert_eq!(trials.len(), 1);
        assert_eq!(
            (trials[0].best, trials[0].best_metric.as_str()),
            (Some(0.75), "top1")
        );
        assert_eq!(store.metrics("abc123").unwrap().len(), 1);
        let on: i64 = store
            .conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(on, 1, "foreign keys are back on after migrating");
    }
}
