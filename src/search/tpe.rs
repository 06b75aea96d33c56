//! The tree-structured Parzen estimator (Bergstra et al. 2011), as Optuna's `TPESampler`
//! runs it by default: random for the first `startup` scored trials; then the trials split
//! into the best `γ(n) = min(⌈n / 10⌉, 25)` and the rest (pruned trials ranked by how far they
//! got, pending ones among the rest), one multivariate Parzen estimator for each side, 24
//! candidates drawn from the good side and ranked by `log l(x) − log g(x)`.

use rand_chacha::ChaCha8Rng;

use super::history::{loss, Observation, Outcome};
use super::pareto;
use super::parzen::Parzen;
use super::space::Dim;
use super::{Searcher, Uniform};
use crate::contract::Goal;

/// TPE's settings.
#[derive(Debug, Clone)]
pub struct Tpe {
    /// Scored trials before the model is used.
    pub startup: usize,
    /// Candidates drawn from the good side per proposal.
    pub candidates: usize,
    pub prior_weight: f64,
}

impl Tpe {
    /// Optuna's defaults with `startup` random trials.
    pub fn new(startup: usize) -> Tpe {
        Tpe {
            startup,
            candidates: 24,
            prior_weight: 1.0,
        }
    }
}

/// How many of `n` scored trials form the good side: `min(⌈n/10⌉, 25)` for one objective,
/// `⌈n/10⌉` for several (Optuna's).
pub fn gamma(n: usize, objectives: usize) -> usize {
    if objectives > 1 {
        n.div_ceil(10)
    } else {
        n.div_ceil(10).min(25)
    }
}

/// Optuna's observation weights by age: 1 for the newest 25, a ramp from `1/n` for the older.
pub fn weights(n: usize) -> Vec<f64> {
    if n < 25 {
        return vec![1.0; n];
    }
    let ramp = n - 25;
    let start = 1.0 / n as f64;
    (0..ramp)
        .map(|i| {
            if ramp == 1 {
                start
            } else {
                start + (1.0 - start) * i as f64 / (ramp - 1) as f64
            }
        })
        .chain(std::iter::repeat_n(1.0, 25))
        .collect()
}

/// A pruned trial's rank key: further is better, then its (first objective's) value.
fn pruned_key(step: i64, values: &[f64], goal: Goal) -> (i64, f64) {
    match values.first() {
        Some(v) if v.is_nan() => (-step, f64::INFINITY),
        Some(v) => (-step, loss(*v, goal)),
        None => (1, 0.0),
    }
}

/// The `n_below` best finished trials: by value for one objective; for several, whole
/// non-domination fronts in turn, the front that does not fit chosen by hypervolume (MOTPE).
fn best_complete<'a>(
    complete: &[(&'a Observation, Vec<f64>)],
    n_below: usize,
) -> Vec<&'a Observation> {
    let n_below = n_below.min(complete.len());
    if complete.first().is_some_and(|(_, l)| l.len() == 1) {
        let mut sorted: Vec<&(&Observation, Vec<f64>)> = complete.iter().collect();
        sorted.sort_by(|a, b| a.1[0].total_cmp(&b.1[0]).then(a.0.number.cmp(&b.0.number)));
        return sorted.iter().take(n_below).map(|(o, _)| *o).collect();
    }
    let points: Vec<Vec<f64>> = complete.iter().map(|(_, l)| l.clone()).collect();
    let ranks = pareto::ranks(&points);
    let mut chosen: Vec<usize> = Vec::new();
    let mut rank = 0;
    while chosen.len() < n_below {
        let front: Vec<usize> = (0..points.len()).filter(|&i| ranks[i] == rank).collect();
        if chosen.len() + front.len() <= n_below {
            chosen.extend(front);
        } else {
            let edge: Vec<Vec<f64>> = front.iter().map(|&i| points[i].clone()).collect();
            let picked = pareto::select_by_hypervolume(&edge, n_below - chosen.len());
            chosen.extend(picked.into_iter().map(|j| front[j]));
        }
        rank += 1;
    }
    chosen.into_iter().map(|i| complete[i].0).collect()
}

/// The good and the bad observations, each in proposal order.
pub fn split<'a>(
    history: &[&'a Observation],
    goals: &[Goal],
) -> (Vec<&'a Observation>, Vec<&'a Observation>) {
    let scored = history.iter().filter(|o| o.is_scored()).count();
    let first = goals.first().copied().unwrap_or(Goal::Maximize);
    let mut complete: Vec<(&Observation, Vec<f64>)> = Vec::new();
    let mut pruned: Vec<((i64, f64), &Observation)> = Vec::new();
    let mut above: Vec<&Observation> = Vec::new();
    for o in history {
        match &o.outcome {
            Outcome::Complete { values } => complete.push((o, pareto::losses(values, goals))),
            Outcome::Pruned { step, values } => pruned.push((pruned_key(*step, values, first), o)),
            Outcome::Pending => above.push(o),
        }
    }
    let n_below = gamma(scored, goals.len());
    let mut below = best_complete(&complete, n_below);
    above.extend(
        complete
            .iter()
            .map(|(o, _)| *o)
            .filter(|o| !below.iter().any(|b| b.number == o.number)),
    );
    pruned.sort_by(|a, b| {
        (a.0 .0.cmp(&b.0 .0))
            .then(a.0 .1.total_cmp(&b.0 .1))
            .then(a.1.number.cmp(&b.1.number))
    });
    let room = n_below.saturating_sub(below.len());
    for (i, (_, o)) in pruned.into_iter().enumerate() {
        if i < room {
            below.push(o);
        } else {
            above.push(o);
        }
    }
    below.sort_by_key(|o| o.number);
    above.sort_by_key(|o| o.number);
    (below, above)
}

impl Searcher for Tpe {
    fn candidates(
        &self,
        dims: &[&Dim],
        history: &[Observation],
        goals: &[Goal],
        rng: &mut ChaCha8Rng,
    ) -> Vec<Vec<f64>> {
        let keys: Vec<&str> = dims.iter().map(|d| d.key.as_str()).collect();
        let relevant: Vec<&Observation> = history
            .iter()
            .filter(|o| o.point(&keys).is_some())
            .collect();
        // As Optuna: the random start counts every scored trial, also those without these
        // dimensions (a conditional axis is modelled from the first trials that have it).
        if history.iter().filter(|o| o.is_scored()).count() < self.startup.max(1) {
            return Uniform.candidates(dims, history, goals, rng);
        }
        let (below, above) = split(&relevant, goals);
        let domains: Vec<_> = dims.iter().map(|d| &d.domain).collect();
        // Several objectives weigh the good side's trials alike (Optuna's MOTPE).
        let estimator = |side: &[&Observation], by_age: bool| {
            let points: Vec<Vec<f64>> = side.iter().filter_map(|o| o.point(&keys)).collect();
            let weights = if by_age {
                weights(points.len())
            } else {
                vec![1.0; points.len()]
            };
            Parzen::new(&domains, &points, &weights, self.prior_weight)
        };
        let (good, bad) = (estimator(&below, goals.len() == 1), estimator(&above, true));
        let mut scored: Vec<(f64, Vec<f64>)> = good
            .sample(rng, self.candidates)
            .into_iter()
            .map(|x| (good.log_pdf(&x) - bad.log_pdf(&x), x))
            .collect();
        // Stable: equal scores keep the order drawn, as numpy's argmax keeps the first.
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.into_iter().map(|(_, x)| x).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn obs(number: usize, x: f64, outcome: Outcome) -> Observation {
        Observation {
            number,
            values: BTreeMap::from([("x".to_string(), x)]),
            outcome,
        }
    }

    #[test]
    fn gamma_and_weights_are_optunas() {
        assert_eq!(
            (
                gamma(0, 1),
                gamma(1, 1),
                gamma(10, 1),
                gamma(11, 1),
                gamma(1000, 1)
            ),
            (0, 1, 1, 2, 25)
        );
        assert_eq!(gamma(1000, 2), 100);
        assert_eq!(weights(3), vec![1.0; 3]);
        let w = weights(30);
        assert_eq!(w.len(), 30);
        assert!((w[0] - 1.0 / 30.0).abs() < 1e-12 && w[4] == 1.0 && w[29] == 1.0);
    }

    #[test]
    fn the_split_ranks_complete_then_pruned_and_keeps_pending_bad() {
        let history = [
            obs(0, 0.1, Outcome::Complete { values: vec![0.5] }),
            obs(1, 0.2, Outcome::Pending),
            obs(2, 0.3, Outcome::Complete { values: vec![0.9] }),
            obs(
                3,
                0.4,
                Outcome::Pruned {
                    step: 3,
                    values: vec![0.95],
                },
            ),
        ];
        let refs: Vec<&Observation> = history.iter().collect();
        // 3 scored: γ = 1, the best complete trial (maximised).
        let (below, above) = split(&refs, &[Goal::Maximize]);
        assert_eq!(below.iter().map(|o| o.number).collect::<Vec<_>>(), vec![2]);
        assert_eq!(
            above.iter().map(|o| o.number).collect::<Vec<_>>(),
            vec![0, 1, 3]
        );
        let (below, _) = split(&refs, &[Goal::Minimize]);
        assert_eq!(below[0].number, 0);
    }
}
