//! `vitrun export-metrics`: the store's metrics as a table a pandas or polars user opens in one
//! line — long (one row per trial, split, name and step, with the swept parameters as columns)
//! or wide (one row per trial with each metric's final and best value) — as CSV, JSON (an
//! array of records) or Parquet (through arrow).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};

use super::compare::swept;
use super::select::Selection;
use crate::contract::Goal;

/// The file format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Json,
    Parquet,
}

/// One column's values, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
    Bool(Vec<Option<bool>>),
}

/// A named, typed column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub values: Values,
}

/// Columns of equal length.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Frame {
    pub columns: Vec<Column>,
}

impl Frame {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, |c| match &c.values {
            Values::Int(v) => v.len(),
            Values::Float(v) => v.len(),
            Values::Text(v) => v.len(),
            Values::Bool(v) => v.len(),
        })
    }

    fn cell(&self, column: usize, row: usize) -> serde_json::Value {
        match &self.columns[column].values {
            Values::Int(v) => v[row].map_or(serde_json::Value::Null, Into::into),
            Values::Float(v) => v[row]
                .and_then(serde_json::Number::from_f64)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            Values::Text(v) => v[row]
                .clone()
                .map_or(serde_json::Value::Null, serde_json::Value::String),
            Values::Bool(v) => v[row].map_or(serde_json::Value::Null, serde_json::Value::Bool),
        }
    }
}

/// Parameter values as a typed column (integers, else numbers, else text); a trial that does
/// not set the key has a null.
fn typed(name: &str, values: Vec<Option<String>>) -> Column {
    fn all<T: std::str::FromStr>(values: &[Option<String>]) -> Option<Vec<Option<T>>> {
        values
            .iter()
            .map(|v| v.as_ref().map_or(Some(None), |v| v.parse().ok().map(Some)))
            .collect()
    }
    let values = match (all::<i64>(&values), all::<f64>(&values)) {
        (Some(i), _) => Values::Int(i),
        (None, Some(f)) => Values::Float(f),
        _ => Values::Text(values),
    };
    Column {
        name: name.to_string(),
        values,
    }
}

/// The swept parameters of the selection, each trial's value or `None` where it is unset.
fn parameters(sel: &Selection) -> Vec<(String, Vec<Option<String>>)> {
    let maps: Vec<std::collections::BTreeMap<String, String>> = sel
        .trials
        .iter()
        .map(|t| t.config.flat_params().into_iter().collect())
        .collect();
    swept(sel)
        .into_keys()
        .map(|k| {
            let values = maps.iter().map(|m| m.get(&k).cloned()).collect();
            (k, values)
        })
        .collect()
}

fn text(name: &str, values: Vec<String>) -> Column {
    Column {
        name: name.to_string(),
        values: Values::Text(values.into_iter().map(Some).collect()),
    }
}

/// Whether each trial is on the Pareto front of its multi-objective search (none for a trial
/// of no such search), by trial id.
pub type Pareto = std::collections::HashMap<String, bool>;

/// One row per (trial, split, name, step): `trial, experiment, status, pareto, <swept
/// params…>, split, name, step, epoch, value, wall_time`.
pub fn long(sel: &Selection, pareto: &Pareto) -> Frame {
    let params = parameters(sel);
    let mut owner = Vec::new();
    let (mut split, mut name, mut step, mut epoch, mut value, mut wall) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for (i, t) in sel.trials.iter().enumerate() {
        for m in &t.metrics {
            owner.push(i);
            split.push(m.split.clone());
            name.push(m.name.clone());
            step.push(Some(m.step));
            epoch.push(Some(m.epoch));
            value.push(Some(m.value));
            wall.push(Some(m.wall_time));
        }
    }
    let of = |f: &dyn Fn(usize) -> String| owner.iter().map(|&i| f(i)).collect::<Vec<_>>();
    let mut columns = vec![
        text("trial", of(&|i| sel.trials[i].summary.id.clone())),
        text(
            "experiment",
            of(&|i| sel.trials[i].summary.experiment.clone()),
        ),
        text("status", of(&|i| sel.trials[i].summary.status.to_string())),
        Column {
            name: "pareto".into(),
            values: Values::Bool(
                owner
                    .iter()
                    .map(|&i| pareto.get(&sel.trials[i].summary.id).copied())
                    .collect(),
            ),
        },
    ];
    for (key, values) in &params {
        columns.push(typed(
            key,
            owner.iter().map(|&i| values[i].clone()).collect(),
        ));
    }
    columns.extend([
        text("split", split),
        text("name", name),
        Column {
            name: "step".into(),
            values: Values::Int(step),
        },
        Column {
            name: "epoch".into(),
            values: Values::Int(epoch),
        },
        Column {
            name: "value".into(),
            values: Values::Float(value),
        },
        Column {
            name: "wall_time".into(),
            values: Values::Float(wall),
        },
    ]);
    Frame { columns }
}

/// One row per trial: `trial, experiment, status, pareto, epochs, <swept params…>`, then for
/// every metric `<split>_<name>_final` (its last value) and `<split>_<name>_best` (lowest for
/// losses, highest otherwise).
pub fn wide(sel: &Selection, pareto: &Pareto) -> Frame {
    let params = parameters(sel);
    let trials = &sel.trials;
    let column = |f: &dyn Fn(usize) -> String| (0..trials.len()).map(f).collect::<Vec<_>>();
    let mut columns = vec![
        text("trial", column(&|i| trials[i].summary.id.clone())),
        text(
            "experiment",
            column(&|i| trials[i].summary.experiment.clone()),
        ),
        text("status", column(&|i| trials[i].summary.status.to_string())),
        Column {
            name: "pareto".into(),
            values: Values::Bool(
                trials
                    .iter()
                    .map(|t| pareto.get(&t.summary.id).copied())
                    .collect(),
            ),
        },
        Column {
            name: "epochs".into(),
            values: Values::Int(trials.iter().map(|t| t.summary.epochs).collect()),
        },
    ];
    for (key, values) in &params {
        columns.push(typed(key, values.clone()));
    }
    let metrics: BTreeSet<(String, String)> = trials
        .iter()
        .flat_map(|t| t.metrics.iter().map(|m| (m.split.clone(), m.name.clone())))
        .collect();
    for (split, name) in metrics {
        let goal = Goal::of(&format!("{split}/{name}"));
        let (mut finals, mut bests) = (Vec::new(), Vec::new());
        for t in trials {
            let rows: Vec<_> = t
                .metrics
                .iter()
                .filter(|m| m.split == split && m.name == name)
                .collect();
            finals.push(rows.iter().max_by_key(|m| m.step).map(|m| m.value));
            bests.push(goal.best(rows.iter().map(|m| m.value)));
        }
        columns.push(Column {
            name: format!("{split}_{name}_final"),
            values: Values::Float(finals),
        });
        columns.push(Column {
            name: format!("{split}_{name}_best"),
            values: Values::Float(bests),
        });
    }
    Frame { columns }
}

impl Format {
    /// The format a file name asks for by its extension.
    pub fn of_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "json" => Some(Format::Json),
            "parquet" | "pq" => Some(Format::Parquet),
            _ => None,
        }
    }
}

/// Writes `frame` to `path` in `format`.
pub fn write(frame: &Frame, format: Format, path: &Path) -> anyhow::Result<()> {
    if path == Path::new("-") {
        return write_to(frame, format, std::io::stdout()).context("cannot write to stdout");
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    write_to(frame, format, file).with_context(|| format!("cannot write {}", path.display()))
}

/// `frame` in `format` into `out`.
fn write_to(frame: &Frame, format: Format, out: impl std::io::Write + Send) -> anyhow::Result<()> {
    match format {
        Format::Csv => write_csv(frame, out),
        Format::Json => write_json(frame, out),
        Format::Parquet => write_parquet(frame, out),
    }
}

fn write_csv(frame: &Frame, file: impl std::io::Write) -> anyhow::Result<()> {
    let mut out = csv::Writer::from_writer(std::io::BufWriter::new(file));
    out.write_record(frame.columns.iter().map(|c| c.name.as_str()))?;
    for row in 0..frame.rows() {
        let cells = (0..frame.columns.len()).map(|c| match frame.cell(c, row) {
            serde_json::Value::Null => String::new(),
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        });
        out.write_record(cells)?;
    }
    out.flush()?;
    Ok(())
}

fn write_json(frame: &Frame, file: impl std::io::Write) -> anyhow::Result<()> {
    let records: Vec<serde_json::Map<String, serde_json::Value>> = (0..frame.rows())
        .map(|row| {
            frame
                .columns
                .iter()
                .enumerate()
                .map(|(c, col)| (col.name.clone(), frame.cell(c, row)))
                .collect()
        })
        .collect();
    let mut out = std::io::BufWriter::new(file);
    serde_json::to_writer(&mut out, &records)?;
    std::io::Write::flush(&mut out)?;
    Ok(())
}

fn write_parquet(frame: &Frame, file: impl std::io::Write + Send) -> anyhow::Result<()> {
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for c in &frame.columns {
        let (kind, array): (DataType, ArrayRef) = match &c.values {
            Values::Int(v) => (DataType::Int64, Arc::new(Int64Array::from(v.clone()))),
            Values::Float(v) => (DataType::Float64, Arc::new(Float64Array::from(v.clone()))),
            Values::Text(v) => (DataType::Utf8, Arc::new(StringArray::from(v.clone()))),
            Values::Bool(v) => (DataType::Boolean, Arc::new(BooleanArray::from(v.clone()))),
        };
        fields.push(Field::new(&c.name, kind, true));
        arrays.push(array);
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), arrays)?;
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None)?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(())
}
