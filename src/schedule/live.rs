//! The sweep's live view: one line per running trial (slot, epoch, the task's main validation
//! metric, img/s) and the
//! overall progress with an ETA; indicatif on a terminal, plain lines otherwise.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A running trial's latest figures.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningRow {
    pub trial: String,
    pub slot: String,
    pub attempt: usize,
    pub epoch: i64,
    pub epochs: usize,
    /// The latest value of the task's main validation metric, named by `score_name`.
    pub val_score: Option<f64>,
    pub score_name: String,
    pub images_per_sec: Option<f64>,
}

/// Everything the view shows at one moment.
#[derive(Debug, Clone, Default)]
pub struct Board {
    pub running: Vec<RunningRow>,
    pub done: usize,
    pub total: usize,
    pub eta: Option<Duration>,
}

/// Receives the scheduler's news.
pub trait SweepView {
    /// A one-off line (trial started, finished, retried, …).
    fn note(&mut self, text: &str);
    /// The current state, about once a second.
    fn update(&mut self, board: &Board);
    /// The sweep is over; clear any live lines.
    fn finish(&mut self);
}

/// `1h02m`, `3m05s`, `42s`.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

fn describe(r: &RunningRow) -> String {
    let top1 = r
        .val_score
        .map(|v| format!("val {} {:.1}%", r.score_name, v * 100.0))
        .unwrap_or_else(|| format!("val {} -", r.score_name));
    let ips = r
        .images_per_sec
        .map(|v| format!("{v:.0} img/s"))
        .unwrap_or_else(|| "- img/s".into());
    let retry = if r.attempt > 1 {
        format!(" (attempt {})", r.attempt)
    } else {
        String::new()
    };
    format!(
        "{} on {:<9} epoch {}/{}  {top1}  {ips}{retry}",
        r.trial, r.slot, r.epoch, r.epochs
    )
}

fn overall(board: &Board) -> String {
    format!(
        "{}/{} trials done, {} running, eta {}",
        board.done,
        board.total,
        board.running.len(),
        board.eta.map(clock).unwrap_or_else(|| "?".into())
    )
}

/// The console view.
pub struct Console {
    multi: Option<MultiProgress>,
    total_bar: Option<ProgressBar>,
    bars: BTreeMap<String, ProgressBar>,
    /// Plain mode: the last epoch printed per trial.
    printed: BTreeMap<String, i64>,
}

impl Console {
    /// Bars on a terminal, plain lines otherwise.
    pub fn new() -> Console {
        let fancy = std::io::stdout().is_terminal();
        Console {
            multi: fancy.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout())),
            total_bar: None,
            bars: BTreeMap::new(),
            printed: BTreeMap::new(),
        }
    }
}

impl Default for Console {
    fn default() -> Self {
        Console::new()
    }
}

impl SweepView for Console {
    fn note(&mut self, text: &str) {
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(text);
            }
            // A reader that left (`| head`) never stops the sweep.
            None => {
                let _ = writeln!(std::io::stdout(), "{text}");
            }
        }
    }

    fn update(&mut self, board: &Board) {
        let Some(multi) = &self.multi else {
            for r in &board.running {
                if self.printed.get(&r.trial) != Some(&r.epoch) && r.epoch > 0 {
                    self.printed.insert(r.trial.clone(), r.epoch);
                    let _ = writeln!(std::io::stdout(), "{}  | {}", describe(r), overall(board));
                }
            }
            return;
        };
        let total = self.total_bar.get_or_insert_with(|| {
            let bar = multi.add(ProgressBar::new(board.total as u64));
            bar.set_style(
                ProgressStyle::with_template("sweep [{bar:30}] {msg}")
                    .expect("static template")
                    .progress_chars("=> "),
            );
            bar
        });
        total.set_length(board.total as u64);
        total.set_position(board.done as u64);
        total.set_message(overall(board));
        self.bars.retain(|id, bar| {
            let keep = board.running.iter().any(|r| &r.trial == id);
            if !keep {
                bar.finish_and_clear();
                multi.remove(bar);
            }
            keep
        });
        for r in &board.running {
            let bar = self.bars.entry(r.trial.clone()).or_insert_with(|| {
                let bar = multi.insert(0, ProgressBar::new(r.epochs as u64));
                bar.set_style(ProgressStyle::with_template("  {msg}").expect("static template"));
                bar
            });
            bar.set_message(describe(r));
        }
    }

    fn finish(&mut self) {
        for bar in self.bars.values() {
            bar.finish_and_clear();
        }
        if let Some(bar) = &self.total_bar {
            bar.finish_and_clear();
        }
    }
}

/// A view that prints nothing (tests, benchmarks).
pub struct Silent;

impl SweepView for Silent {
    fn note(&mut self, _text: &str) {}
    fn update(&mut self, _board: &Board) {}
    fn finish(&mut self) {}
}
