//! Charts drawn with plotters (PNG through a pixel buffer, SVG where vectors help): line charts
//! of metrics, sweep parameter charts, top-5 bars, confusion matrices, captioned image grids and
//! a colour bar. Text uses the DejaVu Sans font shipped in `assets/fonts/`.

use std::error::Error;
use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

use crate::contract::Status;
use crate::plot::raster::{heat, Rgb};

type Drawn = Result<(), Box<dyn Error>>;

/// A chart that could not be drawn or written.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw {file}: {reason}")]
pub struct ChartError {
    file: String,
    reason: String,
}

const FONT: &str = "sans-serif";
/// Distinct colours for highlighted series (colour-blind-safe Okabe–Ito).
pub const PALETTE: [RGBColor; 6] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
];

fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        assert!(
            register_font(FONT, FontStyle::Normal, super::font::DEJAVU_SANS).is_ok(),
            "the bundled font parses"
        );
    });
}

fn failed(path: &Path, e: impl std::fmt::Display) -> ChartError {
    ChartError {
        file: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Draws into a `w × h` bitmap and writes it as PNG.
pub fn png(
    path: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Drawn,
) -> Result<(), ChartError> {
    fonts();
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| failed(path, e))?;
        draw(&root).map_err(|e| failed(path, e))?;
        root.present().map_err(|e| failed(path, e))?;
    }
    image::save_buffer(path, &buf, w, h, image::ColorType::Rgb8).map_err(|e| failed(path, e))
}

/// Draws into an SVG file.
pub fn svg(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Drawn,
) -> Result<(), ChartError> {
    fonts();
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(path, e))?;
    draw(&root).map_err(|e| failed(path, e))?;
    root.present().map_err(|e| failed(path, e))
}

/// One line of a line chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text; empty for no legend entry.
    pub label: String,
    pub points: Vec<(f64, f64)>,
    /// Drawn bold and in colour (the best trial, or each split of a single trial).
    pub emphasis: bool,
}

/// A shaded area between two lines (a spread or a density), drawn under the series.
#[derive(Debug, Clone)]
pub struct Band {
    /// Legend text; empty for no legend entry.
    pub label: String,
    /// `(x, low, high)`.
    pub points: Vec<(f64, f64, f64)>,
    /// A palette index, or `None` for grey.
    pub colour: Option<usize>,
    /// Opacity of the fill.
    pub alpha: f64,
}

/// A line chart of one metric.
#[derive(Debug, Clone)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub bands: Vec<Band>,
}

/// The largest magnitude an axis reaches: a range wider than this (values near ±1e308)
/// overflows to infinity, and its ticks never end.
const AXIS_LIMIT: f64 = 1e300;

/// The axis range of values from `lo` to `hi`, padded by 5 %, within ±[`AXIS_LIMIT`]
/// (values beyond it are drawn at the edge).
fn padded(lo: f64, hi: f64) -> (f64, f64) {
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    let (lo, hi) = (
        lo.clamp(-AXIS_LIMIT, AXIS_LIMIT),
        hi.clamp(-AXIS_LIMIT, AXIS_LIMIT),
    );
    let pad = ((hi - lo) * 0.05).max(1e-9 + lo.abs() * 1e-3);
    (lo - pad, hi + pad)
}

/// A tick of an axis that counts (epochs, steps): whole numbers only, others unlabelled.
fn whole_tick(x: &f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{}", x.round() as i64)
    } else {
        String::new()
    }
}

/// A value tick: at most six significant digits, without a sign on zero (`-0.0`).
fn tick(y: f64) -> String {
    let y = if y == 0.0 { 0.0 } else { y };
    let text = format!("{:.6}", y);
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    if y.abs() >= 1e6 || (y != 0.0 && y.abs() < 1e-4) {
        format!("{y:.2e}")
    } else {
        text
    }
}

/// Draws a [`LineChart`]: faint grey lines for the rest, bold colours for emphasised series.
pub fn lines<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, c: &LineChart) -> Drawn
where
    DB::ErrorType: 'static,
{
    let banded = c
        .bands
        .iter()
        .flat_map(|b| b.points.iter().flat_map(|&(x, lo, hi)| [(x, lo), (x, hi)]));
    let all = c
        .series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .chain(banded);
    let (xs, ys): (Vec<f64>, Vec<f64>) = all.filter(|(_, y)| y.is_finite()).unzip();
    let fold = |v: &[f64]| {
        v.iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                (a.min(*x), b.max(*x))
            })
    };
    let (x0, x1) = padded(fold(&xs).0, fold(&xs).1);
    let (y0, y1) = padded(fold(&ys).0, fold(&ys).1);
    let grey = RGBColor(185, 185, 185);
    let band_colour = |b: &Band| {
        b.colour
            .map_or(RGBColor(120, 120, 120), |i| PALETTE[i % PALETTE.len()])
    };
    let styles: Vec<ShapeStyle> = c
        .series
        .iter()
        .scan(0, |colour, s| {
            Some(if s.emphasis {
                *colour += 1;
                PALETTE[(*colour - 1) % PALETTE.len()].stroke_width(3)
            } else {
                grey.stroke_width(1)
            })
        })
        .collect();
    let entries: Vec<(String, Mark)> = c
        .bands
        .iter()
        .filter(|b| !b.label.is_empty())
        .map(|b| {
            (
                b.label.clone(),
                Mark::Fill(band_colour(b).mix(b.alpha).filled()),
            )
        })
        .chain(
            c.series
                .iter()
                .zip(&styles)
                .filter(|(s, _)| !s.label.is_empty())
                .map(|(s, style)| (s.label.clone(), Mark::Line(*style))),
        )
        .collect();
    let (plot, key) = legend_column(root, &entries);
    let mut chart = ChartBuilder::on(&plot)
        .caption(&c.title, (FONT, 22))
        .margin(14)
        .x_label_area_size(42)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart
        .configure_mesh()
        .x_desc(&c.x_label)
        .y_desc(&c.y_label)
        .x_label_formatter(&whole_tick)
        .y_label_formatter(&|y| tick(*y))
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .draw()?;
    for b in &c.bands {
        let fill = band_colour(b).mix(b.alpha).filled();
        let outline: Vec<(f64, f64)> = b
            .points
            .iter()
            .map(|&(x, _, hi)| (x, hi))
            .chain(b.points.iter().rev().map(|&(x, lo, _)| (x, lo)))
            .collect();
        chart.draw_series([Polygon::new(outline, fill)])?;
    }
    for (s, style) in c.series.iter().zip(&styles) {
        chart.draw_series(LineSeries::new(s.points.iter().copied(), *style))?;
        if s.emphasis {
            chart.draw_series(
                s.points
                    .iter()
                    .map(|&p| Circle::new(p, 3, style.color.filled())),
            )?;
        }
    }
    draw_legend(key, &entries)
}

/// One trial in a sweep parameter chart.
#[derive(Debug, Clone)]
pub struct ParamPoint {
    /// Position on the x axis (already log10 for log axes, an index for categories).
    pub x: f64,
    /// The final metric; `None` for trials without one (failed).
    pub y: Option<f64>,
    pub status: Status,
    pub best: bool,
}

/// Final metric against one swept parameter.
#[derive(Debug, Clone)]
pub struct ParamChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub points: Vec<ParamPoint>,
    /// Labels the x axis 10^x.
    pub log_x: bool,
    /// Category names when the parameter is not numeric (x is the index).
    pub categories: Vec<String>,
    /// Per distinct x with more than one trial: `(x, mean, standard deviation)`.
    pub spreads: Vec<(f64, f64, f64)>,
}

/// Draws a [`ParamChart`]: finished ●, pruned ▲, failed ✕ (on the floor), best circled.
pub fn params<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, c: &ParamChart) -> Drawn
where
    DB::ErrorType: 'static,
{
    let xs: Vec<f64> = c.points.iter().map(|p| p.x).collect();
    let ys: Vec<f64> = c.points.iter().filter_map(|p| p.y).collect();
    let lo = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (x0, x1) = if c.categories.is_empty() {
        padded(lo(&xs), hi(&xs))
    } else {
        (-0.5, c.categories.len() as f64 - 0.5)
    };
    let (y0, y1) = if ys.is_empty() {
        (0.0, 1.0)
    } else {
        padded(lo(&ys), hi(&ys))
    };
    let others: Vec<&ParamPoint> = c
        .points
        .iter()
        .filter(|p| p.status != Status::Finished && p.status != Status::Pruned)
        .collect();
    let red = RGBColor(200, 30, 30);
    let best = c
        .points
        .iter()
        .find(|p| p.best)
        .and_then(|p| Some((p.x, p.y?)));
    let has = |status: Status| c.points.iter().any(|p| p.status == status);
    let entries: Vec<(String, Mark)> = [
        has(Status::Finished).then(|| ("finished", Mark::Dot(PALETTE[0].filled()))),
        has(Status::Pruned).then(|| {
            (
                "pruned (early-stopped)",
                Mark::Triangle(PALETTE[1].filled()),
            )
        }),
        (!others.is_empty()).then(|| {
            (
                "failed / diverged / running",
                Mark::Cross(red.stroke_width(2)),
            )
        }),
        (!c.spreads.is_empty()).then(|| {
            (
                "mean ± std at this value",
                Mark::Whisker(BLACK.stroke_width(2)),
            )
        }),
        best.map(|_| ("best trial", Mark::Ring(PALETTE[2].stroke_width(3)))),
    ]
    .into_iter()
    .flatten()
    .map(|(label, mark)| (label.to_string(), mark))
    .collect();
    let (plot, key) = legend_column(root, &entries);
    let mut chart = ChartBuilder::on(&plot)
        .caption(&c.title, (FONT, 20))
        .margin(14)
        .x_label_area_size(42)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    let categories = c.categories.clone();
    let log_x = c.log_x;
    let format_x = move |v: &f64| {
        if !categories.is_empty() {
            let i = v.round();
            if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < categories.len() {
                return categories[i as usize].clone();
            }
            return String::new();
        }
        if log_x {
            format!("{:.1e}", 10f64.powf(*v))
        } else {
            format!("{v:.3}")
        }
    };
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(&c.x_label)
        .y_desc(&c.y_label)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .x_label_formatter(&format_x);
    if !c.categories.is_empty() {
        mesh.x_labels(c.categories.len() * 4 + 1);
    }
    mesh.draw()?;
    let floor = y0 + (y1 - y0) * 0.03;
    let of = |status: Status| c.points.iter().filter(move |p| p.status == status);
    chart.draw_series(
        of(Status::Finished).filter_map(|p| Some(Circle::new((p.x, p.y?), 5, PALETTE[0].filled()))),
    )?;
    chart.draw_series(
        of(Status::Pruned)
            .filter_map(|p| Some(TriangleMarker::new((p.x, p.y?), 6, PALETTE[1].filled()))),
    )?;
    chart.draw_series(
        others
            .iter()
            .map(|p| Cross::new((p.x, p.y.unwrap_or(floor)), 6, red.stroke_width(2))),
    )?;
    chart.draw_series(c.spreads.iter().map(|&(x, m, sd)| {
        ErrorBar::new_vertical(x, m - sd, m, m + sd, BLACK.stroke_width(2), 10)
    }))?;
    if let Some(at) = best {
        chart.draw_series([Circle::new(at, 10, PALETTE[2].stroke_width(3))])?;
    }
    draw_legend(key, &entries)
}

/// How a legend entry shows its series.
#[derive(Debug, Clone, Copy)]
enum Mark {
    Line(ShapeStyle),
    Fill(ShapeStyle),
    Dot(ShapeStyle),
    Triangle(ShapeStyle),
    Cross(ShapeStyle),
    Whisker(ShapeStyle),
    Ring(ShapeStyle),
}

/// Pixels of a legend line.
const LEGEND_LINE: i32 = 20;
/// About the width of a character of the legend's 13-pixel font.
const LEGEND_CHAR: i32 = 7;

/// `root` split into the plot and, when there are legend entries, a column right of it (sized
/// to the longest label, at most a third of the width): legends sit outside the data.
fn legend_column<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    entries: &[(String, Mark)],
) -> (DrawingArea<DB, Shift>, Option<DrawingArea<DB, Shift>>) {
    if entries.is_empty() {
        return (root.clone(), None);
    }
    let (w, _) = root.dim_in_pixel();
    let longest = entries
        .iter()
        .map(|(label, _)| label.chars().count() as i32)
        .max()
        .unwrap_or(0);
    let wanted = 40 + longest * LEGEND_CHAR;
    let column = wanted.min(w as i32 / 3).max(60);
    let (plot, key) = root.split_horizontally(w as i32 - column);
    (plot, Some(key))
}

/// The entries in `area`, one per line from the top of the plot: a mark, then the label (cut
/// with `…` to the column; entries past its height counted in a last line).
fn draw_legend<DB: DrawingBackend>(
    area: Option<DrawingArea<DB, Shift>>,
    entries: &[(String, Mark)],
) -> Drawn
where
    DB::ErrorType: 'static,
{
    let Some(area) = area else {
        return Ok(());
    };
    let (w, h) = area.dim_in_pixel();
    let top = 50;
    let room = ((h as i32 - top - 50) / LEGEND_LINE).max(1) as usize;
    let shown = if entries.len() > room {
        room - 1
    } else {
        entries.len()
    };
    let fits = ((w as i32 - 34) / LEGEND_CHAR).max(4) as usize;
    let style = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, (label, mark)) in entries.iter().take(shown).enumerate() {
        let y = top + i as i32 * LEGEND_LINE;
        match *mark {
            Mark::Line(s) => area.draw(&PathElement::new(vec![(4, y), (24, y)], s))?,
            Mark::Fill(s) => area.draw(&Rectangle::new([(4, y - 5), (24, y + 5)], s))?,
            Mark::Dot(s) => area.draw(&Circle::new((14, y), 5, s))?,
            Mark::Triangle(s) => area.draw(&TriangleMarker::new((14, y), 6, s))?,
            Mark::Cross(s) => area.draw(&Cross::new((14, y), 6, s))?,
            Mark::Whisker(s) => area.draw(&PathElement::new(vec![(14, y - 6), (14, y + 6)], s))?,
            Mark::Ring(s) => area.draw(&Circle::new((14, y), 7, s))?,
        }
        let text = if label.chars().count() > fits {
            format!("{}…", label.chars().take(fits - 1).collect::<String>())
        } else {
            label.clone()
        };
        area.draw(&Text::new(text, (30, y), style.clone()))?;
    }
    if shown < entries.len() {
        let y = top + shown as i32 * LEGEND_LINE;
        let more = format!("… {} more", entries.len() - shown);
        area.draw(&Text::new(more, (30, y), style))?;
    }
    Ok(())
}

/// The name at axis position `v` when names sit at the centres of unit slots (0.5, 1.5, …),
/// counted from the top of the axis when `from_top`; empty elsewhere.
fn slot_name(names: &[String], v: f64, from_top: bool) -> String {
    let slot = v - 0.5;
    let i = slot.round();
    if (slot - i).abs() > 1e-6 || i < 0.0 || i as usize >= names.len() {
        return String::new();
    }
    let i = i as usize;
    names[if from_top { names.len() - 1 - i } else { i }].clone()
}

/// Horizontal bars with their values, the first on top (e.g. parameter importance).
pub fn hbars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    x_label: &str,
    bars: &[(String, f64)],
) -> Drawn
where
    DB::ErrorType: 'static,
{
    let n = bars.len().max(1);
    let top = (bars
        .iter()
        .map(|(_, v)| *v)
        .filter(|v| v.is_finite())
        .fold(0f64, f64::max)
        .max(1e-9)
        * 1.15)
        .min(AXIS_LIMIT);
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 18))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(190)
        .build_cartesian_2d(0f64..top, 0f64..n as f64)?;
    let names: Vec<String> = bars.iter().map(|(name, _)| name.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc(x_label)
        .y_labels(n * 2 + 1)
        .y_label_formatter(&|v: &f64| slot_name(&names, *v, true))
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 14))
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(rank, (_, v))| {
        let y = (n - 1 - rank) as f64;
        Rectangle::new([(0.0, y + 0.15), (*v, y + 0.85)], PALETTE[0].filled())
    }))?;
    chart.draw_series(bars.iter().enumerate().map(|(rank, (_, v))| {
        let y = (n - 1 - rank) as f64 + 0.5;
        Text::new(format!("{v:.3}"), (v + top * 0.01, y + 0.2), (FONT, 12))
    }))?;
    Ok(())
}

/// Horizontal bars of the top-5 class probabilities, the most likely on top.
pub fn top5<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    bars: &[(String, f64)],
) -> Drawn
where
    DB::ErrorType: 'static,
{
    let n = bars.len();
    let entries: Vec<(String, Mark)> = [
        ("prediction (top-1)", PALETTE[0]),
        ("other classes", PALETTE[4]),
    ]
    .into_iter()
    .take(n)
    .map(|(label, colour)| (label.to_string(), Mark::Fill(colour.filled())))
    .collect();
    let (plot, key) = legend_column(root, &entries);
    let mut chart = ChartBuilder::on(&plot)
        .caption(title, (FONT, 15))
        .margin(8)
        .x_label_area_size(34)
        .y_label_area_size(110)
        .build_cartesian_2d(0f64..1f64, 0f64..n as f64)?;
    let names: Vec<String> = bars.iter().map(|(name, _)| name.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("probability")
        .y_labels(n * 2 + 1)
        .y_label_formatter(&|v: &f64| slot_name(&names, *v, true))
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .draw()?;
    for (rank, (_, p)) in bars.iter().enumerate() {
        let y = (n - 1 - rank) as f64;
        let colour = if rank == 0 { PALETTE[0] } else { PALETTE[4] };
        chart.draw_series([Rectangle::new(
            [(0.0, y + 0.15), (*p, y + 0.85)],
            colour.filled(),
        )])?;
    }
    chart.draw_series(bars.iter().enumerate().map(|(rank, (_, p))| {
        let y = (n - 1 - rank) as f64 + 0.5;
        Text::new(
            format!("{:.1}%", p * 100.0),
            ((p + 0.02).min(0.85), y + 0.2),
            (FONT, 12),
        )
    }))?;
    draw_legend(key, &entries)
}

/// A confusion matrix: rows are true classes, columns predictions; cells coloured by the
/// row-normalised rate and labelled with `counts` or the rate.
pub fn confusion<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    classes: &[String],
    counts: &[Vec<u64>],
    normalised: bool,
) -> Drawn
where
    DB::ErrorType: 'static,
{
    let c = classes.len();
    let (width, _) = root.dim_in_pixel();
    let (root, legend) = root.split_horizontally(width.saturating_sub(90));
    colour_bar(&legend, "share of the true class")?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 20))
        .margin(14)
        .x_label_area_size(48)
        .y_label_area_size(110)
        .build_cartesian_2d(0f64..c as f64, 0f64..c as f64)?;
    let fx = |v: &f64| slot_name(classes, *v, false);
    let fy = |v: &f64| slot_name(classes, *v, true);
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("predicted class")
        .y_desc("true class")
        .x_labels(c * 2 + 1)
        .y_labels(c * 2 + 1)
        .x_label_formatter(&fx)
        .y_label_formatter(&fy)
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 14))
        .draw()?;
    let rate = |r: usize, k: usize| {
        let total: u64 = counts[r].iter().sum();
        counts[r][k] as f64 / total.max(1) as f64
    };
    let cells = (0..c).flat_map(|r| (0..c).map(move |k| (r, k)));
    chart.draw_series(cells.clone().map(|(r, k)| {
        let y = (c - 1 - r) as f64;
        let [red, green, blue] = heat(rate(r, k) as f32);
        Rectangle::new(
            [(k as f64, y), (k as f64 + 1.0, y + 1.0)],
            RGBColor(red, green, blue).filled(),
        )
    }))?;
    chart.draw_series(cells.map(|(r, k)| {
        let text = if normalised {
            format!("{:.0}%", rate(r, k) * 100.0)
        } else {
            counts[r][k].to_string()
        };
        let colour = if rate(r, k) > 0.2 && rate(r, k) < 0.8 {
            BLACK
        } else {
            WHITE
        };
        Text::new(
            text,
            (k as f64 + 0.38, (c - 1 - r) as f64 + 0.58),
            (FONT, 13).into_font().color(&colour),
        )
    }))?;
    Ok(())
}

/// A vertical colour bar from 0 (bottom) to 1 (top) with its label.
pub fn colour_bar<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, label: &str) -> Drawn
where
    DB::ErrorType: 'static,
{
    let mut chart = ChartBuilder::on(root)
        .margin(20)
        .y_label_area_size(44)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_desc(label)
        .y_labels(6)
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .draw()?;
    chart.draw_series((0..100).map(|i| {
        let v = i as f64 / 100.0;
        let [r, g, b] = heat(v as f32 + 0.005);
        Rectangle::new([(0.0, v), (1.0, v + 0.01)], RGBColor(r, g, b).filled())
    }))?;
    Ok(())
}

/// Blits `image` with its top-left corner at `(x, y)` of `area`.
pub fn blit<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    image: &Rgb,
    (x, y): (i32, i32),
) -> Drawn
where
    DB::ErrorType: 'static,
{
    let element = BitMapElement::<(i32, i32)>::with_owned_buffer(
        (x, y),
        (image.width as u32, image.height as u32),
        image.pixels.clone(),
    )
    .ok_or("an image buffer does not match its size")?;
    area.draw(&element)?;
    Ok(())
}

/// Splits `text` into lines of at most `width` characters at spaces.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.len() + 1 + word.len() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

/// A titled grid of images, each with its whole caption under it (at least `caption_lines`
/// lines tall, taller when a caption wraps to more), and a colour bar on the right when `bar`
/// names what the colours mean.
pub fn image_grid(
    path: &Path,
    title: &str,
    cols: usize,
    tiles: &[(Rgb, String)],
    caption_lines: usize,
    bar: Option<&str>,
) -> Result<(), ChartError> {
    let tile_w = tiles.iter().map(|(i, _)| i.width).max().unwrap_or(1) as i32;
    let tile_h = tiles.iter().map(|(i, _)| i.height).max().unwrap_or(1) as i32;
    let (pad, line) = (10, 15);
    let cell_w = tile_w + 2 * pad;
    let chars = (cell_w as usize / 7).max(8);
    let captions: Vec<Vec<String>> = tiles.iter().map(|(_, c)| wrap(c, chars)).collect();
    let caption_lines = captions
        .iter()
        .map(Vec::len)
        .max()
        .unwrap_or(0)
        .max(caption_lines);
    let cell_h = tile_h + pad + line * caption_lines as i32 + pad;
    let rows = tiles.len().div_ceil(cols.max(1)) as i32;
    let bar_w = if bar.is_some() { 110 } else { 0 };
    let grid_w = cell_w * cols as i32;
    // A title longer than the grid wraps over lines rather than widening the figure.
    let width = (grid_w + bar_w).max(480);
    let title_lines = wrap(title, ((width - 2 * pad) / 11).max(20) as usize);
    let head = 16 + 24 * title_lines.len() as i32;
    let size = (width as u32, (head + cell_h * rows) as u32);
    png(path, size, |root| {
        for (k, text) in title_lines.iter().enumerate() {
            root.draw(&Text::new(
                text.as_str(),
                (pad, 10 + 24 * k as i32),
                (FONT, 20),
            ))?;
        }
        if let Some(label) = bar {
            let area = root.clone().shrink(
                (grid_w, head),
                (bar_w as u32, (cell_h * rows).min(360) as u32),
            );
            colour_bar(&area, label)?;
        }
        for (i, ((image, _), caption)) in tiles.iter().zip(&captions).enumerate() {
            let (col, row) = ((i % cols) as i32, (i / cols) as i32);
            let (x, y) = (col * cell_w + pad, head + row * cell_h);
            blit(root, image, (x, y))?;
            for (k, text) in caption.iter().enumerate() {
                root.draw(&Text::new(
                    text.as_str(),
                    (x, y + tile_h + 4 + line * k as i32),
                    (FONT, 12),
                ))?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_count_in_whole_numbers_and_zero_has_no_sign() {
        assert_eq!(whole_tick(&3.0), "3");
        assert_eq!(whole_tick(&2.5), "");
        assert_eq!(tick(-0.0), "0");
        assert_eq!(tick(0.9799999999), "0.98");
        assert_eq!(tick(1.5e-6), "1.50e-6");
    }

    fn height_with(caption: &str) -> u32 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grid.png");
        let tile = Rgb {
            width: 84,
            height: 84,
            pixels: vec![128; 84 * 84 * 3],
        };
        image_grid(&path, "t", 2, &[(tile, caption.into())], 2, None).unwrap();
        image::image_dimensions(&path).unwrap().1
    }

    #[test]
    fn a_caption_longer_than_the_lines_asked_for_grows_its_cell_and_loses_nothing() {
        let short = height_with("true bag / predicted bag");
        let long = height_with("true ankle-boot / predicted ankle-boot, 97 % sure");
        let lines = wrap("true ankle-boot / predicted ankle-boot, 97 % sure", 104 / 7);
        assert!(lines.len() > 2, "{lines:?}");
        assert_eq!(long - short, 15 * (lines.len() as u32 - 2));
    }
}

/// One trial in a Pareto chart: its two objective values and whether it is on the front.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrontDot {
    pub x: f64,
    pub y: f64,
    pub on_front: bool,
}

/// A scatter of two objectives: trials behind the front in grey, the front in colour and
/// joined in order of `x`.
pub fn front<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    (x_label, y_label): (&str, &str),
    dots: &[FrontDot],
) -> Drawn
where
    DB::ErrorType: 'static,
{
    let xs: Vec<f64> = dots.iter().map(|d| d.x).collect();
    let ys: Vec<f64> = dots.iter().map(|d| d.y).collect();
    let lo = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (x0, x1) = padded(lo(&xs), hi(&xs));
    let (y0, y1) = padded(lo(&ys), hi(&ys));
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 14))
        .draw()?;
    let grey = RGBColor(170, 170, 170);
    chart.draw_series(
        dots.iter()
            .filter(|d| !d.on_front)
            .map(|d| Circle::new((d.x, d.y), 4, grey.filled())),
    )?;
    let mut line: Vec<(f64, f64)> = dots
        .iter()
        .filter(|d| d.on_front)
        .map(|d| (d.x, d.y))
        .collect();
    line.sort_by(|a, b| a.0.total_cmp(&b.0));
    chart.draw_series(LineSeries::new(line.clone(), PALETTE[0].stroke_width(2)))?;
    chart.draw_series(line.iter().map(|p| Circle::new(*p, 5, PALETTE[1].filled())))?;
    Ok(())
}
