//! Sweep comparison: every trial in a sortable, filterable table ranked by the ranking metric;
//! for each swept parameter a chart of that metric against the parameter's value (with the
//! spread where several trials share a value); and how much each parameter matters (η²).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::curves::shown;
use super::select::Selection;
use crate::contract::Status;
use crate::plot::charts::{self, ParamChart, ParamPoint};
use crate::plot::html::{Figure, Table};

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
    Table {
        header,
        rows,
        interactive: true,
        link: None,
    }
}

/// A parameter's values as levels for η²: the values themselves, or up to five quantile bins
/// of them when they are numbers with more than five distinct values.
fn levels(values: &[&String]) -> Vec<String> {
    let numbers: Option<Vec<f64>> = values.iter().map(|v| v.parse::<f64>().ok()).collect();
    let distinct: BTreeSet<&&String> = values.iter().collect();
    match numbers {
        Some(n) if distinct.len() > 5 => {
            let mut order: Vec<usize> = (0..n.len()).collect();
            order.sort_by(|&a, &b| n[a].total_cmp(&n[b]));
            let mut bins = vec![String::new(); n.len()];
            for (rank, &i) in order.iter().enumerate() {
                bins[i] = format!("bin {}", rank * 5 / n.len());
            }
            bins
        }
        _ => values.iter().map(|v| v.to_string()).collect(),
    }
}

/// Share of the variance of the trials' scores that each swept parameter explains on its own
/// (η² = between-level sum of squares / total), highest first: `(key, η², levels)`.
pub fn importance(
    sel: &Selection,
    swept: &BTreeMap<String, Vec<String>>,
) -> Vec<(String, f64, usize)> {
    let scores: Vec<Option<f64>> = sel.trials.iter().map(|t| sel.score(t)).collect();
    let mut out: Vec<(String, f64, usize)> = swept
        .iter()
        .filter_map(|(key, values)| {
            let (ys, vs): (Vec<f64>, Vec<&String>) = scores
                .iter()
                .zip(values)
                .filter_map(|(s, v)| s.map(|s| (s, v)))
                .unzip();
            if ys.len() < 3 {
                return None;
            }
            let levels = levels(&vs);
            let mut by_level: BTreeMap<&String, Vec<f64>> = BTreeMap::new();
            for (l, y) in levels.iter().zip(&ys) {
                by_level.entry(l).or_default().push(*y);
            }
            if by_level.len() < 2 {
                return None;
            }
            let mean = ys.iter().sum::<f64>() / ys.len() as f64;
            let total: f64 = ys.iter().map(|y| (y - mean).powi(2)).sum();
            let between: f64 = by_level
                .values()
                .map(|g| g.len() as f64 * (g.iter().sum::<f64>() / g.len() as f64 - mean).powi(2))
                .sum();
            let eta = if total > 0.0 { between / total } else { 0.0 };
            Some((key.clone(), eta, by_level.len()))
        })
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

/// The importance table and bar chart.
pub fn draw_importance(
    sel: &Selection,
    ranked: &[(String, f64, usize)],
    out: &Path,
) -> anyhow::Result<(Table, Option<Figure>)> {
    let metric = &sel.ranking.metric;
    let table = Table {
        header: vec![
            "parameter".into(),
            "η² (variance explained alone)".into(),
            "levels".into(),
        ],
        rows: ranked
            .iter()
            .map(|(k, eta, n)| vec![k.clone(), format!("{eta:.3}"), n.to_string()])
            .collect(),
        interactive: false,
        link: None,
    };
    if ranked.is_empty() {
        return Ok((table, None));
    }
    let bars: Vec<(String, f64)> = ranked.iter().map(|(k, e, _)| (k.clone(), *e)).collect();
    let height = 120 + 34 * bars.len() as u32;
    charts::png(&out.join("importance.png"), (720, height), |root| {
        charts::hbars(
            root,
            &format!("what mattered for best {metric}"),
            "η²",
            &bars,
        )
    })?;
    Ok((
        table,
        Some(Figure {
            file: "importance.png".into(),
            title: "Parameter importance".into(),
            caption: format!(
                "the share of the variance of best {metric} across trials that each parameter explains on its own (η², a main-effect measure; numeric parameters with more than five values in five quantile bins)"
            ),
        }),
    ))
}

/// Parameters with at most this many distinct values get a categorical axis.
const CATEGORICAL_MAX: usize = 5;

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
        let mut distinct: Vec<&String> =
            values.iter().collect::<BTreeSet<_>>().into_iter().collect();
        // A few values are categories, evenly spaced and labelled (numbers in their order).
        let categorical = numbers.is_none() || distinct.len() <= CATEGORICAL_MAX;
        if let Some(n) = numbers.as_ref().filter(|_| categorical) {
            let value = |v: &String| n[values.iter().position(|x| x == v).unwrap_or(0)];
            distinct.sort_by(|a, b| value(a).total_cmp(&value(b)));
        }
        let log_x = !categorical && positive && (lr_like(key) || spread >= 20.0);
        let categories: Vec<String> = if categorical {
            distinct.into_iter().cloned().collect()
        } else {
            Vec::new()
        };
        let x_of = |v: &String| match &numbers {
            _ if categorical => categories.iter().position(|c| c == v).unwrap_or(0) as f64,
            Some(_) if log_x => v.parse::<f64>().unwrap_or(1.0).log10(),
            _ => v.parse().unwrap_or(0.0),
        };
        let mut at_value: BTreeMap<&String, Vec<f64>> = BTreeMap::new();
        for (t, v) in sel.trials.iter().zip(values) {
            if let Some(y) = sel.score(t) {
                at_value.entry(v).or_default().push(y * scale);
            }
        }
        let spreads = at_value
            .iter()
            .filter(|(_, ys)| ys.len() > 1)
            .filter_map(|(v, ys)| {
                let s = super::groups::stats(ys)?;
                Some((x_of(v), s.mean, s.std.unwrap_or(0.0)))
            })
            .collect();
        let points = sel
            .trials
            .iter()
            .zip(values)
            .map(|(t, v)| ParamPoint {
                x: x_of(v),
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
            spreads,
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
