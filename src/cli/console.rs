//! Command-line progress display: an indicatif bar per epoch on a terminal, plain lines
//! otherwise, nothing but the result with `--quiet`.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};

use crate::train::{EpochSummary, Observer};

/// How much the CLI prints while a trial runs.
pub struct Console {
    quiet: bool,
    fancy: bool,
    bar: Option<ProgressBar>,
    epoch: usize,
    epochs: usize,
}

impl Console {
    pub fn new(quiet: bool) -> Console {
        Console {
            quiet,
            fancy: std::io::stdout().is_terminal(),
            bar: None,
            epoch: 0,
            epochs: 0,
        }
    }
}

impl Observer for Console {
    fn message(&mut self, text: &str) {
        if !self.quiet {
            match &self.bar {
                Some(bar) => bar.println(text),
                None => say(text),
            }
        }
    }

    fn epoch_start(&mut self, epoch: usize, epochs: usize, batches: usize) {
        self.epoch = epoch;
        self.epochs = epochs;
        if self.quiet || !self.fancy {
            return;
        }
        let bar = ProgressBar::new(batches as u64);
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                .expect("static template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{epoch}/{epochs}"));
        self.bar = Some(bar);
    }

    fn step(&mut self, done: usize, loss: f64, score: f64, images_per_sec: f64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
            bar.set_message(format!(
                "loss {loss:.4} score {:.1}% {images_per_sec:.0} img/s",
                score * 100.0
            ));
        }
    }

    fn epoch_end(&mut self, s: &EpochSummary) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if !self.quiet {
            let others: String = s
                .val_others
                .iter()
                .map(|(name, v)| format!(" {name} {:.1}%", v * 100.0))
                .collect();
            say(&format!(
                "epoch {}/{}  train loss {:.4} {} {:.1}%  val loss {:.4} {} {:.1}%{others}{}  lr {:.2e}  {:.1} img/s",
                s.epoch,
                self.epochs,
                s.train_loss,
                s.train_score_name,
                s.train_score * 100.0,
                s.val_loss,
                s.score_name,
                s.val_score * 100.0,
                s.val_ema_score
                    .map(|v| format!(" ema {} {:.1}%", s.score_name, v * 100.0))
                    .unwrap_or_default(),
                s.lr,
                s.images_per_sec
            ));
        }
    }
}

/// One line to stdout; a closed stdout (a pipe whose reader left) must not stop a trial.
fn say(text: &str) {
    let _ = writeln!(std::io::stdout(), "{text}");
}
