//! The sweep report's Pareto section for a multi-objective search: the front of its finished
//! trials (two objectives: one scatter with the front joined; more: a panel per pair) and a
//! table of the trials on it.

use std::path::Path;

use super::select::Selection;
use crate::plot::charts::{self, FrontDot};
use crate::plot::html::{Figure, Section, Table};
use crate::search::fronts::Front;
use crate::track::Store;

/// The section for the selection's experiment when its search has several objectives.
pub fn section(store: &Store, sel: &Selection, out: &Path) -> anyhow::Result<Option<Section>> {
    let summaries: Vec<_> = sel.trials.iter().map(|t| t.summary.clone()).collect();
    let Some(front) = crate::search::fronts::fronts(store, &summaries)?
        .into_iter()
        .find(|f| !f.points.is_empty())
    else {
        return Ok(None);
    };
    let mut section = Section::new("pareto", "Pareto front");
    let names: Vec<String> = front.objectives.iter().map(|o| o.describe()).collect();
    let on: Vec<_> = front.points.iter().filter(|p| p.on_front).collect();
    section.notes.push(format!(
        "{} of {} finished trials are on the front of {}: no other finished trial is as good in every objective and better in one.",
        on.len(),
        front.points.len(),
        names.join(", ")
    ));
    let mut rows: Vec<Vec<String>> = on
        .iter()
        .map(|p| {
            std::iter::once(p.trial.clone())
                .chain(p.values.iter().map(|v| format!("{v:.4}")))
                .collect()
        })
        .collect();
    rows.sort();
    section.tables.push(Table {
        header: std::iter::once("trial".to_string())
            .chain(front.objectives.iter().map(|o| o.metric.clone()))
            .collect(),
        rows,
        interactive: true,
        link: None,
    });
    section.figures.push(draw(&front, out)?);
    Ok(Some(section))
}

/// `pareto.png`: one panel per pair of objectives.
fn draw(front: &Front, out: &Path) -> anyhow::Result<Figure> {
    let k = front.objectives.len();
    let pairs: Vec<(usize, usize)> = (0..k)
        .flat_map(|a| (a + 1..k).map(move |b| (a, b)))
        .collect();
    let columns = pairs.len().min(3);
    let rows = pairs.len().div_ceil(columns);
    let size = (560 * columns as u32, 420 * rows as u32);
    charts::png(&out.join("pareto.png"), size, |root| {
        let panels = root.split_evenly((rows, columns));
        for ((a, b), panel) in pairs.iter().zip(panels.iter()) {
            let dots: Vec<FrontDot> = front
                .points
                .iter()
                .map(|p| FrontDot {
                    x: p.values[*a],
                    y: p.values[*b],
                    on_front: p.on_front,
                })
                .collect();
            let (x, y) = (&front.objectives[*a], &front.objectives[*b]);
            charts::front(
                panel,
                &format!("{} vs {}", y.metric, x.metric),
                (&x.describe(), &y.describe()),
                &dots,
            )?;
        }
        Ok(())
    })?;
    Ok(Figure {
        file: "pareto.png".into(),
        title: "Pareto front".into(),
        caption: if k == 2 {
            "each point is a finished trial; the front is joined".into()
        } else {
            "each pair of objectives; coloured trials are on the front of all of them".into()
        },
    })
}
