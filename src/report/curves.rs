//! Metric curves: the charts of the curves section, in the browser (every point, hover,
//! zoom, smoothing) and as static PNG/SVG for papers. The task's main metric comes first, then
//! the loss and the learning rate; a single trial's splits share a chart; a sweep's trials are
//! one colour each, named by their swept values; constant series are folded into a list.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::select::{Selection, TrialRecord};
use crate::plot::charts::{self, Band, LineChart, Series};
use crate::plot::html::{ChartCard, Figure};
use crate::plot::interactive::{self, Chart, Line};
use crate::track::MetricRow;

/// Trials drawn one by one; beyond `TOP_K + 1` the best `TOP_K` are lines and the rest a density.
pub const TOP_K: usize = 5;
/// The most trials a browser chart draws (the best by the ranking metric).
pub const MAX_LINES: usize = 50;

/// Whether a metric is a fraction shown as a percentage.
pub fn percent(name: &str) -> bool {
    name.starts_with("top")
        || name.starts_with("iou_")
        || name.starts_with("ap50_")
        || matches!(
            name,
            "teacher_top1"
                | "teacher_agreement"
                | "miou"
                | "pixel_acc"
                | "dice"
                | "map"
                | "map50"
                | "map75"
        )
}

/// A value of `metric` (`split/name` or `name`) as shown: percentages for fractions (two
/// decimals), whole numbers as such, small values in scientific notation, else four decimals.
pub fn shown(metric: &str, v: Option<f64>) -> String {
    let name = metric.rsplit('/').next().unwrap_or(metric);
    match v {
        Some(v) if percent(name) => format!("{:.2}%", v * 100.0),
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{}", v as i64),
        Some(v) if v != 0.0 && v.abs() < 1e-3 => format!("{v:.3e}"),
        Some(v) if v.abs() >= 100.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.4}"),
        None => "-".into(),
    }
}

/// The axis label and display scale of a metric, by its name in the store.
pub fn unit(name: &str) -> (String, f64) {
    let label = match name {
        "loss" | "step_loss" => "cross-entropy loss (nats)",
        "top1" | "top1_cls" | "top1_dist" | "teacher_top1" => "top-1 accuracy (%)",
        "teacher_agreement" => "answers agreeing with the teacher's (%)",
        "loss_cls" | "loss_dist" => "loss (nats)",
        "top5" => "top-5 accuracy (%)",
        "lr" | "step_lr" => "learning rate",
        "images_per_sec" => "throughput (images/s)",
        "skipped_images" => "unreadable images skipped (count)",
        "peak_rss_mib" => "peak resident memory (MiB)",
        other if percent(other) => return (format!("{other} (%)"), 100.0),
        other => other,
    };
    (label.to_string(), if percent(name) { 100.0 } else { 1.0 })
}

/// Whether a metric is logged more than once per epoch (then its x axis is the step).
fn per_step(trials: &[&TrialRecord], split: &str, name: &str) -> bool {
    trials.iter().any(|t| {
        let mut epochs = BTreeSet::new();
        t.metrics
            .iter()
            .filter(|m| m.split == split && m.name == name)
            .any(|m| !epochs.insert(m.epoch))
    })
}

fn rows<'a>(
    t: &'a TrialRecord,
    split: &'a str,
    name: &'a str,
) -> impl Iterator<Item = &'a MetricRow> {
    t.metrics
        .iter()
        .filter(move |m| m.split == split && m.name == name)
}

fn points(t: &TrialRecord, split: &str, name: &str, by_step: bool, scale: f64) -> Vec<(f64, f64)> {
    rows(t, split, name)
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

/// Where a trial's points sit on the browser's three x axes: epochs are whole at an epoch's
/// end (its last step) and fractional between, from the steps that ended each epoch.
struct Clock {
    /// Step at the end of each epoch, from the epoch-level rows.
    ends: BTreeMap<i64, i64>,
    /// Wall time the trial started (seconds since 1970).
    start: f64,
}

impl Clock {
    fn of(t: &TrialRecord) -> Clock {
        let mut ends = BTreeMap::new();
        for m in rows(t, "train", "loss") {
            ends.insert(m.epoch, m.step);
        }
        let first = t
            .metrics
            .iter()
            .map(|m| m.wall_time)
            .fold(f64::INFINITY, f64::min);
        let started = t
            .summary
            .started_at
            .as_deref()
            .and_then(crate::track::timing::seconds);
        Clock {
            ends,
            start: started.map_or(first, |s| s.min(first)),
        }
    }

    /// The fractional epoch of a row logged at `step` during `epoch` (1-based).
    fn epoch(&self, epoch: i64, step: i64) -> f64 {
        let before = self.ends.get(&(epoch - 1)).copied().unwrap_or(0);
        let length = match self.ends.get(&epoch) {
            Some(&end) => end - before,
            // The epoch is still running: as long as the one before.
            None => self.ends.get(&(epoch - 1)).map_or(0, |&end| {
                end - self.ends.get(&(epoch - 2)).copied().unwrap_or(0)
            }),
        };
        if length <= 0 {
            return epoch as f64;
        }
        ((epoch - 1) as f64 + (step - before) as f64 / length as f64).min(epoch as f64)
    }
}

/// One chart: which metrics of which trials.
struct Panel {
    title: String,
    /// `(split, name)` of its series.
    keys: Vec<(String, String)>,
    /// Trial indices into the selection, best first.
    trials: Vec<usize>,
    /// File stem of its static renderings.
    stem: String,
}

/// The order of the charts: the ranking metric, loss, learning rate, the rest by name, then
/// the per-class figures. A family is what one chart of a single trial holds.
fn family(name: &str, main: &str, per_class: Option<&str>) -> (u8, String) {
    match name {
        n if n == main => (0, n.to_string()),
        "loss" | "step_loss" => (1, "loss".into()),
        "lr" | "step_lr" => (2, "lr".into()),
        n if per_class.is_some_and(|p| n.starts_with(p)) => (
            9,
            format!(
                "per-class {}",
                per_class.unwrap_or_default().trim_end_matches('_')
            ),
        ),
        n => (5, n.to_string()),
    }
}

fn split_rank(split: &str) -> u8 {
    match split {
        "val" => 0,
        "val_ema" => 1,
        "train" => 2,
        _ => 3,
    }
}

/// The metrics every value of which (over all trials, two or more values) is the same, with
/// that value; they are listed, not drawn.
fn constants(sel: &Selection, keys: &BTreeSet<(String, String)>) -> Vec<(String, f64)> {
    keys.iter()
        .filter_map(|(split, name)| {
            let values: Vec<f64> = sel
                .trials
                .iter()
                .flat_map(|t| rows(t, split, name).map(|m| m.value))
                .collect();
            let first = *values.first()?;
            (values.len() > 1 && values.iter().all(|v| v.to_bits() == first.to_bits()))
                .then(|| (format!("{split}/{name}"), first))
        })
        .collect()
}

/// The charts of the selection, in order; constant metrics returned apart.
fn plan(sel: &Selection) -> (Vec<Panel>, Vec<(String, f64)>) {
    let flat = crate::contract::Metric::TRAIN_PARAMS;
    let mut keys: BTreeSet<(String, String)> = sel
        .trials
        .iter()
        .flat_map(|t| t.metrics.iter().map(|m| (m.split.clone(), m.name.clone())))
        .filter(|(split, name)| !(split == flat.split.as_str() && name == flat.name))
        .collect();
    // The per-step learning rate shows the warmup; the per-epoch one adds nothing beside it.
    if keys.contains(&("train".into(), "step_lr".into())) {
        keys.remove(&("train".to_string(), "lr".to_string()));
    }
    // The ranking metric is always drawn, constant or not.
    let folded: Vec<(String, f64)> = constants(sel, &keys)
        .into_iter()
        .filter(|(key, _)| *key != sel.ranking.metric)
        .collect();
    for (key, _) in &folded {
        if let Some((split, name)) = key.split_once('/') {
            keys.remove(&(split.to_string(), name.to_string()));
        }
    }
    let main = sel
        .ranking
        .metric
        .split_once('/')
        .map_or(sel.ranking.metric.as_str(), |(_, n)| n);
    let per_class = crate::task::metrics(sel.best().config.head.task).per_class;
    let ranked = sel.ranked();
    let shown: Vec<usize> = ranked.iter().copied().take(MAX_LINES).collect();
    let single = sel.trials.len() == 1;
    let mut ordered: Vec<((u8, String), (String, String))> = keys
        .into_iter()
        .map(|(split, name)| (family(&name, main, per_class), (split, name)))
        .collect();
    ordered.sort_by(|(fa, (sa, na)), (fb, (sb, nb))| {
        (fa, split_rank(sa), na).cmp(&(fb, split_rank(sb), nb))
    });
    let mut panels: Vec<Panel> = Vec::new();
    for ((rank, fam), (split, name)) in ordered {
        let is_per_class = rank == 9;
        // A single trial's family shares a chart; per-class figures share one per split.
        let shared = if is_per_class {
            Some(format!("{split}/{fam}"))
        } else if single {
            Some(fam.clone())
        } else {
            None
        };
        if let Some(title) = &shared {
            if let Some(p) = panels
                .iter_mut()
                .find(|p| p.stem == format!("curve_{}", safe(title)))
            {
                p.keys.push((split, name));
                continue;
            }
        }
        let title = shared.unwrap_or_else(|| format!("{split}/{name}"));
        panels.push(Panel {
            stem: format!("curve_{}", safe(&title)),
            title: if title == "lr" {
                "learning rate".into()
            } else {
                title
            },
            keys: vec![(split, name)],
            // A sweep's per-class figures are its best trial's.
            trials: if is_per_class {
                vec![ranked[0]]
            } else {
                shown.clone()
            },
        });
    }
    (panels, folded)
}

/// The browser chart of a panel.
fn chart(sel: &Selection, panel: &Panel, labels: &[String], id: String) -> Chart {
    let single = panel.trials.len() == 1;
    let trials: Vec<&TrialRecord> = panel.trials.iter().map(|&i| &sel.trials[i]).collect();
    let step_level = panel
        .keys
        .iter()
        .any(|(split, name)| per_step(&trials, split, name));
    let (y_label, _) = unit(&panel.keys[0].1);
    let mut lines = Vec::new();
    for (rank, (&i, t)) in panel.trials.iter().zip(&trials).enumerate() {
        let clock = Clock::of(t);
        for (k, (split, name)) in panel.keys.iter().enumerate() {
            let (_, scale) = unit(name);
            let fine = per_step(&[t], split, name);
            let mut line = Line {
                label: if single {
                    format!("{split}/{name}")
                } else {
                    labels[i].clone()
                },
                trial: t.summary.id.clone(),
                key: format!("{split}/{name}"),
                colour: interactive::colour(if single { k } else { rank }),
                width: match (single, rank) {
                    (true, _) if fine => 1.0,
                    (true, _) => 2.0,
                    (false, 0) => 2.5,
                    _ => 1.5,
                },
                dash: single && split == "train" && !fine && panel.keys.len() > 1,
                step: Vec::new(),
                epoch: Vec::new(),
                wall: Vec::new(),
                y: Vec::new(),
            };
            for m in rows(t, split, name) {
                line.step.push(m.step as f64);
                line.epoch.push(if fine {
                    clock.epoch(m.epoch, m.step)
                } else {
                    m.epoch as f64
                });
                line.wall.push(m.wall_time - clock.start);
                line.y.push(m.value * scale);
            }
            lines.push(line);
        }
    }
    let integer = lines
        .iter()
        .flat_map(|l| &l.y)
        .all(|v| !v.is_finite() || v.fract() == 0.0);
    Chart {
        id,
        title: panel.title.clone(),
        y_label,
        percent: percent(&panel.keys[0].1),
        integer,
        per_step: step_level,
        files: vec![format!("{}.png", panel.stem), format!("{}.svg", panel.stem)],
        lines,
    }
}

/// The static rendering of a panel: a single trial's series in colour; a sweep's best in
/// colour and the rest grey, or its top `TOP_K` and the rest as quantile bands.
fn static_chart(sel: &Selection, panel: &Panel) -> LineChart {
    let trials: Vec<&TrialRecord> = panel.trials.iter().map(|&i| &sel.trials[i]).collect();
    let by_step = panel
        .keys
        .iter()
        .any(|(split, name)| per_step(&trials, split, name));
    let (y_label, scale) = unit(&panel.keys[0].1);
    let mut series = Vec::new();
    let mut bands = Vec::new();
    if panel.trials.len() == 1 {
        for (split, name) in &panel.keys {
            series.push(Series {
                label: format!("{split}/{name}"),
                points: points(trials[0], split, name, by_step, scale),
                emphasis: true,
            });
        }
    } else {
        let (split, name) = &panel.keys[0];
        let (lines, b) = many(sel, split, name, by_step, scale);
        series = lines;
        bands = b;
    }
    LineChart {
        title: panel.title.clone(),
        x_label: if by_step { "optimizer step" } else { "epoch" }.into(),
        y_label,
        series,
        bands,
    }
}

/// What the curves section shows.
pub struct Curves {
    pub cards: Vec<ChartCard>,
    pub charts: Vec<Chart>,
    /// Static figures with no browser chart (a distilled trial's heads).
    pub figures: Vec<Figure>,
    /// Metrics that never changed, with their value as shown.
    pub constants: Vec<(String, String)>,
}

/// The curves of the selection: browser charts (trials named by `labels`, one per trial of
/// the selection) with their static PNG/SVG written into `out` (none without it: a live
/// page's data).
pub fn draw(sel: &Selection, labels: &[String], out: Option<&Path>) -> anyhow::Result<Curves> {
    let (panels, folded) = plan(sel);
    let mut curves = Curves {
        cards: Vec::new(),
        charts: Vec::new(),
        figures: Vec::new(),
        constants: folded
            .into_iter()
            .map(|(key, v)| {
                let shown = shown(&key, Some(v));
                (key, shown)
            })
            .collect(),
    };
    for panel in &panels {
        let mut chart = chart(sel, panel, labels, panel.stem.clone());
        match out {
            Some(out) => draw_lines(out, &panel.stem, &static_chart(sel, panel))?,
            None => chart.files.clear(),
        }
        curves.cards.push(ChartCard {
            chart: chart.id.clone(),
            title: chart.title.clone(),
            files: chart.files.clone(),
        });
        curves.charts.push(chart);
    }
    if let (Some(out), [trial]) = (out, sel.trials.as_slice()) {
        curves.figures.extend(heads(trial, out)?);
    }
    Ok(curves)
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
            label: format!("other {}: 10–90 %", crate::contract::count(rest, "trial")),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn row(split: &str, name: &str, step: i64, epoch: i64, value: f64) -> MetricRow {
        MetricRow {
            split: split.into(),
            name: name.into(),
            step,
            epoch,
            value,
            wall_time: 1000.0 + step as f64,
        }
    }

    /// A trial of two epochs of 4 steps: losses and top-1 per epoch, the step loss and
    /// learning rate every 2 steps, and an all-zero skipped count.
    fn trial(id: &str, lr: f64, top1: [f64; 2]) -> TrialRecord {
        let mut config = Config::default();
        config.optimizer.lr = lr;
        let mut metrics = Vec::new();
        for epoch in 1..=2 {
            let end = epoch * 4;
            for step in [end - 2, end] {
                metrics.push(row("train", "step_loss", step, epoch, 1.0 / step as f64));
                metrics.push(row("train", "step_lr", step, epoch, lr * step as f64));
            }
            metrics.push(row("train", "loss", end, epoch, 1.0 / epoch as f64));
            metrics.push(row("train", "lr", end, epoch, lr));
            metrics.push(row("val", "loss", end, epoch, 1.5 / epoch as f64));
            metrics.push(row("val", "top1", end, epoch, top1[epoch as usize - 1]));
            metrics.push(row("val", "skipped_images", end, epoch, 0.0));
            metrics.push(row("train", "params", end, epoch, 1234.0));
        }
        let mut record = TrialRecord::example(id, config, metrics);
        record.summary.started_at = Some("1970-01-01T00:16:30Z".into());
        record.summary.epochs = Some(2);
        record
    }

    fn selection(trials: Vec<TrialRecord>) -> Selection {
        Selection {
            kind: "sweep",
            name: "s".into(),
            trials,
            default_out: "out".into(),
            ranking: super::super::select::Ranking::new("val/top1"),
        }
    }

    #[test]
    fn a_single_trial_charts_the_main_metric_then_loss_then_learning_rate() {
        let sel = selection(vec![trial("a", 0.1, [0.5, 0.6])]);
        let (panels, constants) = plan(&sel);
        let titles: Vec<&str> = panels.iter().map(|p| p.title.as_str()).collect();
        assert_eq!(titles, ["top1", "loss", "learning rate"]);
        assert_eq!(
            panels[1].keys,
            [
                ("val".to_string(), "loss".to_string()),
                ("train".into(), "loss".into()),
                ("train".into(), "step_loss".into())
            ]
        );
        assert_eq!(
            panels[2].keys,
            [("train".to_string(), "step_lr".to_string())],
            "the per-step learning rate replaces the per-epoch one"
        );
        assert_eq!(constants, [("val/skipped_images".to_string(), 0.0)]);
    }

    #[test]
    fn a_sweep_charts_each_metric_with_one_line_per_trial() {
        let sel = selection(vec![
            trial("a", 0.1, [0.5, 0.6]),
            trial("b", 0.2, [0.5, 0.9]),
        ]);
        let (panels, _) = plan(&sel);
        let titles: Vec<&str> = panels.iter().map(|p| p.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "val/top1",
                "val/loss",
                "train/loss",
                "train/step_loss",
                "train/step_lr"
            ]
        );
        assert_eq!(panels[0].trials, [1, 0], "best first");
        let labels = vec!["lr=0.1".to_string(), "lr=0.2".to_string()];
        let top1 = chart(&sel, &panels[0], &labels, "c".into());
        assert!(top1.percent && !top1.per_step);
        assert_eq!(top1.lines[0].label, "lr=0.2");
        assert_eq!(top1.lines[0].y, [50.0, 90.0]);
        assert!(
            top1.lines[0].width > top1.lines[1].width,
            "the best is bold"
        );
        assert_ne!(top1.lines[0].colour, top1.lines[1].colour);
        let steps = chart(&sel, &panels[3], &labels, "d".into());
        assert!(steps.per_step);
        assert_eq!(steps.lines[0].epoch, [0.5, 1.0, 1.5, 2.0]);
        assert_eq!(steps.lines[0].wall, [12.0, 14.0, 16.0, 18.0]);
    }

    #[test]
    fn a_running_epoch_is_measured_by_the_one_before() {
        let t = trial("a", 0.1, [0.5, 0.6]);
        let clock = Clock::of(&t);
        assert_eq!(clock.epoch(3, 10), 2.5);
        assert_eq!(clock.epoch(1, 3), 0.75);
    }

    #[test]
    fn values_are_shown_as_people_read_them() {
        assert_eq!(shown("val/top1", Some(0.98)), "98.00%");
        assert_eq!(shown("val/miou", Some(0.5)), "50.00%");
        assert_eq!(shown("train/skipped_images", Some(0.0)), "0");
        assert_eq!(shown("train/lr", Some(3e-5)), "3.000e-5");
        assert_eq!(shown("train/images_per_sec", Some(1234.567)), "1234.6");
        assert_eq!(shown("val/loss", Some(0.123456)), "0.1235");
        assert_eq!(shown("val/loss", None), "-");
    }
}
