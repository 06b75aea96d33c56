//! The front end: the `vitrun` command line (parsing, exit codes, Ctrl-C, progress) and what
//! each subcommand does. The binary's `main` is [`main`]; everything below it is library code
//! the front end calls.

mod cluster;
pub mod commands;
mod console;
pub mod doctor;
mod explain;
mod export;
mod listing;
pub mod out;
mod parse;
mod predict;
mod predictions;
mod runs;

pub use console::Console;
use out::say;
use runs::RunsDirArg;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::contract::TrialExit;
use crate::train::process::{self, Crash, TrialEnd};
use crate::train::Outcome;

#[derive(Parser)]
#[command(
    name = "vitrun",
    version = version(),
    about = "A declarative experiment runner for Vision Transformers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `0.1.0 (backends: cpu (burn-flex), cuda (burn-cuda))`: the version and what this binary
/// can train on.
fn version() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        format!(
            "{} (backends: {})",
            env!("CARGO_PKG_VERSION"),
            crate::train::backend::BACKENDS
        )
    })
}

/// What `run` and `trial` share.
#[derive(clap::Args)]
struct TrainArgs {
    /// The experiment file, e.g. experiments/deit_vehicles.toml
    file: PathBuf,
    /// Override a key, e.g. --set optimizer.lr=3e-4 (TOML value syntax; repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Continue the trial from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Take over a trial another host has claimed, and resume even without optimizer state.
    #[arg(long)]
    force: bool,
    /// Print only the final result.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    runs: RunsDirArg,
}

/// Which launcher `vitrun sweep` uses.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LauncherKind {
    Local,
    Slurm,
}

#[derive(Subcommand)]
enum Command {
    /// Train the experiment in FILE (one trial) and record it in the run store.
    Run(TrainArgs),
    /// Continue an interrupted, failed or preempted trial from its last checkpoint, with the
    /// config it was started with (no file or --set needed): vitrun resume 1ce1b0
    Resume {
        /// The trial's id, or a unique prefix of it, e.g. 1ce1b0
        trial: String,
        #[command(flatten)]
        runs: RunsDirArg,
        /// Take over a claim another host holds, and resume without optimizer state.
        #[arg(long)]
        force: bool,
        /// Print only the final result.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Print the output of a trial a sweep or a SLURM task ran (its log.txt): vitrun logs 1ce1b0
    Logs {
        /// The trial's id, or a unique prefix of it, e.g. 1ce1b0
        trial: String,
        #[command(flatten)]
        runs: RunsDirArg,
        /// Keep printing what it appends until it ends (Ctrl-C stops watching).
        #[arg(long, short)]
        follow: bool,
    },
    /// Run one trial of a sweep, as the scheduler (or a cluster job) does.
    #[command(hide = true)]
    Trial {
        #[command(flatten)]
        args: TrainArgs,
        /// The sweep the trial belongs to (turns on its early-stopping rule).
        #[arg(long)]
        sweep: Option<String>,
        /// Refuse to run unless the resolved config hashes to this id.
        #[arg(long = "trial-id")]
        trial_id: Option<String>,
    },
    /// Training steps on the first training batch, then as many inference passes, on the
    /// trial's device and precision (the GPU memory probe of `trials_per_gpu = "auto"`, and
    /// the GPU benchmark's images per second).
    #[command(hide = true)]
    Probe {
        file: PathBuf,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Timed steps, e.g. --steps 50
        #[arg(long, default_value_t = 3, value_parser = parse::whole::<usize>)]
        steps: usize,
        /// Untimed steps first, e.g. --warmup 10
        #[arg(long, default_value_t = 0, value_parser = parse::whole::<usize>)]
        warmup: usize,
        /// One JSON object: batch, steps, last_loss, train and infer images per second.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        runs: RunsDirArg,
    },
    /// Check this machine and binary: backends, cores, memory, the NVIDIA driver and GPUs,
    /// and whether each trial of FILE would start here (what run and sweep check before a
    /// trial is claimed): vitrun doctor experiments/deit_recipe_tiny.toml
    Doctor {
        /// An experiment file whose trials to check, e.g. experiments/deit_recipe_tiny.toml
        file: Option<PathBuf>,
        /// Override a key, e.g. --set train.precision=\"bf16\" (TOML value syntax; repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE", requires = "file")]
        sets: Vec<String>,
        #[command(flatten)]
        runs: RunsDirArg,
    },
    /// Print the trials FILE's [sweep] expands into, with their status in the store.
    Plan {
        /// The experiment file, e.g. experiments/deit_vehicles_sweep.toml
        file: PathBuf,
        /// Override a key, e.g. --set optimizer.lr=3e-4 (TOML value syntax; repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        #[command(flatten)]
        form: out::FormArgs,
        #[command(flatten)]
        runs: RunsDirArg,
    },
    /// Print the resolved config, each value with where it came from.
    Check {
        /// The experiment file, e.g. experiments/deit_vehicles.toml
        file: PathBuf,
        /// Override a key, e.g. --set optimizer.lr=3e-4 (TOML value syntax; repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        #[command(flatten)]
        form: out::FormArgs,
        #[command(flatten)]
        runs: RunsDirArg,
    },
    /// List trials in the run store with status, best metric and duration: vitrun ls --status
    /// failed,crashed --sort best --limit 10
    Ls {
        /// Only this experiment's trials, e.g. vitrun ls deit_vehicles
        experiment: Option<String>,
        #[command(flatten)]
        runs: RunsDirArg,
        /// One line per group of trials that differ only in seed: its metric, mean ± std and a
        /// 95 % CI (with --json: one array of groups).
        #[arg(long, conflicts_with_all = ["status", "sort", "limit", "quiet"])]
        group: bool,
        /// --json: one JSON array of trials (times as stored, duration in seconds).
        #[command(flatten)]
        form: out::FormArgs,
        /// Only trials with these statuses, e.g. --status failed,crashed,oom.
        #[arg(long, value_delimiter = ',', value_name = "STATUS")]
        status: Vec<crate::contract::Status>,
        /// Row order: started (newest first), best, duration, status or id, e.g. --sort best
        #[arg(long, value_enum, default_value_t)]
        sort: listing::SortKey,
        /// At most N rows (after sorting), e.g. --limit 20.
        #[arg(long, value_name = "N", value_parser = parse::whole::<usize>)]
        limit: Option<usize>,
    },
    /// Remove trials from the run store with their folders (a running or queued trial is
    /// refused and kept): vitrun rm 1ce1b0 7f3a
    Rm {
        /// Trial ids or unique prefixes, e.g. vitrun rm 1ce1b0 7f3a
        #[arg(required = true)]
        trials: Vec<String>,
        #[command(flatten)]
        runs: RunsDirArg,
    },
    /// Print a shell completion script: vitrun completions bash > ~/.local/share/bash-completion/completions/vitrun
    Completions {
        /// bash, zsh, fish, elvish or powershell, e.g. vitrun completions zsh > ~/.zfunc/_vitrun
        shell: clap_complete::Shell,
    },
    /// Run every trial of FILE's [sweep] that the store does not have done.
    Sweep {
        /// The experiment file with a [sweep] table, e.g. experiments/deit_vehicles_sweep.toml
        #[arg(default_value = "experiments/deit_vehicles_sweep.toml")]
        file: PathBuf,
        /// Override a key in every trial, e.g. --set train.epochs=5 (TOML value syntax;
        /// repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Devices to use instead of the discovered ones, e.g. --devices cpu or --devices
        /// cuda:0,cuda:1
        #[arg(long)]
        devices: Option<String>,
        /// CPU trials at once (default: one per core); the cores are split between them, e.g.
        /// --cpu-slots 2
        #[arg(long = "cpu-slots", value_name = "N", value_parser = parse::whole::<usize>)]
        cpu_slots: Option<usize>,
        /// Where trials run: local processes, or one SLURM job array ([sweep.slurm]), e.g.
        /// --launcher slurm
        #[arg(long, value_enum, default_value = "local")]
        launcher: LauncherKind,
        /// With --launcher slurm: follow the job array until no task is left.
        #[arg(long)]
        wait: bool,
        /// How often --wait looks at the cluster, in seconds, e.g. --poll-seconds 30
        #[arg(long, default_value_t = 5, value_name = "SECONDS", value_parser = parse::whole::<u64>)]
        poll_seconds: u64,
        /// With --launcher slurm: start after these jobs, in place of [sweep.slurm] after, e.g.
        /// --dependency afterok:1234
        #[arg(long, value_name = "TYPE:JOB")]
        dependency: Option<String>,
        #[command(flatten)]
        runs: RunsDirArg,
    },
    /// Trials of SLURM sweeps: store status joined with each array task's state.
    Status {
        /// Only this experiment (default: every experiment with a SLURM submission), e.g.
        /// vitrun status deit_vehicles_sweep
        experiment: Option<String>,
        #[command(flatten)]
        form: out::FormArgs,
        #[command(flatten)]
        runs: RunsDirArg,
    },
    /// Cancel an experiment's SLURM job arrays (scancel); unfinished trials become interrupted.
    Cancel {
        /// The experiment whose arrays to cancel, e.g. vitrun cancel deit_vehicles_sweep
        experiment: String,
        #[command(flatten)]
        runs: RunsDirArg,
    },
    /// Fold the shards cluster trials wrote into the run store (every reading command does).
    Sync {
        #[command(flatten)]
        runs: RunsDirArg,
    },
    /// Run the trial of this SLURM array task from its submission folder (what sbatch runs).
    #[command(hide = true)]
    ArrayTask { dir: PathBuf },
    /// Classify images with a trained trial's weights (its validation preprocessing, on the CPU).
    Predict(PredictArgs),
    /// Map what a trained model's prediction looked at: attention, rollout or Grad-CAM.
    Explain(explain::ExplainArgs),
    /// Write a trial's weights as a timm state dict (.safetensors) with its timm model arguments
    /// (.json beside it).
    Export {
        /// A trial id or prefix, an experiment or sweep (its best trial), or a checkpoint file,
        /// e.g. 1ce1b0
        target: String,
        /// The .safetensors file to write, e.g. --out deit_tiny.safetensors
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The experiment file of a checkpoint given as TARGET (default: the config.toml of the
        /// trial folder it is in), e.g. --config experiments/vit_detr_scenes.toml
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Overrides for --config's file, e.g. --set head.queries=20 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        #[command(flatten)]
        runs: RunsDirArg,
    },
    /// Print what differs between two trials: config keys, provenance, final metrics.
    Diff {
        /// A trial id or unique prefix, e.g. vitrun diff 1ce1b0 7f3a
        a: String,
        /// Another trial id or unique prefix, e.g. 7f3a
        b: String,
        #[command(flatten)]
        form: out::FormArgs,
        #[command(flatten)]
        runs: RunsDirArg,
    },
    /// Write the metrics of a trial, experiment or sweep (default: the latest) to a file.
    ExportMetrics {
        /// A trial id (or unique prefix), an experiment name or a sweep name, e.g. deit_vehicles
        target: Option<String>,
        /// The file to write; `-` writes to stdout (with --format), e.g. --out metrics.parquet
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// csv, json or parquet (default: from the --out extension), e.g. --format csv
        #[arg(long)]
        format: Option<crate::report::export::Format>,
        /// One row per trial with each metric's final and best value.
        #[arg(long)]
        wide: bool,
        #[command(flatten)]
        runs: RunsDirArg,
    },
    /// Serve the reports over HTTP, live while trials run (read-only; localhost unless --bind says otherwise): vitrun serve --port 8080
    Serve {
        /// The port to listen on (0: any free one, printed at start), e.g. --port 9000
        #[arg(long, default_value_t = 8080, value_parser = parse::port)]
        port: u16,
        /// The address to listen on, e.g. --bind 127.0.0.1; 0.0.0.0 lets other machines read
        /// every trial (use an SSH tunnel instead: ssh -L 8080:localhost:8080 login-node).
        #[arg(long, default_value = "127.0.0.1", value_name = "ADDRESS")]
        bind: std::net::IpAddr,
        #[command(flatten)]
        runs: RunsDirArg,
    },
    /// Draw charts and an HTML report of a trial, experiment or sweep (default: the latest); several overlay their trials: vitrun report 1ce1b0 7f3a2c
    Report {
        /// Trial ids (or unique prefixes), experiment or sweep names; two or more are compared
        /// in one report (runs/<experiment>/report/compare-<targets>/), e.g. 1ce1b0 7f3a2c
        targets: Vec<String>,
        /// Where to write (default: runs/<experiment>/report/ or the trial's report/), e.g.
        /// --out /tmp/report
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        #[command(flatten)]
        runs: RunsDirArg,
        /// How attention heads are combined: mean, max or min, e.g. --fusion max
        #[arg(long, default_value = "mean")]
        fusion: crate::report::Fusion,
        /// Fraction of the lowest attention weights dropped per row (0 keeps all), e.g.
        /// --discard 0.9
        #[arg(long, default_value_t = 0.0, value_name = "FRACTION", value_parser = parse::number::<f32>)]
        discard: f32,
        /// Validation images in the attention and prediction figures: a count (6), or first,
        /// random or worst (highest loss) with an optional count, e.g. --samples worst:8
        #[arg(long, default_value = "6", value_name = "WHICH")]
        samples: crate::report::Samples,
        /// Detection: the least score of a box drawn, e.g. --score-threshold 0.2 (display only;
        /// the trial and its id are unchanged) [default: the trial's head.score_threshold]
        #[arg(long, value_name = "SCORE", value_parser = parse::number::<f64>)]
        score_threshold: Option<f64>,
        /// The metric trials are ranked by (split/name; losses rank lowest first); default: the
        /// task's main one (val/top1, segmentation val/miou), e.g. --metric val/loss
        #[arg(long, value_name = "SPLIT/NAME")]
        metric: Option<String>,
    },
}

/// What the `vitrun` binary runs: parses the command line, runs the command, and turns its
/// outcome into the exit code.
pub fn main() -> ExitCode {
    crate::alloc::keep_freed_memory();
    let cli = Cli::parse();
    if cli.command.only_prints() {
        // SAFETY: restoring the default action of SIGPIPE before any thread starts: a command
        // whose output is piped into `head` then ends quietly, as Unix tools do.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match execute(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vitrun: error: {}", out::printable(&format!("{e:#}")));
            let exit = if e.is::<Crash>() {
                TrialExit::Crashed
            } else {
                TrialExit::Failed
            };
            ExitCode::from(exit.code())
        }
    }
}

impl Command {
    /// Commands that only print (their output may go into a closed pipe).
    fn only_prints(&self) -> bool {
        matches!(
            self,
            Command::Plan { .. }
                | Command::Check { .. }
                | Command::Doctor { .. }
                | Command::Ls { .. }
                | Command::Completions { .. }
                | Command::Diff { .. }
                | Command::Status { .. }
                | Command::Logs { .. }
        )
    }
}

fn exit(e: TrialExit) -> ExitCode {
    ExitCode::from(e.code())
}

/// Ctrl-C sets the returned flag; a second Ctrl-C exits at once.
fn stop_flag(what: &'static str) -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("vitrun: stopping {what} (Ctrl-C again to abort)");
    })?;
    Ok(stop)
}

/// `run` (no sweep) and `trial` (a sweep's child, with its sweep name and planned id).
fn train(
    args: TrainArgs,
    sweep: Option<String>,
    expect_id: Option<String>,
) -> anyhow::Result<ExitCode> {
    let TrainArgs {
        file,
        sets,
        resume,
        force,
        quiet,
        runs,
    } = args;
    let in_sweep = sweep.is_some();
    let options = process::TrialOptions {
        resume,
        force,
        sweep,
        expect_id,
        cluster: None,
    };
    let (loaded, _) = runs.load(&file, &sets)?;
    let stop = stop_flag("after this step")?;
    let end = process::run(&loaded, &options, stop, &mut Console::new(quiet))?;
    finish(end, &loaded, in_sweep)
}

/// `vitrun resume ID`: the trial's own resolved config (its folder's `config.toml`, checked to
/// resolve to its id), resumed from its last checkpoint.
fn resume(trial: &str, runs_dir: &Path, force: bool, quiet: bool) -> anyhow::Result<ExitCode> {
    let loaded = commands::stored_trial(trial, runs_dir)?;
    let options = process::TrialOptions {
        resume: true,
        force,
        sweep: None,
        expect_id: Some(loaded.config.trial_id()),
        cluster: None,
    };
    let stop = stop_flag("after this step")?;
    let end = process::run(&loaded, &options, stop, &mut Console::new(quiet))?;
    finish(end, &loaded, false)
}

/// Prints how a trial ended and gives its exit code.
fn finish(
    end: TrialEnd,
    loaded: &crate::config::Loaded,
    in_sweep: bool,
) -> anyhow::Result<ExitCode> {
    let outcome = match end {
        TrialEnd::Ran(outcome) => outcome,
        TrialEnd::Held { pid, host, since } => {
            let holder = format!(
                "trial {} is already running in process {pid} on {host}{}",
                loaded.config.trial_id(),
                since.map(|s| format!(" (since {s})")).unwrap_or_default()
            );
            if in_sweep {
                say!("{holder}; leaving it to that process");
                return Ok(exit(TrialExit::Busy));
            }
            anyhow::bail!("{holder}; wait for it to end, or stop it (a claim from another host can be taken over with --force)");
        }
        TrialEnd::Done(status) => {
            say!(
                "trial {} is already {status}; nothing to do",
                loaded.config.trial_id()
            );
            return Ok(exit(TrialExit::of_done(status)));
        }
    };
    match &outcome {
        Outcome::Finished {
            best_score,
            metric,
            last,
        } => say!(
            "finished: best val {metric} {:.2}%{} (trial {})",
            best_score * 100.0,
            last.as_ref()
                .map(|l| format!(", last val {metric} {:.2}%", l.val_score * 100.0))
                .unwrap_or_default(),
            loaded.config.trial_id()
        ),
        Outcome::Diverged { epoch, step } => eprintln!("vitrun: diverged: loss is not finite at epoch {epoch}, step {step}; lower optimizer.lr or set optimizer.grad_clip"),
        Outcome::Pruned { epoch, reason } => {
            say!("stopped early after epoch {epoch}: {reason}")
        }
        Outcome::Preempted { epoch } => eprintln!(
            "vitrun: preempted in epoch {epoch}; the array task is requeued and resumes from its checkpoint"
        ),
        Outcome::Interrupted { epoch } => {
            let runs = &loaded.config.train.runs_dir;
            eprintln!(
                "vitrun: interrupted in epoch {epoch}; continue with: vitrun resume {}{}",
                loaded.config.trial_id(),
                if runs == "runs" {
                    String::new()
                } else {
                    format!(" --runs-dir {runs}")
                }
            )
        }
    }
    Ok(exit(outcome.exit()))
}

/// `--dependency X` is `--set sweep.slurm.after="X"`, checked where the key is; it means
/// nothing to local processes.
fn with_dependency(
    mut sets: Vec<String>,
    dependency: Option<String>,
    launcher: LauncherKind,
) -> anyhow::Result<Vec<String>> {
    if let Some(after) = dependency {
        anyhow::ensure!(
            launcher == LauncherKind::Slurm,
            "--dependency orders SLURM jobs; add --launcher slurm, or leave it out to run locally"
        );
        let value = toml::Value::String(after);
        sets.push(format!("sweep.slurm.after={value}"));
    }
    Ok(sets)
}

/// `vitrun sweep`: the local scheduler, or a SLURM job array.
fn sweep_command(
    file: PathBuf,
    runs: &RunsDirArg,
    mut options: commands::SweepOptions,
    launcher: LauncherKind,
    wait: bool,
    poll_seconds: u64,
) -> anyhow::Result<ExitCode> {
    let (loaded, sets) = runs.load(&file, &options.sets)?;
    options.sets = sets;
    if loaded.sweep.is_empty() {
        eprintln!(
            "vitrun: note: {} has no [sweep] axes, so the sweep is its one trial (as `vitrun run` runs it)",
            file.display()
        );
    }
    if launcher == LauncherKind::Local {
        anyhow::ensure!(
            !wait,
            "--wait follows a SLURM job array; the local launcher always waits for its trials"
        );
        return sweep(&file, &loaded, options);
    }
    let stop = stop_flag("watching; the job array keeps running")?;
    let wait = wait.then(|| std::time::Duration::from_secs(poll_seconds.max(1)));
    let (_, report) = cluster::sweep(&loaded, &options, wait, stop)?;
    let Some(report) = report else {
        return Ok(ExitCode::SUCCESS);
    };
    out::text(&commands::sweep_summary(&report));
    // Waiting ends when no task is left (or on Ctrl-C): a trial not done by then failed to
    // finish, whatever its task's exit code.
    let stopped_watching = report.interrupted;
    Ok(
        if !stopped_watching && report.results.iter().any(|r| !r.status.is_done()) {
            exit(TrialExit::Failed)
        } else {
            ExitCode::SUCCESS
        },
    )
}

fn sweep(
    file: &Path,
    loaded: &crate::config::Loaded,
    options: commands::SweepOptions,
) -> anyhow::Result<ExitCode> {
    let stop = stop_flag("the sweep: trials checkpoint and exit")?;
    let report = commands::sweep(loaded, &options, stop)?;
    out::text(&commands::sweep_summary(&report));
    Ok(if report.interrupted {
        say!(
            "interrupted; run `vitrun sweep {}` again to continue",
            file.display()
        );
        exit(TrialExit::Interrupted)
    } else if report.results.iter().any(|r| r.status.is_failure()) {
        exit(TrialExit::Failed)
    } else {
        ExitCode::SUCCESS
    })
}

/// What `vitrun predict` takes.
#[derive(clap::Args)]
struct PredictArgs {
    /// A trial id or prefix, an experiment or sweep (its best trial), or a checkpoint file or
    /// trial folder (its trial's config.toml describes it, or --config), e.g. 1ce1b0 or
    /// runs/deit_vehicles/1ce1b0…/checkpoints/best.mpk
    target: String,
    /// Image files or folders (searched recursively for .png/.jpg/.jpeg), e.g. cat.jpg
    /// photos/
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// How many classes to print per image (classification), e.g. --top-k 1
    #[arg(long, default_value_t = 5, value_name = "K", value_parser = parse::whole::<usize>)]
    top_k: usize,
    /// One JSON object per image instead of text.
    #[arg(long)]
    json: bool,
    /// A folder for each image's files (a segmenter's class mask, overlay and probability
    /// maps; a detector's overlay and the run's COCO results, detections.json) and
    /// predictions.jsonl, e.g. --out predictions/
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// A segmenter's per-class probability maps too (<image>.probs.npy, float32
    /// [classes, height, width]); needs --out.
    #[arg(long)]
    probs: bool,
    /// The lowest score of a box kept (a detector; default: the trial's head.score_threshold),
    /// e.g. --threshold 0.3
    #[arg(long, value_name = "SCORE", value_parser = parse::number::<f64>)]
    threshold: Option<f64>,
    /// A COCO annotation file whose image ids (by file_name) and category ids (by name)
    /// detections.json uses (default: images numbered from 1 in order, categories the class
    /// index + 1), e.g. --coco instances_val.json
    #[arg(long, value_name = "FILE")]
    coco: Option<PathBuf>,
    /// Images per forward pass, e.g. --batch 64
    #[arg(long, default_value_t = 32, value_name = "N", value_parser = parse::whole::<usize>)]
    batch: usize,
    /// The experiment file of a checkpoint given as TARGET (default: the config.toml of the
    /// trial folder it is in), e.g. --config experiments/deit_vehicles.toml
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Overrides for --config's file, e.g. --set model.depth=6 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    #[command(flatten)]
    runs: RunsDirArg,
}

/// Labels `volume` slice by slice and writes `<stem>.labels.nii.gz` (uint8, the input's grid
/// and affine) under `dir`; returns the text and JSON lines.
fn predict_volume(
    predictor: &predict::Predictor,
    volume: &Path,
    dir: &Path,
    options: &crate::task::PredictOptions,
    batch: usize,
) -> anyhow::Result<(String, serde_json::Value)> {
    use crate::data::volumes::volume_stem;
    let (input, labels) = predictor.predict_volume(volume, options, batch)?;
    let out = dir.join(format!("{}.labels.nii.gz", volume_stem(volume)));
    crate::data::nifti::write_labels(&out, input.dims, &labels, &input.affine)
        .map_err(|e| anyhow::anyhow!(e))?;
    let classes = predictor.classes();
    let mut areas = vec![0u64; classes.len()];
    for &l in &labels {
        if let Some(a) = areas.get_mut(usize::from(l)) {
            *a += 1;
        }
    }
    let [nx, ny, nz] = input.dims;
    let text = format!(
        "{}: volume {nx}×{ny}×{nz}, labels → {} ({})",
        volume.display(),
        out.display(),
        classes
            .iter()
            .zip(&areas)
            .map(|(c, a)| format!("{c} {a} voxels"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let json = serde_json::json!({
        "image": volume.display().to_string(),
        "size": input.dims,
        "areas": classes.iter().zip(&areas).map(|(c, a)| (c.clone(), serde_json::Value::from(*a))).collect::<serde_json::Map<_, _>>(),
        "files": {"labels": out.display().to_string()},
    });
    Ok((text, json))
}

/// The model `vitrun predict` and `vitrun explain` run: a trial id, experiment or sweep of the
/// store, or a checkpoint described by `config` (default: the `config.toml` of the trial
/// folder it is in).
fn load_predictor(
    target: &str,
    config: Option<&Path>,
    sets: &[String],
    runs: &RunsDirArg,
) -> anyhow::Result<predict::Predictor> {
    use predict::Predictor;
    let path = Path::new(target);
    // A checkpoint inside a trial folder is described by that folder's resolved config.
    let beside = || {
        path.ancestors()
            .take(3)
            .map(|dir| crate::contract::TrialDir::at(dir).config())
            .find(|config| config.is_file())
    };
    let config = match config {
        Some(file) => Some(file.to_path_buf()),
        None if path.exists() => Some(beside().with_context(|| {
            format!(
                "{}: no config.toml beside it or in the trial folder above it; pass --config with its experiment file",
                path.display()
            )
        })?),
        None => None,
    };
    match &config {
        Some(file) => Predictor::from_checkpoint(path, &crate::config::load(file, sets)?.config),
        None => {
            anyhow::ensure!(
                crate::config::is_safe_name(target),
                "target {target:?} is not a trial id, experiment or sweep name; for a checkpoint file pass --config with its experiment file"
            );
            Predictor::from_store(&runs.resolve(), target)
        }
    }
}

/// `vitrun predict`: every image's top-k classes; unreadable images are reported and skipped,
/// and make the exit code 1.
fn predict(args: PredictArgs) -> anyhow::Result<ExitCode> {
    use predict::images;
    use std::io::{IsTerminal, Write};
    anyhow::ensure!(
        args.batch >= 1,
        "--batch 0: give at least 1 image per batch"
    );
    anyhow::ensure!(
        !args.probs || args.out.is_some(),
        "--probs writes files: give it a folder with --out DIR"
    );
    anyhow::ensure!(
        args.coco.is_none() || args.out.is_some(),
        "--coco numbers the boxes of detections.json: give it a folder with --out DIR"
    );
    if let Some(t) = args.threshold {
        anyhow::ensure!(
            (0.0..=1.0).contains(&t),
            "--threshold {t}: a box's score is a probability; give a value in [0, 1]"
        );
    }
    let options = crate::task::PredictOptions {
        top_k: args.top_k,
        probs: args.probs,
        threshold: args.threshold,
        files: args.out.is_some(),
    };
    let coco = args
        .coco
        .as_deref()
        .map(predictions::CocoIds::read)
        .transpose()?;
    let predictor = load_predictor(&args.target, args.config.as_deref(), &args.sets, &args.runs)?;
    let (volumes, files): (Vec<PathBuf>, Vec<PathBuf>) = images(&args.images)?
        .into_iter()
        .partition(|p| crate::data::volumes::is_volume(p));
    if let Some(first) = volumes.first() {
        anyhow::ensure!(
            args.out.is_some(),
            "{}: a volume's labels are written as a label volume; give them a folder with --out DIR",
            first.display()
        );
    }
    for (volume, dir) in volumes
        .iter()
        .zip(std::iter::repeat(args.out.as_deref()).flatten())
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--out {}: cannot create the folder", dir.display()))?;
        let line = predict_volume(&predictor, volume, dir, &options, args.batch)?;
        println!(
            "{}",
            if args.json {
                line.1.to_string()
            } else {
                line.0
            }
        );
    }
    if files.is_empty() && !volumes.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "predicting {} with {}{}; resize: {}",
        crate::contract::count(files.len(), "image"),
        predictor.weights.display(),
        predictor
            .trial
            .as_ref()
            .map(|t| format!(" (trial {t})"))
            .unwrap_or_default(),
        predictor.resize()
    );
    let bar = (std::io::stderr().is_terminal() && files.len() > args.batch)
        .then(|| indicatif::ProgressBar::new(files.len() as u64));
    let mut out = args
        .out
        .as_deref()
        .map(|dir| predictions::OutDir::create(dir, coco))
        .transpose()?;
    let mut stdout = std::io::stdout().lock();
    let mut failed = 0;
    let mut noted = false;
    for chunk in files.chunks(args.batch) {
        for result in predictor.predict(chunk, &options)? {
            match result {
                Ok(p) => {
                    let dense = p.answer.labels.is_some() || p.answer.boxes.is_some();
                    if out.is_none() && dense && !noted {
                        noted = true;
                        eprintln!("note: --out DIR writes each image's mask or boxes and overlay");
                    }
                    let json = match &mut out {
                        Some(out) => out.write(&p.image, &p.answer)?,
                        None => {
                            let mut json =
                                serde_json::json!({"image": p.image.display().to_string()});
                            if let (Some(fields), serde_json::Value::Object(own)) =
                                (json.as_object_mut(), &p.answer.json)
                            {
                                fields.extend(own.clone());
                            }
                            json
                        }
                    };
                    let line = if args.json {
                        json.to_string()
                    } else {
                        format!("{}: {}", p.image.display(), p.answer.text)
                    };
                    writeln!(stdout, "{line}")?;
                }
                Err(why) => {
                    failed += 1;
                    eprintln!("vitrun: skipped: {why}");
                }
            }
        }
        if let Some(bar) = &bar {
            bar.inc(chunk.len() as u64);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(out) = out {
        let numbered = out.has_coco_ids();
        if let Some(results) = out.finish()? {
            eprintln!(
                "COCO results: {}{}",
                results.display(),
                if numbered {
                    ""
                } else {
                    " (image ids count from 1 in order, category ids are class index + 1; --coco FILE takes both from an annotation file)"
                }
            );
        }
    }
    if failed > 0 {
        eprintln!(
            "vitrun: {failed} of {} could not be read",
            crate::contract::count(files.len(), "image")
        );
        return Ok(exit(TrialExit::Failed));
    }
    Ok(ExitCode::SUCCESS)
}

fn execute(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => train(args, None, None),
        Command::Logs {
            trial,
            runs,
            follow,
        } => {
            let stop = stop_flag("following the log")?;
            commands::logs(&runs.resolve(), &trial, follow, &stop)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Resume {
            trial,
            runs,
            force,
            quiet,
        } => resume(&trial, &runs.resolve(), force, quiet),
        Command::Trial {
            args,
            sweep,
            trial_id,
        } => train(args, sweep, trial_id),
        Command::Probe {
            file,
            sets,
            steps,
            warmup,
            json,
            runs,
        } => {
            let loaded = runs.load(&file, &sets)?.0;
            let r = process::probe(&loaded, crate::train::ProbeSteps { warmup, steps })?;
            if json {
                out::text(&format!("{}\n", serde_json::to_string(&r)?));
            } else {
                say!(
                    "probe: {} steps of batch {} on {}: train {:.1} img/s, infer {:.1} img/s, last loss {:.4}",
                    r.steps,
                    r.batch,
                    loaded.config.train.device,
                    r.train_images_per_sec,
                    r.infer_images_per_sec,
                    r.last_loss
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan {
            file,
            sets,
            form,
            runs,
        } => {
            out::text(&out::printable(&commands::plan_table(
                &runs.load(&file, &sets)?.0,
                form.form(),
            )?));
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor { file, sets, runs } => {
            let loaded = match &file {
                Some(file) => Some(runs.load(file, &sets)?.0),
                None => None,
            };
            out::text(&doctor::doctor(loaded.as_ref(), &doctor::Machine::here())?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Check {
            file,
            sets,
            form,
            runs,
        } => {
            out::text(&commands::check(&runs.load(&file, &sets)?.0, form.form())?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Ls {
            experiment,
            runs,
            group,
            form,
            status,
            sort,
            limit,
        } => {
            let form = form.form();
            if group {
                let json = form == out::Form::Json;
                let groups = commands::ls_groups(&runs.resolve(), experiment.as_deref(), json)?;
                out::text(&out::printable(&groups));
            } else {
                let options = listing::LsOptions {
                    experiment,
                    status,
                    sort,
                    limit,
                    form,
                    color: form == out::Form::Text && listing::color_wanted(),
                };
                // Stored strings in the rows are made printable one by one (the colours stay).
                out::text(&listing::ls(&runs.resolve(), &options)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Rm { trials, runs } => {
            let (lines, refused) = commands::rm(&runs.resolve(), &trials)?;
            out::text(&out::printable(&lines));
            Ok(if refused {
                exit(TrialExit::Failed)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "vitrun", &mut script);
            out::text(&String::from_utf8_lossy(&script));
            Ok(ExitCode::SUCCESS)
        }
        Command::Sweep {
            file,
            sets,
            devices,
            cpu_slots,
            launcher,
            wait,
            poll_seconds,
            dependency,
            runs,
        } => sweep_command(
            file,
            &runs,
            commands::SweepOptions {
                devices,
                cpu_slots,
                sets: with_dependency(sets, dependency, launcher)?,
            },
            launcher,
            wait,
            poll_seconds,
        ),
        Command::Status {
            experiment,
            form,
            runs,
        } => {
            out::text(&out::printable(&cluster::status(
                &runs.resolve(),
                experiment.as_deref(),
                form.form(),
            )?));
            Ok(ExitCode::SUCCESS)
        }
        Command::Cancel { experiment, runs } => {
            let jobs = cluster::cancel(&runs.resolve(), &experiment)?;
            say!(
                "cancelled {}; unfinished trials are interrupted and resume on the next sweep",
                if jobs.is_empty() {
                    "nothing (no live task)".to_string()
                } else {
                    format!("job arrays {}", jobs.join(", "))
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync { runs } => {
            let report = cluster::sync(&runs.resolve())?;
            say!(
                "sync: {} from {} of {}{}",
                crate::contract::count(report.records, "record"),
                report.grown,
                crate::contract::count(report.shards, "shard"),
                if report.proposals > 0 {
                    format!(
                        ", {} of searches' workers",
                        crate::contract::count(report.proposals, "proposal")
                    )
                } else {
                    String::new()
                }
            );
            for problem in &report.problems {
                eprintln!("vitrun: {problem}");
            }
            Ok(if report.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                exit(TrialExit::Failed)
            })
        }
        Command::ArrayTask { dir } => match cluster::array_task(&dir)? {
            Some((loaded, end)) => finish(end, &loaded, true),
            None => Ok(ExitCode::SUCCESS),
        },
        Command::Predict(args) => predict(args),
        Command::Explain(args) => {
            let predictor =
                load_predictor(&args.target, args.config.as_deref(), &args.sets, &args.runs)?;
            let failed = explain::explain(args, &predictor)?;
            Ok(if failed > 0 {
                eprintln!(
                    "vitrun: {} could not be read",
                    crate::contract::count(failed, "image")
                );
                exit(TrialExit::Failed)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Export {
            target,
            out,
            config,
            sets,
            runs,
        } => {
            let predictor = load_predictor(&target, config.as_deref(), &sets, &runs)?;
            let json = export::export(&predictor, &out)?;
            say!(
                "export: {} and {} (from {})",
                out.display(),
                json.display(),
                predictor.weights.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Diff { a, b, form, runs } => {
            let diff = crate::report::diff_trials(&runs.resolve(), &a, &b)?;
            out::text(&out::printable(&match form.form() {
                out::Form::Text => diff.text(),
                out::Form::Json => out::json(&serde_json::to_value(&diff)?),
                out::Form::Quiet => out::lines(diff.config.iter().map(|k| &k.key)),
            }));
            Ok(ExitCode::SUCCESS)
        }
        Command::ExportMetrics {
            target,
            out,
            format,
            wide,
            runs,
        } => {
            let format = format
                .or_else(|| crate::report::export::Format::of_path(&out))
                .with_context(|| {
                    format!(
                        "--out {}: cannot tell the format from the extension; use .csv, .json or .parquet, or pass --format (always, with --out -)",
                        out.display()
                    )
                })?;
            let rows = crate::report::export_metrics(
                &runs.resolve(),
                target.as_deref(),
                format,
                wide,
                &out,
            )?;
            if out == Path::new("-") {
                // The rows went to stdout; the count goes beside them.
                eprintln!("export: {} to stdout", crate::contract::count(rows, "row"));
            } else {
                say!(
                    "export: {} ({})",
                    out.display(),
                    crate::contract::count(rows, "row")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { port, bind, runs } => {
            let stop = stop_flag("the server")?;
            let options = crate::serve::Options {
                runs_dir: runs.resolve(),
                bind,
                port,
            };
            if !bind.is_loopback() {
                say!("warning: listening on {bind}: anyone who can reach it can read every trial in the store");
            }
            crate::serve::serve(&options, &stop, |address| {
                say!(
                    "vitrun serve: http://{address}/ over {} (read-only; Ctrl-C stops)",
                    options.runs_dir.display()
                );
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Report {
            targets,
            out,
            runs,
            fusion,
            discard,
            samples,
            score_threshold,
            metric,
        } => {
            anyhow::ensure!(
                (0.0..1.0).contains(&discard),
                "--discard {discard}: use a fraction in [0, 1), e.g. --discard 0.9"
            );
            if let Some(t) = score_threshold {
                anyhow::ensure!(
                    (0.0..=1.0).contains(&t),
                    "--score-threshold {t}: use a score in [0, 1], e.g. --score-threshold 0.2"
                );
            }
            let report = crate::report::build(
                &runs.resolve(),
                &targets,
                out.as_deref(),
                metric.as_deref().map(crate::report::Ranking::new),
                &crate::report::PanelOptions {
                    fusion,
                    discard,
                    samples,
                    score_threshold,
                },
            )?;
            for why in &report.skipped {
                say!("note: {why}");
            }
            say!(
                "report: {} ({})",
                report.index.display(),
                crate::contract::count(report.files.len(), "image")
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every argument of every subcommand a user sees has help, and every one that takes a
    /// value shows an example of it ("e.g.").
    #[test]
    fn every_argument_has_help_with_an_example() {
        let cli = super::Cli::command();
        let mut missing = Vec::new();
        for sub in cli.get_subcommands().filter(|c| !c.is_hide_set()) {
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                if help.is_empty() || (arg.get_action().takes_values() && !help.contains("e.g.")) {
                    missing.push(format!("vitrun {} {id}", sub.get_name()));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "without help or an example: {missing:#?}"
        );
    }
}
