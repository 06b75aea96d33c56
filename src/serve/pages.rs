//! The pages only the server has: the experiment list, and the script that keeps a report
//! page live (it polls `/api/r/<targets>` and redraws the charts with the new points).

use std::collections::BTreeMap;
use std::path::Path;

use crate::contract::Status;
use crate::plot::html::{self, Section, Table};
use crate::plot::interactive::Page;
use crate::track::timing::short_time;

/// `/`: running trials first, then every experiment with its trials by status, each linking
/// to its live report.
pub fn index(runs_dir: &Path) -> anyhow::Result<String> {
    let (store, store_path) = crate::report::open_store(runs_dir)?;
    let trials = store.trials(None)?;
    let mut running = Section::new("running", "Running trials");
    running.tables.push(Table {
        header: ["trial", "experiment", "device", "started (UTC)"]
            .map(String::from)
            .to_vec(),
        rows: trials
            .iter()
            .filter(|t| t.status == Status::Running)
            .map(|t| {
                vec![
                    t.id.clone(),
                    t.experiment.clone(),
                    t.device.clone().unwrap_or_else(|| "-".into()),
                    t.started_at.as_deref().map_or("-".into(), short_time),
                ]
            })
            .collect(),
        interactive: false,
        link: Some((0, "/r/{}/".into())),
    });
    if running.tables[0].rows.is_empty() {
        running.notes.push("No trial is running.".into());
    }
    let mut by_experiment: BTreeMap<&str, Vec<&crate::track::TrialSummary>> = BTreeMap::new();
    for t in &trials {
        by_experiment.entry(&t.experiment).or_default().push(t);
    }
    let mut experiments = Section::new("experiments", "Experiments");
    experiments.tables.push(Table {
        header: ["experiment", "trials", "statuses", "last started (UTC)"]
            .map(String::from)
            .to_vec(),
        rows: by_experiment
            .iter()
            .map(|(name, ts)| {
                let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
                for t in ts {
                    *statuses.entry(t.status.to_string()).or_default() += 1;
                }
                vec![
                    name.to_string(),
                    ts.len().to_string(),
                    statuses
                        .iter()
                        .map(|(s, n)| format!("{n} {s}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    ts.iter()
                        .filter_map(|t| t.started_at.as_deref())
                        .max()
                        .map_or("-".into(), short_time),
                ]
            })
            .collect(),
        interactive: true,
        link: Some((0, "/r/{}/".into())),
    });
    experiments.notes.push(
        "An experiment's page is its report, drawn when opened; it updates while its trials run. Any trial id, experiment or sweep name works as /r/<name>/, and /r/<a>+<b>/ compares them."
            .into(),
    );
    Ok(html::page(
        "vitrun serve",
        &format!(
            "Read-only view of {} ({}).",
            store_path.display(),
            crate::contract::count(trials.len(), "trial")
        ),
        &[running, experiments],
        &Page::default(),
    ))
}

/// The script that keeps a page live: it polls `/api/r/<targets>` every two seconds while a
/// trial runs, hands the new data to the charts, and shows progress and early-stopping
/// decisions in a box under the page's navigation.
const LIVE_JS: &str = include_str!("../../assets/report/live.js");

/// A drawn report page with the live script for `targets` (as in the URL) before `</body>`.
pub fn with_live_script(page: &str, targets: &str) -> String {
    let script = format!(
        "<script>window.vitrunLiveTarget = {};\n{LIVE_JS}</script>\n</body>",
        serde_json::to_string(targets)
            .unwrap_or_default()
            .replace('<', "\\u003c")
    );
    match page.rfind("</body>") {
        Some(at) => format!("{}{}{}", &page[..at], script, &page[at + "</body>".len()..]),
        None => format!("{page}{script}"),
    }
}
