//! Conditions on sweep axes (`when = { "optimizer.name" = "sgd" }`): an axis applies only to
//! the points where every clause holds on the point's resolved config.

use std::collections::BTreeSet;

/// One clause: the value at `key` must satisfy every test given.
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    /// A config key path.
    pub key: String,
    /// Equal to one of these (a scalar in the file is a one-element list).
    pub one_of: Option<Vec<toml::Value>>,
    /// Equal to none of these.
    pub not: Option<Vec<toml::Value>>,
    /// Numeric bounds, inclusive.
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// All clauses of one axis's `when` table (they must all hold).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct When {
    pub clauses: Vec<Clause>,
}

fn number(v: &toml::Value) -> Option<f64> {
    v.as_float().or_else(|| v.as_integer().map(|i| i as f64))
}

fn list(v: &toml::Value) -> Vec<toml::Value> {
    match v {
        toml::Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    }
}

/// Parses a `when` table; `schema` is the set of valid key paths. Errors say what is wrong
/// (the caller places them in the file).
pub fn parse(
    axis: &str,
    table: &toml::Value,
    schema: &BTreeSet<String>,
) -> Result<When, (String, String)> {
    let at = |what: String| (format!("{axis}.when"), what);
    let table = table.as_table().ok_or_else(|| {
        at("`when` is a table of conditions, e.g. when = { \"optimizer.name\" = \"sgd\" }".into())
    })?;
    if table.is_empty() {
        return Err(at("`when` has no condition".into()));
    }
    let mut clauses = Vec::new();
    for (key, test) in table {
        if !schema.contains(key) {
            return Err(at(format!(
                "`{key}` is not a config key; did you mean `{}`?",
                super::suggest::nearest(key, schema)
            )));
        }
        if key == axis {
            return Err(at(format!("an axis cannot depend on itself (`{key}`)")));
        }
        let mut clause = Clause {
            key: key.clone(),
            one_of: None,
            not: None,
            min: None,
            max: None,
        };
        match test {
            toml::Value::Table(t) => {
                for (op, v) in t {
                    match op.as_str() {
                        "min" | "max" => {
                            let n = number(v).ok_or_else(|| {
                                at(format!("`{key}`: `{op}` takes a number, got {v}"))
                            })?;
                            if op == "min" {
                                clause.min = Some(n);
                            } else {
                                clause.max = Some(n);
                            }
                        }
                        "not" => clause.not = Some(list(v)),
                        "in" => clause.one_of = Some(list(v)),
                        other => {
                            return Err(at(format!(
                                "`{key}`: unknown test `{other}`; use a value, a list of values, or a table of min, max, in, not"
                            )))
                        }
                    }
                }
                if t.is_empty() {
                    return Err(at(format!("`{key}`: the test table is empty")));
                }
            }
            other => clause.one_of = Some(list(other)),
        }
        clauses.push(clause);
    }
    Ok(When { clauses })
}

fn equal(config: &serde_json::Value, wanted: &toml::Value) -> bool {
    match (config.as_f64(), number(wanted)) {
        (Some(a), Some(b)) => a == b,
        _ => serde_json::to_value(wanted).is_ok_and(|w| &w == config),
    }
}

impl When {
    /// Whether every clause holds on `config` (a resolved config as JSON).
    pub fn holds(&self, config: &serde_json::Value) -> bool {
        self.clauses.iter().all(|c| {
            let value = c
                .key
                .split('.')
                .try_fold(config, |node, part| node.get(part))
                .unwrap_or(&serde_json::Value::Null);
            let n = value.as_f64();
            c.one_of
                .as_ref()
                .is_none_or(|vs| vs.iter().any(|v| equal(value, v)))
                && c.not
                    .as_ref()
                    .is_none_or(|vs| !vs.iter().any(|v| equal(value, v)))
                && c.min.is_none_or(|m| n.is_some_and(|n| n >= m))
                && c.max.is_none_or(|m| n.is_some_and(|n| n <= m))
        })
    }
}
