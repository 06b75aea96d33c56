//! The SQLite run store: trials, their params, metrics, artifacts and events.
//! WAL mode, a busy timeout, short `BEGIN IMMEDIATE` transactions, batched idempotent writes.

mod reports;
mod schema;
mod sweeps;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

pub use schema::MIGRATIONS;
pub use sweeps::{EpochSnapshot, QueuedTrial, TrialState};

/// A store error names the database file.
#[derive(Debug, thiserror::Error)]
#[error("run store {path}: {source}")]
pub struct StoreError {
    path: PathBuf,
    #[source]
    source: rusqlite::Error,
}

type Result<T> = std::result::Result<T, StoreError>;

/// A trial's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Queued,
    Running,
    Finished,
    Failed,
    Diverged,
    Pruned,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Finished => "finished",
            Status::Failed => "failed",
            Status::Diverged => "diverged",
            Status::Pruned => "pruned",
        }
    }
}

/// One metric value.
#[derive(Debug, Clone, PartialEq)]
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
}

/// A trial as `vitrun ls` shows it.
#[derive(Debug, Clone)]
pub struct TrialSummary {
    pub id: String,
    pub experiment: String,
    pub status: String,
    pub attempts: i64,
    pub device: Option<String>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub best_top1: Option<f64>,
    pub last_val_loss: Option<f64>,
    pub epochs: Option<i64>,
    pub error: Option<String>,
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
}

impl Store {
    /// Opens (creating and migrating as needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        let wrap = |source| StoreError {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path).map_err(wrap)?;
        conn.busy_timeout(Duration::from_secs(60)).map_err(wrap)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(wrap)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(wrap)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(wrap)?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store.migrate()?;
        Ok(store)
    }

    fn wrap(&self, source: rusqlite::Error) -> StoreError {
        StoreError {
            path: self.path.clone(),
            source,
        }
    }

    /// The schema version (`PRAGMA user_version`).
    pub fn version(&self) -> Result<usize> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
            .map(|v| v as usize)
            .map_err(|e| self.wrap(e))
    }

    fn migrate(&mut self) -> Result<()> {
        let path = self.path.clone();
        let wrap = |source| StoreError {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(wrap)?;
        let current: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(wrap)?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            tx.execute_batch(sql).map_err(wrap)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(wrap)?;
        }
        tx.commit().map_err(wrap)
    }

    /// Records a trial as running (a new attempt), with its config, params and provenance.
    pub fn start_trial(&mut self, t: &TrialStart) -> Result<()> {
        let git = git_commit();
        let host = hostname();
        let path = self.path.clone();
        let wrap = |source| StoreError {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(wrap)?;
        let time = now();
        upsert_experiment(&tx, &t.experiment, &t.file, &time).map_err(wrap)?;
        tx.execute(
            "INSERT INTO trials(id, experiment, config, seed, status, attempts, device, host, pid,
                                git_commit, vitrun_version, burn_version, created_at, started_at)
             VALUES (?1, ?2, ?3, ?4, 'running', 1, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)
             ON CONFLICT(id) DO UPDATE SET status = 'running', attempts = attempts + 1,
                device = excluded.device, host = excluded.host, pid = excluded.pid,
                git_commit = excluded.git_commit, vitrun_version = excluded.vitrun_version,
                burn_version = excluded.burn_version, started_at = excluded.started_at,
                ended_at = NULL, error = NULL",
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
                time
            ],
        )
        .map_err(wrap)?;
        {
            let mut stmt = tx
                .prepare("INSERT OR REPLACE INTO params(trial, key, value) VALUES (?1, ?2, ?3)")
                .map_err(wrap)?;
            for (k, v) in &t.params {
                stmt.execute(params![t.id, k, v]).map_err(wrap)?;
            }
        }
        tx.commit().map_err(wrap)
    }

    /// Deletes a trial's metrics (a fresh, non-resumed run of the same trial).
    pub fn clear_metrics(&mut self, trial: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM metrics WHERE trial = ?1", [trial])
            .map(|_| ())
            .map_err(|e| self.wrap(e))
    }

    /// Writes metric rows in one transaction; the same (trial, split, name, step) replaces.
    pub fn log_metrics(&mut self, trial: &str, rows: &[MetricRow]) -> Result<()> {
        let path = self.path.clone();
        let wrap = |source| StoreError {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(wrap)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO metrics(trial, split, name, step, epoch, value, wall_time)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT(trial, split, name, step) DO UPDATE SET
                        epoch = excluded.epoch, value = excluded.value, wall_time = excluded.wall_time",
                )
                .map_err(wrap)?;
            for r in rows {
                stmt.execute(params![
                    trial,
                    r.split,
                    r.name,
                    r.step,
                    r.epoch,
                    r.value,
                    r.wall_time
                ])
                .map_err(wrap)?;
            }
        }
        tx.commit().map_err(wrap)
    }

    /// Sets a trial's final (or current) status, with an error message for failures.
    pub fn set_status(&mut self, trial: &str, status: Status, error: Option<&str>) -> Result<()> {
        let ended = (status != Status::Running && status != Status::Queued).then(now);
        self.conn
            .execute(
                "UPDATE trials SET status = ?2, error = ?3, ended_at = ?4 WHERE id = ?1",
                params![trial, status.as_str(), error, ended],
            )
            .map(|_| ())
            .map_err(|e| self.wrap(e))
    }

    /// Records a file a trial produced.
    pub fn add_artifact(&mut self, trial: &str, kind: &str, path: &Path) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO artifacts(trial, kind, path, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(trial, kind, path) DO UPDATE SET created_at = excluded.created_at",
                params![trial, kind, path.display().to_string(), now()],
            )
            .map(|_| ())
            .map_err(|e| self.wrap(e))
    }

    /// Appends a free-text event (skipped files, divergence, interruption, …).
    pub fn log_event(&mut self, trial: &str, kind: &str, message: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO events(trial, time, kind, message) VALUES (?1, ?2, ?3, ?4)",
                params![trial, now(), kind, message],
            )
            .map(|_| ())
            .map_err(|e| self.wrap(e))
    }

    /// A trial's status, if the store has it.
    pub fn status(&self, trial: &str) -> Result<Option<String>> {
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

    /// Trials with their best val top-1, newest first (optionally of one experiment).
    pub fn trials(&self, experiment: Option<&str>) -> Result<Vec<TrialSummary>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT t.id, t.experiment, t.status, t.attempts, t.device, t.started_at, t.ended_at,
                    (SELECT MAX(value) FROM metrics m WHERE m.trial = t.id AND m.split = 'val' AND m.name = 'top1'),
                    (SELECT value FROM metrics m WHERE m.trial = t.id AND m.split = 'val' AND m.name = 'loss'
                        ORDER BY step DESC LIMIT 1),
                    (SELECT MAX(epoch) FROM metrics m WHERE m.trial = t.id AND m.split = 'val'),
                    t.error
                 FROM trials t WHERE (?1 IS NULL OR t.experiment = ?1)
                 ORDER BY t.started_at DESC",
            )
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map([experiment], |r| {
                Ok(TrialSummary {
                    id: r.get(0)?,
                    experiment: r.get(1)?,
                    status: r.get(2)?,
                    attempts: r.get(3)?,
                    device: r.get(4)?,
                    started_at: r.get(5)?,
                    ended_at: r.get(6)?,
                    best_top1: r.get(7)?,
                    last_val_loss: r.get(8)?,
                    epochs: r.get(9)?,
                    error: r.get(10)?,
                })
            })
            .map_err(|e| self.wrap(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.wrap(e))
    }

    /// Runs a read-only query returning one `i64` (for tests and tools).
    pub fn count(&self, sql: &str, trial: &str) -> Result<i64> {
        self.conn
            .query_row(sql, [trial], |r| r.get(0))
            .map_err(|e| self.wrap(e))
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

/// This machine's name, as trials record it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}
