//! Proposals of searches: read with their trials' states and objective values, and written
//! under the store's write lock, so that concurrent proposers see each other's pending trials
//! and never make the same proposal twice.

use std::collections::HashMap;

use rusqlite::{params, Connection};

use super::{now, sql_error, QueuedTrial, Status, Store};

/// One recorded proposal with what its trial has logged of the objective.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProposalRecord {
    pub number: usize,
    pub trial: String,
    /// The point as JSON: `{key: value}`.
    pub point: String,
    /// The trial's status, a dead local process's `running` read as `stale`.
    pub status: Status,
    /// Each objective's values as (epoch, value), in epoch order (one list per metric of the
    /// key, in its order).
    pub objectives: Vec<Vec<(i64, f64)>>,
}

/// A proposal to record: its trial (new ones are queued), point and history (both JSON).
#[derive(Debug, Clone)]
pub struct NewProposal {
    pub trial: QueuedTrial,
    pub point: String,
    pub history: String,
}

/// Where a proposal is recorded.
#[derive(Debug, Clone, Copy)]
pub struct SearchKey<'a> {
    pub sweep: &'a str,
    /// The search's fingerprint.
    pub search: &'a str,
    pub experiment: &'a str,
    /// The experiment file (recorded with the experiment).
    pub file: &'a str,
    /// The objectives, `split/name` each.
    pub metrics: &'a [String],
}

fn records(conn: &Connection, key: &SearchKey<'_>) -> rusqlite::Result<Vec<ProposalRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.number, p.trial, p.point, t.status, t.pid, t.host
         FROM proposals p JOIN trials t ON t.id = p.trial
         WHERE p.sweep = ?1 AND p.search = ?2 ORDER BY p.number",
    )?;
    let mut out = stmt
        .query_map(params![key.sweep, key.search], |r| {
            let status: Status = r.get(3)?;
            Ok(ProposalRecord {
                number: r.get::<_, i64>(0)? as usize,
                trial: r.get(1)?,
                point: r.get(2)?,
                status: super::effective_status(
                    status,
                    r.get(4)?,
                    r.get::<_, Option<String>>(5)?.as_deref(),
                ),
                objectives: vec![Vec::new(); key.metrics.len()],
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let at: HashMap<usize, usize> = out.iter().enumerate().map(|(i, r)| (r.number, i)).collect();
    let mut values = conn.prepare_cached(
        "SELECT p.number, m.epoch, m.value FROM proposals p
         JOIN metrics m ON m.trial = p.trial AND m.split = ?3 AND m.name = ?4
         WHERE p.sweep = ?1 AND p.search = ?2 ORDER BY p.number, m.epoch, m.step",
    )?;
    for (k, metric) in key.metrics.iter().enumerate() {
        let (split, name) = metric.split_once('/').unwrap_or(("val", metric));
        let mut rows = values.query(params![key.sweep, key.search, split, name])?;
        while let Some(r) = rows.next()? {
            if let Some(&i) = at.get(&(r.get::<_, i64>(0)? as usize)) {
                out[i].objectives[k].push((r.get(1)?, r.get(2)?));
            }
        }
    }
    Ok(out)
}

impl Store {
    /// The proposals of one search, in proposal order.
    pub fn proposals(&self, key: &SearchKey<'_>) -> super::Result<Vec<ProposalRecord>> {
        records(&self.conn, key).map_err(|e| self.wrap(e))
    }

    /// Makes and records the next proposal of a search under the store's write lock: `make`
    /// gets the search's proposals so far and the next free number, and returns the proposal
    /// (or none: the budget is spent, or the space has no new point). One transaction, so
    /// proposers on other processes wait and then see this one as pending.
    pub fn propose(
        &mut self,
        key: &SearchKey<'_>,
        make: impl FnOnce(&[ProposalRecord], usize) -> anyhow::Result<Option<NewProposal>>,
    ) -> anyhow::Result<Option<NewProposal>> {
        let path = self.path.clone();
        let wrap = sql_error(&path);
        let tx = self.begin()?;
        let so_far = records(&tx, key).map_err(&wrap)?;
        let number: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(number), -1) + 1 FROM proposals WHERE sweep = ?1",
                [key.sweep],
                |r| r.get(0),
            )
            .map_err(&wrap)?;
        let Some(proposal) = make(&so_far, number as usize)? else {
            return Ok(None);
        };
        let t = &proposal.trial;
        let record = super::proposal_files::ProposalFile {
            sweep: key.sweep.to_string(),
            experiment: key.experiment.to_string(),
            file: key.file.to_string(),
            search: key.search.to_string(),
            number: number as usize,
            trial: t.id.clone(),
            config: t.config_json.clone(),
            seed: t.seed,
            point: proposal.point.clone(),
            history: proposal.history.clone(),
            proposed_at: now(),
            task: None,
        };
        super::proposal_files::insert(&tx, &record).map_err(&wrap)?;
        tx.commit().map_err(&wrap)?;
        Ok(Some(proposal))
    }

    /// The history (JSON) proposal `number` of `sweep` was made from, and its point.
    pub fn proposal_history(
        &self,
        sweep: &str,
        number: usize,
    ) -> super::Result<Option<(String, String)>> {
        use rusqlite::OptionalExtension;
        self.conn
            .query_row(
                "SELECT history, point FROM proposals WHERE sweep = ?1 AND number = ?2",
                params![sweep, number as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.wrap(e))
    }
}

impl Store {
    /// Every proposal of `sweep` (of any search) as (number, trial), in proposal order.
    pub fn proposed_trials(&self, sweep: &str) -> super::Result<Vec<(usize, String)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT number, trial FROM proposals WHERE sweep = ?1 ORDER BY number")
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map([sweep], |r| Ok((r.get::<_, i64>(0)? as usize, r.get(1)?)))
            .map_err(|e| self.wrap(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.wrap(e))
    }
}
