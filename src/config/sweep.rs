//! The `[sweep]` table, parsed and checked. Expanding it into trials is the planner's job.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::condition::{self, When};
use super::error::ConfigError;
use super::schema::EXECUTION_KEYS;
use super::slurm::SlurmSpec;
use super::suggest::nearest;
use crate::contract::{Goal, Metric, Status, TaskMetrics};

/// The default of `[sweep] max_trials`: sweeps that expand to more points are refused.
pub const DEFAULT_MAX_TRIALS: usize = 100_000;

/// The default of `[sweep] startup`: random trials before TPE models the results (Optuna's).
pub const DEFAULT_STARTUP: usize = 10;

/// How many trials share one GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrialsPerGpu {
    Count(usize),
    /// Measured by a probe run of the largest trial.
    Auto,
}

/// A random axis: drawn `samples` times with the sweep seed (or proposed by a search).
#[derive(Debug, Clone, PartialEq)]
pub enum RandomAxis {
    LogUniform(f64, f64),
    Uniform(f64, f64),
    /// A whole number from the first to the second, both included.
    Int(i64, i64),
    Choice(Vec<toml::Value>),
}

/// How a sweep picks its trials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The product of the grid axes times `samples` draws of the random axes, all planned
    /// up front.
    Grid,
    /// `trials` points drawn at random from every axis (a list is a choice).
    Random,
    /// `trials` points, each proposed by the tree-structured Parzen estimator from the results
    /// so far (random for the first `startup`).
    Tpe,
}

impl Method {
    /// The name `[sweep] method` spells.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Grid => "grid",
            Method::Random => "random",
            Method::Tpe => "tpe",
        }
    }

    /// Whether trials are proposed one by one from the store instead of planned up front.
    pub fn is_adaptive(self) -> bool {
        self != Method::Grid
    }
}

/// The parsed `[sweep]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepSpec {
    /// Grid axes: the cartesian product of their values.
    pub grid: Vec<(String, Vec<toml::Value>)>,
    /// `[[sweep.zip]]` groups: axes that vary together, index by index.
    pub zip: Vec<Vec<(String, Vec<toml::Value>)>>,
    /// Random axes, sampled `samples` times.
    pub random: Vec<(String, RandomAxis)>,
    /// Conditions of conditional axes (grid or random), by axis key: the axis applies only
    /// where its condition holds.
    pub when: BTreeMap<String, When>,
    pub samples: usize,
    pub seed: u64,
    pub method: Method,
    /// The budget of a proposing method: how many trials the search makes in all.
    pub trials: usize,
    /// `objective`, or each of `objectives`: `split/name`, optionally `:max` or `:min`, or
    /// `params` or `peak_rss` (the task's main metric when none is set; see
    /// `task::objectives`).
    pub objectives: Vec<String>,
    /// Trials drawn at random before TPE models the results.
    pub startup: usize,
    pub max_retries: usize,
    /// Which failures are relaunched (up to `max_retries` times in one sweep run).
    pub retry_on: Vec<Status>,
    /// Sweeps that expand to more points than this are refused.
    pub max_trials: usize,
    pub trials_per_gpu: TrialsPerGpu,
    /// `[sweep.early_stop]`: when to stop a trial that is clearly behind its peers.
    pub early_stop: Option<EarlyStop>,
    /// `[sweep.slurm]`: what the SLURM launcher asks the cluster for.
    pub slurm: SlurmSpec,
}

/// Which early-stopping rule a sweep uses.
#[derive(Debug, Clone, PartialEq)]
pub enum StopRule {
    /// Vizier's median rule: stop when the trial's best so far is worse than the median of its
    /// peers' running averages at the same epoch.
    Median {
        min_epochs: usize,
        min_trials: usize,
    },
    /// Asynchronous successive halving: at each rung (an epoch count) keep only the top
    /// `1 / reduction_factor` of the trials that reached it.
    Asha {
        rungs: Vec<usize>,
        reduction_factor: usize,
    },
}

/// `[sweep.early_stop]`, parsed and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct EarlyStop {
    pub rule: StopRule,
    /// `split/name` of the metric compared, e.g. `val/top1`: the task's main metric when the
    /// table names none (see [`EarlyStop::resolve`]).
    pub metric: Option<String>,
    /// Whether larger or smaller values are better: the metric's own direction when unset.
    pub goal: Option<Goal>,
}

/// An early-stopping rule with the metric it compares and that metric's direction.
#[derive(Debug, Clone, PartialEq)]
pub struct StopCriterion {
    pub rule: StopRule,
    /// `split/name`, e.g. `val/top1`.
    pub metric: String,
    pub goal: Goal,
}

impl EarlyStop {
    /// The rule for trials of a task that logs `metrics`: its main metric unless the table
    /// names another it logs; a metric the task never logs could never stop a trial, and is
    /// an error naming those it does.
    pub fn resolve(&self, metrics: &TaskMetrics) -> Result<StopCriterion, SweepError> {
        let rankable = metrics.rankable();
        let metric = match &self.metric {
            None => metrics.main().key(),
            Some(m) if rankable.contains(m) => m.clone(),
            Some(_) => {
                return Err(SweepError::new(
                    "early_stop.metric",
                    format!(
                        "one of the metrics a {:?} trial logs: {}",
                        metrics.task,
                        rankable.join(", ")
                    ),
                ))
            }
        };
        Ok(StopCriterion {
            rule: self.rule.clone(),
            goal: self.goal.unwrap_or_else(|| Goal::of(&metric)),
            metric,
        })
    }
}

/// What a proposing search optimises: a metric and its direction.
#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    /// `split/name`, e.g. `val/top1`.
    pub metric: String,
    pub goal: Goal,
}

impl Objective {
    /// `split/name` with `:max` or `:min` when the goal is not the metric's own.
    pub fn describe(&self) -> String {
        let word = match self.goal {
            Goal::Maximize => "max",
            Goal::Minimize => "min",
        };
        format!("{}:{word}", self.metric)
    }
}

impl SweepSpec {
    /// What a search optimises for trials of a task that logs `metrics`: each of `objectives`
    /// (with its `:max` or `:min`; `params` and `peak_rss` name the parameter count and the
    /// peak memory), or the task's main metric; one the task never logs is an error naming
    /// those it does.
    pub fn resolve_objectives(&self, metrics: &TaskMetrics) -> Result<Vec<Objective>, SweepError> {
        if self.objectives.is_empty() {
            let metric = metrics.main().key();
            return Ok(vec![Objective {
                goal: Goal::of(&metric),
                metric,
            }]);
        }
        let key = if self.objectives.len() == 1 {
            "objective"
        } else {
            "objectives"
        };
        let mut out: Vec<Objective> = Vec::new();
        for text in &self.objectives {
            let objective = parse_objective(key, text, metrics)?;
            if out.iter().any(|o| o.metric == objective.metric) {
                return Err(SweepError::new(
                    key,
                    format!("`{}` is listed twice", objective.metric),
                ));
            }
            out.push(objective);
        }
        Ok(out)
    }
}

/// One objective as written: an alias or `split/name`, then an optional direction.
fn parse_objective(key: &str, text: &str, metrics: &TaskMetrics) -> Result<Objective, SweepError> {
    let (metric, goal) = match text.rsplit_once(':') {
        Some((m, "max")) => (m, Some(Goal::Maximize)),
        Some((m, "min")) => (m, Some(Goal::Minimize)),
        Some((_, other)) => {
            return Err(SweepError::new(
                key,
                format!("`:{other}` is not a direction; end the metric with `:max` or `:min`, or leave it off for the metric's own"),
            ))
        }
        None => (text, None),
    };
    let metric = match metric {
        "params" => Metric::TRAIN_PARAMS.key(),
        "peak_rss" => Metric::TRAIN_PEAK_RSS.key(),
        other => other.to_string(),
    };
    let rankable = metrics.rankable();
    if !rankable.contains(&metric) {
        return Err(SweepError::new(
            key,
            format!(
                "`{metric}` is not a metric a {:?} trial logs; use one of {}, or params, peak_rss",
                metrics.task,
                rankable.join(", ")
            ),
        ));
    }
    Ok(Objective {
        goal: goal.unwrap_or_else(|| Goal::of(&metric)),
        metric,
    })
}

impl Default for SweepSpec {
    fn default() -> Self {
        SweepSpec {
            grid: Vec::new(),
            zip: Vec::new(),
            random: Vec::new(),
            when: BTreeMap::new(),
            samples: 0,
            seed: 0,
            method: Method::Grid,
            trials: 0,
            objectives: Vec::new(),
            startup: DEFAULT_STARTUP,
            max_retries: 0,
            retry_on: vec![Status::Crashed, Status::Oom, Status::Stale],
            max_trials: DEFAULT_MAX_TRIALS,
            trials_per_gpu: TrialsPerGpu::Count(1),
            early_stop: None,
            slurm: SlurmSpec::default(),
        }
    }
}

/// A structural problem in `[sweep]`, before it is placed in the file.
#[derive(Debug)]
pub struct SweepError {
    key: String,
    reason: String,
}

impl SweepError {
    fn new(key: &str, reason: impl Into<String>) -> Self {
        SweepError {
            key: format!("sweep.{key}"),
            reason: reason.into(),
        }
    }

    /// The error placed at `place` (`file:line` or the file).
    pub fn at(self, place: String) -> ConfigError {
        ConfigError::Invalid {
            place,
            key: self.key,
            reason: self.reason,
        }
    }

    /// The error placed at its key's `file:line` (`place_of` gives it, for the key or for
    /// the axis of a `.when`), or at the `[sweep]` table's (a key that is missing), or at
    /// `file`.
    pub(crate) fn placed(
        self,
        file: &Path,
        place_of: impl Fn(&str) -> Option<String>,
    ) -> ConfigError {
        let place = place_of(&self.key)
            .or_else(|| self.key.strip_suffix(".when").and_then(&place_of))
            .or_else(|| place_of("sweep"))
            .unwrap_or_else(|| file.display().to_string());
        ConfigError::Invalid {
            place,
            key: self.key,
            reason: self.reason,
        }
    }
}

/// Whether a sweep can vary `key`: a config key that defines the trial (not where or how fast
/// it runs, nor its name), or `extends` (fragment files layered under the experiment: "which
/// recipe" as one axis).
fn is_axis_key(key: &str, schema: &BTreeSet<String>) -> bool {
    key == super::compose::EXTENDS
        || (schema.contains(key) && !EXECUTION_KEYS.contains(&key) && key != "name")
}

fn check_axis_key(key: &str, schema: &BTreeSet<String>) -> Result<(), SweepError> {
    if is_axis_key(key, schema) {
        return Ok(());
    }
    Err(SweepError::new(
        key,
        format!(
            "`{key}` is not a config key a sweep can vary; did you mean `{}`?",
            nearest(key, schema)
        ),
    ))
}

/// The axes an entry of `[sweep]` holds: itself when `key` is a config key, or, when `key` is a
/// section (`[sweep.optimizer]`, or `--set sweep.optimizer.lr=[…]`, which nests the same way),
/// the axes under it with their full keys.
fn under_sections<'a>(
    key: &str,
    v: &'a toml::Value,
    schema: &BTreeSet<String>,
) -> Vec<(String, &'a toml::Value)> {
    let inner = format!("{key}.");
    let section = !schema.contains(key) && schema.iter().any(|s| s.starts_with(&inner));
    match v.as_table() {
        Some(table) if section => table
            .iter()
            .flat_map(|(k, v)| under_sections(&format!("{inner}{k}"), v, schema))
            .collect(),
        _ => vec![(key.to_string(), v)],
    }
}

/// The settings of `[sweep]` that hold one value (besides its `early_stop` and `slurm` tables;
/// everything else in it is an axis).
pub const SWEEP_SETTINGS: [&str; 12] = [
    "method",
    "trials",
    "objective",
    "objectives",
    "startup",
    "samples",
    "seed",
    "max_retries",
    "max_trials",
    "retry_on",
    "trials_per_gpu",
    "zip",
];

/// The keys of `[sweep.early_stop]`.
pub const EARLY_STOP_KEYS: [&str; 7] = [
    "rule",
    "metric",
    "mode",
    "rungs",
    "reduction_factor",
    "min_epochs",
    "min_trials",
];

/// Every key path under `sweep.` that `--set` and `VITRUN_SWEEP__*` may set: the settings,
/// each `early_stop` and `slurm` key, and the axes (a config key, or `extends`; a list or an
/// axis table as the value).
pub fn is_sweep_key(key: &str, schema: &BTreeSet<String>) -> bool {
    if let Some(k) = key.strip_prefix("early_stop.") {
        return EARLY_STOP_KEYS.contains(&k);
    }
    if let Some(k) = key.strip_prefix("slurm.") {
        return super::slurm::SLURM_KEYS.contains(&k);
    }
    SWEEP_SETTINGS.contains(&key) || is_axis_key(key, schema)
}

/// The keys [`is_sweep_key`] accepts, with `sweep.` in front (for "did you mean").
pub fn sweep_keys(schema: &BTreeSet<String>) -> BTreeSet<String> {
    let settings = SWEEP_SETTINGS.iter().map(|k| k.to_string());
    let early = EARLY_STOP_KEYS.iter().map(|k| format!("early_stop.{k}"));
    let slurm = super::slurm::SLURM_KEYS
        .iter()
        .map(|k| format!("slurm.{k}"));
    let axes = schema
        .iter()
        .filter(|k| is_axis_key(k, schema))
        .cloned()
        .chain(std::iter::once(super::compose::EXTENDS.to_string()));
    settings
        .chain(early)
        .chain(slurm)
        .chain(axes)
        .map(|k| format!("sweep.{k}"))
        .collect()
}

fn values(key: &str, v: &toml::Value) -> Result<Vec<toml::Value>, SweepError> {
    match v {
        toml::Value::Array(a) if !a.is_empty() => Ok(a.clone()),
        _ => Err(SweepError::new(
            key,
            "an axis is a non-empty list of values, e.g. [1e-4, 3e-4]",
        )),
    }
}

fn bounds(key: &str, v: &toml::Value, positive: bool) -> Result<(f64, f64), SweepError> {
    let pair: Option<Vec<f64>> = v.as_array().map(|a| {
        a.iter()
            .filter_map(|x| x.as_float().or(x.as_integer().map(|i| i as f64)))
            .collect()
    });
    let finite = |lo: f64, hi: f64| {
        let (lo, hi) = if positive {
            (lo.ln(), hi.ln())
        } else {
            (lo, hi)
        };
        lo.is_finite() && hi.is_finite() && (hi - lo).is_finite()
    };
    match pair.as_deref() {
        Some([lo, hi]) if lo < hi && (!positive || *lo > 0.0) && finite(*lo, *hi) => Ok((*lo, *hi)),
        _ => Err(SweepError::new(
            key,
            if positive {
                "log_uniform takes [low, high] with 0 < low < high, both finite"
            } else {
                "uniform takes [low, high] with low < high, both finite and high - low finite"
            },
        )),
    }
}

impl SweepSpec {
    /// Parses `[sweep]`; every axis must name a config key.
    pub fn parse(
        table: Option<&toml::Table>,
        schema: &BTreeSet<String>,
    ) -> Result<Self, SweepError> {
        let mut spec = SweepSpec::default();
        let Some(table) = table else {
            return Ok(spec);
        };
        for (key, v) in table {
            match key.as_str() {
                "zip" => {
                    let groups = v.as_array().ok_or_else(|| {
                        SweepError::new("zip", "use [[sweep.zip]] tables of equal-length lists")
                    })?;
                    for g in groups {
                        let g = g.as_table().ok_or_else(|| {
                            SweepError::new("zip", "each [[sweep.zip]] entry is a table")
                        })?;
                        let mut group = Vec::new();
                        for (k, vals) in g {
                            check_axis_key(k, schema)?;
                            group.push((k.clone(), values(k, vals)?));
                        }
                        let lens: BTreeSet<usize> = group.iter().map(|(_, v)| v.len()).collect();
                        if lens.len() > 1 {
                            return Err(SweepError::new(
                                "zip",
                                format!("zipped axes must have equal lengths, got {lens:?}"),
                            ));
                        }
                        spec.zip.push(group);
                    }
                }
                "seed" if v.is_array() => spec.grid.push((key.clone(), values(key, v)?)),
                "samples" | "seed" | "max_retries" | "max_trials" | "trials" | "startup" => {
                    let n = v
                        .as_integer()
                        .filter(|n| *n >= 0)
                        .ok_or_else(|| SweepError::new(key, "a whole number, 0 or more"))?;
                    match key.as_str() {
                        "samples" => spec.samples = n as usize,
                        "seed" => spec.seed = n as u64,
                        "max_trials" => spec.max_trials = n as usize,
                        "trials" => spec.trials = n as usize,
                        "startup" => spec.startup = n as usize,
                        _ => spec.max_retries = n as usize,
                    }
                }
                "retry_on" => spec.retry_on = retry_on(v)?,
                "method" => {
                    spec.method = match v.as_str() {
                        Some("grid") => Method::Grid,
                        Some("random") => Method::Random,
                        Some("tpe") => Method::Tpe,
                        _ => {
                            return Err(SweepError::new(
                                key,
                                "method = \"grid\", \"random\" or \"tpe\"",
                            ))
                        }
                    }
                }
                "objective" => {
                    let text = v.as_str().ok_or_else(|| {
                        SweepError::new(
                            key,
                            "a metric as a string, e.g. \"val/top1\" or \"val/loss:min\"",
                        )
                    })?;
                    spec.objectives = vec![text.to_string()];
                }
                "objectives" => {
                    let texts: Option<Vec<String>> = v
                        .as_array()
                        .and_then(|a| a.iter().map(|x| x.as_str().map(str::to_string)).collect());
                    spec.objectives = match texts {
                        Some(t) if t.len() >= 2 => t,
                        _ => return Err(SweepError::new(
                            key,
                            "two or more metrics, e.g. [\"val/top1:max\", \"params\"] (one is `objective`)",
                        )),
                    };
                }
                "trials_per_gpu" => {
                    spec.trials_per_gpu = match (v.as_integer(), v.as_str()) {
                        (Some(n), _) if (1..=64).contains(&n) => TrialsPerGpu::Count(n as usize),
                        (_, Some("auto")) => TrialsPerGpu::Auto,
                        _ => return Err(SweepError::new(key, "a count from 1 to 64, or \"auto\"")),
                    };
                }
                "slurm" => {
                    let table = v
                        .as_table()
                        .ok_or_else(|| SweepError::new(key, "use a [sweep.slurm] table"))?;
                    spec.slurm =
                        SlurmSpec::parse(table).map_err(|(k, why)| SweepError::new(&k, why))?;
                }
                "early_stop" => {
                    let table = v
                        .as_table()
                        .ok_or_else(|| SweepError::new(key, "use a [sweep.early_stop] table"))?;
                    spec.early_stop = Some(early_stop(table)?);
                }
                _ => {
                    for (key, v) in under_sections(key, v, schema) {
                        spec.add_axis(&key, v, schema)?;
                    }
                }
            }
        }
        if spec.method.is_adaptive() {
            spec.check_search(table)?;
        } else {
            for key in ["trials", "objective", "objectives", "startup"] {
                if table.contains_key(key) {
                    return Err(SweepError::new(
                        key,
                        format!("`{key}` is a setting of method = \"tpe\" or \"random\"; add one, or use `samples` for random axes of a grid"),
                    ));
                }
            }
            if !spec.random.is_empty() && spec.samples == 0 {
                return Err(SweepError::new(
                    "samples",
                    "random axes need `samples = N` (how many points to draw)",
                ));
            }
        }
        spec.points()?;
        Ok(spec)
    }

    /// The rules of a proposing method: a budget, no planned-only forms.
    fn check_search(&self, table: &toml::Table) -> Result<(), SweepError> {
        let method = self.method.as_str();
        if table.contains_key("objective") && table.contains_key("objectives") {
            return Err(SweepError::new(
                "objectives",
                "give `objective` (one metric) or `objectives` (several), not both",
            ));
        }
        if !self.zip.is_empty() {
            return Err(SweepError::new(
                "zip",
                format!("[[sweep.zip]] is a grid-only form: method = \"{method}\" proposes each axis on its own; make the zipped settings one `choice` axis (e.g. over `extends` fragments), or use method = \"grid\""),
            ));
        }
        if table.contains_key("samples") {
            return Err(SweepError::new(
                "samples",
                format!("method = \"{method}\" takes its budget as `trials = N`, not `samples`"),
            ));
        }
        if self.trials == 0 {
            return Err(SweepError::new(
                "trials",
                format!("method = \"{method}\" needs `trials = N`: how many trials the search makes in all"),
            ));
        }
        if self.is_empty() {
            return Err(SweepError::new(
                "method",
                format!("method = \"{method}\" needs axes to search, e.g. `optimizer.lr = {{ log_uniform = [1e-4, 1e-2] }}`"),
            ));
        }
        Ok(())
    }

    /// Adds the axis `key` written as `v`: a list (grid), or a table (`values` with `when`, or
    /// one random form).
    fn add_axis(
        &mut self,
        key: &str,
        v: &toml::Value,
        schema: &BTreeSet<String>,
    ) -> Result<(), SweepError> {
        check_axis_key(key, schema)?;
        let Some(t) = v.as_table() else {
            self.grid.push((key.to_string(), values(key, v)?));
            return Ok(());
        };
        let mut t = t.clone();
        if let Some(when) = t.remove("when") {
            let when = condition::parse(key, &when, schema)
                .map_err(|(k, why)| SweepError::new(&k, why))?;
            self.when.insert(key.to_string(), when);
        }
        match t.remove("values") {
            Some(vals) if t.is_empty() => self.grid.push((key.to_string(), values(key, &vals)?)),
            Some(_) => {
                return Err(SweepError::new(
                    key,
                    "a conditional grid axis has only `values` and `when`",
                ))
            }
            None => self.random.push((key.to_string(), random_axis(key, &t)?)),
        }
        Ok(())
    }

    /// How many points the axes expand to, counted without expanding them; more than
    /// `max_trials` (or an overflow) is an error that gives the count.
    pub fn points(&self) -> Result<usize, SweepError> {
        if self.method.is_adaptive() {
            if self.trials > self.max_trials {
                return Err(SweepError::new(
                    "trials",
                    format!(
                        "trials = {} is above max_trials = {}; lower it, or raise sweep.max_trials",
                        self.trials, self.max_trials
                    ),
                ));
            }
            return Ok(self.trials);
        }
        let sizes = self
            .grid
            .iter()
            .map(|(_, v)| v.len())
            .chain(
                self.zip
                    .iter()
                    .map(|g| g.first().map_or(1, |(_, v)| v.len())),
            )
            .chain((!self.random.is_empty()).then_some(self.samples));
        let mut total: u128 = 1;
        for n in sizes {
            total = total.saturating_mul(n as u128);
        }
        if total > self.max_trials as u128 {
            let count = if total >= u128::from(u64::MAX) {
                "2^64 or more".to_string()
            } else {
                total.to_string()
            };
            return Err(SweepError::new(
                "max_trials",
                format!(
                    "the sweep expands to {count} points, above max_trials = {}; use fewer axis values or samples, or raise sweep.max_trials",
                    self.max_trials
                ),
            ));
        }
        Ok(total as usize)
    }

    /// Whether the axis `key` has a condition.
    pub fn is_conditional(&self, key: &str) -> bool {
        self.when.contains_key(key)
    }

    /// Whether the experiment has no sweep at all.
    pub fn is_empty(&self) -> bool {
        self.grid.is_empty() && self.zip.is_empty() && self.random.is_empty()
    }
}

fn random_axis(key: &str, t: &toml::Table) -> Result<RandomAxis, SweepError> {
    let mut entries = t.iter();
    let (Some((kind, v)), None) = (entries.next(), entries.next()) else {
        return Err(SweepError::new(
            key,
            "a random axis has exactly one of log_uniform, uniform, int or choice",
        ));
    };
    match kind.as_str() {
        "log_uniform" => bounds(key, v, true).map(|(a, b)| RandomAxis::LogUniform(a, b)),
        "uniform" => bounds(key, v, false).map(|(a, b)| RandomAxis::Uniform(a, b)),
        "int" => int_bounds(key, v),
        "choice" => values(key, v).map(RandomAxis::Choice),
        other => Err(SweepError::new(
            key,
            format!("unknown random axis `{other}`; use log_uniform, uniform, int or choice"),
        )),
    }
}

fn int_bounds(key: &str, v: &toml::Value) -> Result<RandomAxis, SweepError> {
    let pair: Option<Vec<i64>> = v
        .as_array()
        .and_then(|a| a.iter().map(toml::Value::as_integer).collect());
    match pair.as_deref() {
        Some([lo, hi]) if lo < hi => Ok(RandomAxis::Int(*lo, *hi)),
        _ => Err(SweepError::new(
            key,
            "int takes [low, high], whole numbers with low < high (both included)",
        )),
    }
}

fn retry_on(v: &toml::Value) -> Result<Vec<Status>, SweepError> {
    let known: Vec<&str> = Status::failures().map(Status::as_str).collect();
    let reason = || {
        format!(
            "a list of failure kinds to relaunch, from {}; e.g. [\"crashed\", \"oom\", \"stale\"]",
            known.join(", ")
        )
    };
    let items = v
        .as_array()
        .ok_or_else(|| SweepError::new("retry_on", reason()))?;
    items
        .iter()
        .map(|item| {
            item.as_str()
                .and_then(|s| s.parse::<Status>().ok())
                .filter(|s| s.is_failure())
                .ok_or_else(|| {
                    SweepError::new(
                        "retry_on",
                        format!("{item} is not a failure kind; {}", reason()),
                    )
                })
        })
        .collect()
}

fn whole(table: &toml::Table, key: &str, default: usize, min: usize) -> Result<usize, SweepError> {
    match table.get(key) {
        None => Ok(default),
        Some(v) => v
            .as_integer()
            .filter(|n| *n >= min as i64)
            .map(|n| n as usize)
            .ok_or_else(|| {
                SweepError::new(
                    &format!("early_stop.{key}"),
                    format!("a whole number, {min} or more"),
                )
            }),
    }
}

fn early_stop(t: &toml::Table) -> Result<EarlyStop, SweepError> {
    for key in t.keys() {
        if !EARLY_STOP_KEYS.contains(&key.as_str()) {
            let known: BTreeSet<String> = EARLY_STOP_KEYS.iter().map(|k| k.to_string()).collect();
            return Err(SweepError::new(
                &format!("early_stop.{key}"),
                format!(
                    "unknown early-stop key; did you mean `{}`?",
                    nearest(key, &known)
                ),
            ));
        }
    }
    let metric = match t.get("metric") {
        None => None,
        Some(v) => Some(v.as_str().map(str::to_string).ok_or_else(|| {
            SweepError::new(
                "early_stop.metric",
                "a metric name as a string, e.g. \"val/top1\"",
            )
        })?),
    };
    let goal = match t.get("mode").map(|v| v.as_str()) {
        None => None,
        Some(Some("max")) => Some(Goal::Maximize),
        Some(Some("min")) => Some(Goal::Minimize),
        Some(_) => return Err(SweepError::new("early_stop.mode", "\"max\" or \"min\"")),
    };
    let rule = match t.get("rule").and_then(|v| v.as_str()) {
        Some("median") => StopRule::Median {
            min_epochs: whole(t, "min_epochs", 1, 1)?,
            min_trials: whole(t, "min_trials", 1, 1)?,
        },
        Some("asha") => {
            let reduction_factor = whole(t, "reduction_factor", 2, 2)?;
            let rungs = match t.get("rungs") {
                None => {
                    let first = whole(t, "min_epochs", 1, 1)?;
                    (0..8)
                        .map_while(|k| {
                            reduction_factor
                                .checked_pow(k)
                                .and_then(|f| f.checked_mul(first))
                        })
                        .collect()
                }
                Some(v) => {
                    let rungs: Option<Vec<usize>> = v.as_array().and_then(|a| {
                        a.iter()
                            .map(|x| x.as_integer().filter(|n| *n >= 1).map(|n| n as usize))
                            .collect()
                    });
                    match rungs {
                        Some(r) if !r.is_empty() && r.windows(2).all(|w| w[0] < w[1]) => r,
                        _ => {
                            return Err(SweepError::new(
                                "early_stop.rungs",
                                "increasing epoch counts, e.g. [1, 2, 4]",
                            ))
                        }
                    }
                }
            };
            StopRule::Asha {
                rungs,
                reduction_factor,
            }
        }
        _ => {
            return Err(SweepError::new(
                "early_stop.rule",
                "rule = \"median\" or rule = \"asha\"",
            ))
        }
    };
    Ok(EarlyStop { rule, metric, goal })
}
