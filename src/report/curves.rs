//! Metric curves: one chart per metric, against epoch (or optimizer step for per-step metrics);
//! a single trial's splits together, a sweep's trials overlaid with the best highlighted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::select::{Selection, TrialRecord};
use crate::plot::charts::{self, Band, LineChart, Series};
use crate::plot::html::Figure;

/// Trials drawn one by one; beyond `TOP_K + 1` the best `TOP_K` are lines and the rest a density.
pub const TOP_K: usize = 5;

/// The axis label and display scale of a metric, by its name in the store.
pub fn unit(name: &str) -> (String, f64) {
    match name {
        "loss" | "step_loss" => ("cross-entropy loss (nats)".into(), 1.0),
        "top1" | "top1_cls" | "top1_dist" | "teacher_top1" => ("top-1 accuracy (%)".into(), 100.0),
        "teacher_agreement" => ("answers agreeing with the teacher's (%)".into(), 100.0),
        "loss_cls" | "loss_dist" => ("loss (nats)".into(), 1.0),
        "top5" => ("top-5 accuracy (%)".into(), 100.0),
        "lr" => ("learning rate".into(), 1.0),
        "images_per_sec" => ("throughput (images/s)".into(), 1.0),
        "skipped_images" => ("unreadable images skipped (count)".into(), 1.0),
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
    // The parameter count is a figure, not a curve: the sweep table and Pareto chart show it.
    let flat = crate::contract::Metric::TRAIN_PARAMS;
    for t in &sel.trials {
        for m in t
            .metrics
            .iter()
            .filter(|m| !(m.split == flat.split.as_str() && m.name == flat.name))
        {
            metrics
                .entry(m.name.clone())
                .or_default()
                .insert(m.split.clone());
        }
    }
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
            let mut chart_bands = Vec::new();
            for split in &group {
                if single {
                    series.push(Series {
                        label: format!("{split}/{name}"),
                        points: points(&sel.trials[0], split, name, by_step, scale),
                        emphasis: true,
                    });
                    continue;
                }
                let (lines, bands) = many(sel, split, name, by_step, scale);
                series.extend(lines);
                chart_bands.extend(bands);
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
                bands: chart_bands,
            };
            let stem = if single {
                format!("curve_{}", safe(name))
            } else {
                format!("curve_{}_{}", safe(group[0]), safe(name))
            };
            draw_lines(out, &stem, &chart)?;
            figures.push(Figure {
                file: format!("{stem}.png"),
                title: what,
                caption: if single {
                    format!("per {}", chart.x_label)
                } else {
                    format!(
                        "{} trials; {} by {} in colour ({}){}",
                        sel.trials.len(),
                        if sel.trials.len() > TOP_K + 1 {
                            format!("the top {TOP_K}")
                        } else {
                            "the best".into()
                        },
                        sel.ranking.metric,
                        chart.x_label,
                        if sel.trials.len() > TOP_K + 1 {
                            "; the rest as their median and 25–75 % and 10–90 % bands"
                        } else {
                            ""
                        }
                    )
                },
            });
        }
    }
    if single {
        figures.extend(heads(&sel.trials[0], out)?);
    }
    Ok(figures)
}

/// A distilled trial's heads on one chart: the model's answer (both heads averaged), each
/// head's, and the teacher's own score as its line.
fn heads(t: &TrialRecord, out: &Path) -> anyhow::Result<Option<Figure>> {
    let lines = [
        ("top1", "both heads (the model's answer)"),
        ("top1_cls", "class head"),
        ("top1_dist", "distillation head"),
        ("teacher_top1", "teacher"),
    ];
    let series: Vec<Series> = lines
        .iter()
        .map(|(name, label)| Series {
            label: label.to_string(),
            points: points(t, "val", name, false, 100.0),
            emphasis: *name != "teacher_top1",
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    if series.len() < lines.len() {
        return Ok(None);
    }
    let chart = LineChart {
        title: "val/top1 of each head against the teacher's".into(),
        x_label: "epoch".into(),
        y_label: "top-1 accuracy (%)".into(),
        series,
        bands: Vec::new(),
    };
    let stem = "curve_distillation_heads";
    draw_lines(out, stem, &chart)?;
    Ok(Some(Figure {
        file: format!("{stem}.png"),
        title: chart.title.clone(),
        caption: "DeiT's distillation: the class and distillation heads, their average, and the teacher (grey)".into(),
    }))
}

/// Draws `chart` as `<stem>.png` and `<stem>.svg` in `out`.
fn draw_lines(out: &Path, stem: &str, chart: &LineChart) -> anyhow::Result<()> {
    charts::png(&out.join(format!("{stem}.png")), (800, 480), |root| {
        charts::lines(root, chart)
    })?;
    charts::svg(&out.join(format!("{stem}.svg")), (800, 480), |root| {
        charts::lines(root, chart)
    })?;
    Ok(())
}

/// The `q` quantile of sorted values (linear interpolation).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let at = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo as f64)
}

/// A sweep's lines of one metric: up to `TOP_K + 1` trials, grey lines and the best in colour;
/// more, and the top `TOP_K` are coloured lines while the rest become quantile bands and a
/// median line (so 1,000 trials stay readable and the SVG small).
fn many(
    sel: &Selection,
    split: &str,
    name: &str,
    by_step: bool,
    scale: f64,
) -> (Vec<Series>, Vec<Band>) {
    let ranked = sel.ranked();
    let mut series = Vec::new();
    if ranked.len() <= TOP_K + 1 {
        let others = ranked.len() - 1;
        for (k, &i) in ranked[1..].iter().enumerate() {
            series.push(Series {
                label: if k == 0 {
                    format!("other trials ({others})")
                } else {
                    String::new()
                },
                points: points(&sel.trials[i], split, name, by_step, scale),
                emphasis: false,
            });
        }
        let b = &sel.trials[ranked[0]];
        series.push(Series {
            label: format!("best: {} ({})", b.summary.id, b.summary.status),
            points: points(b, split, name, by_step, scale),
            emphasis: true,
        });
        return (series, Vec::new());
    }
    let mut by_x: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for &i in &ranked[TOP_K..] {
        for (x, y) in points(&sel.trials[i], split, name, by_step, scale) {
            if y.is_finite() {
                by_x.entry(x as i64).or_default().push(y);
            }
        }
    }
    let mut outer = Vec::new();
    let mut inner = Vec::new();
    let mut median = Vec::new();
    for (x, mut ys) in by_x.into_iter().filter(|(_, ys)| ys.len() >= 3) {
        ys.sort_by(f64::total_cmp);
        let x = x as f64;
        outer.push((x, quantile(&ys, 0.1), quantile(&ys, 0.9)));
        inner.push((x, quantile(&ys, 0.25), quantile(&ys, 0.75)));
        median.push((x, quantile(&ys, 0.5)));
    }
    let rest = ranked.len() - TOP_K;
    let bands = vec![
        Band {
            label: format!("other {rest} trials: 10–90 %"),
            points: outer,
            colour: None,
            alpha: 0.18,
        },
        Band {
            label: "25–75 %".into(),
            points: inner,
            colour: None,
            alpha: 0.35,
        },
    ];
    series.push(Series {
        label: "their median".into(),
        points: median,
        emphasis: false,
    });
    for (k, &i) in ranked[..TOP_K].iter().enumerate().rev() {
        let t = &sel.trials[i];
        series.push(Series {
            label: format!("#{} {}", k + 1, t.summary.id),
            points: points(t, split, name, by_step, scale),
            emphasis: true,
        });
    }
    (series, bands)
}

/// The ranking metric per epoch of each replicate group (trials that differ only in seed,
/// `groups` as indices into the selection): the mean as a line and ± one standard deviation
/// as a band, for the best `TOP_K` groups by mean. `None` when no group has two trials.
pub fn replicates(
    sel: &Selection,
    groups: &[Vec<usize>],
    out: &Path,
) -> anyhow::Result<Option<Figure>> {
    let metric = &sel.ranking.metric;
    let (split, name) = metric.split_once('/').unwrap_or(("val", metric));
    let (y_label, scale) = unit(name);
    let mut ranked: Vec<(f64, &Vec<usize>)> = groups
        .iter()
        .filter(|g| g.len() > 1)
        .filter_map(|g| {
            let scores: Vec<f64> = g
                .iter()
                .filter_map(|&i| sel.score(&sel.trials[i]))
                .collect();
            let s = super::groups::stats(&scores)?;
            Some((sel.ranking.goal.sign() * s.mean, g))
        })
        .collect();
    if ranked.is_empty() {
        return Ok(None);
    }
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut series = Vec::new();
    let mut bands = Vec::new();
    for (rank, (_, members)) in ranked.iter().take(TOP_K).enumerate() {
        let mut by_epoch: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
        for &i in members.iter() {
            for (x, y) in points(&sel.trials[i], split, name, false, scale) {
                by_epoch.entry(x as i64).or_default().push(y);
            }
        }
        let mut mean = Vec::new();
        let mut band = Vec::new();
        for (x, ys) in by_epoch {
            if let Some(s) = super::groups::stats(&ys) {
                let sd = s.std.unwrap_or(0.0);
                mean.push((x as f64, s.mean));
                band.push((x as f64, s.mean - sd, s.mean + sd));
            }
        }
        let first = &sel.trials[members[0]].summary.id;
        series.push(Series {
            label: format!("#{} group of {first} (n = {})", rank + 1, members.len()),
            points: mean,
            emphasis: true,
        });
        bands.push(Band {
            label: String::new(),
            points: band,
            colour: Some(rank),
            alpha: 0.22,
        });
    }
    let chart = LineChart {
        title: format!("{metric}: mean ± std over seeds"),
        x_label: "epoch".into(),
        y_label,
        series,
        bands,
    };
    let file = "replicates.png";
    charts::png(&out.join(file), (800, 480), |root| {
        charts::lines(root, &chart)
    })?;
    charts::svg(&out.join("replicates.svg"), (800, 480), |root| {
        charts::lines(root, &chart)
    })?;
    Ok(Some(Figure {
        file: file.into(),
        title: chart.title.clone(),
        caption: format!(
            "groups of trials that differ only in seed, the best {} by mean best {metric}; the band is one standard deviation",
            TOP_K.min(ranked.len())
        ),
    }))
}
