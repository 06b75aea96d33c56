//! Reports: charts, images and one `index.html` per trial, experiment or sweep, read from the
//! run store and the trial folders (attention maps, predictions and the confusion matrix load
//! the best checkpoint on the CPU backend). A running trial's report shows what is stored so far.

mod compare;
mod curves;
pub mod diff;
pub mod export;
pub mod groups;
pub mod live;
mod pareto;
mod progress;
mod samples;
mod select;
mod views;

pub use crate::plot::Fusion;
pub use crate::task::{PanelOptions, SampleOrder, Samples};
pub use select::{select, select_many, Ranking, Selection, TrialRecord};

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::backend::Flex;

use crate::data::{self, Targets};
use crate::model::{with_arch, Arch, ArchTask};
use crate::plot::html::{self, Section, Table};
use crate::task::{with_task, PanelInput, Panels, Task, TaskWork};
use crate::track::Store;

/// What `vitrun report` writes.
#[derive(Debug, Clone)]
pub struct Report {
    pub index: PathBuf,
    /// Every image file written.
    pub files: Vec<PathBuf>,
    /// Sections left out, with why (e.g. no checkpoint yet).
    pub skipped: Vec<String>,
}

/// What the selection's distillation teachers did, summed over trials and passes.
fn teacher_work(sel: &Selection) -> Option<crate::track::TeacherWork> {
    let sum = |metric: crate::contract::Metric| -> Option<f64> {
        let values: Vec<f64> = sel
            .trials
            .iter()
            .flat_map(|t| &t.metrics)
            .filter(|m| m.name == metric.name)
            .map(|m| m.value)
            .collect();
        (!values.is_empty()).then(|| values.iter().sum())
    };
    let forwards = sum(crate::contract::Metric::TRAIN_TEACHER_FORWARDS)?;
    let cached = sum(crate::contract::Metric::TRAIN_TEACHER_CACHED).unwrap_or(0.0);
    Some(crate::track::TeacherWork {
        forwards: forwards as u64,
        cached: cached as u64,
    })
}

fn summary_section(sel: &Selection, constants: &[(String, String)]) -> Section {
    let best = sel.best();
    let mut s = Section::new("summary", "Summary");
    let t = &best.summary;
    let failed: Vec<&TrialRecord> = sel
        .trials
        .iter()
        .filter(|t| t.summary.status.is_failure())
        .collect();
    if sel.trials.len() == 1 {
        if let Some(error) = failed.first().and_then(|t| t.summary.error.as_ref()) {
            s.alerts.push(format!("This trial {}: {error}", t.status));
        }
    } else if !failed.is_empty() {
        s.alerts.push(format!(
            "{} of {} ended without finishing: {} (their errors are in the sweep table and each trial's view).",
            failed.len(),
            crate::contract::count(sel.trials.len(), "trial"),
            failed
                .iter()
                .map(|t| format!("{} ({})", t.summary.id, t.summary.status))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let best_value = curves::shown(&sel.ranking.metric, sel.score(best));
    s.notes.push(if sel.trials.len() == 1 {
        format!(
            "trial {} ({}): best {} {best_value}.",
            t.id, t.status, sel.ranking.metric
        )
    } else {
        format!(
            "{} {}: {}; best trial {} ({}), best {} {best_value}. The tables below are the best trial's.",
            sel.kind,
            sel.name,
            views::count(sel.trials.len(), "trial"),
            t.id,
            t.status,
            sel.ranking.metric,
        )
    });
    if let Some(work) = teacher_work(sel) {
        s.notes.push(format!("{}.", work.describe()));
    }
    s.tables.push(Table {
        header: vec!["fact".into(), "value".into()],
        rows: views::facts(best)
            .into_iter()
            .map(|(k, v)| vec![k, v])
            .collect(),
        ..Table::default()
    });
    s.tables.push(Table {
        header: ["metric", "best", "at epoch", "final", "at epoch"]
            .map(String::from)
            .to_vec(),
        rows: views::metric_summaries(best)
            .into_iter()
            .map(|m| {
                vec![
                    m.key,
                    m.best,
                    m.best_epoch.to_string(),
                    m.last,
                    m.last_epoch.to_string(),
                ]
            })
            .collect(),
        ..Table::default()
    });
    if !constants.is_empty() {
        s.notes.push(format!(
            "Constant over every epoch{} (not charted): {}.",
            if sel.trials.len() > 1 {
                " and trial"
            } else {
                ""
            },
            constants
                .iter()
                .map(|(k, v)| format!("{k} = {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    s
}

/// Groups of trials that differ only in seed, ranked by the mean of the ranking metric, with
/// their spread; `None` when no configuration was run with more than one seed.
fn replicates_section(sel: &Selection, out: &Path) -> anyhow::Result<Option<Section>> {
    let configs: Vec<&crate::config::Config> = sel.trials.iter().map(|t| &t.config).collect();
    let members = groups::replicates(&configs);
    if members.iter().all(|g| g.len() < 2) {
        return Ok(None);
    }
    let metric = &sel.ranking.metric;
    let representatives: Vec<&crate::config::Config> =
        members.iter().map(|g| configs[g[0]]).collect();
    let labels = groups::labels(&representatives);
    let mut rows: Vec<(f64, Vec<String>)> = members
        .iter()
        .zip(&labels)
        .map(|(g, label)| {
            let scores: Vec<f64> = g
                .iter()
                .filter_map(|&i| sel.score(&sel.trials[i]))
                .collect();
            let stats = groups::stats(&scores);
            let shown = |v: f64| curves::shown(metric, Some(v));
            let key = stats
                .as_ref()
                .map_or(f64::NEG_INFINITY, |s| sel.ranking.goal.sign() * s.mean);
            let row = vec![
                g.len().to_string(),
                stats.as_ref().map_or("-".into(), |s| shown(s.mean)),
                stats
                    .as_ref()
                    .and_then(|s| s.std)
                    .map_or("-".into(), &shown),
                stats
                    .as_ref()
                    .and_then(|s| s.ci95)
                    .map_or("-".into(), |(lo, hi)| {
                        format!("{} – {}", shown(lo), shown(hi))
                    }),
                label.clone(),
                g.iter()
                    .map(|&i| sel.trials[i].summary.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            ];
            (key, row)
        })
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut section = Section::new("replicates", "Replicates (seeds)");
    section.notes.push(format!(
        "Trials that differ only in seed form a group; groups are ranked by the mean of best {metric}; std is the sample standard deviation; the 95 % interval (Student's t) needs three or more seeds."
    ));
    section.tables.push(Table {
        header: vec![
            "n".into(),
            format!("mean best {metric}"),
            "std".into(),
            "95 % CI".into(),
            "values".into(),
            "trials".into(),
        ],
        rows: rows.into_iter().map(|(_, r)| r).collect(),
        interactive: true,
        link: None,
    });
    section
        .figures
        .extend(curves::replicates(sel, &members, out)?);
    Ok(Some(section))
}

fn config_section(sel: &Selection) -> Section {
    let best = sel.best();
    let t = &best.summary;
    let mut s = Section::new("config", "Resolved config");
    let config = Table {
        header: vec!["config key".into(), "value".into(), "vs default".into()],
        rows: views::config_entries(&best.config)
            .into_iter()
            .map(|c| {
                let mark = if c.changed { "changed" } else { "" };
                vec![c.key, c.value, mark.into()]
            })
            .collect(),
        interactive: true,
        link: None,
    };
    s.notes.push(format!(
        "Resolved config of trial {} (device {}, {}); keys whose value differs from vitrun's default are marked changed.",
        t.id,
        t.device.clone().unwrap_or_else(|| "-".into()),
        views::count(t.attempts.max(0) as usize, "attempt"),
    ));
    s.tables.push(config);
    s
}

/// The store under `runs_dir`, with the shards of cluster trials folded in first.
pub fn open_store(runs_dir: &Path) -> anyhow::Result<(Store, PathBuf)> {
    let store_path = crate::contract::RunsDir::new(runs_dir).store();
    anyhow::ensure!(
        store_path.exists(),
        "no run store at {}; run an experiment first (vitrun run FILE) or pass --runs-dir",
        store_path.display()
    );
    crate::track::sync_before_reading(runs_dir)?;
    Ok((Store::open(&store_path)?, store_path))
}

/// `vitrun export-metrics`: writes the metrics of `target` (as for `build`) to `out`; returns
/// the number of rows written.
pub fn export_metrics(
    runs_dir: &Path,
    target: Option<&str>,
    format: export::Format,
    wide: bool,
    out: &Path,
) -> anyhow::Result<usize> {
    let (store, _) = open_store(runs_dir)?;
    let sel = select(&store, runs_dir, target, None)?;
    // Fronts over every trial of the searches, also those the selection leaves out.
    let pareto: export::Pareto = crate::search::fronts::fronts(&store, &store.trials(None)?)?
        .into_iter()
        .flat_map(|f| f.points)
        .map(|p| (p.trial, p.on_front))
        .collect();
    let frame = if wide {
        export::wide(&sel, &pareto)
    } else {
        export::long(&sel, &pareto)
    };
    export::write(&frame, format, out)?;
    Ok(frame.rows())
}

/// `vitrun diff A B`.
pub fn diff_trials(runs_dir: &Path, a: &str, b: &str) -> anyhow::Result<diff::Diff> {
    let (store, _) = open_store(runs_dir)?;
    diff::diff(&store, a, b)
}

/// Builds the report of `targets` (trial ids or prefixes, experiments or sweeps; several are
/// compared in one report; the latest experiment when empty) from the store under
/// `runs_dir`, into `out` (default: the experiment's or trial's `report/` folder).
pub fn build(
    runs_dir: &Path,
    targets: &[String],
    out: Option<&Path>,
    ranking: Option<Ranking>,
    options: &PanelOptions,
) -> anyhow::Result<Report> {
    let (store, store_path) = open_store(runs_dir)?;
    let sel = if targets.is_empty() {
        select(&store, runs_dir, None, ranking)?
    } else {
        select_many(&store, runs_dir, targets, ranking)?
    };
    let logged: std::collections::BTreeSet<String> = sel
        .trials
        .iter()
        .flat_map(|t| t.metrics.iter().map(|m| format!("{}/{}", m.split, m.name)))
        .collect();
    anyhow::ensure!(
        logged.is_empty() || logged.contains(&sel.ranking.metric),
        "--metric {}: no trial of {} {} logged it; use one of {}",
        sel.ranking.metric,
        sel.kind,
        sel.name,
        logged.into_iter().collect::<Vec<_>>().join(", ")
    );
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or(sel.default_out.clone());
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let labels = views::labels(&sel);
    let drawn = curves::draw(&sel, &labels, Some(&out))?;
    let mut sections = vec![summary_section(&sel, &drawn.constants)];
    let mut skipped = Vec::new();

    let mut curves = Section::new("curves", "Curves");
    curves.charts = drawn.cards;
    curves.figures = drawn.figures;
    if curves.charts.is_empty() && curves.figures.is_empty() {
        curves
            .notes
            .push("No metrics are stored yet for these trials.".into());
    } else if sel.trials.len() > curves::MAX_LINES {
        curves.notes.push(format!(
            "The charts draw the best {} of {} trials by {}; the static PNG/SVG show the rest as bands.",
            curves::MAX_LINES,
            sel.trials.len(),
            sel.ranking.metric
        ));
    }
    sections.push(curves);
    let mut page = crate::plot::interactive::Page {
        charts: drawn.charts,
        trials: Vec::new(),
    };

    if sel.trials.len() > 1 {
        let swept = compare::swept(&sel);
        let mut sweep = Section::new("sweep", "Sweep comparison");
        sweep.notes.push(format!(
            "{} trials sorted by best {}; swept parameters: {}.",
            sel.trials.len(),
            sel.ranking.metric,
            if swept.is_empty() {
                "none".to_string()
            } else {
                swept.keys().cloned().collect::<Vec<_>>().join(", ")
            }
        ));
        let mut table = compare::table(&sel, &swept);
        table.link = Some((1, "#trial-{}".into()));
        sweep.tables.push(table);
        sweep.notes.push(
            "A trial's id opens its view: facts, best and final metrics, its curves and its config."
                .into(),
        );
        page.trials = sel
            .trials
            .iter()
            .zip(&labels)
            .map(|(t, label)| views::view(t, label))
            .collect();
        // Seed is the replicate axis where some configuration ran with several seeds: its
        // spread is the noise the other parameters are judged against, not a factor.
        let configs: Vec<&crate::config::Config> = sel.trials.iter().map(|t| &t.config).collect();
        let mut factors = swept.clone();
        if groups::replicates(&configs).iter().any(|g| g.len() > 1)
            && factors.remove("seed").is_some()
        {
            sweep.notes.push(
                "seed is the replicate axis: it is left out of the parameter charts and the importance (the Replicates section groups the seeds).".into(),
            );
        }
        sweep.figures = compare::draw(&sel, &factors, &out)?;
        let ranked = compare::importance(&sel, &factors);
        let (importance, chart) = compare::draw_importance(&sel, &ranked, &out)?;
        if !importance.rows.is_empty() {
            sweep.notes.push(format!(
                "Parameter importance: the share of the variance of best {} each swept parameter explains on its own (η²).",
                sel.ranking.metric
            ));
            sweep.tables.push(importance);
        }
        sweep.figures.extend(chart);
        sections.push(sweep);
        if let Some(section) = progress::section(&store, &sel, &out)? {
            sections.push(section);
        }
        if let Some(section) = pareto::section(&store, &sel, &out)? {
            sections.push(section);
        }
        if let Some(section) = replicates_section(&sel, &out)? {
            sections.push(section);
        }
    }

    let best = sel.best();
    let (data, model) = task_sections(best, options, &out, &mut skipped)?;
    sections.push(data);
    sections.push(model);
    sections.push(config_section(&sel));

    let files = sections
        .iter()
        .flat_map(|s| {
            let charts = s.charts.iter().flat_map(|c| c.files.iter());
            s.figures.iter().map(|f| &f.file).chain(charts)
        })
        .map(|f| out.join(f))
        .collect();
    let title = format!("vitrun report: {} {}", sel.kind, sel.name);
    let subtitle = format!(
        "Generated {} from {}. Synthetic datasets are generated, not real photographs.",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        store_path.display()
    );
    let index = out.join("index.html");
    std::fs::write(&index, html::page(&title, &subtitle, &sections, &page))
        .with_context(|| format!("cannot write {}", index.display()))?;
    Ok(Report {
        index,
        files,
        skipped,
    })
}

/// A section of a task's panels.
fn section(id: &str, panels: Panels) -> Section {
    let mut s = Section::new(id, &panels.title);
    s.figures = panels.figures;
    s.notes = panels.notes;
    s
}

/// The best trial's data and model sections, each drawn by its task: the data panels from
/// its dataset, the model panels from its weights (`best/`, else `last/`) on the CPU. What
/// cannot be drawn here (no dataset, no checkpoint yet) is a note, also listed in `skipped`.
fn task_sections(
    best: &TrialRecord,
    options: &PanelOptions,
    out: &Path,
    skipped: &mut Vec<String>,
) -> anyhow::Result<(Section, Section)> {
    struct ForArch<'a> {
        best: &'a TrialRecord,
        options: &'a PanelOptions,
        out: &'a Path,
        skipped: &'a mut Vec<String>,
    }
    struct ForTask<'a, A: Arch> {
        at: ForArch<'a>,
        arch: A,
    }
    impl ArchTask for ForArch<'_> {
        type Output = anyhow::Result<(Section, Section)>;
        fn run<A: Arch>(self, arch: A) -> Self::Output {
            let kind = self.best.config.head.task;
            with_task(kind, ForTask { at: self, arch })
        }
    }
    impl<A: Arch> TaskWork for ForTask<'_, A> {
        type Output = anyhow::Result<(Section, Section)>;
        fn run<T: Task>(self) -> Self::Output {
            let ForArch {
                best,
                options,
                out,
                skipped,
            } = self.at;
            let config = &best.config;
            let id = &best.summary.id;
            let splits = match data::open(config, T::Targets::KIND) {
                Ok(splits) => splits,
                Err(e) => {
                    let why = format!("the trial's dataset cannot be opened here: {e}");
                    skipped.push(why.clone());
                    let mut data = Section::new("data", "Augmentations");
                    data.notes.push(why);
                    return Ok((data, Section::new("model", "Predictions")));
                }
            };
            let task = T::new(config, &splits.classes)?;
            let mut input = PanelInput {
                config,
                trial: id,
                splits: &splits,
                metrics: &best.metrics,
                options,
                chosen: None,
                out,
            };
            let data = section("data", task.data_panels(&input)?);
            let Some(path) = config.trial_dir(id).weights() else {
                let why = format!(
                    "trial {id} has no checkpoint yet (runs/…/best/ or last/); its {} panels need one",
                    T::METRICS.task
                );
                skipped.push(why.clone());
                let mut model = Section::new("model", "Predictions");
                model.notes.push(why);
                return Ok((data, model));
            };
            let device = Default::default();
            let model = crate::model::load(
                self.arch.init::<Flex>(&device),
                task.head::<Flex>(self.arch.shape(), &device),
                &path,
                &device,
            )?;
            let chosen = samples::choose(&task, &model, config, &splits, options.samples)?;
            input.chosen = chosen.as_ref();
            let mut panels = task.model_panels(&model, &input)?;
            if let Some(c) = &chosen {
                panels.notes.insert(0, c.what.clone());
            }
            panels.notes.insert(
                0,
                format!("Weights: {} (trial {id}), on the CPU.", path.display()),
            );
            Ok((data, section("model", panels)))
        }
    }
    with_arch(
        &best.config,
        ForArch {
            best,
            options,
            out,
            skipped,
        },
    )
}
