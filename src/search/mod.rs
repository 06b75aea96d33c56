//! Searches that propose each next trial from the results so far (`[sweep] method = "tpe"`,
//! or `"random"` with the same budget and resume rules). A method is a [`Searcher`]; the
//! proposer asks it for the unconditional axes, resolves the point, then asks again for the
//! conditional axes whose condition holds there, and records the proposal in the store under
//! its lock, with the history it was made from.

mod ask;
pub mod fronts;
pub mod history;
pub mod pareto;
pub mod parzen;
pub mod propose;
pub mod space;
pub mod study;
pub mod tpe;

pub use ask::{Ask, Point};
pub use history::{Observation, Outcome};
pub use propose::{planned, Proposer};
pub use space::{Dim, Domain, Space};
pub use study::Study;
pub use tpe::Tpe;

use rand_chacha::ChaCha8Rng;

use crate::config::Method;
use crate::contract::Goal;

/// A search method: proposes values for some dimensions from the history.
pub trait Searcher {
    /// Candidate points for `dims` (an internal number per dimension), the most promising
    /// first, for objectives with these `goals`; the proposer takes the first that is not a trial of the search already.
    fn candidates(
        &self,
        dims: &[&Dim],
        history: &[Observation],
        goals: &[Goal],
        rng: &mut ChaCha8Rng,
    ) -> Vec<Vec<f64>>;
}

/// Random search: every dimension drawn uniformly (log-uniformly for a log range).
pub struct Uniform;

impl Searcher for Uniform {
    fn candidates(
        &self,
        dims: &[&Dim],
        _history: &[Observation],
        _goals: &[Goal],
        rng: &mut ChaCha8Rng,
    ) -> Vec<Vec<f64>> {
        vec![dims.iter().map(|d| d.domain.uniform(rng)).collect()]
    }
}

/// The searcher of a proposing method.
pub fn searcher(method: Method, startup: usize) -> Box<dyn Searcher> {
    match method {
        Method::Tpe => Box::new(Tpe::new(startup)),
        Method::Random | Method::Grid => Box::new(Uniform),
    }
}
