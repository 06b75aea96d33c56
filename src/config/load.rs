//! Layering (defaults ← file ← `VITRUN_*` env ← `--set`), unknown-key checks and provenance.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde_json::Value as Json;

use super::error::ConfigError;
use super::schema::Config;
use super::validate::{finite_config, finite_value, validate};
use super::{SweepError, SweepSpec};

/// Environment variables with this prefix set config keys (`VITRUN_OPTIMIZER__LR=3e-4`).
pub const ENV_PREFIX: &str = "VITRUN_";

/// Where a resolved value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File,
    Env(String),
    Set,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => write!(f, "default"),
            Source::File => write!(f, "file"),
            Source::Env(var) => write!(f, "env {var}"),
            Source::Set => write!(f, "--set"),
        }
    }
}

/// One override given outside the file: a dotted key path and its TOML value.
#[derive(Debug, Clone)]
pub struct Override {
    pub path: String,
    pub value: toml::Value,
    pub source: Source,
}

/// A resolved, validated experiment with the provenance of every value.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub file: PathBuf,
    /// Leaf key path → where its value came from.
    pub sources: BTreeMap<String, Source>,
    /// The parsed `[sweep]` table (empty when the file has none).
    pub sweep: SweepSpec,
    file_text: String,
    overrides: Vec<Override>,
}

impl Loaded {
    /// A problem in `[sweep]` found after loading (by the task), placed at its key's line.
    pub fn sweep_error(&self, e: SweepError) -> ConfigError {
        match FileDoc::parse(&self.file, &self.file_text) {
            Ok(doc) => e.in_file(&self.file, &doc),
            Err(unreadable) => unreadable,
        }
    }

    /// Rebuilds this experiment with more overrides (a sweep point), validated like the file.
    pub fn with_overrides(&self, extra: &[Override]) -> Result<Config, ConfigError> {
        self.resolver()?.resolve(extra)
    }

    /// A resolver that parses the file once, for resolving many sweep points.
    pub fn resolver(&self) -> Result<Resolver<'_>, ConfigError> {
        let doc = FileDoc::parse(&self.file, &self.file_text)?;
        let base = base_figment(&doc, &self.overrides);
        Ok(Resolver {
            loaded: self,
            doc,
            base,
        })
    }

    /// `file:line` of the `[sweep]` table, for errors about a whole sweep point.
    pub fn place_of_sweep(&self) -> String {
        match self.line_of("sweep") {
            Some(line) => format!("{}:{line}", self.file.display()),
            None => self.file.display().to_string(),
        }
    }

    /// The 1-based line of a key path in the experiment file, if the file sets it.
    pub fn line_of(&self, path: &str) -> Option<usize> {
        FileDoc::parse(&self.file, &self.file_text)
            .ok()
            .and_then(|doc| doc.line_of(path))
    }
}

/// Loads `file`, applies `VITRUN_*` variables from `env` and `--set k=v` strings, validates.
pub fn load_with_env(
    file: &Path,
    sets: &[String],
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Loaded, ConfigError> {
    // A FIFO or a device would block or never end: only a regular file is read.
    if std::fs::metadata(file).is_ok_and(|m| !m.is_file()) {
        return Err(ConfigError::Read {
            file: file.to_path_buf(),
            reason:
                "not a regular file (a folder, a FIFO or a device); name an experiment TOML file"
                    .into(),
        });
    }
    let text = std::fs::read_to_string(file).map_err(|e| ConfigError::Read {
        file: file.to_path_buf(),
        reason: e.to_string(),
    })?;
    let doc = FileDoc::parse(file, &text)?;
    let schema = schema_paths();
    for (path, line) in doc.keys() {
        if path == "sweep" || path.starts_with("sweep.") {
            continue;
        }
        if !schema.contains(path) && !schema.iter().any(|s| s.starts_with(&format!("{path}."))) {
            return Err(ConfigError::UnknownKey {
                place: format!("{}:{line}", file.display()),
                key: path.clone(),
                nearest: nearest(path, &schema),
            });
        }
    }
    let mut overrides = env_overrides(env, &schema)?;
    for set in sets {
        overrides.push(parse_set(set, &schema)?);
    }
    let config = resolve(file, &doc, &overrides)?;
    let sweep =
        SweepSpec::parse(config.sweep.as_ref(), &schema).map_err(|e| e.in_file(file, &doc))?;
    let mut sources = BTreeMap::new();
    for path in &schema {
        let source = overrides
            .iter()
            .rev()
            .find(|o| &o.path == path || path.starts_with(&format!("{}.", o.path)))
            .map(|o| o.source.clone())
            .unwrap_or(if doc.has(path) {
                Source::File
            } else {
                Source::Default
            });
        sources.insert(path.clone(), source);
    }
    let loaded = Loaded {
        config,
        file: file.to_path_buf(),
        sources,
        sweep,
        file_text: text,
        overrides,
    };
    Ok(loaded)
}

/// Loads `file` with the process environment and `--set` strings.
pub fn load(file: &Path, sets: &[String]) -> Result<Loaded, ConfigError> {
    load_with_env(file, sets, process_env()?)
}

/// The process's `VITRUN_*` variables. Others are never read, whatever their encoding (a
/// shell's `OLDPWD` may name a non-UTF-8 folder); a `VITRUN_*` one that is not UTF-8 is an
/// error naming it.
fn process_env() -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (name, value) in std::env::vars_os() {
        let shown = name.to_string_lossy().into_owned();
        if !shown.starts_with(ENV_PREFIX) {
            continue;
        }
        match (name.into_string(), value.into_string()) {
            (Ok(name), Ok(value)) => out.push((name, value)),
            _ => {
                return Err(ConfigError::Invalid {
                    place: format!("environment variable {shown}"),
                    key: shown,
                    reason: "its name or value is not UTF-8; set it to UTF-8 text, or unset it"
                        .into(),
                })
            }
        }
    }
    Ok(out)
}

/// Resolves sweep points against one parsed experiment file.
pub struct Resolver<'a> {
    loaded: &'a Loaded,
    doc: FileDoc,
    base: Figment,
}

impl Resolver<'_> {
    /// The experiment with `extra` overrides on top, validated like the file.
    pub fn resolve(&self, extra: &[Override]) -> Result<Config, ConfigError> {
        let mut all = self.loaded.overrides.clone();
        all.extend_from_slice(extra);
        let figment = extra.iter().fold(self.base.clone(), |f, o| {
            f.merge(Serialized::default(&o.path, &o.value))
        });
        extract(
            figment,
            &self.loaded.file,
            &self.doc,
            &all,
            Floats::Only(extra),
        )
    }
}

fn base_figment(doc: &FileDoc, overrides: &[Override]) -> Figment {
    overrides.iter().fold(
        Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(&doc.text)),
        |f, o| f.merge(Serialized::default(&o.path, &o.value)),
    )
}

fn resolve(file: &Path, doc: &FileDoc, overrides: &[Override]) -> Result<Config, ConfigError> {
    extract(
        base_figment(doc, overrides),
        file,
        doc,
        overrides,
        Floats::Config,
    )
}

/// Which floats [`extract`] checks for finiteness.
enum Floats<'a> {
    /// The whole config (the file with its env and `--set` layers, checked once on load).
    Config,
    /// Only these overrides (a sweep point: the rest is the loaded config, already checked).
    Only(&'a [Override]),
}

fn extract(
    figment: Figment,
    file: &Path,
    doc: &FileDoc,
    overrides: &[Override],
    floats: Floats<'_>,
) -> Result<Config, ConfigError> {
    let mut config: Config = figment.extract().map_err(|e| {
        let key = e.path.join(".");
        ConfigError::Invalid {
            place: place_of(file, doc, overrides, &key),
            key,
            reason: extraction_reason(&e.kind),
        }
    })?;
    config.resolve_model();
    match floats {
        Floats::Config => finite_config(&config),
        Floats::Only(extra) => extra
            .iter()
            .try_for_each(|o| finite_value(&o.path, &o.value)),
    }
    .and_then(|()| validate(&config))
    .map_err(|(key, reason)| ConfigError::Invalid {
        place: place_of(file, doc, overrides, &key),
        key,
        reason,
    })?;
    Ok(config)
}

/// What is wrong with a value that does not deserialise; an unknown variant lists the known
/// ones (figment's own wording doubles the backquotes of a two-variant list).
fn extraction_reason(kind: &figment::error::Kind) -> String {
    match kind {
        figment::error::Kind::UnknownVariant(found, expected) => format!(
            "unknown variant: found `{found}`, expected one of {}",
            expected
                .iter()
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        kind => kind.to_string(),
    }
}

/// `file:line`, `env VAR` or `--set`: where the user wrote the value of `key`.
fn place_of(file: &Path, doc: &FileDoc, overrides: &[Override], key: &str) -> String {
    if let Some(o) = overrides.iter().rev().find(|o| o.path == key) {
        return format!("{} ({})", file.display(), o.source);
    }
    match doc.line_of(key) {
        Some(line) => format!("{}:{line}", file.display()),
        None => file.display().to_string(),
    }
}

/// Every leaf key path of the schema (`optimizer.lr`, `augment.hflip.p`, …), `sweep` included.
pub fn schema_paths() -> BTreeSet<String> {
    fn walk(prefix: &str, value: &Json, out: &mut BTreeSet<String>) {
        match value {
            Json::Object(map) => {
                for (k, v) in map {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&path, v, out);
                }
            }
            _ => {
                out.insert(prefix.to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    let defaults = serde_json::to_value(Config::default()).expect("defaults serialise");
    walk("", &defaults, &mut out);
    // A teacher's architecture is a name, or a table of the same keys as `[model]`.
    let model = serde_json::to_value(super::ModelConfig::default()).expect("defaults serialise");
    walk("distill.teacher_model", &model, &mut out);
    out
}

/// The valid key closest to `key` by edit distance, for "did you mean".
/// Keys in the same section are preferred, and a key whose initials spell a valid key
/// (`learning_rate` → `lr`) matches it outright.
pub fn nearest(key: &str, schema: &BTreeSet<String>) -> String {
    let (section, leaf) = key.rsplit_once('.').unwrap_or(("", key));
    let initials: String = leaf.split('_').filter_map(|w| w.chars().next()).collect();
    schema
        .iter()
        .map(|s| {
            let (s_section, s_leaf) = s.rsplit_once('.').unwrap_or(("", s));
            let score = if s_section == section {
                if s_leaf == initials {
                    0
                } else {
                    strsim::levenshtein(leaf, s_leaf)
                }
            } else {
                100 + strsim::levenshtein(key, s)
            };
            (score, s)
        })
        .min()
        .map(|(_, s)| s.clone())
        .unwrap_or_default()
}

fn parse_value(text: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {text}")) {
        Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(text.into())),
        Err(_) => toml::Value::String(text.to_string()),
    }
}

fn parse_set(set: &str, schema: &BTreeSet<String>) -> Result<Override, ConfigError> {
    let Some((path, value)) = set.split_once('=') else {
        return Err(ConfigError::BadSet {
            arg: set.into(),
            reason: "expected KEY.PATH=VALUE, e.g. --set optimizer.lr=3e-4".into(),
        });
    };
    let path = path.trim().to_string();
    if let Some(key) = path.strip_prefix("sweep.slurm.") {
        if !super::slurm::SLURM_KEYS.contains(&key) {
            let keys: BTreeSet<String> = super::slurm::SLURM_KEYS
                .iter()
                .map(|k| format!("sweep.slurm.{k}"))
                .collect();
            return Err(ConfigError::UnknownKey {
                place: format!("--set {set}"),
                nearest: nearest(&path, &keys),
                key: path,
            });
        }
    } else if !schema.contains(&path) {
        return Err(ConfigError::UnknownKey {
            place: format!("--set {set}"),
            nearest: nearest(&path, schema),
            key: path,
        });
    }
    Ok(Override {
        path,
        value: parse_value(value.trim()),
        source: Source::Set,
    })
}

fn env_overrides(
    env: impl IntoIterator<Item = (String, String)>,
    schema: &BTreeSet<String>,
) -> Result<Vec<Override>, ConfigError> {
    let sections: BTreeSet<&str> = schema
        .iter()
        .map(|p| p.split('.').next().unwrap_or(p))
        .collect();
    let mut out = Vec::new();
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    vars.sort();
    for (var, value) in vars {
        let path = var[ENV_PREFIX.len()..].to_lowercase().replace("__", ".");
        let section = path.split('.').next().unwrap_or("");
        if !sections.contains(section) {
            continue;
        }
        if !schema.contains(&path) {
            return Err(ConfigError::UnknownKey {
                place: format!("environment variable {var}"),
                nearest: nearest(&path, schema),
                key: path,
            });
        }
        out.push(Override {
            path,
            value: parse_value(&value),
            source: Source::Env(var),
        });
    }
    Ok(out)
}

/// The experiment file parsed with spans, to name lines in errors.
pub(crate) struct FileDoc {
    text: String,
    keys: Vec<(String, usize)>,
}

impl FileDoc {
    fn parse(file: &Path, text: &str) -> Result<FileDoc, ConfigError> {
        let doc =
            toml_edit::ImDocument::parse(text.to_string()).map_err(|e| ConfigError::Syntax {
                file: file.to_path_buf(),
                reason: e.to_string(),
            })?;
        let mut keys = Vec::new();
        collect_keys("", doc.as_table(), text, &mut keys);
        Ok(FileDoc {
            text: text.to_string(),
            keys,
        })
    }

    /// Key paths the file sets, each with its 1-based line, in file order.
    fn keys(&self) -> impl Iterator<Item = &(String, usize)> {
        self.keys.iter()
    }

    fn has(&self, path: &str) -> bool {
        self.keys.iter().any(|(k, _)| k == path)
    }

    pub(crate) fn line_of(&self, path: &str) -> Option<usize> {
        self.keys.iter().find(|(k, _)| k == path).map(|(_, l)| *l)
    }
}

fn collect_keys(
    prefix: &str,
    table: &dyn toml_edit::TableLike,
    text: &str,
    out: &mut Vec<(String, usize)>,
) {
    for (key, item) in table.iter() {
        let path = if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        };
        let line = table
            .get_key_value(key)
            .and_then(|(k, _)| k.span())
            .map(|span| text[..span.start].matches('\n').count() + 1)
            .unwrap_or(0);
        let is_table = item.as_table_like().is_some();
        if !is_table || line > 0 {
            out.push((path.clone(), line));
        }
        if let Some(inner) = item.as_table_like() {
            if !path.starts_with("sweep") || path == "sweep" {
                collect_keys(&path, inner, text, out);
            }
        }
    }
}
