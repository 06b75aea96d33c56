//! Layering (defaults ← file ← `VITRUN_*` env ← `--set`), unknown-key checks and provenance.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde_json::Value as Json;

use super::compose::{file_list, Composed, Fragments, Place, EXTENDS};
use super::error::ConfigError;
use super::schema::Config;
use super::suggest::nearest;
use super::sweep::{is_sweep_key, sweep_keys};
use super::validate::{finite_config, finite_value, validate};
use super::{SweepError, SweepSpec};

/// Environment variables with this prefix set config keys (`VITRUN_OPTIMIZER__LR=3e-4`).
pub const ENV_PREFIX: &str = "VITRUN_";

/// The variable every subcommand reads the run store's folder from: `train.runs_dir` here.
pub const RUNS_DIR_VAR: &str = "VITRUN_RUNS_DIR";

/// Where a resolved value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    /// The experiment file or a file it extends, at this line.
    File(Place),
    Env(String),
    Set,
    /// A sweep point's axis value.
    Sweep,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => write!(f, "default"),
            Source::File(place) => write!(f, "{place}"),
            Source::Env(var) => write!(f, "env {var}"),
            Source::Set => write!(f, "--set"),
            Source::Sweep => write!(f, "sweep"),
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
    doc: FileDoc,
    overrides: Vec<Override>,
}

impl Loaded {
    /// A problem in `[sweep]` found after loading (by the task), placed at its key's line.
    pub fn sweep_error(&self, e: SweepError) -> ConfigError {
        e.placed(&self.file, |key| self.place_of(key))
    }

    /// Rebuilds this experiment with more overrides (a sweep point), validated like the file;
    /// its `sweep` is unset.
    pub fn with_overrides(&self, extra: &[Override]) -> Result<Config, ConfigError> {
        self.resolver()?.resolve(extra)
    }

    /// A resolver that composes the file once, for resolving many sweep points.
    pub fn resolver(&self) -> Result<Resolver<'_>, ConfigError> {
        Ok(Resolver {
            loaded: self,
            base: point_figment(&self.doc, &self.overrides),
            with_fragments: RefCell::new(HashMap::new()),
        })
    }

    /// `file:line` of the `[sweep]` table, for errors about a whole sweep point.
    pub fn place_of_sweep(&self) -> String {
        self.place_of("sweep")
            .unwrap_or_else(|| self.file.display().to_string())
    }

    /// `file:line` where a key path is set, in the experiment file or a file it extends.
    pub fn place_of(&self, path: &str) -> Option<String> {
        self.doc.place_of(path).map(ToString::to_string)
    }

    /// Where the value of `key` was written: `file:line`, or the file with `(env VAR)` or
    /// `(--set)`; the file when nothing sets it.
    pub fn where_set(&self, key: &str) -> String {
        place_of(&self.file, &self.doc, &self.overrides, key)
    }

    /// The files the experiment extends, in merge order (each before those that override it).
    pub fn bases(&self) -> &[PathBuf] {
        self.doc.bases()
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
    let schema = schema_paths();
    let mut overrides = env_overrides(env, &schema)?;
    for set in sets {
        overrides.push(parse_set(set, &schema)?);
    }
    let (fragments, overrides): (Vec<Override>, Vec<Override>) =
        overrides.into_iter().partition(|o| o.path == EXTENDS);
    let fragments = match fragments.last() {
        Some(o) => fragment_files(&o.value).map_err(|reason| ConfigError::BadSet {
            arg: format!("extends={}", o.value),
            reason,
        })?,
        None => Vec::new(),
    };
    let named_at = Place {
        file: PathBuf::from("--set extends"),
        line: 0,
    };
    let extra = Fragments {
        files: &fragments,
        named_at,
    };
    let doc = FileDoc::parse(file, &text, (!fragments.is_empty()).then_some(&extra))?;
    for (path, place) in doc.keys() {
        if path == "sweep" || path.starts_with("sweep.") {
            continue;
        }
        if !schema.contains(path) && !schema.iter().any(|s| s.starts_with(&format!("{path}."))) {
            return Err(ConfigError::UnknownKey {
                place: place.to_string(),
                key: path.clone(),
                nearest: nearest(path, &schema),
            });
        }
    }
    let config = resolve(file, &doc, &overrides)?;
    let sweep = SweepSpec::parse(config.sweep.as_ref(), &schema)
        .map_err(|e| e.placed(file, |key| doc.place_of(key).map(ToString::to_string)))?;
    let mut sources = BTreeMap::new();
    for path in &schema {
        let source = overrides
            .iter()
            .rev()
            .find(|o| &o.path == path || path.starts_with(&format!("{}.", o.path)))
            .map(|o| o.source.clone())
            .unwrap_or_else(|| match doc.place_of(path) {
                Some(place) => Source::File(place.clone()),
                None => Source::Default,
            });
        sources.insert(path.clone(), source);
    }
    let loaded = Loaded {
        config,
        file: file.to_path_buf(),
        sources,
        sweep,
        file_text: text,
        doc,
        overrides,
    };
    Ok(loaded)
}

/// The fragment files an `extends` override names: one path or a list of them.
fn fragment_files(value: &toml::Value) -> Result<Vec<String>, String> {
    file_list(value).ok_or_else(|| {
        "a fragment file or a list of them, relative to the experiment file, e.g. \"aug/deit.toml\""
            .to_string()
    })
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

/// Resolves sweep points against one composed experiment file.
pub struct Resolver<'a> {
    loaded: &'a Loaded,
    base: Figment,
    /// The experiment composed with each `extends` axis value met so far.
    with_fragments: RefCell<HashMap<Vec<String>, Rc<ComposedBase>>>,
}

/// The experiment composed with some fragment files, and its figment below the sweep point.
type ComposedBase = (FileDoc, Figment);

impl Resolver<'_> {
    /// The experiment with `extra` overrides on top (a sweep point), validated like the file;
    /// its `sweep` is unset. An `extends` override (a sweep's fragment axis) layers its files
    /// over the file's own `extends`, under the file itself.
    pub fn resolve(&self, extra: &[Override]) -> Result<Config, ConfigError> {
        let loaded = self.loaded;
        let (fragments, extra): (Vec<&Override>, Vec<&Override>) =
            extra.iter().partition(|o| o.path == EXTENDS);
        let extra: Vec<Override> = extra.into_iter().cloned().collect();
        let mut all = loaded.overrides.clone();
        all.extend_from_slice(&extra);
        let on_top = |base: Figment| {
            extra
                .iter()
                .fold(base, |f, o| f.merge(Serialized::default(&o.path, &o.value)))
        };
        let Some(fragments) = fragments.last() else {
            return extract(
                on_top(self.base.clone()),
                &loaded.file,
                &loaded.doc,
                &all,
                Floats::Only(&extra),
            );
        };
        let composed = self.composed_with(&fragments.value)?;
        let (doc, base) = &*composed;
        extract(
            on_top(base.clone()),
            &loaded.file,
            doc,
            &all,
            Floats::Config,
        )
    }

    /// The experiment composed with the fragment files `value` names (cached).
    fn composed_with(&self, value: &toml::Value) -> Result<Rc<ComposedBase>, ConfigError> {
        let loaded = self.loaded;
        let key = format!("sweep.{EXTENDS}");
        let named_at = loaded.doc.place_of(&key).cloned().unwrap_or(Place {
            file: loaded.file.clone(),
            line: 0,
        });
        let files = fragment_files(value).map_err(|reason| ConfigError::Invalid {
            place: named_at.to_string(),
            key: key.clone(),
            reason,
        })?;
        if let Some(hit) = self.with_fragments.borrow().get(&files) {
            return Ok(hit.clone());
        }
        let extra = Fragments {
            files: &files,
            named_at,
        };
        let doc = FileDoc::parse(&loaded.file, &loaded.file_text, Some(&extra))?;
        let base = point_figment(&doc, &loaded.overrides);
        let entry = Rc::new((doc, base));
        self.with_fragments
            .borrow_mut()
            .insert(files, entry.clone());
        Ok(entry)
    }
}

fn base_figment(doc: &FileDoc, overrides: &[Override]) -> Figment {
    overrides.iter().fold(
        Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(&doc.text)),
        |f, o| f.merge(Serialized::default(&o.path, &o.value)),
    )
}

/// What a sweep point is resolved on: [`base_figment`] without `[sweep]` (a point never
/// changes it, and deserialising its axis lists again for every point was most of the
/// planner's time), so a point's config has no `sweep`.
fn point_figment(doc: &FileDoc, overrides: &[Override]) -> Figment {
    let mut table = doc.composed.table.clone();
    table.remove("sweep");
    overrides
        .iter()
        .filter(|o| o.path != "sweep" && !o.path.starts_with("sweep."))
        .fold(
            Figment::from(Serialized::defaults(Config::default()))
                .merge(Serialized::defaults(table)),
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
        figment::error::Kind::InvalidType(found, expected)
        | figment::error::Kind::InvalidValue(found, expected) => {
            format!("found {found}; expected {}", plain_type(expected))
        }
        kind => kind.to_string(),
    }
}

/// A Rust type name in serde's "expected …" as a user reads it (`usize` → "a whole number
/// ≥ 0"); other wording unchanged.
pub(crate) fn plain_type(expected: &str) -> String {
    match expected {
        "usize" | "u8" | "u16" | "u32" | "u64" => "a whole number ≥ 0".into(),
        "isize" | "i8" | "i16" | "i32" | "i64" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" | "bool" => "true or false".into(),
        "a string" | "string" | "str" => "a quoted string".into(),
        "a sequence" => "a list [a, b, …]".into(),
        "a map" => "a table".into(),
        other => other.to_string(),
    }
}

/// `file:line`, `env VAR` or `--set`: where the user wrote the value of `key`.
fn place_of(file: &Path, doc: &FileDoc, overrides: &[Override], key: &str) -> String {
    if let Some(o) = overrides.iter().rev().find(|o| o.path == key) {
        return format!("{} ({})", file.display(), o.source);
    }
    match doc.place_of(key) {
        Some(place) => place.to_string(),
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
    if path == EXTENDS {
        // Fragment files layered over the experiment's own `extends` (a sweep's axis of them).
    } else if let Some(key) = path.strip_prefix("sweep.") {
        if !is_sweep_key(key, schema) {
            return Err(ConfigError::UnknownKey {
                place: format!("--set {set}"),
                nearest: nearest(&path, &sweep_keys(schema)),
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
        // Every subcommand's name for the run store's folder (`VITRUN_TRAIN__RUNS_DIR` wins).
        let path = if var == RUNS_DIR_VAR {
            "train.runs_dir".to_string()
        } else {
            var[ENV_PREFIX.len()..].to_lowercase().replace("__", ".")
        };
        let section = path.split('.').next().unwrap_or("");
        if !sections.contains(section) {
            continue;
        }
        let known = match path.strip_prefix("sweep.") {
            Some(key) => is_sweep_key(key, schema),
            None => schema.contains(&path),
        };
        if !known {
            let keys = if path.starts_with("sweep.") {
                &sweep_keys(schema)
            } else {
                schema
            };
            return Err(ConfigError::UnknownKey {
                place: format!("environment variable {var}"),
                nearest: nearest(&path, keys),
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

/// The experiment file composed with the files it extends (see [`super::compose`]): the
/// merged TOML that figment reads, and the file and line of every key.
#[derive(Debug, Clone)]
struct FileDoc {
    text: String,
    composed: Composed,
}

impl FileDoc {
    /// `file` (holding `text`) composed with its `extends` chain and then `extra`.
    fn parse(file: &Path, text: &str, extra: Option<&Fragments>) -> Result<FileDoc, ConfigError> {
        let composed = Composed::of(file, text, extra)?;
        let text = if composed.extended {
            toml::to_string(&composed.table).map_err(|e| ConfigError::Syntax {
                file: file.to_path_buf(),
                reason: format!("the files it extends do not merge into one table: {e}"),
            })?
        } else {
            text.to_string()
        };
        Ok(FileDoc { text, composed })
    }

    /// Key paths the file and its bases set, each with its place, in the order first set.
    fn keys(&self) -> impl Iterator<Item = &(String, Place)> {
        self.composed.keys.iter()
    }

    /// The files layered under the experiment file, in merge order.
    fn bases(&self) -> &[PathBuf] {
        &self.composed.bases
    }

    /// Where `path` was set last, if some file sets it.
    fn place_of(&self, path: &str) -> Option<&Place> {
        self.keys().find(|(k, _)| k == path).map(|(_, p)| p)
    }
}
