//! Charts drawn in the browser: the data a report page embeds (as JSON) and the vendored uPlot
//! with vitrun's chart script, inlined so the page needs no network and works from `file://`.
//! Hover values, drag-to-zoom, series toggles, log-y, EMA smoothing and the x axis (step,
//! epoch, wall time) are the script's; everything shown is in [`Page`].

use serde::Serialize;

/// uPlot, vendored from its npm package (see `assets/uplot/README.md`).
const UPLOT_JS: &str = include_str!("../../assets/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../assets/uplot/uPlot.min.css");
/// vitrun's chart script: builds the charts and the trial views from [`Page`].
const CHARTS_JS: &str = include_str!("../../assets/report/charts.js");
const CHARTS_CSS: &str = include_str!("../../assets/report/charts.css");

/// One line of a chart: a metric of a trial, each point at its step, epoch and wall time.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Line {
    /// The legend entry: the split and metric for one trial, the swept values in a sweep.
    pub label: String,
    /// The trial it belongs to.
    pub trial: String,
    /// `split/name` of the metric.
    pub key: String,
    /// CSS colour.
    pub colour: String,
    /// Stroke width in CSS pixels.
    pub width: f64,
    /// Dashed (training split beside validation).
    pub dash: bool,
    /// Optimizer step of each point.
    pub step: Vec<f64>,
    /// Epoch of each point: whole at an epoch's end, fractional for per-step points.
    pub epoch: Vec<f64>,
    /// Seconds since the trial started.
    pub wall: Vec<f64>,
    /// Values as shown (percentages already ×100); `null` (NaN) where not finite.
    pub y: Vec<f64>,
}

/// One chart of the page.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Chart {
    /// Unique on the page; the element `data-chart` names it.
    pub id: String,
    pub title: String,
    pub y_label: String,
    /// Values are percentages (a `%` after each shown value).
    pub percent: bool,
    /// Every value is a whole number (counts): whole ticks on y.
    pub integer: bool,
    /// Logged several times per epoch: smoothing applies and step is the natural x.
    pub per_step: bool,
    /// Static renderings for papers (PNG, SVG), relative to the page; empty for trial views.
    pub files: Vec<String>,
    pub lines: Vec<Line>,
}

/// A metric of a trial as the summary shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MetricSummary {
    pub key: String,
    pub best: String,
    pub best_epoch: i64,
    pub last: String,
    pub last_epoch: i64,
}

/// A config key of a trial, marked when it differs from vitrun's default.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConfigEntry {
    pub key: String,
    pub value: String,
    pub changed: bool,
}

/// What a trial's view shows: its facts, metrics, charts (by chart id) and config.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TrialView {
    pub id: String,
    pub label: String,
    pub status: String,
    pub error: Option<String>,
    /// `key: value` facts in order: started, duration, host, device, command, commit, …
    pub facts: Vec<(String, String)>,
    pub metrics: Vec<MetricSummary>,
    /// Its config, or the part of it the page has room for (marked entries).
    pub config: Vec<ConfigEntry>,
}

/// Everything a page's script reads.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Page {
    pub charts: Vec<Chart>,
    /// Views of single trials, shown at `#trial-<id>` (a sweep's table links to them).
    pub trials: Vec<TrialView>,
}

impl Page {
    /// The JSON, safe inside a `<script>` element: `<` is escaped (no `</script>` can end it).
    pub fn json(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|_| "{}".into())
            .replace('<', "\\u003c")
    }
}

/// The `<style>` of the charts (uPlot's and vitrun's).
pub fn style() -> String {
    format!("{UPLOT_CSS}\n{CHARTS_CSS}")
}

/// The data and scripts that draw the page's charts, to end its `<body>`.
pub fn scripts(page: &Page) -> String {
    format!(
        "<script type=\"application/json\" id=\"vitrun-data\">{}</script>\n<script>{UPLOT_JS}</script>\n<script>{CHARTS_JS}</script>\n",
        page.json()
    )
}

/// A colour for the `i`-th of `n` trials: Okabe–Ito's eight first, then hues spaced by the
/// golden angle (distinct for any count).
pub fn colour(i: usize) -> String {
    const OKABE_ITO: [&str; 8] = [
        "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000",
    ];
    match OKABE_ITO.get(i) {
        Some(c) => (*c).to_string(),
        None => format!("hsl({:.0}, 65%, 45%)", (i as f64 * 137.508) % 360.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_json_cannot_close_its_script_element() {
        let page = Page {
            trials: vec![TrialView {
                id: "a".into(),
                label: "</script><script>alert(1)</script>".into(),
                status: "failed".into(),
                error: None,
                facts: Vec::new(),
                metrics: Vec::new(),
                config: Vec::new(),
            }],
            ..Page::default()
        };
        let json = page.json();
        assert!(!json.contains('<'));
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back["trials"][0]["label"],
            "</script><script>alert(1)</script>"
        );
    }

    #[test]
    fn colours_stay_distinct_past_the_palette() {
        let colours: std::collections::BTreeSet<String> = (0..40).map(colour).collect();
        assert_eq!(colours.len(), 40);
    }
}
