//! A search over a space with its objective computed in this process (no trials, no store):
//! what the searchers' tests and benchmarks run, the way an Optuna study asks and tells.

use std::collections::{BTreeMap, HashSet};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::ask::{Ask, Point};
use super::history::{Observation, Outcome};
use super::space::{Dim, Space};
use super::Searcher;
use crate::contract::Goal;

/// Whether a conditional dimension applies where the unconditional ones are set as given.
pub type Condition = dyn Fn(&Point, &Dim) -> bool;

/// An in-process search.
pub struct Study<'s> {
    ask: Ask<'s>,
    seed: u64,
    condition: &'s Condition,
    history: Vec<Observation>,
    taken: HashSet<String>,
}

impl<'s> Study<'s> {
    pub fn new(
        space: &'s Space,
        searcher: &'s dyn Searcher,
        goals: Vec<Goal>,
        seed: u64,
        condition: &'s Condition,
    ) -> Study<'s> {
        Study {
            ask: Ask {
                space,
                searcher,
                goals,
            },
            seed,
            condition,
            history: Vec::new(),
            taken: HashSet::new(),
        }
    }

    /// The next point (none when the space has no new one), pending until told.
    pub fn ask(&mut self) -> Option<Point> {
        let number = self.history.len();
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(number as u64);
        let condition = self.condition;
        let space = self.ask.space;
        let taken = &self.taken;
        let point = self
            .ask
            .point::<Point, std::convert::Infallible>(
                &self.history,
                &mut rng,
                |point| {
                    Ok(space
                        .dims
                        .iter()
                        .filter(|d| d.conditional && condition(point, d))
                        .collect())
                },
                |point| Ok((!taken.contains(&format!("{point:?}"))).then_some(point)),
            )
            .unwrap_or_else(|never| match never {})?;
        self.taken.insert(format!("{point:?}"));
        let values: BTreeMap<String, f64> = point
            .iter()
            .filter_map(|(k, v)| {
                let json = serde_json::to_value(v).ok()?;
                Some((k.clone(), space.dim(k)?.domain.internal(&json)?))
            })
            .collect();
        self.history.push(Observation {
            number,
            values,
            outcome: Outcome::Pending,
        });
        Some(point)
    }

    /// Records the objective values of the point the last `ask` gave.
    pub fn tell(&mut self, values: Vec<f64>) {
        if let Some(last) = self.history.last_mut() {
            last.outcome = Outcome::Complete { values };
        }
    }

    /// Every observation so far.
    pub fn history(&self) -> &[Observation] {
        &self.history
    }
}
