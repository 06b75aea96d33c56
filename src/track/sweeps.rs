//! Store queries for sweeps: membership, queued trials, liveness of running rows, and the
//! per-epoch values that early stopping and the live view read.

use std::collections::HashMap;

use rusqlite::{params, OptionalExtension};

use super::{now, sql_error, upsert_experiment, Result, Status, Store};
use crate::contract::{Event, Metric, Split};

/// A planned trial as the store first records it.
#[derive(Debug, Clone)]
pub struct QueuedTrial {
    pub id: String,
    pub config_json: String,
    pub seed: u64,
}

/// What the store knows of a trial's current state.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialState {
    /// As stored (see [`TrialState::effective`] for stale detection).
    pub status: Status,
    pub attempts: i64,
    pub pid: Option<i64>,
    pub host: Option<String>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub error: Option<String>,
    /// The SLURM array task (`JOBID_INDEX`) of a cluster attempt.
    pub job: Option<String>,
}

impl TrialState {
    /// The status with a dead local process's `running` read as `stale`.
    pub fn effective(&self) -> Status {
        super::effective_status(self.status, self.pid, self.host.as_deref())
    }
}

/// The newest epoch a trial has logged, for the live view.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EpochSnapshot {
    pub epoch: i64,
    /// The trial's main validation metric (`val/<score_name>`: top-1, mIoU).
    pub val_score: Option<f64>,
    pub score_name: String,
    pub val_loss: Option<f64>,
    pub images_per_sec: Option<f64>,
}

/// The `trials` columns a [`TrialState`] is read from, in [`state_from`]'s order.
const STATE_COLUMNS: &str = "status, attempts, pid, host, started_at, ended_at, error, job";

fn state_from(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<TrialState> {
    Ok(TrialState {
        status: r.get(first)?,
        attempts: r.get(first + 1)?,
        pid: r.get(first + 2)?,
        host: r.get(first + 3)?,
        started_at: r.get(first + 4)?,
        ended_at: r.get(first + 5)?,
        error: r.get(first + 6)?,
        job: r.get(first + 7)?,
    })
}

impl Store {
    /// Records the sweep's trials: new ones as `queued`, membership for all. Existing trial rows
    /// keep their status. One transaction.
    pub fn register_sweep(
        &mut self,
        sweep: &str,
        experiment: &str,
        file: &str,
        trials: &[QueuedTrial],
    ) -> Result<()> {
        let path = self.path.clone();
        let wrap = sql_error(&path);
        let tx = self.begin()?;
        let time = now();
        upsert_experiment(&tx, experiment, file, &time).map_err(&wrap)?;
        {
            let mut trial = tx
                .prepare(
                    "INSERT INTO trials(id, experiment, config, seed, status, attempts, created_at)
                     VALUES (?1, ?2, ?3, ?4, 'queued', 0, ?5) ON CONFLICT(id) DO NOTHING",
                )
                .map_err(&wrap)?;
            let mut member = tx
                .prepare("INSERT OR IGNORE INTO sweep_trials(sweep, trial) VALUES (?1, ?2)")
                .map_err(&wrap)?;
            for t in trials {
                trial
                    .execute(params![
                        t.id,
                        experiment,
                        t.config_json,
                        t.seed as i64,
                        time
                    ])
                    .map_err(&wrap)?;
                member.execute(params![sweep, t.id]).map_err(&wrap)?;
            }
        }
        tx.commit().map_err(&wrap)
    }

    /// The state of every trial of an experiment, by id.
    pub fn trial_states(&self, experiment: &str) -> Result<HashMap<String, TrialState>> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT id, {STATE_COLUMNS} FROM trials WHERE experiment = ?1"
            ))
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map([experiment], |r| {
                Ok((r.get::<_, String>(0)?, state_from(r, 1)?))
            })
            .map_err(|e| self.wrap(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.wrap(e))
    }

    /// One trial's state, if the store has it.
    pub fn trial_states_of(&self, trial: &str) -> Result<Option<TrialState>> {
        self.conn
            .query_row(
                &format!("SELECT {STATE_COLUMNS} FROM trials WHERE id = ?1"),
                [trial],
                |r| state_from(r, 0),
            )
            .optional()
            .map_err(|e| self.wrap(e))
    }

    /// The last epoch with validation metrics of each trial of an experiment that has one.
    pub fn val_epochs(&self, experiment: &str) -> Result<HashMap<String, i64>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT m.trial, MAX(m.epoch) FROM metrics m JOIN trials t ON t.id = m.trial
                 WHERE t.experiment = ?1 AND m.split = ?2 GROUP BY m.trial",
            )
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map([experiment, Split::Val.as_str()], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(|e| self.wrap(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.wrap(e))
    }

    /// Ends a trial that its own process left unended: sets `status` and records why, if the
    /// row is still queued, or running under `pid` (a row another process has claimed since
    /// is left alone). Returns whether the row changed.
    pub fn end_unfinished(
        &mut self,
        trial: &str,
        pid: Option<u32>,
        status: Status,
        reason: &str,
    ) -> Result<bool> {
        let changed = self.write(
            "UPDATE trials SET status = ?2, error = ?3, ended_at = ?4
             WHERE id = ?1 AND (status = 'queued' OR (status = 'running' AND pid IS ?5))",
            params![trial, status.as_str(), reason, now(), pid.map(i64::from)],
        )?;
        if changed > 0 {
            self.log_event(trial, Event::Ended(status), reason)?;
        }
        Ok(changed > 0)
    }

    /// Marks a `running` row whose process `pid` is gone as `stale`. Returns whether it changed.
    pub fn mark_stale(&mut self, trial: &str, pid: Option<i64>, reason: &str) -> Result<bool> {
        let changed = self.write(
            "UPDATE trials SET status = ?5, error = ?2, ended_at = ?3
             WHERE id = ?1 AND status = 'running' AND pid IS ?4",
            params![trial, reason, now(), pid, Status::Stale.as_str()],
        )?;
        if changed > 0 {
            self.log_event(trial, Event::Ended(Status::Stale), reason)?;
        }
        Ok(changed > 0)
    }

    /// `split/name` values logged at `epoch` by the sweep's trials, by trial id.
    pub fn sweep_values_at(
        &self,
        sweep: &str,
        metric: &str,
        epoch: usize,
    ) -> Result<Vec<(String, f64)>> {
        let (split, name) = metric.split_once('/').unwrap_or(("val", metric));
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT m.trial, m.value FROM metrics m JOIN sweep_trials s ON s.trial = m.trial
                 WHERE s.sweep = ?1 AND m.split = ?2 AND m.name = ?3 AND m.epoch = ?4
                 ORDER BY m.trial",
            )
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map(params![sweep, split, name, epoch as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(|e| self.wrap(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.wrap(e))
    }

    /// A trial's `split/name` values at epochs `1..=epoch`, in epoch order.
    pub fn history(&self, trial: &str, metric: &str, epoch: usize) -> Result<Vec<f64>> {
        let (split, name) = metric.split_once('/').unwrap_or(("val", metric));
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT value FROM metrics WHERE trial = ?1 AND split = ?2 AND name = ?3
                 AND epoch <= ?4 ORDER BY epoch",
            )
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map(params![trial, split, name, epoch as i64], |r| r.get(0))
            .map_err(|e| self.wrap(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.wrap(e))
    }

    /// The newest epoch's figures of a trial (epoch 0 when none is logged yet).
    pub fn latest_epoch(&self, trial: &str) -> Result<EpochSnapshot> {
        let epoch: Option<i64> = self
            .conn
            .query_row(
                "SELECT MAX(epoch) FROM metrics WHERE trial = ?1 AND split = ?2",
                [trial, Split::Val.as_str()],
                |r| r.get(0),
            )
            .map_err(|e| self.wrap(e))?;
        let Some(epoch) = epoch else {
            return Ok(EpochSnapshot::default());
        };
        let value = |split: &str, name: &str| -> Result<Option<f64>> {
            self.conn
                .query_row(
                    "SELECT value FROM metrics WHERE trial = ?1 AND split = ?2 AND name = ?3
                     AND epoch = ?4 ORDER BY step DESC LIMIT 1",
                    params![trial, split, name, epoch],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| self.wrap(e))
        };
        let score_name: String = self
            .conn
            .query_row(
                &format!(
                    "SELECT {} FROM trials t WHERE t.id = ?1",
                    super::main_metric_sql()
                ),
                [trial],
                |r| r.get(0),
            )
            .map_err(|e| self.wrap(e))?;
        let of = |m: Metric| value(m.split.as_str(), m.name);
        Ok(EpochSnapshot {
            epoch,
            val_score: value(Split::Val.as_str(), &score_name)?,
            score_name,
            val_loss: of(Metric::VAL_LOSS)?,
            images_per_sec: of(Metric::TRAIN_IMAGES_PER_SEC)?,
        })
    }
}

impl Store {
    /// A trial's `split/name` values as (epoch, value), in epoch order.
    pub fn metric_rows(&self, trial: &str, metric: &str) -> Result<Vec<(i64, f64)>> {
        let (split, name) = metric.split_once('/').unwrap_or(("val", metric));
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT epoch, value FROM metrics WHERE trial = ?1 AND split = ?2 AND name = ?3
                 ORDER BY epoch",
            )
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map(params![trial, split, name], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.wrap(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.wrap(e))
    }
}
