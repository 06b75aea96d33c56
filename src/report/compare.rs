//! Sweep comparison: every trial in a table sorted by best val top-1, and for each swept
//! parameter a chart of that metric against the parameter's value.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::charts::{self, ParamChart, ParamPoint};
use super::html::{Figure, Table};
use super::select::Selection;
use crate::contract::Status;

/// Config keys whose values differ between the selection's trials, with each trial's value.
pub fn swept(sel: &Selection) -> BTreeMap<String, Vec<String>> {
    let params: Vec<BTreeMap<String, String>> = sel
        .trials
        .iter()
        .map(|t| t.config.flat_params().into_iter().collect())
        .collect();
    let keys: BTreeSet<&String> = params.iter().flat_map(|p| p.keys()).collect();
    keys.into_iter()
        .filter(|k| {
            !k.starts_with("sweep.")
                && *k != "train.runs_dir"
                && *k != "train.device"
                && *k != "train.threads"
        })
        .filter_map(|k| {
            let values: Vec<String> = params
                .iter()
                .map(|p| p.get(k).cloned().unwrap_or_default())
                .collect();
            let distinct: BTreeSet<&String> = values.iter().collect();
            (distinct.len() > 1).then(|| (k.clone(), values))
        })
        .collect()
}

/// A metric value as shown: percentages for accuracies.
pub fn shown(metric: &str, v: Option<f64>) -> String {
    match v {
        Some(v) if metric.contains("top") => format!("{:.2}%", v * 100.0),
        Some(v) => format!("{v:.4}"),
        None => "-".into(),
    }
}

/// The comparison table, best first.
pub fn table(sel: &Selection, swept: &BTreeMap<String, Vec<String>>) -> Table {
    let metric = &sel.ranking.metric;
    let mut header: Vec<String> = vec![
        "rank".into(),
        "trial".into(),
        "status".into(),
        format!("best {metric}"),
        "epochs".into(),
    ];
    header.extend(swept.keys().cloned());
    header.push("note".into());
    let rows = sel
        .ranked()
        .iter()
        .enumerate()
        .map(|(rank, &i)| {
            let t = &sel.trials[i].summary;
            let mut row = vec![
                (rank + 1).to_string(),
                t.id.clone(),
                t.status.to_string(),
                shown(metric, sel.score(&sel.trials[i])),
                t.epochs
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "-".into()),
            ];
            row.extend(swept.values().map(|v| v[i].clone()));
            row.push(
                t.error
                    .clone()
                    .filter(|_| t.status != Status::Finished)
                    .unwrap_or_default(),
            );
            row
        })
        .collect();
    Table { header, rows }
}

fn lr_like(key: &str) -> bool {
    key.ends_with("lr") || key.ends_with("weight_decay") || key.ends_with("eps")
}

/// One chart per swept parameter.
pub fn draw(
    sel: &Selection,
    swept: &BTreeMap<String, Vec<String>>,
    out: &Path,
) -> anyhow::Result<Vec<Figure>> {
    let best = sel.best().summary.id.clone();
    let metric = &sel.ranking.metric;
    let (label, scale) = super::curves::unit(metric.rsplit('/').next().unwrap_or(metric));
    let mut figures = Vec::new();
    for (key, values) in swept {
        let numbers: Option<Vec<f64>> = values.iter().map(|v| v.parse::<f64>().ok()).collect();
        let positive = numbers.as_ref().is_some_and(|n| n.iter().all(|v| *v > 0.0));
        let spread = numbers.as_ref().map_or(1.0, |n| {
            let (lo, hi) = n
                .iter()
                .fold((f64::INFINITY, 0f64), |(a, b), v| (a.min(*v), b.max(*v)));
            hi / lo
        });
        let log_x = positive && (lr_like(key) || spread >= 20.0);
        let mut categories: Vec<String> = Vec::new();
        if numbers.is_none() {
            categories = values
                .iter()
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
        }
        let points = sel
            .trials
            .iter()
            .zip(values)
            .map(|(t, v)| ParamPoint {
                x: match &numbers {
                    Some(_) if log_x => v.parse::<f64>().unwrap_or(1.0).log10(),
                    Some(_) => v.parse().unwrap_or(0.0),
                    None => categories.iter().position(|c| c == v).unwrap_or(0) as f64,
                },
                y: sel.score(t).map(|v| v * scale),
                status: t.summary.status,
                best: t.summary.id == best,
            })
            .collect();
        let chart = ParamChart {
            title: format!("best {metric} vs {key}"),
            x_label: if log_x {
                format!("{key} (log scale)")
            } else {
                key.clone()
            },
            y_label: format!("best {metric}: {label}"),
            points,
            log_x,
            categories,
        };
        let stem: String = format!(
            "sweep_{}",
            key.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        );
        charts::png(&out.join(format!("{stem}.png")), (640, 420), |root| {
            charts::params(root, &chart)
        })?;
        figures.push(Figure {
            file: format!("{stem}.png"),
            title: chart.title.clone(),
            caption: "each point is a trial; pruned and failed trials are marked".into(),
        });
    }
    Ok(figures)
}
