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

/// The diff of trials `a` and `b` (ids or unique prefixes) as text.
pub fn diff(store: &Store, a: &str, b: &str) -> anyhow::Result<String> {
    let (a, b) = (store.unique_trial(a)?, store.unique_trial(b)?);
    let (pa, pb) = (params(store, &a)?, params(store, &b)?);
    let keys: BTreeSet<&String> = pa.keys().chain(pb.keys()).collect();
    let mut config = vec![["key".to_string(), a.clone(), b.clone(), String::new()]];
    for k in keys {
        let (va, vb) = (pa.get(k), pb.get(k));
        if va != vb {
            config.push([k.clone(), value(va), value(vb), String::new()]);
        }
    }
    let mut out = format!(
        "trials {a} and {b}\n\nconfig ({} keys differ):\n",
        config.len() - 1
    );
    if config.len() == 1 {
        out.push_str("  (identical resolved configs)\n");
    } else {
        out.push_str(&table(&config));
    }
    let (prov_a, prov_b) = (store.provenance(&a)?, store.provenance(&b)?);
    let mut prov = vec![["".to_string(), a.clone(), b.clone(), String::new()]];
    for ((field, va), (_, vb)) in prov_a.iter().zip(&prov_b) {
        let mark = if va == vb { "" } else { "differs" };
        prov.push([field.clone(), va.clone(), vb.clone(), mark.into()]);
    }
    out.push_str("\nprovenance:\n");
    out.push_str(&table(&prov));
    let (fa, fb) = (finals(store, &a)?, finals(store, &b)?);
    let names: BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    let mut metrics = vec![[
        "final metric".to_string(),
        a.clone(),
        b.clone(),
        "B - A".to_string(),
    ]];
    for name in names {
        let (va, vb) = (fa.get(name), fb.get(name));
        let shown = |v: Option<&f64>| v.map_or("-".to_string(), |v| format!("{v:.6}"));
        let delta = match (va, vb) {
            (Some(x), Some(y)) => {
                let better = match Goal::of(name) {
                    Goal::Maximize => y > x,
                    Goal::Minimize => y < x,
                };
                let mark = if y == x {
                    ""
                } else if better {
                    " (B better)"
                } else {
                    " (A better)"
                };
                format!("{:+.6}{mark}", y - x)
            }
            _ => "-".into(),
        };
        metrics.push([name.clone(), shown(va), shown(vb), delta]);
    }
    out.push_str("\nfinal metrics (last logged value):\n");
    out.push_str(&table(&metrics));
    Ok(out)
}
