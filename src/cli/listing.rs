//! `vitrun ls`: the store's trials as a table (aligned, statuses coloured on a terminal unless
//! `NO_COLOR` is set) or as JSON, filtered by status, sorted and cut to a count.

use std::collections::HashSet;
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::contract::Status;
use crate::track::timing::{duration, short_duration, short_time};
use crate::track::TrialSummary;

use super::out::{printable, Form};

/// How `vitrun ls` orders its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SortKey {
    /// Newest start first.
    #[default]
    Started,
    /// Best value of the task's main metric first (unmeasured last).
    Best,
    /// Longest first.
    Duration,
    /// By status, then newest first.
    Status,
    /// By trial id.
    Id,
}

/// What `vitrun ls` shows.
#[derive(Debug, Clone, Default)]
pub struct LsOptions {
    pub experiment: Option<String>,
    /// Only trials with one of these statuses (all when empty).
    pub status: Vec<Status>,
    pub sort: SortKey,
    /// At most this many rows (after sorting).
    pub limit: Option<usize>,
    /// A table, a JSON array, or the ids.
    pub form: Form,
    /// Colour the statuses (a terminal without `NO_COLOR`).
    pub color: bool,
}

/// Whether stdout is a terminal that takes colour (`NO_COLOR` set to anything turns it off).
pub fn color_wanted() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The ANSI colour of a status.
fn paint(status: Status, text: &str) -> String {
    let code = match status {
        Status::Finished => "32",
        Status::Running => "36",
        Status::Failed | Status::Crashed | Status::Oom => "31",
        Status::Diverged | Status::Pruned => "33",
        Status::Queued | Status::Interrupted | Status::Stale | Status::Preempted => "2",
    };
    format!("\u{1b}[{code}m{text}\u{1b}[0m")
}

/// The rows `options` selects from `trials` (newest first as the store gives them), in order.
fn select(mut trials: Vec<TrialSummary>, o: &LsOptions, now: DateTime<Utc>) -> Vec<TrialSummary> {
    if !o.status.is_empty() {
        trials.retain(|t| o.status.contains(&t.status));
    }
    match o.sort {
        SortKey::Started => {}
        SortKey::Best => trials.sort_by(|a, b| {
            b.best
                .unwrap_or(f64::MIN)
                .total_cmp(&a.best.unwrap_or(f64::MIN))
        }),
        SortKey::Duration => trials.sort_by_key(|t| std::cmp::Reverse(duration(t, now))),
        SortKey::Status => trials.sort_by_key(|t| t.status.as_str()),
        SortKey::Id => trials.sort_by(|a, b| a.id.cmp(&b.id)),
    }
    trials.truncate(o.limit.unwrap_or(usize::MAX));
    trials
}

/// One trial as a JSON object (times as stored, duration in seconds); `pareto` whether it is on
/// the Pareto front of its multi-objective search.
fn json_row(t: &TrialSummary, now: DateTime<Utc>, pareto: bool) -> serde_json::Value {
    serde_json::json!({
        "id": t.id,
        "experiment": t.experiment,
        "status": t.status.as_str(),
        "attempts": t.attempts,
        "epochs": t.epochs,
        "metric": format!("val/{}", t.best_metric),
        "best": t.best,
        "last_val_loss": t.last_val_loss,
        "device": t.device,
        "started_at": t.started_at,
        "ended_at": t.ended_at,
        "duration_s": duration(t, now).map(|d| d.num_milliseconds() as f64 / 1e3),
        "error": t.error,
        "pareto": pareto,
    })
}

/// The listing of `trials` as `options` asks; those in `pareto` (the Pareto fronts of
/// multi-objective searches) are marked; `footer` (already printable) ends a table.
pub fn render(
    trials: Vec<TrialSummary>,
    options: &LsOptions,
    pareto: &HashSet<String>,
    footer: Option<String>,
) -> String {
    let now = Utc::now();
    let rows = select(trials, options, now);
    if options.form == Form::Quiet {
        return super::out::lines(rows.iter().map(|t| printable(&t.id)));
    }
    if options.form == Form::Json {
        let rows: Vec<_> = rows
            .iter()
            .map(|t| json_row(t, now, pareto.contains(&t.id)))
            .collect();
        return format!("{}\n", serde_json::Value::Array(rows));
    }
    let mut out = format!(
        "{:<12} {:<20} {:<11} {:>6} {:>12} {:>9} {:>8} {:<10} {}\n",
        "trial",
        "experiment",
        "status",
        "epochs",
        "best",
        "val loss",
        "duration",
        "device",
        "started (UTC)"
    );
    for t in &rows {
        let status = format!("{:<11}", t.status.as_str());
        out.push_str(&format!(
            "{:<12} {:<20} {} {:>6} {:>12} {:>9} {:>8} {:<10} {}{}{}\n",
            printable(&t.id),
            printable(&t.experiment),
            if options.color {
                paint(t.status, &status)
            } else {
                status
            },
            t.epochs.map_or("-".into(), |e| e.to_string()),
            t.best.map_or("-".into(), |v| format!(
                "{} {:.1}%",
                t.best_metric,
                v * 100.0
            )),
            t.last_val_loss.map_or("-".into(), |v| format!("{v:.4}")),
            duration(t, now).map_or("-".into(), short_duration),
            printable(t.device.as_deref().unwrap_or_default()),
            t.started_at.as_deref().map(short_time).unwrap_or_default(),
            if pareto.contains(&t.id) {
                "  [pareto front]"
            } else {
                ""
            },
            t.error
                .as_deref()
                .map(|e| format!("  ({})", printable(e)))
                .unwrap_or_default(),
        ));
    }
    let shown = rows.len();
    out.push_str(&format!(
        "# {shown} {}\n",
        if shown == 1 { "trial" } else { "trials" }
    ));
    if rows.iter().any(|t| pareto.contains(&t.id)) {
        out.push_str("# [pareto front]: no other finished trial of its search is as good in every objective and better in one\n");
    }
    if let Some(footer) = footer {
        out.push_str(&footer);
    }
    out
}

/// `vitrun ls` of the store under `runs_dir`.
pub fn ls(runs_dir: &Path, options: &LsOptions) -> anyhow::Result<String> {
    let store = super::commands::open_store(runs_dir)?;
    let trials = store.trials(options.experiment.as_deref())?;
    let pareto = crate::search::fronts::on_front(&crate::search::fronts::fronts(&store, &trials)?);
    let footer = store
        .teacher_work(options.experiment.as_deref())?
        .map(|work| format!("# {}\n", printable(&work.describe())));
    Ok(render(trials, options, &pareto, footer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(id: &str, status: Status, best: Option<f64>, minutes: i64) -> TrialSummary {
        let start = DateTime::parse_from_rfc3339("2026-12-01T10:00:00.000Z").unwrap();
        TrialSummary {
            id: id.into(),
            experiment: "e".into(),
            status,
            attempts: 1,
            device: Some("cpu".into()),
            started_at: Some(start.to_rfc3339()),
            ended_at: Some((start + chrono::Duration::minutes(minutes)).to_rfc3339()),
            best,
            best_metric: "top1".into(),
            last_val_loss: None,
            epochs: Some(1),
            error: None,
            host: None,
            git_commit: None,
        }
    }

    #[test]
    fn rows_are_filtered_sorted_and_cut() {
        let trials = vec![
            trial("a", Status::Finished, Some(0.5), 3),
            trial("b", Status::Failed, None, 1),
            trial("c", Status::Finished, Some(0.9), 62),
            trial("d", Status::Pruned, Some(0.7), 10),
        ];
        let ids = |o: &LsOptions| {
            select(trials.clone(), o, Utc::now())
                .into_iter()
                .map(|t| t.id)
                .collect::<Vec<_>>()
        };
        let mut o = LsOptions::default();
        assert_eq!(ids(&o), ["a", "b", "c", "d"]);
        o.sort = SortKey::Best;
        assert_eq!(ids(&o), ["c", "d", "a", "b"]);
        o.sort = SortKey::Duration;
        o.limit = Some(2);
        assert_eq!(ids(&o), ["c", "d"]);
        o.status = vec![Status::Finished];
        o.limit = None;
        assert_eq!(ids(&o), ["c", "a"]);
        let table = render(trials.clone(), &o, &HashSet::new(), None);
        assert!(
            table.contains(" 1h02m ") && table.contains(" 3m00s "),
            "{table}"
        );
        assert!(
            table.contains("2026-12-01 10:00") && table.ends_with("# 2 trials\n"),
            "{table}"
        );
        o.status = vec![Status::Failed];
        assert!(render(trials, &o, &HashSet::new(), None).ends_with("# 1 trial\n"));
    }

    #[test]
    fn durations_read_at_a_glance() {
        let d = chrono::Duration::seconds;
        assert_eq!(short_duration(d(45)), "45s");
        assert_eq!(short_duration(d(184)), "3m04s");
        assert_eq!(short_duration(d(3720)), "1h02m");
        assert_eq!(short_duration(d(2 * 86400 + 3 * 3600)), "2d03h");
    }
}
