//! The space a proposing search explores: one dimension per `[sweep]` axis, each a range or a
//! list of choices, in the internal form the searchers work on (a number per dimension: the
//! value itself, or the index of a choice).

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::config::{RandomAxis, SweepSpec};

/// The values one dimension takes.
#[derive(Debug, Clone, PartialEq)]
pub enum Domain {
    /// A real number in `[low, high]`, uniform in the log when `log`.
    Float { low: f64, high: f64, log: bool },
    /// A whole number in `[low, high]`, both included.
    Int { low: i64, high: i64 },
    /// One of these values (a grid list or `choice`).
    Choice(Vec<toml::Value>),
}

/// One dimension: an axis key and its domain.
#[derive(Debug, Clone, PartialEq)]
pub struct Dim {
    /// The config key the axis sets (or `extends`).
    pub key: String,
    pub domain: Domain,
    /// Whether a `when` condition decides where it applies.
    pub conditional: bool,
}

/// Every axis of a sweep as a dimension, in the table's order (grid lists first).
#[derive(Debug, Clone, PartialEq)]
pub struct Space {
    pub dims: Vec<Dim>,
}

impl Space {
    /// The dimensions of `spec`'s axes: lists become choices.
    pub fn of(spec: &SweepSpec) -> Space {
        let lists = spec
            .grid
            .iter()
            .map(|(key, values)| (key, Domain::Choice(values.clone())));
        let random = spec.random.iter().map(|(key, axis)| {
            let domain = match axis {
                RandomAxis::LogUniform(low, high) => Domain::Float {
                    low: *low,
                    high: *high,
                    log: true,
                },
                RandomAxis::Uniform(low, high) => Domain::Float {
                    low: *low,
                    high: *high,
                    log: false,
                },
                RandomAxis::Int(low, high) => Domain::Int {
                    low: *low,
                    high: *high,
                },
                RandomAxis::Choice(values) => Domain::Choice(values.clone()),
            };
            (key, domain)
        });
        Space {
            dims: lists
                .chain(random)
                .map(|(key, domain)| Dim {
                    key: key.clone(),
                    domain,
                    conditional: spec.is_conditional(key),
                })
                .collect(),
        }
    }

    /// The dimension of `key`.
    pub fn dim(&self, key: &str) -> Option<&Dim> {
        self.dims.iter().find(|d| d.key == key)
    }

    /// A description of the space that changes whenever a dimension does.
    pub fn describe(&self) -> String {
        self.dims
            .iter()
            .map(|d| {
                format!(
                    "{}{}={:?}",
                    d.key,
                    if d.conditional { "?" } else { "" },
                    d.domain
                )
            })
            .collect::<Vec<_>>()
            .join(";")
    }
}

impl Domain {
    /// The internal number of a value, if it lies in the domain.
    pub fn internal(&self, value: &serde_json::Value) -> Option<f64> {
        match self {
            Domain::Float { low, high, .. } => value
                .as_f64()
                .filter(|x| (*low..=*high).contains(x) && x.is_finite()),
            Domain::Int { low, high } => value
                .as_i64()
                .filter(|x| (*low..=*high).contains(x))
                .map(|x| x as f64),
            Domain::Choice(values) => values
                .iter()
                .position(|v| same_value(v, value))
                .map(|i| i as f64),
        }
    }

    /// The value an internal number stands for (snapped into the domain).
    pub fn external(&self, x: f64) -> toml::Value {
        match self {
            Domain::Float { low, high, .. } => toml::Value::Float(x.clamp(*low, *high)),
            Domain::Int { low, high } => {
                toml::Value::Integer((x.round() as i64).clamp(*low, *high))
            }
            Domain::Choice(values) => {
                values[(x.round().max(0.0) as usize).min(values.len() - 1)].clone()
            }
        }
    }

    /// A number drawn uniformly (log-uniformly for a log range).
    pub fn uniform(&self, rng: &mut ChaCha8Rng) -> f64 {
        match self {
            Domain::Float {
                low,
                high,
                log: true,
            } => rng.gen_range(low.ln()..high.ln()).exp(),
            Domain::Float { low, high, .. } => rng.gen_range(*low..*high),
            Domain::Int { low, high } => rng.gen_range(*low..=*high) as f64,
            Domain::Choice(values) => rng.gen_range(0..values.len()) as f64,
        }
    }

    /// How many choices a choice domain has.
    pub fn choices(&self) -> Option<usize> {
        match self {
            Domain::Choice(values) => Some(values.len()),
            _ => None,
        }
    }
}

/// Whether a TOML value and a value read back from JSON are the same setting (an integer
/// and a float of equal value included, as the config's own types would merge them).
fn same_value(toml_value: &toml::Value, json: &serde_json::Value) -> bool {
    match (toml_value, json) {
        (toml::Value::String(a), serde_json::Value::String(b)) => a == b,
        (toml::Value::Boolean(a), serde_json::Value::Bool(b)) => a == b,
        (toml::Value::Integer(a), j) if j.is_i64() => j.as_i64() == Some(*a),
        (toml::Value::Integer(a), j) => j.as_f64() == Some(*a as f64),
        (toml::Value::Float(a), j) => j.as_f64() == Some(*a),
        (other, j) => serde_json::to_value(other).ok().as_ref() == Some(j),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn values_go_in_and_out_of_each_domain() {
        let float = Domain::Float {
            low: 1e-4,
            high: 1e-2,
            log: true,
        };
        assert_eq!(float.internal(&serde_json::json!(1e-3)), Some(1e-3));
        assert_eq!(float.internal(&serde_json::json!(0.5)), None);
        let int = Domain::Int { low: 2, high: 6 };
        assert_eq!(int.internal(&serde_json::json!(4)), Some(4.0));
        assert_eq!(int.external(7.4), toml::Value::Integer(6));
        let choice = Domain::Choice(vec![toml::Value::from("sgd"), toml::Value::from("adamw")]);
        assert_eq!(choice.internal(&serde_json::json!("adamw")), Some(1.0));
        assert_eq!(choice.internal(&serde_json::json!("lamb")), None);
        assert_eq!(choice.external(0.0), toml::Value::from("sgd"));
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..100 {
            let x = float.uniform(&mut rng);
            assert!((1e-4..1e-2).contains(&x));
            let i = int.uniform(&mut rng);
            assert!((2.0..=6.0).contains(&i) && i.fract() == 0.0);
        }
    }
}
