//! The seam between a trial and where its records go: the SQLite store on one host, or an
//! append-only shard in the trial folder under a cluster launcher. The trial loop and the
//! early-stopping judge see only this trait.

use std::path::Path;

use super::{Claim, MetricRow, PeerAt, Status, Store, TrialStart};
use crate::contract::{Artifact, Event};

/// What a running trial writes, and the metric reads its early-stopping judge makes.
pub trait Recorder {
    /// Claims the trial for this process (see [`Store::claim_trial`]).
    fn claim(&mut self, t: &TrialStart, force: bool, skip_done: bool) -> anyhow::Result<Claim>;
    /// Deletes the trial's metrics (a fresh, non-resumed run of the same trial).
    fn clear_metrics(&mut self, trial: &str) -> anyhow::Result<()>;
    /// Metric rows; the same (trial, split, name, step) replaces.
    fn log_metrics(&mut self, trial: &str, rows: &[MetricRow]) -> anyhow::Result<()>;
    /// The trial's current or final status.
    fn set_status(
        &mut self,
        trial: &str,
        status: Status,
        error: Option<&str>,
    ) -> anyhow::Result<()>;
    /// A file the trial produced.
    fn add_artifact(&mut self, trial: &str, kind: Artifact, path: &Path) -> anyhow::Result<()>;
    /// An event with its message.
    fn log_event(&mut self, trial: &str, kind: Event, message: &str) -> anyhow::Result<()>;
    /// A trial's `split/name` values at epochs `1..=epoch`, in epoch order.
    fn history(&self, trial: &str, metric: &str, epoch: usize) -> anyhow::Result<Vec<f64>>;
    /// `split/name` values logged at `epoch` by the sweep's trials, by trial id.
    fn sweep_values_at(
        &self,
        sweep: &str,
        metric: &str,
        epoch: usize,
    ) -> anyhow::Result<Vec<(String, f64)>>;
    /// The SQLite store, where this process may read it (not on a cluster node).
    fn store(&self) -> Option<&Store>;

    /// The sweep's trials other than `except` that logged `split/name` at `epoch`: each one's
    /// value there and running average up to it (what early stopping compares with).
    fn peers_at(
        &self,
        sweep: &str,
        metric: &str,
        epoch: usize,
        except: &str,
    ) -> anyhow::Result<Vec<PeerAt>> {
        let mut out = Vec::new();
        for (peer, _) in self.sweep_values_at(sweep, metric, epoch)? {
            if peer != except {
                out.extend(PeerAt::of(&self.history(&peer, metric, epoch)?));
            }
        }
        Ok(out)
    }

    /// Records an early-stopping decision; a prune also sets the status.
    fn record_decision(&mut self, trial: &str, prune: bool, reason: &str) -> anyhow::Result<()> {
        self.log_event(trial, Event::EarlyStop, reason)?;
        if prune {
            self.set_status(trial, Status::Pruned, Some(reason))?;
        }
        Ok(())
    }
}

impl Recorder for Store {
    fn claim(&mut self, t: &TrialStart, force: bool, skip_done: bool) -> anyhow::Result<Claim> {
        Ok(self.claim_trial(t, force, skip_done)?)
    }

    fn clear_metrics(&mut self, trial: &str) -> anyhow::Result<()> {
        Ok(Store::clear_metrics(self, trial)?)
    }

    fn log_metrics(&mut self, trial: &str, rows: &[MetricRow]) -> anyhow::Result<()> {
        Ok(Store::log_metrics(self, trial, rows)?)
    }

    fn set_status(
        &mut self,
        trial: &str,
        status: Status,
        error: Option<&str>,
    ) -> anyhow::Result<()> {
        Ok(Store::set_status(self, trial, status, error)?)
    }

    fn add_artifact(&mut self, trial: &str, kind: Artifact, path: &Path) -> anyhow::Result<()> {
        Ok(Store::add_artifact(self, trial, kind, path)?)
    }

    fn log_event(&mut self, trial: &str, kind: Event, message: &str) -> anyhow::Result<()> {
        Ok(Store::log_event(self, trial, kind, message)?)
    }

    fn history(&self, trial: &str, metric: &str, epoch: usize) -> anyhow::Result<Vec<f64>> {
        Ok(Store::history(self, trial, metric, epoch)?)
    }

    fn sweep_values_at(
        &self,
        sweep: &str,
        metric: &str,
        epoch: usize,
    ) -> anyhow::Result<Vec<(String, f64)>> {
        Ok(Store::sweep_values_at(self, sweep, metric, epoch)?)
    }

    fn store(&self) -> Option<&Store> {
        Some(self)
    }
}
