//! The [`Recorder`] of a trial on a cluster node: it appends to its own attempt's shard and
//! reads its sweep peers' shards (read-only) for early stopping, never the SQLite store.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::shard::{self, EndMarker, Record, ShardView, ShardWriter};
use super::{
    git_commit, hostname, now, Claim, MetricRow, PeerAt, Recorder, Status, Store, TrialStart,
};
use crate::contract::{Artifact, Event};

/// The sweep a cluster trial belongs to, as the submit host saw it: every member, and the
/// values the store already held for members that have no shards (trials run locally before),
/// so that early stopping on a node judges against the same peers as the local scheduler.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerSnapshot {
    pub sweep: String,
    pub members: Vec<String>,
    /// metric (`split/name`) → trial → (epoch, value) rows.
    pub stored: BTreeMap<String, BTreeMap<String, Vec<(i64, f64)>>>,
    /// The sweep's early-stopping metric, whose per-rung summaries the trials write
    /// (`track::rungs`); plans from before the summaries have none and read shards.
    #[serde(default)]
    pub metric: Option<String>,
}

impl PeerSnapshot {
    /// Reads the members' values of `metric` from the store.
    pub fn from_store(
        store: &Store,
        sweep: &str,
        members: Vec<String>,
        metric: Option<&str>,
    ) -> anyhow::Result<PeerSnapshot> {
        let mut stored = BTreeMap::new();
        if let Some(metric) = metric {
            let mut by_trial = BTreeMap::new();
            for id in &members {
                let rows = store.metric_rows(id, metric)?;
                if !rows.is_empty() {
                    by_trial.insert(id.clone(), rows);
                }
            }
            stored.insert(metric.to_string(), by_trial);
        }
        Ok(PeerSnapshot {
            sweep: sweep.to_string(),
            members,
            stored,
            metric: metric.map(str::to_string),
        })
    }
}

/// What a trial's shard files look like now: each one's size and whether it has its end marker.
type ShardStamp = Vec<(u64, bool)>;

/// Writes one attempt's shard; reads peers' shards.
pub struct ShardRecorder {
    /// `runs/<experiment>/`: trial folders by id.
    experiment_dir: PathBuf,
    trial: String,
    /// `JOBID_INDEX` of the array task.
    job: Option<String>,
    peers: PeerSnapshot,
    writer: Option<ShardWriter>,
    /// Trials' views by id, with the shard sizes (and end markers) they were read at.
    views: RefCell<HashMap<String, (ShardStamp, ShardView)>>,
}

impl ShardRecorder {
    pub fn new(
        experiment_dir: &Path,
        trial: &str,
        job: Option<String>,
        peers: PeerSnapshot,
    ) -> ShardRecorder {
        ShardRecorder {
            experiment_dir: experiment_dir.to_path_buf(),
            trial: trial.to_string(),
            job,
            peers,
            writer: None,
            views: RefCell::new(HashMap::new()),
        }
    }

    /// The shard this attempt writes (after the claim).
    pub fn shard_path(&self) -> Option<&Path> {
        self.writer.as_ref().map(|w| w.path())
    }

    fn append(&mut self, record: Record) -> anyhow::Result<()> {
        let writer = self.writer.as_mut().ok_or_else(|| {
            anyhow::anyhow!(
                "trial {}: a record was written before the attempt claimed its shard",
                self.trial
            )
        })?;
        Ok(writer.append(&record)?)
    }

    /// A trial's view, read again only when its shard files changed since the last read
    /// (the judge asks for every peer at every epoch; finished peers never change).
    fn view(&self, trial: &str) -> anyhow::Result<ShardView> {
        let dir = self.experiment_dir.join(trial);
        let sizes: ShardStamp = shard::attempts(&dir)
            .iter()
            .map(|f| {
                (
                    std::fs::metadata(f).map_or(0, |m| m.len()),
                    f.with_extension("end").exists(),
                )
            })
            .collect();
        if let Some((seen, view)) = self.views.borrow().get(trial) {
            if *seen == sizes {
                return Ok(view.clone());
            }
        }
        let view = ShardView::read(&dir)?;
        self.views
            .borrow_mut()
            .insert(trial.to_string(), (sizes, view.clone()));
        Ok(view)
    }

    /// A trial's values of `metric`, from its shards, else from the snapshot of the store.
    fn values(
        &self,
        trial: &str,
        metric: &str,
        epoch: usize,
        exact: bool,
    ) -> anyhow::Result<Vec<f64>> {
        let view = self.view(trial)?;
        if view.attempts > 0 {
            return Ok(view.values(metric, epoch, exact));
        }
        let rows = self
            .peers
            .stored
            .get(metric)
            .and_then(|m| m.get(trial))
            .cloned()
            .unwrap_or_default();
        Ok(rows
            .into_iter()
            .filter(|(e, _)| {
                if exact {
                    *e == epoch as i64
                } else {
                    *e <= epoch as i64
                }
            })
            .map(|(_, v)| v)
            .collect())
    }
}

impl Recorder for ShardRecorder {
    fn claim(&mut self, t: &TrialStart, _force: bool, skip_done: bool) -> anyhow::Result<Claim> {
        let before = self.view(&t.id)?;
        if let Some(done) = before.status.filter(|s| skip_done && s.is_done()) {
            return Ok(Claim::Done(done));
        }
        self.writer = Some(ShardWriter::create(&self.experiment_dir.join(&t.id))?);
        self.append(Record::Claim {
            trial: t.id.clone(),
            experiment: t.experiment.clone(),
            file: t.file.clone(),
            config: t.config_json.clone(),
            seed: t.seed,
            params: t.params.clone(),
            device: t.device.clone(),
            host: hostname(),
            pid: std::process::id(),
            job: self.job.clone(),
            git_commit: git_commit(),
            time: now(),
            main_metric: Some(t.main_metric.clone()),
        })?;
        Ok(Claim::Taken {
            attempt: before.attempts as i64 + 1,
        })
    }

    fn clear_metrics(&mut self, trial: &str) -> anyhow::Result<()> {
        self.append(Record::ClearMetrics {
            trial: trial.to_string(),
        })?;
        if let Some(metric) = &self.peers.metric {
            super::rungs::forget(&self.experiment_dir, metric, trial)?;
        }
        Ok(())
    }

    fn log_metrics(&mut self, trial: &str, rows: &[MetricRow]) -> anyhow::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        // JSON has no NaN or infinity: such a value would make the record unreadable, so it is
        // refused here, as the store's NOT NULL column refuses it.
        if let Some(r) = rows.iter().find(|r| !r.value.is_finite()) {
            anyhow::bail!(
                "trial {trial}: metric {}/{} at step {} is {}, not a number the store can hold",
                r.split,
                r.name,
                r.step,
                r.value
            );
        }
        self.append(Record::Metrics {
            trial: trial.to_string(),
            rows: rows.to_vec(),
        })?;
        // The rung summary after the shard record, so a summary never runs ahead of the shard.
        if let Some(metric) = self.peers.metric.clone() {
            let (split, name) = metric.split_once('/').unwrap_or(("val", &metric));
            for r in rows.iter().filter(|r| r.split == split && r.name == name) {
                let epoch = r.epoch.max(0) as usize;
                let history = self.values(trial, &metric, epoch, false)?;
                if let Some(at) = super::PeerAt::of(&history) {
                    super::rungs::write(&self.experiment_dir, &metric, epoch, trial, at)?;
                }
            }
        }
        Ok(())
    }

    fn set_status(
        &mut self,
        trial: &str,
        status: Status,
        error: Option<&str>,
    ) -> anyhow::Result<()> {
        let time = now();
        self.append(Record::Status {
            trial: trial.to_string(),
            status,
            error: error.map(str::to_string),
            time: time.clone(),
        })?;
        if status != Status::Running && status != Status::Queued {
            if let Some(w) = &self.writer {
                w.mark_end(&EndMarker {
                    status,
                    error: error.map(str::to_string),
                    time,
                })?;
            }
        }
        Ok(())
    }

    fn add_artifact(&mut self, trial: &str, kind: Artifact, path: &Path) -> anyhow::Result<()> {
        self.append(Record::Artifact {
            trial: trial.to_string(),
            kind: kind.as_str().to_string(),
            path: path.display().to_string(),
            time: now(),
        })
    }

    fn log_event(&mut self, trial: &str, kind: Event, message: &str) -> anyhow::Result<()> {
        self.append(Record::Event {
            trial: trial.to_string(),
            kind: kind.as_str().to_string(),
            message: message.to_string(),
            time: now(),
        })
    }

    fn history(&self, trial: &str, metric: &str, epoch: usize) -> anyhow::Result<Vec<f64>> {
        self.values(trial, metric, epoch, false)
    }

    fn sweep_values_at(
        &self,
        sweep: &str,
        metric: &str,
        epoch: usize,
    ) -> anyhow::Result<Vec<(String, f64)>> {
        if sweep != self.peers.sweep {
            return Ok(Vec::new());
        }
        let mut members = self.peers.members.clone();
        members.sort();
        let mut out = Vec::new();
        for id in members {
            for v in self.values(&id, metric, epoch, true)? {
                out.push((id.clone(), v));
            }
        }
        Ok(out)
    }

    fn store(&self) -> Option<&Store> {
        None
    }

    /// From the rung's summary folder (one listing), plus members that ran before without
    /// shards as the snapshot has them; from the peers' shards when the plan predates the
    /// summaries.
    fn peers_at(
        &self,
        sweep: &str,
        metric: &str,
        epoch: usize,
        except: &str,
    ) -> anyhow::Result<Vec<PeerAt>> {
        if sweep != self.peers.sweep {
            return Ok(Vec::new());
        }
        if self.peers.metric.as_deref() != Some(metric) {
            let mut out = Vec::new();
            for (peer, _) in self.sweep_values_at(sweep, metric, epoch)? {
                if peer != except {
                    out.extend(PeerAt::of(&self.history(&peer, metric, epoch)?));
                }
            }
            return Ok(out);
        }
        let mut found: BTreeMap<String, PeerAt> =
            super::rungs::read(&self.experiment_dir, metric, epoch)?
                .into_iter()
                .collect();
        if let Some(stored) = self.peers.stored.get(metric) {
            for (id, rows) in stored {
                if found.contains_key(id) || !rows.iter().any(|(e, _)| *e == epoch as i64) {
                    continue;
                }
                let history: Vec<f64> = rows
                    .iter()
                    .filter(|(e, _)| *e <= epoch as i64)
                    .map(|(_, v)| *v)
                    .collect();
                found.extend(PeerAt::of(&history).map(|at| (id.clone(), at)));
            }
        }
        let members: std::collections::BTreeSet<&String> = self.peers.members.iter().collect();
        Ok(found
            .into_iter()
            .filter(|(id, _)| id != except && members.contains(id))
            .map(|(_, at)| at)
            .collect())
    }
}
