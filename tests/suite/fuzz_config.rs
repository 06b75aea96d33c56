//! Generated inputs: random mutations of the committed experiment files and random `--set`
//! values go through loading, validation, `check` and `plan`. None may panic or hang, and
//! every error names the file or the `--set` it came from. Failing cases are kept by proptest
//! in `fuzz_config.proptest-regressions` beside this file and replayed first.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use vitrun::config::{load_with_env, schema_paths};

/// Values that broke or stretched earlier versions, plus arbitrary numbers and strings.
fn hostile_value() -> impl Strategy<Value = String> {
    let fixed = prop::sample::select(vec![
        "inf",
        "-inf",
        "nan",
        "0",
        "-1",
        "0.0",
        "1e308",
        "-1e308",
        "1e-320",
        "1e9",
        "9223372036854775807",
        "-9223372036854775808",
        "4294967296",
        "\"\"",
        "\"..\"",
        "\".\"",
        "\"a/b\"",
        "\"cuda:99\"",
        "\"auto\"",
        "[]",
        "[1.0, inf]",
        "[0.9, 0.99, 0.1]",
        "[0.5]",
        "[[1]]",
        "{ a = 1 }",
        "true",
        "{ uniform = [0.0, inf] }",
        "{ uniform = [-1e308, 1e308] }",
        "{ log_uniform = [1e-5, inf] }",
        "{ log_uniform = [0.0, 1.0] }",
        "{ choice = [] }",
        "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]",
        "\"asha\"",
        "\"val/loss\"",
        "[\"oom\", \"finished\"]",
    ])
    .prop_map(str::to_string);
    prop_oneof![
        4 => fixed,
        1 => any::<i64>().prop_map(|v| v.to_string()),
        1 => any::<f64>().prop_map(|v| toml::Value::Float(v).to_string()),
        1 => "[a-z0-9._/-]{0,10}".prop_map(|s| format!("{s:?}")),
    ]
}

/// One edit of an experiment file.
#[derive(Debug, Clone)]
enum Edit {
    /// Set a key path in the parsed document (tables made as needed).
    Set(String, String),
    /// Set `[sweep] "key" = value` (an axis, or a sweep option).
    Sweep(String, String),
    /// Textual damage: delete or duplicate line `i`, or cut the file after `n` bytes.
    Delete(usize),
    Duplicate(usize),
    Truncate(usize),
}

fn keys() -> Vec<String> {
    let mut keys: Vec<String> = schema_paths().into_iter().collect();
    keys.extend(["nonsense.key", "optimizer.learning_rate"].map(String::from));
    keys
}

fn sweep_keys() -> Vec<String> {
    let mut keys = keys();
    keys.extend(
        [
            "samples",
            "seed",
            "max_retries",
            "max_trials",
            "retry_on",
            "trials_per_gpu",
            "zip",
            "early_stop",
        ]
        .map(String::from),
    );
    keys
}

/// A random axis with hostile bounds, or a sample count.
fn axis_value() -> impl Strategy<Value = String> {
    let float = prop_oneof![
        any::<f64>().prop_map(|v| toml::Value::Float(v).to_string()),
        prop::sample::select(vec![
            "0.0", "1e-5", "1.0", "inf", "-inf", "nan", "1e308", "-1e308"
        ])
        .prop_map(str::to_string),
    ];
    let when = prop::sample::select(vec![
        "{ \"optimizer.name\" = \"sgd\" }",
        "{ \"model.depth\" = { min = 6, max = inf } }",
        "{ \"nonsense\" = 1 }",
        "{ \"seed\" = { not = [1, 2] } }",
        "{ \"model.pooling\" = { above = 1 } }",
        "{}",
        "7",
    ]);
    prop_oneof![
        (
            prop::sample::select(vec!["uniform", "log_uniform"]),
            float.clone(),
            float
        )
            .prop_map(|(kind, lo, hi)| format!("{{ {kind} = [{lo}, {hi}] }}")),
        prop::collection::vec(hostile_value(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
        (prop::collection::vec(hostile_value(), 0..3), when)
            .prop_map(|(v, w)| format!("{{ values = [{}], when = {w} }}", v.join(", "))),
        hostile_value(),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        6 => (prop::sample::select(keys()), hostile_value()).prop_map(|(k, v)| Edit::Set(k, v)),
        4 => (prop::sample::select(sweep_keys()), axis_value()).prop_map(|(k, v)| Edit::Sweep(k, v)),
        2 => prop_oneof![0u64..40, 0u64..1u64 << 62]
            .prop_map(|n| Edit::Sweep("samples".into(), n.to_string())),
        1 => (0..60usize).prop_map(Edit::Delete),
        1 => (0..60usize).prop_map(Edit::Duplicate),
        1 => (0..3000usize).prop_map(Edit::Truncate),
    ]
}

/// The item at a dotted path, with missing or non-table parents made into tables.
fn slot<'a>(mut item: &'a mut toml_edit::Item, path: &[&str]) -> &'a mut toml_edit::Item {
    for part in path {
        if !item.is_table_like() {
            *item = toml_edit::table();
        }
        item = &mut item[*part];
    }
    item
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut doc: toml_edit::DocumentMut = text.parse().expect("seed files parse");
    for e in edits {
        let (path, value): (Vec<&str>, &String) = match e {
            Edit::Set(k, v) => (k.split('.').collect(), v),
            Edit::Sweep(k, v) => (vec!["sweep", k.as_str()], v),
            _ => continue,
        };
        if let Ok(value) = value.parse::<toml_edit::Value>() {
            *slot(doc.as_item_mut(), &path) = toml_edit::Item::Value(value);
        }
    }
    let mut lines: Vec<String> = doc.to_string().lines().map(String::from).collect();
    let mut cut = None;
    for e in edits {
        let n = lines.len().max(1);
        match e {
            Edit::Delete(i) if !lines.is_empty() => {
                lines.remove(i % n);
            }
            Edit::Duplicate(i) if !lines.is_empty() => {
                let line = lines[i % n].clone();
                lines.insert(i % n, line);
            }
            Edit::Truncate(at) => cut = Some(*at),
            _ => {}
        }
    }
    let mut out = lines.join("\n");
    if let Some(at) = cut.filter(|&at| at < out.len()) {
        let at = (0..=at)
            .rev()
            .find(|&i| out.is_char_boundary(i))
            .unwrap_or(0);
        out.truncate(at);
    }
    out
}

fn seeds() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in ["experiments", "tests/configs"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        for f in files {
            out.push((
                f.display().to_string(),
                std::fs::read_to_string(&f).unwrap(),
            ));
        }
    }
    out
}

/// Loads one mutated experiment, then runs `check` and (for small sweeps) `plan` on it, each
/// on its own as the two commands do. Returns every error's text.
fn exercise(file: &Path, sets: &[String]) -> Vec<String> {
    let loaded = match load_with_env(file, sets, Vec::new()) {
        Ok(loaded) => loaded,
        Err(e) => return vec![e.to_string()],
    };
    let mut errors = Vec::new();
    if let Err(e) = vitrun::cli::commands::check(&loaded, vitrun::cli::out::Form::Text) {
        errors.push(format!("{e:#}"));
    }
    if loaded.sweep.points().is_ok_and(|n| n <= 64) {
        if let Err(e) = vitrun::plan::plan(&loaded) {
            errors.push(e.to_string());
        }
    }
    errors
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn mutated_experiments_never_panic_and_errors_name_their_source(
        seed in 0usize..64,
        edits in prop::collection::vec(edit(), 1..6),
        sets in prop::collection::vec((prop::sample::select(keys()), hostile_value()), 0..2),
    ) {
        let seeds = seeds();
        let (name, text) = &seeds[seed % seeds.len()];
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mutated.toml");
        std::fs::write(&file, apply(text, &edits)).unwrap();
        let sets: Vec<String> = sets.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let started = Instant::now();
        let result = std::panic::catch_unwind(|| exercise(&file, &sets));
        let elapsed = started.elapsed();
        prop_assert!(result.is_ok(), "panicked on a mutation of {}", name);
        for message in result.unwrap_or_default() {
            prop_assert!(
                message.contains(&file.display().to_string()) || message.contains("--set"),
                "error names neither the file nor the --set: {}", message
            );
        }
        prop_assert!(elapsed < Duration::from_secs(10), "took {:?}", elapsed);
    }
}
