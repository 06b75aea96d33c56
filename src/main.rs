//! `vitrun`: the command-line front end. Thin: parsing, exit codes, Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use vitrun::commands;
use vitrun::train::Outcome;

#[derive(Parser)]
#[command(
    name = "vitrun",
    version,
    about = "A declarative experiment runner for Vision Transformers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train the experiment in FILE (one trial) and record it in the run store.
    Run {
        file: PathBuf,
        /// Override a key: --set optimizer.lr=3e-4 (TOML value syntax; repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Continue the trial from its last checkpoint.
        #[arg(long)]
        resume: bool,
        /// Print only the final result.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Run one trial as the scheduler does (same as `run`; kept for cluster jobs).
    #[command(hide = true)]
    Trial {
        file: PathBuf,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        #[arg(long)]
        resume: bool,
        #[arg(long, short)]
        quiet: bool,
    },
    /// Print the resolved config, each value with where it came from.
    Check {
        file: PathBuf,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
    /// List trials in the run store with status and best metrics.
    Ls {
        /// Only this experiment's trials.
        experiment: Option<String>,
        #[arg(long, default_value = "runs")]
        runs_dir: PathBuf,
    },
    /// Expand [sweep] into trials and run them (not yet: see the sweeps issue).
    Sweep { file: Option<PathBuf> },
    /// Draw charts and an HTML report (not yet: see the reports issue).
    Report { target: Option<String> },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vitrun: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn train(file: PathBuf, sets: Vec<String>, resume: bool, quiet: bool) -> anyhow::Result<ExitCode> {
    let loaded = vitrun::config::load(&file, &sets)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("vitrun: stopping after this step (Ctrl-C again to abort)");
    })?;
    Ok(match commands::run(&loaded, resume, quiet, stop)? {
        Outcome::Finished { best_top1, last } => {
            println!(
                "finished: best val top1 {:.2}%, last val top1 {:.2}% (trial {})",
                best_top1 * 100.0,
                last.val_top1 * 100.0,
                loaded.config.trial_id()
            );
            ExitCode::SUCCESS
        }
        Outcome::Diverged { epoch, step } => {
            eprintln!("vitrun: diverged: loss is not finite at epoch {epoch}, step {step}; lower optimizer.lr or set optimizer.grad_clip");
            ExitCode::from(3)
        }
        Outcome::Interrupted { epoch } => {
            eprintln!(
                "vitrun: interrupted in epoch {epoch}; continue with: vitrun run {} --resume",
                file.display()
            );
            ExitCode::from(130)
        }
    })
}

fn execute(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run {
            file,
            sets,
            resume,
            quiet,
        }
        | Command::Trial {
            file,
            sets,
            resume,
            quiet,
        } => train(file, sets, resume, quiet),
        Command::Check { file, sets } => {
            print!("{}", commands::check(&vitrun::config::load(&file, &sets)?));
            Ok(ExitCode::SUCCESS)
        }
        Command::Ls {
            experiment,
            runs_dir,
        } => {
            print!("{}", commands::ls(&runs_dir, experiment.as_deref())?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Sweep { .. } => not_yet("sweep", "sweeps"),
        Command::Report { .. } => not_yet("report", "reports"),
    }
}

fn not_yet(verb: &str, issue: &str) -> anyhow::Result<ExitCode> {
    eprintln!("vitrun: `{verb}` is not implemented yet (see the {issue} issue); use `vitrun run FILE` and `vitrun ls`");
    Ok(ExitCode::from(2))
}
