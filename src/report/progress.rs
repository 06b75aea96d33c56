//! The sweep report's search section: for a sweep whose trials a search proposed (`tpe`,
//! `random`), each proposal's value of the ranking metric and the best so far, by proposal.

use std::collections::HashMap;
use std::path::Path;

use super::select::Selection;
use crate::contract::Goal;
use crate::plot::charts::{self, LineChart, Series};
use crate::plot::html::{Figure, Section};
use crate::track::Store;

/// The section, when the selection's experiment has two or more proposals.
pub fn section(store: &Store, sel: &Selection, out: &Path) -> anyhow::Result<Option<Section>> {
    let Some(first) = sel.trials.first() else {
        return Ok(None);
    };
    let proposals = store.proposed_trials(&first.summary.experiment)?;
    let scores: HashMap<&str, f64> = sel
        .trials
        .iter()
        .filter_map(|t| Some((t.summary.id.as_str(), sel.score(t)?)))
        .collect();
    let metric = &sel.ranking.metric;
    let (label, scale) = super::curves::unit(metric.rsplit('/').next().unwrap_or(metric));
    let values: Vec<(f64, f64)> = proposals
        .iter()
        .filter_map(|(n, id)| Some((*n as f64, scores.get(id.as_str())? * scale)))
        .collect();
    if values.len() < 2 {
        return Ok(None);
    }
    let mut best_so_far = Vec::with_capacity(values.len());
    let mut best: Option<(f64, f64)> = None;
    for &(n, v) in &values {
        let better = best.is_none_or(|(_, b)| match sel.ranking.goal {
            Goal::Maximize => v > b,
            Goal::Minimize => v < b,
        });
        if better {
            best = Some((n, v));
        }
        best_so_far.push((n, best.map_or(v, |(_, b)| b)));
    }
    let chart = LineChart {
        title: format!("best {metric} so far, by proposal"),
        x_label: "proposal".into(),
        y_label: format!("best {metric}: {label}"),
        series: vec![
            Series {
                label: "each trial".into(),
                points: values.clone(),
                emphasis: false,
            },
            Series {
                label: "best so far".into(),
                points: best_so_far,
                emphasis: true,
            },
        ],
        bands: Vec::new(),
    };
    charts::png(&out.join("search_progress.png"), (800, 480), |root| {
        charts::lines(root, &chart)
    })?;
    let mut section = Section::new("search", "Search progress");
    if let Some((n, v)) = best {
        section.notes.push(format!(
            "{} proposals with a value; the best {metric}, {v:.2} {label}, came at proposal {n}.",
            values.len()
        ));
    }
    section.figures.push(Figure {
        file: "search_progress.png".into(),
        title: chart.title.clone(),
        caption: "each proposal's trial in grey, the best so far in colour".into(),
    });
    Ok(Some(section))
}
