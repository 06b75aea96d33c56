//! The experiment schema, its layering and validation. Knows nothing of burn or SQLite.

mod compose;
mod condition;
mod device;
mod error;
mod exact;
pub mod id;
mod load;
mod schema;
mod slurm;
mod suggest;
mod sweep;
mod validate;

pub use compose::{Place, EXTENDS};
pub use condition::{Clause, When};
pub use device::{available_cores, DeviceSpec};
pub use error::ConfigError;
pub use load::{
    load, load_with_env, schema_paths, Loaded, Override, Resolver, Source, ENV_PREFIX, RUNS_DIR_VAR,
};
pub use schema::*;
pub use slurm::{SlurmSpec, SLURM_KEYS};
pub use sweep::{
    EarlyStop, Method, Objective, RandomAxis, StopCriterion, StopRule, SweepError, SweepSpec,
    TrialsPerGpu, DEFAULT_MAX_TRIALS, DEFAULT_STARTUP,
};
pub use validate::{
    estimate_device_memory, estimate_memory, is_safe_name, machine_memory, Limits, MemoryEstimate,
};

use serde_json::Value as Json;

use crate::contract::{ExperimentDir, RunsDir, TrialDir};
use sha2::{Digest, Sha256};

impl Config {
    /// Fills `embed_dim`, `depth` and `num_heads` from the preset where the file left them unset.
    pub fn resolve_model(&mut self) {
        let m = &mut self.model;
        if let Some(&(_, dim, depth, heads)) = m
            .preset
            .as_deref()
            .and_then(|p| PRESETS.iter().find(|(name, ..)| *name == p))
        {
            m.embed_dim.get_or_insert(dim);
            m.depth.get_or_insert(depth);
            m.num_heads.get_or_insert(heads);
        }
    }

    /// The teacher's `[model]` when `[distill] teacher` is a file: `distill.teacher_model`
    /// as a table (its preset's dims filled in), or named (`"resnet50"`, a ViT preset);
    /// `None` when unset or naming nothing vitrun builds.
    pub fn teacher_model(&self) -> Option<ModelConfig> {
        let model = match self.distill.teacher_model.as_ref()? {
            TeacherModel::Table(table) => (**table).clone(),
            TeacherModel::Name(name) => match ArchKind::from_name(name) {
                Some(arch) => ModelConfig {
                    arch,
                    ..ModelConfig::default()
                },
                None if PRESETS.iter().any(|(p, ..)| p == name) => ModelConfig {
                    preset: Some(name.clone()),
                    patch_size: 16,
                    ..ModelConfig::default()
                },
                None => return None,
            },
        };
        let mut config = Config {
            model,
            ..Config::default()
        };
        config.resolve_model();
        Some(config.model)
    }

    /// The config as JSON with every key path that defines the trial (see [`id`]).
    pub fn identity_json(&self) -> Json {
        id::identity(self)
    }

    /// The trial id: a stable hash of the resolved config (key order and float spelling do not
    /// change it; where and how fast it runs do not either).
    pub fn trial_id(&self) -> String {
        hash_identity(&self.identity_json())
    }

    /// Flattened `key.path → value` pairs of the resolved config, for the store's params table.
    pub fn flat_params(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        flatten(
            "",
            &serde_json::to_value(self).expect("config serialises"),
            &mut out,
        );
        out
    }

    /// The runs folder (`train.runs_dir`).
    pub fn runs(&self) -> RunsDir {
        RunsDir::new(&self.train.runs_dir)
    }

    /// `runs/<experiment>/<trial-id>/`: where a trial's files live.
    pub fn trial_dir(&self, id: &str) -> TrialDir {
        self.experiment_dir().trial(id)
    }

    /// `runs/<experiment>/`: the experiment's trial folders (and its cluster submissions).
    pub fn experiment_dir(&self) -> ExperimentDir {
        self.runs().experiment(&self.name)
    }

    /// `runs/vitrun.sqlite`: the run store.
    pub fn store_path(&self) -> std::path::PathBuf {
        self.runs().store()
    }

    /// A config read back from the store (`trials.config`) for trial `trial`: parsed and held
    /// to the same checks as a file, since a store can be old, copied or edited; the error
    /// names the trial and what is wrong.
    pub fn from_stored(json: &str, trial: &str) -> Result<Config, String> {
        let mut config: Config = serde_json::from_str(json)
            .map_err(|e| format!("trial {trial}: its stored config does not parse ({e})"))?;
        config.resolve_model();
        validate::finite_config(&config)
            .and_then(|_| validate::validate_rules(&config))
            .map_err(|(key, why)| format!("trial {trial}: its stored config has `{key}`: {why}"))?;
        Ok(config)
    }

    /// Class names in label order, when the config names them.
    pub fn class_names(&self) -> Option<&[String]> {
        self.data.classes.as_deref()
    }
}

/// The id of a trial whose identity is `identity` (the first 12 hex digits of the SHA-256 of
/// its canonical JSON).
pub fn hash_identity(identity: &Json) -> String {
    let digest = Sha256::digest(canonical_json(identity).as_bytes());
    hex::encode(&digest[..6])
}

/// JSON with object keys sorted at every level and numbers in serde_json's shortest form.
pub fn canonical_json(value: &Json) -> String {
    let mut out = Vec::with_capacity(4096);
    write_canonical(value, &mut out);
    String::from_utf8(out).expect("JSON is UTF-8")
}

/// [`canonical_json`] of `value`, appended to `out`.
fn write_canonical(value: &Json, out: &mut Vec<u8>) {
    use std::io::Write;
    match value {
        Json::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k).expect("writes to a Vec");
                out.push(b':');
                write_canonical(&map[k], out);
            }
            out.push(b'}');
        }
        Json::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Json::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => {
                write!(out, "{}", f as i64).expect("writes to a Vec")
            }
            _ => write!(out, "{n}").expect("writes to a Vec"),
        },
        other => serde_json::to_writer(&mut *out, other).expect("writes to a Vec"),
    }
}

fn flatten(prefix: &str, value: &Json, out: &mut Vec<(String, String)>) {
    match value {
        Json::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&path, v, out);
            }
        }
        Json::Null => {}
        Json::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}
