//! Removing a trial from the store: every row that names it, in one transaction, unless it is
//! running or waiting to run (a process or a cluster task would write it again).

use rusqlite::OptionalExtension;

use super::{sql_error, Result, Status, Store};

/// Every table with a `trial` column, children of `trials` first.
const TRIAL_TABLES: [&str; 8] = [
    "proposals",
    "params",
    "metrics",
    "artifacts",
    "events",
    "sweep_trials",
    "slurm_tasks",
    "shard_progress",
];

/// What [`Store::remove_trial`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Its rows are gone.
    Removed,
    /// It is running (a live process holds it) or queued or preempted (a sweep or a cluster
    /// task will start it): nothing was removed.
    Refused(Status),
}

impl Store {
    /// Removes trial `id`'s rows (its metrics, events, params, artifacts, sweep membership,
    /// cluster task and shard progress with it) in one `BEGIN IMMEDIATE` transaction, after
    /// checking, in the same transaction, that nothing will write it again.
    pub fn remove_trial(&mut self, id: &str) -> Result<Removal> {
        let path = self.path.clone();
        let tx = self.begin()?;
        let row: Option<(String, Option<i64>, Option<String>)> = tx
            .query_row(
                "SELECT status, pid, host FROM trials WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(sql_error(&path))?;
        let Some((status, pid, host)) = row else {
            return Ok(Removal::Removed);
        };
        let status = super::effective_status(
            status.parse().unwrap_or(Status::Running),
            pid,
            host.as_deref(),
        );
        if matches!(status, Status::Running | Status::Queued | Status::Preempted) {
            return Ok(Removal::Refused(status));
        }
        for table in TRIAL_TABLES {
            tx.execute(&format!("DELETE FROM {table} WHERE trial = ?1"), [id])
                .map_err(sql_error(&path))?;
        }
        tx.execute("DELETE FROM trials WHERE id = ?1", [id])
            .map_err(sql_error(&path))?;
        tx.commit().map_err(sql_error(&path))?;
        Ok(Removal::Removed)
    }
}
