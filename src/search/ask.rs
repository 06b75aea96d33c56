//! One proposal: candidates for the unconditional axes, then for the conditional axes that
//! apply at each, until the caller accepts a point (one that is not a trial of the search).

use rand_chacha::ChaCha8Rng;

use super::history::Observation;
use super::space::{Dim, Space};
use super::{Searcher, Uniform};
use crate::contract::Goal;

/// Rounds of candidates tried before the space counts as exhausted (every candidate taken);
/// after the first few, candidates are drawn at random.
const ROUNDS: usize = 64;
const MODEL_ROUNDS: usize = 4;

/// A point as `(key, value)` pairs in the space's order.
pub type Point = Vec<(String, toml::Value)>;

/// What one proposal asks of a searcher.
pub struct Ask<'s> {
    pub space: &'s Space,
    pub searcher: &'s dyn Searcher,
    /// The objectives' goals.
    pub goals: Vec<Goal>,
}

impl Ask<'_> {
    /// The first point `accept` takes (it returns what the point makes, or none for a point
    /// already taken). `applicable` gives the conditional dimensions whose condition holds
    /// where the unconditional ones are set as given. None when no round found a new point.
    pub fn point<'d, T, E>(
        &'d self,
        history: &[Observation],
        rng: &mut ChaCha8Rng,
        applicable: impl Fn(&Point) -> Result<Vec<&'d Dim>, E>,
        mut accept: impl FnMut(Point) -> Result<Option<T>, E>,
    ) -> Result<Option<T>, E> {
        let fixed: Vec<&Dim> = self.space.dims.iter().filter(|d| !d.conditional).collect();
        for round in 0..ROUNDS {
            let method: &dyn Searcher = if round < MODEL_ROUNDS {
                self.searcher
            } else {
                &Uniform
            };
            for first in method.candidates(&fixed, history, &self.goals, rng) {
                let mut point = values(&fixed, &first);
                let extra = applicable(&point)?;
                let seconds = if extra.is_empty() {
                    vec![Vec::new()]
                } else {
                    method.candidates(&extra, history, &self.goals, rng)
                };
                let base = point.len();
                for second in seconds {
                    point.truncate(base);
                    point.extend(values(&extra, &second));
                    if let Some(made) = accept(point.clone())? {
                        return Ok(Some(made));
                    }
                }
            }
        }
        Ok(None)
    }
}

fn values(dims: &[&Dim], internal: &[f64]) -> Point {
    dims.iter()
        .zip(internal)
        .map(|(d, x)| (d.key.clone(), d.domain.external(*x)))
        .collect()
}
