//! Store queries for reports: which trials a target names, their configs and params.

use rusqlite::OptionalExtension;

use super::{Result, Store, StoreError};

/// Why a trial id prefix names no single trial.
#[derive(Debug, thiserror::Error)]
pub enum TrialLookup {
    #[error("no trial id starts with {prefix:?} in {store}; `vitrun ls` lists them")]
    NotFound { prefix: String, store: String },
    #[error("{prefix:?} matches {} trials ({}); give more of the id", .ids.len(), .ids.join(", "))]
    Ambiguous { prefix: String, ids: Vec<String> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// The experiment with the most recently started (or created) trial.
    pub fn latest_experiment(&self) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT experiment FROM trials ORDER BY COALESCE(started_at, created_at) DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.wrap(e))
    }

    /// Trial ids of an experiment (oldest first).
    pub fn experiment_trials(&self, experiment: &str) -> Result<Vec<String>> {
        self.strings(
            "SELECT id FROM trials WHERE experiment = ?1 ORDER BY created_at, id",
            experiment,
        )
    }

    /// Trial ids a sweep planned.
    pub fn sweep_trials(&self, sweep: &str) -> Result<Vec<String>> {
        self.strings(
            "SELECT s.trial FROM sweep_trials s JOIN trials t ON t.id = s.trial
             WHERE s.sweep = ?1 ORDER BY t.created_at, t.id",
            sweep,
        )
    }

    /// Trial ids starting with `prefix`.
    pub fn trials_with_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        self.strings(
            "SELECT id FROM trials WHERE substr(id, 1, length(?1)) = ?1 ORDER BY id",
            prefix,
        )
    }

    /// The one trial whose id starts with `prefix`.
    pub fn unique_trial(&self, prefix: &str) -> std::result::Result<String, TrialLookup> {
        let mut ids = self.trials_with_prefix(prefix)?;
        match ids.len() {
            1 => Ok(ids.remove(0)),
            0 => Err(TrialLookup::NotFound {
                prefix: prefix.to_string(),
                store: self.path.display().to_string(),
            }),
            _ => Err(TrialLookup::Ambiguous {
                prefix: prefix.to_string(),
                ids,
            }),
        }
    }

    /// A trial's resolved config (JSON) and experiment.
    pub fn trial_config(&self, trial: &str) -> Result<Option<(String, String)>> {
        self.conn
            .query_row(
                "SELECT config, experiment FROM trials WHERE id = ?1",
                [trial],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.wrap(e))
    }

    /// Where and with what a trial ran: `(field, value)` for the device, host, attempts and the
    /// versions and commit recorded at its last claim.
    pub fn provenance(&self, trial: &str) -> Result<Vec<(String, String)>> {
        const FIELDS: [&str; 6] = [
            "vitrun_version",
            "burn_version",
            "git_commit",
            "device",
            "host",
            "attempts",
        ];
        let sql = format!("SELECT {} FROM trials WHERE id = ?1", FIELDS.join(", "));
        let row = self
            .conn
            .query_row(&sql, [trial], |r| {
                (0..FIELDS.len())
                    .map(|i| {
                        r.get::<_, rusqlite::types::Value>(i).map(|v| match v {
                            rusqlite::types::Value::Null => "-".to_string(),
                            rusqlite::types::Value::Integer(n) => n.to_string(),
                            rusqlite::types::Value::Text(t) => t,
                            other => format!("{other:?}"),
                        })
                    })
                    .collect::<rusqlite::Result<Vec<String>>>()
            })
            .optional()
            .map_err(|e| self.wrap(e))?
            .unwrap_or_default();
        Ok(FIELDS.iter().map(|f| f.to_string()).zip(row).collect())
    }

    fn strings(&self, sql: &str, arg: &str) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map([arg], |r| r.get(0))
            .map_err(|e| self.wrap(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.wrap(e))
    }
}
