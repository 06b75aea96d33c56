//! `extends`: an experiment file built on others. `extends = ["base/deit_tiny.toml",
//! "aug/deit.toml"]` at the top of a file layers those files (each composed the same way, paths
//! relative to the file that names them) under the file itself, key by key: a later file
//! overrides an earlier one, the file overrides them all, tables merge and any other value
//! (arrays included) is replaced whole. Every key keeps the file and line it came from.

use std::path::{Path, PathBuf};

use super::error::ConfigError;

/// The key that names the files an experiment file is layered on.
pub const EXTENDS: &str = "extends";

/// Where a value was written: a file and a 1-based line (0 when the line is not known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub file: PathBuf,
    pub line: usize,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}", self.file.display(), self.line)
        }
    }
}

/// Fragment files layered on top of an experiment's own `extends` (a sweep's `extends` axis),
/// and where they were named.
#[derive(Debug, Clone)]
pub struct Fragments<'a> {
    pub files: &'a [String],
    pub named_at: Place,
}

/// An experiment file with everything it extends merged in.
#[derive(Debug, Clone, Default)]
pub struct Composed {
    /// The merged table, `extends` removed.
    pub table: toml::Table,
    /// Every key path set by some layer, with the place of the layer that set it last, in the
    /// order they were first set.
    pub keys: Vec<(String, Place)>,
    /// The files layered under the experiment file, in merge order.
    pub bases: Vec<PathBuf>,
    /// Whether the file has an `extends` key or was given fragments (even empty ones).
    pub extended: bool,
}

impl Composed {
    /// `file` (holding `text`), its `extends` chain and then `extra` merged.
    pub fn of(file: &Path, text: &str, extra: Option<&Fragments>) -> Result<Composed, ConfigError> {
        let mut out = Composed::default();
        let mut chain = vec![identity(file)];
        out.layer(file, text, &mut chain, extra)?;
        Ok(out)
    }

    /// Merges `file`'s bases, then `extra`, then `file` itself.
    fn layer(
        &mut self,
        file: &Path,
        text: &str,
        chain: &mut Vec<PathBuf>,
        extra: Option<&Fragments>,
    ) -> Result<(), ConfigError> {
        let doc =
            toml_edit::ImDocument::parse(text.to_string()).map_err(|e| ConfigError::Syntax {
                file: file.to_path_buf(),
                reason: e.to_string(),
            })?;
        let mut keys = Vec::new();
        collect_keys("", doc.as_table(), text, &mut keys);
        let place = |line| Place {
            file: file.to_path_buf(),
            line,
        };
        let extends_line = keys
            .iter()
            .find(|(k, _)| k == EXTENDS)
            .map_or(0, |(_, l)| *l);
        let mut table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            file: file.to_path_buf(),
            reason: e.to_string(),
        })?;
        if let Some(extends) = table.remove(EXTENDS) {
            self.extended = true;
            let at = place(extends_line);
            for base in base_files(&extends, &at)? {
                self.base(file, &base, &at, chain)?;
            }
        }
        if let Some(extra) = extra {
            self.extended = true;
            for base in extra.files {
                self.base(file, base, &extra.named_at, chain)?;
            }
        }
        merge(&mut self.table, table);
        for (path, line) in keys {
            if path == EXTENDS || path.starts_with("extends.") {
                continue;
            }
            self.set_place(path, place(line));
        }
        Ok(())
    }

    /// Reads and layers `base` (named in `file` at `at`).
    fn base(
        &mut self,
        file: &Path,
        base: &str,
        at: &Place,
        chain: &mut Vec<PathBuf>,
    ) -> Result<(), ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            place: at.to_string(),
            key: EXTENDS.into(),
            reason,
        };
        let path = file.parent().unwrap_or(Path::new(".")).join(base);
        let meta = std::fs::metadata(&path).map_err(|e| {
            invalid(format!(
                "{base}: {e} (looked for {}); paths are relative to the file that names them",
                path.display()
            ))
        })?;
        if !meta.is_file() {
            return Err(invalid(format!(
                "{base} ({}) is not a regular file; name a TOML file",
                path.display()
            )));
        }
        let id = identity(&path);
        if let Some(start) = chain.iter().position(|f| *f == id) {
            let cycle: Vec<String> = chain[start..]
                .iter()
                .chain(std::iter::once(&id))
                .map(|f| f.display().to_string())
                .collect();
            return Err(invalid(format!(
                "extends itself: {}; remove one of these links",
                cycle.join(" → ")
            )));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Read {
            file: path.clone(),
            reason: e.to_string(),
        })?;
        chain.push(id);
        self.layer(&path, &text, chain, None)?;
        chain.pop();
        self.bases.push(path);
        Ok(())
    }

    /// Records that `path` was set at `place`: a table keeps what earlier layers set inside it;
    /// any other value replaces it (and what was inside, if it was a table).
    fn set_place(&mut self, path: String, place: Place) {
        let inner = format!("{path}.");
        let replaced_whole = !matches!(lookup(&self.table, &path), Some(toml::Value::Table(_)));
        if replaced_whole {
            self.keys.retain(|(k, _)| !k.starts_with(&inner));
        }
        match self.keys.iter_mut().find(|(k, _)| *k == path) {
            Some(entry) => entry.1 = place,
            None => self.keys.push((path, place)),
        }
    }
}

/// The files an `extends` value names: one path, or a list of them; `None` for anything else.
pub fn file_list(value: &toml::Value) -> Option<Vec<String>> {
    match value {
        toml::Value::String(one) => Some(vec![one.clone()]),
        toml::Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => None,
    }
}

/// [`file_list`] of a file's own `extends` (at `at`), or the error that says what it takes.
fn base_files(value: &toml::Value, at: &Place) -> Result<Vec<String>, ConfigError> {
    file_list(value).ok_or_else(|| ConfigError::Invalid {
        place: at.to_string(),
        key: EXTENDS.into(),
        reason: "a file path or a list of them, e.g. extends = [\"base/deit_tiny.toml\", \"aug/deit.toml\"]".into(),
    })
}

/// What makes two spellings of a path the same file (for cycles): its canonical path when it
/// exists.
fn identity(file: &Path) -> PathBuf {
    std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf())
}

/// `layer` merged into `into` key by key: tables merge, anything else replaces.
fn merge(into: &mut toml::Table, layer: toml::Table) {
    for (key, value) in layer {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(old)), toml::Value::Table(new)) => merge(old, new),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// The value at a dotted key path of `table`.
fn lookup<'a>(table: &'a toml::Table, path: &str) -> Option<&'a toml::Value> {
    let (head, rest) = match path.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (path, None),
    };
    let value = table.get(head)?;
    match (rest, value) {
        (None, v) => Some(v),
        (Some(rest), toml::Value::Table(t)) => lookup(t, rest),
        _ => None,
    }
}

/// Key paths a file sets, each with its 1-based line, in file order. Inside `[sweep]` only
/// the axis and setting names are keys (an axis key is a dotted config key, kept whole).
pub(crate) fn collect_keys(
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
