//! What each subcommand does, kept apart from argument parsing.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use burn::tensor::backend::AutodiffBackend;

use crate::cli::Console;
use crate::config::{Config, Loaded};
use crate::track::{Store, TrialStart};
use crate::train::backend::{dispatch, BackendTask};
use crate::train::{run_trial, Observer, Outcome, TrialRun};

/// Where an experiment's trials and the store live.
pub fn store_path(config: &Config) -> PathBuf {
    Path::new(&config.train.runs_dir).join("vitrun.sqlite")
}

/// `runs/<experiment>/<trial-id>/`.
pub fn trial_dir(config: &Config, id: &str) -> PathBuf {
    Path::new(&config.train.runs_dir)
        .join(&config.name)
        .join(id)
}

struct TrainTask<'a> {
    loaded: &'a Loaded,
    resume: bool,
    quiet: bool,
    stop: Arc<AtomicBool>,
}

impl BackendTask for TrainTask<'_> {
    type Output = anyhow::Result<Outcome>;

    fn run<B: AutodiffBackend>(self, device: B::Device, label: String) -> anyhow::Result<Outcome> {
        let config = &self.loaded.config;
        let id = config.trial_id();
        let dir = trial_dir(config, &id);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let resolved =
            toml::to_string_pretty(config).context("cannot render the resolved config")?;
        std::fs::write(dir.join("config.toml"), resolved)
            .with_context(|| format!("cannot write {}", dir.join("config.toml").display()))?;
        let mut store = Store::open(&store_path(config))?;
        store.start_trial(&TrialStart {
            id: id.clone(),
            experiment: config.name.clone(),
            file: self.loaded.file.display().to_string(),
            config_json: serde_json::to_string(config)?,
            seed: config.seed,
            params: config.flat_params(),
            device: label.clone(),
        })?;
        store.add_artifact(&id, "config", &dir.join("config.toml"))?;
        let mut console = Console::new(self.quiet);
        console.message(&format!(
            "trial {id} of experiment {} on {label}; folder {}",
            config.name,
            dir.display()
        ));
        let threads = if config.train.threads == 0 {
            crate::train::num_cpus()
        } else {
            config.train.threads
        };
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global();
        let result = run_trial::<B>(
            TrialRun {
                config,
                trial_id: id.clone(),
                dir,
                store: &mut store,
                resume: self.resume,
                stop: self.stop,
                observer: &mut console,
            },
            device,
        );
        if let Err(e) = &result {
            store.set_status(&id, crate::track::Status::Failed, Some(&format!("{e:#}")))?;
        }
        result
    }
}

/// `vitrun run`: trains the experiment's single trial.
pub fn run(
    loaded: &Loaded,
    resume: bool,
    quiet: bool,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Outcome> {
    let device = loaded
        .config
        .train
        .device
        .parse()
        .map_err(anyhow::Error::msg)?;
    dispatch(
        device,
        TrainTask {
            loaded,
            resume,
            quiet,
            stop,
        },
    )?
}

/// `vitrun check`: the resolved config, each value with where it came from.
pub fn check(loaded: &Loaded) -> String {
    let json = serde_json::to_value(&loaded.config).expect("config serialises");
    let mut out = format!(
        "# {} — trial id {}\n",
        loaded.file.display(),
        loaded.config.trial_id()
    );
    let width = loaded.sources.keys().map(String::len).max().unwrap_or(0);
    for (path, source) in &loaded.sources {
        if path == "sweep" {
            continue;
        }
        let value = path
            .split('.')
            .try_fold(&json, |node, key| node.get(key))
            .map(|v| match v {
                serde_json::Value::Null => "(unset)".to_string(),
                other => other.to_string(),
            })
            .unwrap_or_default();
        out.push_str(&format!("{path:<width$} = {value:<24} # {source}\n"));
    }
    if !loaded.sweep.is_empty() {
        let s = &loaded.sweep;
        out.push_str(&format!(
            "# sweep: {} grid axes, {} zip groups, {} random axes ({} samples)\n",
            s.grid.len(),
            s.zip.len(),
            s.random.len(),
            s.samples
        ));
    }
    out
}

/// `vitrun ls`: one line per trial, newest first.
pub fn ls(runs_dir: &Path, experiment: Option<&str>) -> anyhow::Result<String> {
    let path = runs_dir.join("vitrun.sqlite");
    if !path.exists() {
        anyhow::bail!(
            "no run store at {}; run an experiment first (vitrun run FILE) or pass --runs-dir",
            path.display()
        );
    }
    let store = Store::open(&path)?;
    let mut out = format!(
        "{:<12} {:<20} {:<9} {:>6} {:>9} {:>9} {:<10} {}\n",
        "trial", "experiment", "status", "epochs", "best top1", "val loss", "device", "started"
    );
    for t in store.trials(experiment)? {
        let pct = |v: Option<f64>| {
            v.map(|v| format!("{:.1}%", v * 100.0))
                .unwrap_or("-".into())
        };
        out.push_str(&format!(
            "{:<12} {:<20} {:<9} {:>6} {:>9} {:>9} {:<10} {}{}\n",
            t.id,
            t.experiment,
            t.status,
            t.epochs.map(|e| e.to_string()).unwrap_or("-".into()),
            pct(t.best_top1),
            t.last_val_loss
                .map(|v| format!("{v:.4}"))
                .unwrap_or("-".into()),
            t.device.unwrap_or_default(),
            t.started_at.unwrap_or_default(),
            t.error.map(|e| format!("  ({e})")).unwrap_or_default(),
        ));
    }
    Ok(out)
}
