//! Expands an experiment's `[sweep]` into trials: the cartesian product of the grid axes and the
//! `[[sweep.zip]]` groups, times `samples` draws of the random axes. Every point is resolved and
//! validated like the file itself; its id is the hash of the resolved config, so re-planning a
//! grown file yields the old trials' ids unchanged.

use std::collections::HashSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::{
    Config, ConfigError, Loaded, Override, RandomAxis, Resolver, Source, SweepSpec,
};

/// One trial of a sweep.
#[derive(Debug, Clone)]
pub struct PlannedTrial {
    /// The config hash (see [`Config::trial_id`]).
    pub id: String,
    /// The sweep's values for this trial: `(key path, value)` in axis order.
    pub point: Vec<(String, toml::Value)>,
    /// The resolved, validated config.
    pub config: Config,
}

impl PlannedTrial {
    /// `key=value` pairs as `--set` takes them.
    pub fn sets(&self) -> Vec<String> {
        self.point.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// `key=value key=value`, for tables and logs.
    pub fn describe(&self) -> String {
        self.point
            .iter()
            .map(|(k, v)| format!("{k}={}", short_value(v)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A value printed compactly: floats in 4 significant digits.
pub fn short_value(v: &toml::Value) -> String {
    match v {
        toml::Value::Float(f) if f.abs() < 1e-2 && *f != 0.0 => format!("{f:.3e}"),
        toml::Value::Float(f) => format!("{}", (f * 1e4).round() / 1e4),
        other => other.to_string(),
    }
}

/// The trials of one experiment file.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The sweep's name in the store (the experiment name).
    pub sweep: String,
    /// The axes that vary (a trial's `point` lists those that apply to it, in this order).
    pub axes: Vec<String>,
    /// Distinct trials in plan order (points that resolve to the same config appear once).
    pub trials: Vec<PlannedTrial>,
    /// How many points the axes produced before duplicates were merged.
    pub points: usize,
    /// Points not created because a conditional axis did not apply to them.
    pub not_applicable: usize,
}

/// One axis of the product: a list of alternatives, each setting one or more keys.
type Factor = Vec<Vec<(String, toml::Value)>>;

fn factors(spec: &SweepSpec) -> Vec<Factor> {
    let mut out: Vec<Factor> = spec
        .grid
        .iter()
        .map(|(key, values)| {
            values
                .iter()
                .map(|v| vec![(key.clone(), v.clone())])
                .collect()
        })
        .collect();
    for group in &spec.zip {
        let len = group.first().map_or(0, |(_, v)| v.len());
        out.push(
            (0..len)
                .map(|i| {
                    group
                        .iter()
                        .map(|(k, v)| (k.clone(), v[i].clone()))
                        .collect()
                })
                .collect(),
        );
    }
    if !spec.random.is_empty() {
        out.push((0..spec.samples).map(|i| draw(spec, i)).collect());
    }
    out
}

/// Sample `index` of the random axes: its own RNG stream, so raising `samples` keeps the
/// earlier draws.
fn draw(spec: &SweepSpec, index: usize) -> Vec<(String, toml::Value)> {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    rng.set_stream(index as u64);
    spec.random
        .iter()
        .map(|(key, axis)| {
            let value = match axis {
                RandomAxis::LogUniform(lo, hi) => {
                    toml::Value::Float(rng.gen_range(lo.ln()..hi.ln()).exp())
                }
                RandomAxis::Uniform(lo, hi) => toml::Value::Float(rng.gen_range(*lo..*hi)),
                RandomAxis::Int(lo, hi) => toml::Value::Integer(rng.gen_range(*lo..=*hi)),
                RandomAxis::Choice(values) => values[rng.gen_range(0..values.len())].clone(),
            };
            (key.clone(), value)
        })
        .collect()
}

/// Expands `loaded`'s sweep (a file without one is a single trial).
pub fn plan(loaded: &Loaded) -> Result<Plan, ConfigError> {
    crate::task::check(loaded)?;
    let method = loaded.sweep.method;
    if method.is_adaptive() {
        return Err(ConfigError::Invalid {
            place: loaded
                .place_of("sweep.method")
                .unwrap_or_else(|| loaded.place_of_sweep()),
            key: "sweep.method".into(),
            reason: format!(
                "method = \"{}\" proposes its trials one by one from the results so far, so they cannot be planned up front: `vitrun sweep` runs it, on this machine's slots or (with --launcher slurm) as a job array of workers that each propose their trial",
                method.as_str()
            ),
        });
    }
    let factors = factors(&loaded.sweep);
    let points: usize = factors.iter().map(Vec::len).product();
    let axes: Vec<String> = factors
        .iter()
        .flat_map(|f| f.first().into_iter().flatten().map(|(k, _)| k.clone()))
        .collect();
    let resolver = loaded.resolver()?;
    let mut seen = HashSet::new();
    let mut trials = Vec::new();
    let mut not_applicable = 0;
    let mut choice = vec![0usize; factors.len()];
    for _ in 0..points {
        let full: Vec<(String, toml::Value)> = choice
            .iter()
            .zip(&factors)
            .flat_map(|(&i, f)| f[i].iter().cloned())
            .collect();
        advance(&mut choice, &factors);
        let (point, dropped) = applicable(loaded, &resolver, full)?;
        let overrides = as_overrides(&point);
        let mut config = resolver
            .resolve(&overrides)
            .map_err(|e| blame(loaded, &resolver, &overrides, e))?;
        let id = config.trial_id();
        if seen.insert(id.clone()) {
            // The trial runs under the sweep's settings (its early-stopping rule): its config,
            // which a cluster task reads back from its snapshot, carries the `[sweep]` table.
            config.sweep = loaded.config.sweep.clone();
            trials.push(PlannedTrial { id, point, config });
        } else if dropped {
            not_applicable += 1;
        }
    }
    Ok(Plan {
        sweep: loaded.config.name.clone(),
        axes,
        trials,
        points,
        not_applicable,
    })
}

/// The values of `full` that apply: a conditional axis is dropped where its condition does
/// not hold on the config the unconditional axes give. Returns whether any was dropped.
fn applicable(
    loaded: &Loaded,
    resolver: &Resolver<'_>,
    full: Vec<(String, toml::Value)>,
) -> Result<(Vec<(String, toml::Value)>, bool), ConfigError> {
    let spec = &loaded.sweep;
    if !full.iter().any(|(k, _)| spec.is_conditional(k)) {
        return Ok((full, false));
    }
    let fixed: Vec<(String, toml::Value)> = full
        .iter()
        .filter(|(k, _)| !spec.is_conditional(k))
        .cloned()
        .collect();
    let overrides = as_overrides(&fixed);
    let base = resolver
        .resolve(&overrides)
        .map_err(|e| blame(loaded, resolver, &overrides, e))?;
    let base = serde_json::to_value(&base).expect("a config serialises");
    let before = full.len();
    let point: Vec<(String, toml::Value)> = full
        .into_iter()
        .filter(|(k, _)| spec.when.get(k).is_none_or(|w| w.holds(&base)))
        .collect();
    let dropped = point.len() < before;
    Ok((point, dropped))
}

/// Validates every axis value on its own (a zip row as a whole, a random range by its ends),
/// resolved like the file, and counts the points without expanding their product: what
/// `vitrun check` reports.
pub fn check_axes(loaded: &Loaded) -> Result<usize, ConfigError> {
    crate::task::check(loaded)?;
    let spec = &loaded.sweep;
    let points = spec.points().map_err(|e| e.at(loaded.place_of_sweep()))?;
    let resolver = loaded.resolver()?;
    let single = |k: &String, v: toml::Value| vec![(k.clone(), v)];
    let mut candidates: Vec<Vec<(String, toml::Value)>> = Vec::new();
    for (key, values) in &spec.grid {
        candidates.extend(values.iter().map(|v| single(key, v.clone())));
    }
    for group in &spec.zip {
        let len = group.first().map_or(0, |(_, v)| v.len());
        candidates.extend((0..len).map(|i| {
            group
                .iter()
                .map(|(k, v)| (k.clone(), v[i].clone()))
                .collect()
        }));
    }
    for (key, axis) in &spec.random {
        match axis {
            RandomAxis::LogUniform(lo, hi) | RandomAxis::Uniform(lo, hi) => {
                candidates.push(single(key, toml::Value::Float(*lo)));
                candidates.push(single(key, toml::Value::Float(*hi)));
            }
            RandomAxis::Int(lo, hi) => {
                candidates.push(single(key, toml::Value::Integer(*lo)));
                candidates.push(single(key, toml::Value::Integer(*hi)));
            }
            RandomAxis::Choice(values) => {
                candidates.extend(values.iter().map(|v| single(key, v.clone())));
            }
        }
    }
    for point in candidates {
        let overrides = as_overrides(&point);
        if let Err(e) = resolver.resolve(&overrides) {
            return Err(blame(loaded, &resolver, &overrides, e));
        }
    }
    Ok(points)
}

/// A point's values as sweep overrides.
pub(crate) fn as_overrides(point: &[(String, toml::Value)]) -> Vec<Override> {
    point
        .iter()
        .map(|(k, v)| Override {
            path: k.clone(),
            value: v.clone(),
            source: Source::Sweep,
        })
        .collect()
}

/// The error for an invalid point: the one axis value that is invalid on its own (named with
/// its line), or else the combination.
pub(crate) fn blame(
    loaded: &Loaded,
    resolver: &Resolver<'_>,
    point: &[Override],
    e: ConfigError,
) -> ConfigError {
    for o in point {
        if let Err(alone) = resolver.resolve(std::slice::from_ref(o)) {
            let key = format!("sweep.{}", o.path);
            let place = loaded
                .place_of(&key)
                .unwrap_or_else(|| loaded.place_of_sweep());
            return ConfigError::Invalid {
                place,
                key,
                reason: format!("value {} is invalid: {alone}", o.value),
            };
        }
    }
    let described = point
        .iter()
        .map(|o| format!("{}={}", o.path, o.value))
        .collect::<Vec<_>>()
        .join(", ");
    ConfigError::Invalid {
        place: loaded.place_of_sweep(),
        key: "sweep".into(),
        reason: format!("the point {described} is invalid: {e}"),
    }
}

/// Steps the mixed-radix counter `choice` (last factor fastest).
fn advance(choice: &mut [usize], factors: &[Factor]) {
    for (i, f) in factors.iter().enumerate().rev() {
        choice[i] += 1;
        if choice[i] < f.len() {
            return;
        }
        choice[i] = 0;
    }
}
