//! `vitrun diff A B`: what differs between two trials — resolved config keys (every default
//! explicit, since the store keeps the whole resolved config), provenance, and final metrics.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;

use crate::config::Config;
use crate::contract::Goal;
use crate::track::Store;

fn params(store: &Store, id: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let (json, _) = store
        .trial_config(id)?
        .with_context(|| format!("trial {id} is not in the store"))?;
    let config = Config::from_stored(&json, id).map_err(anyhow::Error::msg)?;
    Ok(config
        .flat_params()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("sweep"))
        .collect())
}

/// Each metric's last logged value (by step).
fn finals(store: &Store, id: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    let mut last_step = BTreeMap::new();
    for m in store.metrics(id)? {
        let key = format!("{}/{}", m.split, m.name);
        if last_step.get(&key).is_none_or(|s| m.step >= *s) {
            last_step.insert(key.clone(), m.step);
            out.insert(key, m.value);
        }
    }
    Ok(out)
}

fn table(rows: &[[String; 4]]) -> String {
    let widths: Vec<usize> = (0..4)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            format!("  {}\n", cells.join("  ").trim_end())
        })
        .collect()
}

fn value(v: Option<&String>) -> String {
    v.cloned().unwrap_or_else(|| "(unset)".into())
}

/// A config key the two trials set differently (`None`: unset in that trial).
#[derive(Debug, serde::Serialize)]
pub struct KeyDiff {
    pub key: String,
    pub a: Option<String>,
    pub b: Option<String>,
}

/// A provenance field of both trials.
#[derive(Debug, serde::Serialize)]
pub struct FieldPair {
    pub field: String,
    pub a: String,
    pub b: String,
    pub differs: bool,
}

/// A metric's last logged value in each trial, and which is better by the metric's goal.
#[derive(Debug, serde::Serialize)]
pub struct MetricPair {
    pub metric: String,
    pub a: Option<f64>,
    pub b: Option<f64>,
    /// `"a"`, `"b"`, or `None` where they tie or one is missing.
    pub better: Option<&'static str>,
}

/// What differs between two trials.
#[derive(Debug, serde::Serialize)]
pub struct Diff {
    pub a: String,
    pub b: String,
    pub config: Vec<KeyDiff>,
    pub provenance: Vec<FieldPair>,
    pub metrics: Vec<MetricPair>,
}

/// The diff of trials `a` and `b` (ids or unique prefixes).
pub fn diff(store: &Store, a: &str, b: &str) -> anyhow::Result<Diff> {
    let (a, b) = (store.unique_trial(a)?, store.unique_trial(b)?);
    let (pa, pb) = (params(store, &a)?, params(store, &b)?);
    let keys: BTreeSet<&String> = pa.keys().chain(pb.keys()).collect();
    let config = keys
        .into_iter()
        .filter(|k| pa.get(*k) != pb.get(*k))
        .map(|k| KeyDiff {
            key: k.clone(),
            a: pa.get(k).cloned(),
            b: pb.get(k).cloned(),
        })
        .collect();
    let (prov_a, prov_b) = (store.provenance(&a)?, store.provenance(&b)?);
    let provenance = prov_a
        .into_iter()
        .zip(prov_b)
        .map(|((field, va), (_, vb))| FieldPair {
            field,
            differs: va != vb,
            a: va,
            b: vb,
        })
        .collect();
    let (fa, fb) = (finals(store, &a)?, finals(store, &b)?);
    let names: BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    let metrics = names
        .into_iter()
        .map(|name| {
            let (va, vb) = (fa.get(name).copied(), fb.get(name).copied());
            let better = match (va, vb) {
                (Some(x), Some(y)) if x != y => {
                    let b_better = match Goal::of(name) {
                        Goal::Maximize => y > x,
                        Goal::Minimize => y < x,
                    };
                    Some(if b_better { "b" } else { "a" })
                }
                _ => None,
            };
            MetricPair {
                metric: name.clone(),
                a: va,
                b: vb,
                better,
            }
        })
        .collect();
    Ok(Diff {
        a,
        b,
        config,
        provenance,
        metrics,
    })
}

impl Diff {
    /// The three tables as text.
    pub fn text(&self) -> String {
        let (a, b) = (&self.a, &self.b);
        let mut config = vec![["key".to_string(), a.clone(), b.clone(), String::new()]];
        for k in &self.config {
            config.push([
                k.key.clone(),
                value(k.a.as_ref()),
                value(k.b.as_ref()),
                String::new(),
            ]);
        }
        let differ = match self.config.len() {
            1 => "1 key differs".to_string(),
            n => format!("{n} keys differ"),
        };
        let mut out = format!("trials {a} and {b}\n\nconfig ({differ}):\n");
        if self.config.is_empty() {
            out.push_str("  (identical resolved configs)\n");
        } else {
            out.push_str(&table(&config));
        }
        let mut prov = vec![["".to_string(), a.clone(), b.clone(), String::new()]];
        for f in &self.provenance {
            let mark = if f.differs { "differs" } else { "" };
            prov.push([f.field.clone(), f.a.clone(), f.b.clone(), mark.into()]);
        }
        out.push_str("\nprovenance:\n");
        out.push_str(&table(&prov));
        let mut metrics = vec![[
            "final metric".to_string(),
            a.clone(),
            b.clone(),
            "B - A".to_string(),
        ]];
        for m in &self.metrics {
            let shown = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.6}"));
            let delta = match (m.a, m.b) {
                (Some(x), Some(y)) => {
                    let mark = match m.better {
                        Some("b") => " (B better)",
                        Some(_) => " (A better)",
                        None => "",
                    };
                    format!("{:+.6}{mark}", y - x)
                }
                _ => "-".into(),
            };
            metrics.push([m.metric.clone(), shown(m.a), shown(m.b), delta]);
        }
        out.push_str("\nfinal metrics (last logged value):\n");
        out.push_str(&table(&metrics));
        out
    }
}
