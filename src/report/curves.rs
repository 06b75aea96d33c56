//! Metric curves: one chart per metric, against epoch (or optimizer step for per-step metrics);
//! a single trial's splits together, a sweep's trials overlaid with the best highlighted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::charts::{self, LineChart, Series};
use super::html::Figure;
use super::select::{Selection, TrialRecord};

/// The axis label and display scale of a metric, by its name in the store.
pub fn unit(name: &str) -> (String, f64) {
    match name {
        "loss" | "step_loss" => ("cross-entropy loss (nats)".into(), 1.0),
        "top1" => ("top-1 accuracy (%)".into(), 100.0),
        "top5" => ("top-5 accuracy (%)".into(), 100.0),
        "lr" => ("learning rate".into(), 1.0),
        "images_per_sec" => ("throughput (images/s)".into(), 1.0),
        "skipped_files" => ("unreadable files skipped (count)".into(), 1.0),
        other => (other.to_string(), 1.0),
    }
}

/// Whether a metric is logged more than once per epoch (then its x axis is the step).
fn per_step(trials: &[TrialRecord], split: &str, name: &str) -> bool {
    trials.iter().any(|t| {
        let mut epochs = BTreeSet::new();
        t.metrics
            .iter()
            .filter(|m| m.split == split && m.name == name)
            .any(|m| !epochs.insert(m.epoch))
    })
}

fn points(t: &TrialRecord, split: &str, name: &str, by_step: bool, scale: f64) -> Vec<(f64, f64)> {
    t.metrics
        .iter()
        .filter(|m| m.split == split && m.name == name)
        .map(|m| {
            let x = if by_step { m.step } else { m.epoch } as f64;
            (x, m.value * scale)
        })
        .collect()
}

fn safe(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Draws every metric chart of the selection into `out` (PNG and SVG).
pub fn draw(sel: &Selection, out: &Path) -> anyhow::Result<Vec<Figure>> {
    let mut metrics: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for t in &sel.trials {
        for m in &t.metrics {
            metrics
                .entry(m.name.clone())
                .or_default()
                .insert(m.split.clone());
        }
    }
    let best = sel.best().summary.id.clone();
    let single = sel.trials.len() == 1;
    let mut figures = Vec::new();
    for (name, splits) in &metrics {
        let groups: Vec<Vec<&String>> = if single {
            vec![splits.iter().collect()]
        } else {
            splits.iter().map(|s| vec![s]).collect()
        };
        for group in groups {
            let by_step = group.iter().any(|s| per_step(&sel.trials, s, name));
            let (y_label, scale) = unit(name);
            let mut series = Vec::new();
            for split in &group {
                if single {
                    series.push(Series {
                        label: format!("{split}/{name}"),
                        points: points(&sel.trials[0], split, name, by_step, scale),
                        emphasis: true,
                    });
                    continue;
                }
                let others = sel.trials.len() - 1;
                for (k, t) in sel
                    .trials
                    .iter()
                    .filter(|t| t.summary.id != best)
                    .enumerate()
                {
                    series.push(Series {
                        label: if k == 0 {
                            format!("other trials ({others})")
                        } else {
                            String::new()
                        },
                        points: points(t, split, name, by_step, scale),
                        emphasis: false,
                    });
                }
                let b = sel.best();
                series.push(Series {
                    label: format!("best: {} ({})", b.summary.id, b.summary.status),
                    points: points(b, split, name, by_step, scale),
                    emphasis: true,
                });
            }
            let what = group
                .iter()
                .map(|s| format!("{s}/{name}"))
                .collect::<Vec<_>>()
                .join(", ");
            let chart = LineChart {
                title: what.clone(),
                x_label: if by_step { "optimizer step" } else { "epoch" }.into(),
                y_label,
                series,
            };
            let stem = if single {
                format!("curve_{}", safe(name))
            } else {
                format!("curve_{}_{}", safe(group[0]), safe(name))
            };
            charts::png(&out.join(format!("{stem}.png")), (800, 480), |root| {
                charts::lines(root, &chart)
            })?;
            charts::svg(&out.join(format!("{stem}.svg")), (800, 480), |root| {
                charts::lines(root, &chart)
            })?;
            figures.push(Figure {
                file: format!("{stem}.png"),
                title: what,
                caption: if single {
                    format!("per {}", chart.x_label)
                } else {
                    format!(
                        "{} trials; the best by {} in colour ({})",
                        sel.trials.len(),
                        sel.ranking.metric,
                        chart.x_label
                    )
                },
            });
        }
    }
    Ok(figures)
}
