//! What each subcommand does, kept apart from argument parsing.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;

use super::out::{self, say, Form};

use crate::config::{Loaded, TrialsPerGpu};
use crate::contract::count;
use crate::contract::Status;
use crate::contract::TrialDir;
use crate::plan::{plan, short_value, Plan};
use crate::report::groups;
use crate::schedule::{self, PerGpu, Sweep, SweepReport, TrialCommand};
use crate::search::{Proposer, Space};
use crate::track::Store;

fn store_states(loaded: &Loaded) -> anyhow::Result<HashMap<String, crate::track::TrialState>> {
    let path = loaded.config.store_path();
    if !path.exists() {
        return Ok(HashMap::new());
    }
    crate::track::sync_before_reading(Path::new(&loaded.config.train.runs_dir))?;
    Ok(Store::open(&path)?.trial_states(&loaded.config.name)?)
}

/// A trial's swept values as a JSON object (`key: value`, TOML values as JSON).
fn point_json(point: &[(String, toml::Value)]) -> serde_json::Value {
    point
        .iter()
        .map(|(k, v)| {
            let value = serde_json::to_value(v).unwrap_or(serde_json::Value::Null);
            (k.clone(), value)
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// `vitrun plan`: every trial of the sweep with the values that vary and its status in the
/// store; runs nothing. `--json` gives one object with a `trials` array, `--quiet` the ids.
pub fn plan_table(loaded: &Loaded, form: Form) -> anyhow::Result<String> {
    if loaded.sweep.method.is_adaptive() {
        return search_table(loaded, form);
    }
    let plan = plan(loaded)?;
    let states = store_states(loaded)?;
    let status = |id: &str| states.get(id).map_or("new", |s| s.effective().as_str());
    match form {
        Form::Quiet => return Ok(out::lines(plan.trials.iter().map(|t| &t.id))),
        Form::Json => {
            let trials: Vec<serde_json::Value> = plan
                .trials
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "id": t.id,
                        "status": status(&t.id),
                        "values": point_json(&t.point),
                    })
                })
                .collect();
            return Ok(out::json(&serde_json::json!({
                "file": loaded.file.display().to_string(),
                "sweep": plan.sweep,
                "method": loaded.sweep.method.as_str(),
                "axes": plan.axes,
                "points": plan.points,
                "not_applicable": plan.not_applicable,
                "trials": trials,
            })));
        }
        Form::Text => {}
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &plan.trials {
        *counts.entry(status(&t.id)).or_default() += 1;
    }
    let merged = plan.points - plan.trials.len() - plan.not_applicable;
    let mut notes = Vec::new();
    if merged > 0 {
        notes.push(format!(
            "{} resolved to an existing trial",
            count(merged, "point")
        ));
    }
    if plan.not_applicable > 0 {
        notes.push(format!(
            "{} not created: a conditional axis does not apply",
            count(plan.not_applicable, "point")
        ));
    }
    let mut out = format!(
        "# {}: sweep {}, {}{} ({})\n",
        loaded.file.display(),
        plan.sweep,
        count(plan.trials.len(), "trial"),
        if notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", notes.join("; "))
        },
        counts
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let cells: Vec<Vec<String>> = plan
        .trials
        .iter()
        .map(|t| {
            plan.axes
                .iter()
                .map(|axis| {
                    t.point
                        .iter()
                        .find(|(k, _)| k == axis)
                        .map_or("-".to_string(), |(_, v)| short_value(v))
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = plan
        .axes
        .iter()
        .enumerate()
        .map(|(i, axis)| {
            cells
                .iter()
                .map(|c| c[i].len())
                .fold(axis.len(), usize::max)
        })
        .collect();
    let row = |id: &str, status: &str, values: &[String]| {
        let values: Vec<String> = values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        format!("{id:<12} {status:<9} {}\n", values.join("  ").trim_end())
    };
    out.push_str(&row("trial", "status", &plan.axes));
    for (t, values) in plan.trials.iter().zip(&cells) {
        out.push_str(&row(&t.id, status(&t.id), values));
    }
    Ok(out)
}

/// `vitrun plan` of a search: what it has proposed so far, with each trial's status and the
/// objective values the search sees (with several objectives, `*` marks the Pareto front of
/// the finished trials).
fn search_table(loaded: &Loaded, form: Form) -> anyhow::Result<String> {
    let proposer = Proposer::new(loaded)?;
    let plan = start_plan(loaded, Some(&proposer))?;
    if form == Form::Quiet {
        return Ok(out::lines(plan.trials.iter().map(|t| &t.id)));
    }
    let records = match loaded.config.store_path() {
        path if path.exists() => proposer.records(&Store::open(&path)?)?,
        _ => Vec::new(),
    };
    let history = proposer.history(&records);
    let s = &loaded.sweep;
    let objectives = proposer.objectives();
    let mut out = format!(
        "# {}: sweep {}, method {}, {} of {} trials proposed (search {}), {} {}\n",
        loaded.file.display(),
        plan.sweep,
        s.method.as_str(),
        plan.trials.len(),
        s.trials,
        proposer.search(),
        if objectives.len() > 1 {
            "objectives"
        } else {
            "objective"
        },
        crate::search::propose::describe(objectives)
    );
    let goals: Vec<_> = objectives.iter().map(|o| o.goal).collect();
    let finished: Vec<&crate::search::Observation> = history
        .iter()
        .filter(|o| matches!(o.outcome, crate::search::Outcome::Complete { .. }))
        .collect();
    let values: Vec<Vec<f64>> = finished
        .iter()
        .map(|o| o.outcome.values().to_vec())
        .collect();
    let on_front: Vec<usize> = crate::search::pareto::front(&values, &goals)
        .into_iter()
        .zip(&finished)
        .filter(|(front, _)| *front)
        .map(|(_, o)| o.number)
        .collect();
    if form == Form::Json {
        let trials: Vec<serde_json::Value> = records
            .iter()
            .zip(&plan.trials)
            .map(|(r, t)| {
                let seen = history.iter().find(|o| o.number == r.number);
                let values: serde_json::Map<String, serde_json::Value> = objectives
                    .iter()
                    .enumerate()
                    .map(|(k, o)| {
                        let v = seen.and_then(|o| o.outcome.values().get(k).copied());
                        (o.metric.clone(), serde_json::json!(v))
                    })
                    .collect();
                serde_json::json!({
                    "number": r.number,
                    "id": t.id,
                    "status": r.status.as_str(),
                    "objectives": values,
                    "pareto": on_front.contains(&r.number),
                    "values": point_json(&t.point),
                })
            })
            .collect();
        return Ok(out::json(&serde_json::json!({
            "file": loaded.file.display().to_string(),
            "sweep": plan.sweep,
            "method": s.method.as_str(),
            "budget": s.trials,
            "search": proposer.search().to_string(),
            "objectives": objectives.iter().map(|o| o.describe()).collect::<Vec<_>>(),
            "trials": trials,
        })));
    }
    let widths: Vec<usize> = objectives.iter().map(|o| o.metric.len().max(10)).collect();
    let mut header = format!("{:>4} {:<12} {:<9}", "#", "trial", "status");
    for (o, w) in objectives.iter().zip(&widths) {
        header.push_str(&format!(" {:>w$}", o.metric));
    }
    if objectives.len() > 1 {
        header.push_str(" pareto");
    }
    out.push_str(&format!("{header}  values\n"));
    for (r, t) in records.iter().zip(&plan.trials) {
        let seen = history.iter().find(|o| o.number == r.number);
        let mut row = format!("{:>4} {:<12} {:<9}", r.number, t.id, r.status.as_str());
        for (k, w) in widths.iter().enumerate() {
            let value = seen
                .and_then(|o| o.outcome.values().get(k).copied())
                .map_or("-".to_string(), |v| format!("{v:.4}"));
            row.push_str(&format!(" {value:>w$}"));
        }
        if objectives.len() > 1 {
            let mark = if on_front.contains(&r.number) {
                "*"
            } else {
                ""
            };
            row.push_str(&format!(" {mark:>6}"));
        }
        out.push_str(&format!("{row}  {}\n", t.describe()));
    }
    Ok(out)
}

/// How `vitrun sweep` places trials.
pub struct SweepOptions {
    /// `--devices`: overrides discovery (`cpu`, `cuda:0,cuda:1`, …).
    pub devices: Option<String>,
    /// `--cpu-slots`: CPU trials at once (default: one per core, at most one per trial).
    pub cpu_slots: Option<usize>,
    /// The user's `--set` strings, passed to every trial.
    pub sets: Vec<String>,
}

/// The sweep's slots, and the GPUs they are on.
fn slots_for(
    loaded: &Loaded,
    plan: &Plan,
    options: &SweepOptions,
    exe: &Path,
) -> anyhow::Result<(Vec<schedule::Slot>, Vec<schedule::Gpu>)> {
    anyhow::ensure!(
        options.cpu_slots != Some(0),
        "--cpu-slots 0: give at least 1 (CPU trials at once), or leave it out for one per core"
    );
    let discovered = schedule::discover();
    let gpu_build = cfg!(feature = "cuda") || cfg!(feature = "tch");
    let mut devices = match &options.devices {
        Some(list) => {
            schedule::parse_devices(list, &discovered, gpu_build).map_err(anyhow::Error::msg)?
        }
        None => discovered,
    };
    if !devices.gpus.is_empty() && !gpu_build {
        say!("note: GPUs found, but this vitrun was built without the cuda or tch feature; running on the CPU");
        devices.gpus.clear();
    }
    let per_gpu = match loaded.sweep.trials_per_gpu {
        TrialsPerGpu::Auto if !devices.gpus.is_empty() => {
            let gpu = devices.gpus[0].index;
            let need = schedule::largest(&plan.trials)
                .and_then(|t| schedule::measure(exe, &loaded.file, &options.sets, t, gpu));
            match need {
                Some(need_mib) => {
                    say!("trials_per_gpu = auto: one trial needs {need_mib} MiB (measured on cuda:{gpu})");
                    PerGpu::Measured { need_mib }
                }
                None => {
                    say!("note: trials_per_gpu = auto could not measure GPU memory (nvidia-smi or the probe failed); using 1");
                    PerGpu::Count(1)
                }
            }
        }
        TrialsPerGpu::Auto => PerGpu::Count(1),
        TrialsPerGpu::Count(n) => PerGpu::Count(n),
    };
    let cpu_trials = if loaded.sweep.method.is_adaptive() {
        loaded.sweep.trials
    } else {
        plan.trials
            .iter()
            .filter(|t| devices.gpus.is_empty() || t.config.train.device.is_gpu() == Some(false))
            .count()
    };
    let cpu_slots = options
        .cpu_slots
        .unwrap_or(devices.cpu_cores)
        .min(cpu_trials.max(1));
    Ok((schedule::layout(&devices, per_gpu, cpu_slots), devices.gpus))
}

/// The trials a sweep starts from: the grid's, or those a search has proposed so far.
/// The trials to start from: the planned grid, or what a search has proposed so far.
pub(super) fn start_plan(loaded: &Loaded, proposer: Option<&Proposer<'_>>) -> anyhow::Result<Plan> {
    let Some(proposer) = proposer else {
        return Ok(plan(loaded)?);
    };
    let path = loaded.config.store_path();
    let trials = if path.exists() {
        crate::track::sync_before_reading(Path::new(&loaded.config.train.runs_dir))?;
        proposer.planned(&Store::open(&path)?)?
    } else {
        Vec::new()
    };
    Ok(Plan {
        sweep: loaded.config.name.clone(),
        axes: Space::of(&loaded.sweep)
            .dims
            .into_iter()
            .map(|d| d.key)
            .collect(),
        points: loaded.sweep.trials,
        not_applicable: 0,
        trials,
    })
}

/// `vitrun sweep`: plans the file's trials and runs those the store does not have done.
pub fn sweep(
    loaded: &Loaded,
    options: &SweepOptions,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<SweepReport> {
    crate::task::preflight(loaded)?;
    let proposer = match loaded.sweep.method.is_adaptive() {
        true => Some(Proposer::new(loaded)?),
        false => None,
    };
    let mut plan = start_plan(loaded, proposer.as_ref())?;
    if proposer.is_some() && plan.trials.len() > loaded.sweep.trials {
        say!(
            "note: the search has {} proposals and trials = {}; running the first {}",
            plan.trials.len(),
            loaded.sweep.trials,
            loaded.sweep.trials
        );
        plan.trials.truncate(loaded.sweep.trials);
    }
    let exe = std::env::current_exe().context("cannot find the vitrun executable")?;
    let (slots, gpus) = slots_for(loaded, &plan, options, &exe)?;
    let mut trials: Vec<(String, &crate::config::Config)> = plan
        .trials
        .iter()
        .map(|t| (t.id.clone(), &t.config))
        .collect();
    if proposer.is_some() {
        trials.push((loaded.config.trial_id(), &loaded.config));
    }
    super::doctor::sweep_problems(&loaded.file, &trials, &gpus, options.devices.is_some())
        .map_err(anyhow::Error::msg)?;
    let launcher = TrialCommand {
        exe,
        file: loaded.file.clone(),
        sets: options.sets.clone(),
        sweep: plan.sweep.clone(),
    };
    let mut view = schedule::Console::new();
    schedule::run(Sweep {
        plan,
        proposals: proposer.as_ref().map(|p| p as &dyn schedule::Proposals),
        file: loaded.file.clone(),
        store_path: loaded.config.store_path(),
        slots,
        max_retries: loaded.sweep.max_retries,
        retry_on: loaded.sweep.retry_on.clone(),
        launcher: &launcher,
        stop,
        view: &mut view,
    })
}

/// The end-of-sweep table, best trial first.
pub fn sweep_summary(report: &SweepReport) -> String {
    let mut out = format!(
        "{:<12} {:<9} {:>12} {:>6} {:>8}  {}\n",
        "trial", "status", "best", "epochs", "time", "values"
    );
    for r in &report.results {
        out.push_str(&format!(
            "{:<12} {:<9} {:>12} {:>6} {:>8}  {}{}\n",
            r.id,
            r.status,
            r.best
                .map(|v| format!("{} {:.1}%", r.best_metric, v * 100.0))
                .unwrap_or_else(|| "-".into()),
            r.epochs
                .map(|e| e.to_string())
                .unwrap_or_else(|| "-".into()),
            r.seconds
                .map(|s| schedule::clock(std::time::Duration::from_secs_f64(s.max(0.0))))
                .unwrap_or_else(|| "-".into()),
            r.point,
            r.error
                .as_ref()
                .filter(|_| r.status != Status::Finished)
                .map(|e| format!("  ({e})"))
                .unwrap_or_default()
        ));
    }
    out.push_str(&format!(
        "{}, {} already done before this run, {} started, {} wall time\n",
        count(report.results.len(), "trial"),
        report.skipped,
        count(report.launched, "process"),
        schedule::clock(report.wall)
    ));
    out
}

/// `vitrun check`: the resolved config, each value with where it came from (and, for a sweep,
/// how many trials it plans; an invalid point is an error here too).
/// Every resolved key with its value and where it came from (keys inside an unset table — a
/// teacher given by name — and `[sweep]` left out).
fn resolved_keys<'a>(
    loaded: &'a Loaded,
    json: &'a serde_json::Value,
) -> impl Iterator<Item = (&'a String, &'a serde_json::Value, String)> {
    loaded.sources.iter().filter_map(move |(path, source)| {
        if path == "sweep" {
            return None;
        }
        let value = path.split('.').try_fold(json, |node, key| node.get(key))?;
        Some((path, value, source.to_string()))
    })
}

/// `vitrun check --json`: the trial id, the files it extends and every key as
/// `{"value", "source"}`.
fn check_json(loaded: &Loaded) -> anyhow::Result<String> {
    let json = serde_json::to_value(&loaded.config)?;
    let keys: serde_json::Map<String, serde_json::Value> = resolved_keys(loaded, &json)
        .map(|(path, value, source)| {
            (
                path.clone(),
                serde_json::json!({ "value": value, "source": source }),
            )
        })
        .collect();
    let answer = serde_json::json!({
        "file": loaded.file.display().to_string(),
        "trial_id": loaded.config.trial_id(),
        "extends": loaded.bases().iter().map(|b| b.display().to_string()).collect::<Vec<_>>(),
        "keys": keys,
    });
    Ok(format!("{}\n", serde_json::to_string_pretty(&answer)?))
}

/// `vitrun check`: validates what a run would (data paths, the device, every sweep axis
/// value), then prints the resolved config with each key's source (`--json`: one object;
/// `--quiet`: the trial id).
pub fn check(loaded: &Loaded, form: Form) -> anyhow::Result<String> {
    crate::task::preflight(loaded)?;
    crate::train::backend::supports(&loaded.config.train)
        .map_err(|e| crate::train::backend::in_experiment(loaded, e))?;
    if !loaded.sweep.is_empty() {
        crate::plan::check_axes(loaded)?;
    }
    match form {
        Form::Text => check_text(loaded),
        Form::Json => check_json(loaded),
        Form::Quiet => Ok(format!("{}\n", loaded.config.trial_id())),
    }
}

/// `vitrun check`'s table.
fn check_text(loaded: &Loaded) -> anyhow::Result<String> {
    let json = serde_json::to_value(&loaded.config).expect("config serialises");
    let mut out = format!(
        "# {} — trial id {}\n",
        loaded.file.display(),
        loaded.config.trial_id()
    );
    if !loaded.bases().is_empty() {
        let bases: Vec<String> = loaded
            .bases()
            .iter()
            .map(|b| b.display().to_string())
            .collect();
        out.push_str(&format!(
            "# extends (each overridden by the next, all by the file): {}\n",
            bases.join(", ")
        ));
    }
    let width = loaded.sources.keys().map(String::len).max().unwrap_or(0);
    for (path, value, source) in resolved_keys(loaded, &json) {
        let value = match value {
            serde_json::Value::Null => "(unset)".to_string(),
            other => other.to_string(),
        };
        out.push_str(&format!("{path:<width$} = {value:<24} # {source}\n"));
    }
    let runs_dir = crate::contract::RunsDir::new(&loaded.config.train.runs_dir);
    let store = runs_dir
        .store()
        .exists()
        .then(|| Store::open(&runs_dir.store()).ok())
        .flatten();
    if let Some(note) = crate::train::teacher::check_note(&loaded.config, store.as_ref()) {
        out.push_str(&note);
        out.push('\n');
    }
    if loaded.sweep.method.is_adaptive() {
        let s = &loaded.sweep;
        let space = Space::of(s);
        let conditional = space.dims.iter().filter(|d| d.conditional).count();
        out.push_str(&format!(
            "# sweep: method {}, {} over {} ({conditional} conditional), {}{}, each axis value validated; `vitrun plan` lists what it has proposed\n",
            s.method.as_str(),
            count(s.trials, "trial"),
            count(space.dims.len(), "axis"),
            match crate::task::objectives(loaded)?.as_slice() {
                [one] => format!("objective {}", one.describe()),
                many => format!("objectives {}", crate::search::propose::describe(many)),
            },
            if s.method == crate::config::Method::Tpe {
                format!(", {} random trials first", s.startup)
            } else {
                String::new()
            }
        ));
    } else if !loaded.sweep.is_empty() {
        let s = &loaded.sweep;
        let points = crate::plan::check_axes(loaded)?;
        out.push_str(&format!(
            "# sweep: {} from {}, {}, {} ({}), each axis value validated; `vitrun plan` lists the trials\n",
            count(points, "point"),
            count(s.grid.len(), "grid axis"),
            count(s.zip.len(), "zip group"),
            count(s.random.len(), "random axis"),
            count(s.samples, "sample")
        ));
    }
    Ok(out)
}

pub(super) fn open_store(runs_dir: &Path) -> anyhow::Result<Store> {
    let path = crate::contract::RunsDir::new(runs_dir).store();
    if !path.exists() {
        anyhow::bail!(
            "no run store at {}; run an experiment first (vitrun run FILE) or pass --runs-dir",
            path.display()
        );
    }
    crate::track::sync_before_reading(runs_dir)?;
    Ok(Store::open(&path)?)
}

/// `vitrun ls --group`: trials that differ only in `seed` as one line per group, ranked by the
/// mean of their best main metric (each row names it: `top1`, `miou`, `map50`), with the
/// standard deviation and a 95 % interval (n ≥ 3); with `json`, one array of objects.
pub fn ls_groups(runs_dir: &Path, experiment: Option<&str>, json: bool) -> anyhow::Result<String> {
    let store = open_store(runs_dir)?;
    let summaries = store.trials(experiment)?;
    let mut configs = Vec::new();
    for t in &summaries {
        let (json, _) = store
            .trial_config(&t.id)?
            .with_context(|| format!("trial {} is not in the store", t.id))?;
        configs.push(crate::config::Config::from_stored(&json, &t.id).map_err(anyhow::Error::msg)?);
    }
    let refs: Vec<&crate::config::Config> = configs.iter().collect();
    let groups = groups::replicates(&refs);
    let representatives: Vec<&crate::config::Config> = groups.iter().map(|g| refs[g[0]]).collect();
    let differing = groups::labels(&representatives);
    struct Row<'a> {
        stats: Option<groups::Stats>,
        metric: &'a str,
        values: &'a str,
        trials: Vec<&'a str>,
    }
    let mut rows: Vec<Row> = groups
        .iter()
        .zip(&differing)
        .map(|(members, values)| Row {
            stats: groups::stats(
                &members
                    .iter()
                    .filter_map(|&i| summaries[i].best)
                    .collect::<Vec<_>>(),
            ),
            metric: &summaries[members[0]].best_metric,
            values,
            trials: members.iter().map(|&i| summaries[i].id.as_str()).collect(),
        })
        .collect();
    let mean = |s: &Option<groups::Stats>| s.as_ref().map_or(f64::NEG_INFINITY, |s| s.mean);
    rows.sort_by(|a, b| mean(&b.stats).total_cmp(&mean(&a.stats)));
    if json {
        let objects: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "n": r.trials.len(),
                    "metric": format!("val/{}", r.metric),
                    "mean": r.stats.as_ref().map(|s| s.mean),
                    "std": r.stats.as_ref().and_then(|s| s.std),
                    "ci95": r.stats.as_ref().and_then(|s| s.ci95).map(|(lo, hi)| [lo, hi]),
                    "values": r.values,
                    "trials": r.trials,
                })
            })
            .collect();
        return Ok(format!("{}\n", serde_json::to_string_pretty(&objects)?));
    }
    let width = differing.iter().map(String::len).max().unwrap_or(0).max(6);
    let pct = |v: f64| format!("{:.2}%", v * 100.0);
    let mut out = format!(
        "{:>3} {:<8} {:>8} {:>8} {:<19} {:<width$}  {}\n",
        "n", "metric", "mean", "std", "95% CI (n >= 3)", "values", "trials"
    );
    for r in rows {
        let s = r.stats.as_ref();
        out.push_str(&format!(
            "{:>3} {:<8} {:>8} {:>8} {:<19} {:<width$}  {}\n",
            r.trials.len(),
            r.metric,
            s.map_or("-".into(), |s| pct(s.mean)),
            s.and_then(|s| s.std)
                .map_or("-".into(), |v| format!("± {:.2}", v * 100.0)),
            s.and_then(|s| s.ci95)
                .map_or("-".into(), |(lo, hi)| format!(
                    "[{:.2}, {:.2}]",
                    lo * 100.0,
                    hi * 100.0
                )),
            r.values,
            r.trials.join(","),
        ));
    }
    Ok(out)
}

/// The folder of trial `prefix` (an id or a unique prefix) in the store under `runs_dir`.
fn trial_folder(
    store: &Store,
    runs_dir: &Path,
    prefix: &str,
) -> anyhow::Result<(String, TrialDir)> {
    anyhow::ensure!(
        crate::config::is_safe_name(prefix),
        "{prefix:?} is not a trial id; `vitrun ls` lists them"
    );
    let id = store.unique_trial(prefix)?;
    let (_, experiment) = store
        .trial_config(&id)?
        .with_context(|| format!("trial {id} is not in the store"))?;
    anyhow::ensure!(
        crate::config::is_safe_name(&experiment),
        "the store names trial {id}'s experiment {experiment:?}, which is not a safe folder name"
    );
    let dir = crate::contract::RunsDir::new(runs_dir)
        .experiment(&experiment)
        .trial(&id);
    Ok((id, dir))
}

/// The last `lines` lines of a trial's log, when it has one.
pub fn log_tail(dir: &TrialDir, lines: usize) -> Option<String> {
    let text = std::fs::read(dir.log()).ok()?;
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &all[all.len().saturating_sub(lines)..];
    (!tail.is_empty()).then(|| tail.join("\n"))
}

/// `vitrun logs TRIAL [--follow]`: the output of a trial a sweep or a SLURM task ran; with
/// `follow`, what it appends until it ends (or `stop` is set).
pub fn logs(runs_dir: &Path, prefix: &str, follow: bool, stop: &AtomicBool) -> anyhow::Result<()> {
    let store = open_store(runs_dir)?;
    let (id, dir) = trial_folder(&store, runs_dir, prefix)?;
    // A SLURM task that ended before its trial started (a failed setup line, a missing
    // executable) left only SLURM's own output file.
    let log = match dir.log() {
        log if log.is_file() => log,
        log => store
            .task_output(&id)?
            .filter(|out| out.is_file())
            .with_context(|| format!(
                "trial {id} has no log at {}: a trial run with `vitrun run` prints to its terminal; sweeps and SLURM tasks write it",
                log.display()
            ))?,
    };
    let mut read = 0u64;
    let mut quiet_since = std::time::Instant::now();
    loop {
        let mut file =
            std::fs::File::open(&log).with_context(|| format!("cannot read {}", log.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        if size < read {
            read = 0;
        }
        if size > read {
            use std::io::{Read, Seek};
            file.seek(std::io::SeekFrom::Start(read))?;
            let mut bytes = Vec::new();
            file.take(size - read).read_to_end(&mut bytes)?;
            read = size;
            out::text(&String::from_utf8_lossy(&bytes));
            quiet_since = std::time::Instant::now();
        }
        if !follow || stop.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        if quiet_since.elapsed() > std::time::Duration::from_secs(2) {
            crate::track::sync_before_reading(runs_dir)?;
            let running = Store::open(&crate::contract::RunsDir::new(runs_dir).store())?
                .trial_states_of(&id)?
                .is_some_and(|s| {
                    !s.effective().is_done()
                        && s.effective() != Status::Failed
                        && s.effective() != Status::Crashed
                });
            if !running {
                return Ok(());
            }
            quiet_since = std::time::Instant::now();
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// `vitrun rm`: each trial's rows, then its folder; a trial that is running or waiting to run
/// is refused and kept. Returns the lines to print and whether any was refused.
pub fn rm(runs_dir: &Path, prefixes: &[String]) -> anyhow::Result<(String, bool)> {
    let mut store = open_store(runs_dir)?;
    let (mut out, mut refused) = (String::new(), false);
    for prefix in prefixes {
        let (id, dir) = trial_folder(&store, runs_dir, prefix)?;
        match store.remove_trial(&id)? {
            crate::track::Removal::Refused(status) => {
                refused = true;
                out.push_str(&format!(
                    "kept trial {id}: it is {status}; stop it first (Ctrl-C its sweep, or vitrun cancel EXPERIMENT for a cluster), then remove it\n"
                ));
            }
            crate::track::Removal::Removed => {
                let folder = dir.path();
                // A search worker's record of proposing it would fold it back in.
                if let Some(experiment) = folder.parent() {
                    let proposals = crate::contract::ExperimentDir::at(experiment).proposals();
                    crate::track::proposal_files::remove_trial(&proposals, &id)?;
                }
                if folder.exists() {
                    std::fs::remove_dir_all(folder).with_context(|| {
                        format!(
                            "trial {id} left the store, but its folder {} could not be removed; remove it by hand",
                            folder.display()
                        )
                    })?;
                }
                out.push_str(&format!("removed trial {id} and {}\n", folder.display()));
            }
        }
    }
    Ok((out, refused))
}

/// The experiment of trial `prefix` (an id or a unique prefix) in the store under `runs_dir`,
/// loaded from the trial folder's resolved `config.toml` with `train.runs_dir` set to
/// `runs_dir`; it must still resolve to the trial's id.
pub fn stored_trial(prefix: &str, runs_dir: &Path) -> anyhow::Result<Loaded> {
    let store = open_store(runs_dir)?;
    let (id, dir) = trial_folder(&store, runs_dir, prefix)?;
    let file = dir.config();
    anyhow::ensure!(
        file.is_file(),
        "{} is missing: trial {id} never started here, so it has no checkpoint to resume; run its experiment file with the same --set values instead",
        file.display()
    );
    let runs = format!("train.runs_dir={:?}", runs_dir.display().to_string());
    let loaded = crate::config::load(&file, &[runs])?;
    let resolved = loaded.config.trial_id();
    anyhow::ensure!(
        resolved == id,
        "{} resolves to trial {resolved}, not {id}: it was edited; restore it, or run the experiment file with --resume",
        file.display()
    );
    Ok(loaded)
}

/// Each item once, in the order of its first appearance (`Vec::dedup` only drops adjacent
/// repeats, so an unsorted list keeps its interleaved ones).
pub(super) fn distinct<T: Ord + Clone>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut seen = std::collections::BTreeSet::new();
    items
        .into_iter()
        .filter(|item| seen.insert(item.clone()))
        .collect()
}
