//! What the page says about each trial: its name in legends (the swept values), its facts
//! (duration, host, command, commit), the best and final value of each metric, and its config
//! with the keys that differ from vitrun's defaults marked.

use std::collections::BTreeMap;

use super::curves::shown;
use super::groups;
use super::select::{Selection, TrialRecord};
use crate::config::Config;
use crate::contract::Goal;
use crate::plot::interactive::{ConfigEntry, MetricSummary, TrialView};
use crate::track::timing::{duration, short_duration, short_time};

/// Each trial's legend name: the values of the keys that differ between the trials (seed
/// among them only where it tells replicates apart), then the short id.
pub fn labels(sel: &Selection) -> Vec<String> {
    if sel.trials.len() == 1 {
        return vec![sel.trials[0].summary.id.clone()];
    }
    let configs: Vec<&Config> = sel.trials.iter().map(|t| &t.config).collect();
    let swept = groups::labels(&configs);
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for l in &swept {
        *count.entry(l.as_str()).or_default() += 1;
    }
    sel.trials
        .iter()
        .zip(&swept)
        .map(|(t, label)| {
            let id = &t.summary.id[..t.summary.id.len().min(6)];
            let mut name = if label == "-" {
                String::new()
            } else {
                label.clone()
            };
            if count[label.as_str()] > 1 {
                if !name.is_empty() {
                    name.push(' ');
                }
                name.push_str(&format!("seed={}", t.config.seed));
            }
            if name.is_empty() {
                id.to_string()
            } else {
                format!("{name} · {id}")
            }
        })
        .collect()
}

/// The best (by the metric's goal) and last value of every metric of a trial, by key.
pub fn metric_summaries(t: &TrialRecord) -> Vec<MetricSummary> {
    let mut keys: Vec<(String, String)> = t
        .metrics
        .iter()
        .map(|m| (m.split.clone(), m.name.clone()))
        .collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|(split, name)| {
            let rows: Vec<_> = t
                .metrics
                .iter()
                .filter(|m| m.split == split && m.name == name)
                .collect();
            let key = format!("{split}/{name}");
            let last = rows.iter().max_by_key(|m| m.step)?;
            let finite = rows.iter().filter(|m| m.value.is_finite());
            let best = match Goal::of(&name) {
                Goal::Maximize => finite.max_by(|a, b| a.value.total_cmp(&b.value)),
                Goal::Minimize => finite.min_by(|a, b| a.value.total_cmp(&b.value)),
            }
            .unwrap_or(last);
            Some(MetricSummary {
                best: shown(&key, Some(best.value)),
                best_epoch: best.epoch,
                last: shown(&key, Some(last.value)),
                last_epoch: last.epoch,
                key,
            })
        })
        .collect()
}

/// `(fact, value)` pairs of a trial: when, how long, where, how and from what.
pub fn facts(t: &TrialRecord) -> Vec<(String, String)> {
    let s = &t.summary;
    vec![
        ("status".to_string(), s.status.to_string()),
        (
            "started".into(),
            s.started_at
                .as_deref()
                .map_or("-".into(), |at| format!("{} UTC", short_time(at))),
        ),
        (
            "duration".into(),
            duration(s, chrono::Utc::now()).map_or("-".into(), short_duration),
        ),
        ("host".into(), s.host.clone().unwrap_or_else(|| "-".into())),
        (
            "device".into(),
            s.device.clone().unwrap_or_else(|| "-".into()),
        ),
        ("attempts".into(), s.attempts.to_string()),
        (
            "command".into(),
            t.command.clone().unwrap_or_else(|| "-".into()),
        ),
        (
            "git commit".into(),
            s.git_commit.clone().unwrap_or_else(|| "-".into()),
        ),
        ("seed".into(), t.config.seed.to_string()),
    ]
}

/// The trial's resolved config (without `sweep.*`), each key marked when its value differs
/// from vitrun's default.
pub fn config_entries(config: &Config) -> Vec<ConfigEntry> {
    // Built once: a live page of a thousand trials asks for a thousand views every poll.
    static DEFAULTS: std::sync::OnceLock<BTreeMap<String, String>> = std::sync::OnceLock::new();
    let defaults = DEFAULTS.get_or_init(|| Config::default().flat_params().into_iter().collect());
    config
        .flat_params()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("sweep."))
        .map(|(key, value)| ConfigEntry {
            changed: defaults.get(&key) != Some(&value),
            key,
            value,
        })
        .collect()
}

/// A trial's view, named `label` (its legend name); its config is the keys it changed from
/// vitrun's defaults (a sweep of a thousand trials embeds a thousand views).
pub fn view(t: &TrialRecord, label: &str) -> TrialView {
    TrialView {
        id: t.summary.id.clone(),
        label: label.to_string(),
        status: t.summary.status.to_string(),
        error: t
            .summary
            .error
            .clone()
            .filter(|_| t.summary.status != crate::contract::Status::Finished),
        facts: facts(t),
        metrics: metric_summaries(t),
        config: config_entries(&t.config)
            .into_iter()
            .filter(|c| c.changed)
            .collect(),
    }
}

/// `1 trial`, `3 trials`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, lr: f64, seed: u64) -> TrialRecord {
        let mut config = Config::default();
        config.optimizer.lr = lr;
        config.seed = seed;
        TrialRecord::example(id, config, Vec::new())
    }

    #[test]
    fn trials_are_named_by_their_swept_values_and_replicates_by_seed() {
        let sel = Selection {
            kind: "sweep",
            name: "s".into(),
            trials: vec![
                record("aaaaaaaaaaaa", 0.1, 1),
                record("bbbbbbbbbbbb", 0.1, 2),
                record("cccccccccccc", 0.2, 1),
            ],
            default_out: "out".into(),
            ranking: super::super::select::Ranking::new("val/top1"),
        };
        assert_eq!(
            labels(&sel),
            [
                "optimizer.lr=0.1 seed=1 · aaaaaa",
                "optimizer.lr=0.1 seed=2 · bbbbbb",
                "optimizer.lr=0.2 · cccccc"
            ]
        );
        let changed: Vec<String> = config_entries(&sel.trials[2].config)
            .into_iter()
            .filter(|c| c.changed)
            .map(|c| c.key)
            .collect();
        assert!(
            changed.contains(&"optimizer.lr".to_string()) && changed.contains(&"seed".to_string())
        );
        assert_eq!(count(1, "trial"), "1 trial");
        assert_eq!(count(3, "trial"), "3 trials");
    }
}
