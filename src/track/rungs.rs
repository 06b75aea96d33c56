//! Per-rung summaries for early stopping on a cluster: when a trial logs the sweep's stopping
//! metric at an epoch, it drops an empty file named `<trial>_<value>_<average>` (f64 bits in
//! hex) into `runs/<experiment>/rungs/<metric>/<epoch>/`. A peer judging that epoch lists one
//! folder — no shard is opened or stat-ed — however many trials the sweep has.

use std::path::{Path, PathBuf};

use crate::contract::ExperimentDir;

/// A trial at the epoch being judged: its value there and its running average up to it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeerAt {
    pub value: f64,
    pub average: f64,
}

impl PeerAt {
    /// From a history of values at epochs `1..=epoch` (`None` when it is empty).
    pub fn of(history: &[f64]) -> Option<PeerAt> {
        let value = *history.last()?;
        let average = history.iter().sum::<f64>() / history.len() as f64;
        Some(PeerAt { value, average })
    }
}

/// The folder of one metric's rungs (`val/loss` → `rungs/val-loss`).
fn metric_dir(experiment_dir: &Path, metric: &str) -> PathBuf {
    let slug: String = metric
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    ExperimentDir::at(experiment_dir).rungs().join(slug)
}

fn entry_name(trial: &str, at: PeerAt) -> String {
    format!(
        "{trial}_{:016x}_{:016x}",
        at.value.to_bits(),
        at.average.to_bits()
    )
}

fn parse(name: &str) -> Option<(String, PeerAt)> {
    let mut parts = name.rsplitn(3, '_');
    let average = f64::from_bits(u64::from_str_radix(parts.next()?, 16).ok()?);
    let value = f64::from_bits(u64::from_str_radix(parts.next()?, 16).ok()?);
    let trial = parts.next()?.to_string();
    (value.is_finite() && average.is_finite()).then_some((trial, PeerAt { value, average }))
}

/// The names in a folder, or none when it does not exist.
fn names(dir: &Path) -> std::io::Result<Vec<String>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Records `trial` at `epoch`, replacing what an earlier attempt recorded there.
pub fn write(
    experiment_dir: &Path,
    metric: &str,
    epoch: usize,
    trial: &str,
    at: PeerAt,
) -> std::io::Result<()> {
    let dir = metric_dir(experiment_dir, metric).join(epoch.to_string());
    std::fs::create_dir_all(&dir)?;
    let name = entry_name(trial, at);
    for old in names(&dir)? {
        if old != name && parse(&old).is_some_and(|(t, _)| t == trial) {
            std::fs::remove_file(dir.join(old))?;
        }
    }
    std::fs::File::create(dir.join(name)).map(drop)
}

/// Every trial recorded at `epoch`.
pub fn read(
    experiment_dir: &Path,
    metric: &str,
    epoch: usize,
) -> std::io::Result<Vec<(String, PeerAt)>> {
    let dir = metric_dir(experiment_dir, metric).join(epoch.to_string());
    Ok(names(&dir)?.iter().filter_map(|n| parse(n)).collect())
}

/// Removes everything `trial` recorded (it starts again from scratch).
pub fn forget(experiment_dir: &Path, metric: &str, trial: &str) -> std::io::Result<()> {
    let root = metric_dir(experiment_dir, metric);
    for epoch in names(&root)? {
        let dir = root.join(epoch);
        for name in names(&dir)? {
            if parse(&name).is_some_and(|(t, _)| t == trial) {
                std::fs::remove_file(dir.join(name))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_keep_exact_values_and_a_rewrite_replaces_the_trials_own() {
        let dir = tempfile::tempdir().unwrap();
        let at = |v: f64| PeerAt::of(&[0.9, v]).unwrap();
        write(dir.path(), "val/loss", 2, "aa11", at(0.1 + 0.2)).unwrap();
        write(dir.path(), "val/loss", 2, "bb22", at(0.5)).unwrap();
        write(dir.path(), "val/loss", 2, "aa11", at(0.4)).unwrap();
        let mut got = read(dir.path(), "val/loss", 2).unwrap();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            [("aa11".to_string(), at(0.4)), ("bb22".to_string(), at(0.5))]
        );
        assert_eq!(at(0.1 + 0.2).value, 0.1 + 0.2, "bits, not text");
        assert!(read(dir.path(), "val/loss", 3).unwrap().is_empty());
        forget(dir.path(), "val/loss", "aa11").unwrap();
        assert_eq!(read(dir.path(), "val/loss", 2).unwrap().len(), 1);
    }
}
