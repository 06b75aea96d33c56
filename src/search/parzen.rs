//! The Parzen estimator of TPE: a mixture with one product kernel per observation (and one
//! for the prior), a truncated normal on each range and a smoothed categorical on each choice,
//! as Optuna builds it (`consider_magic_clip`, no endpoints, prior weight 1).

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use statrs::function::erf::{erfc, erfc_inv};

use super::space::Domain;

/// The kernels of one dimension, one per mixture component (the prior's last).
#[derive(Debug, Clone)]
enum Kernels {
    /// Truncated normals on `[low, high]` of the model scale (the log for a log range; a whole
    /// number's range widened by half a step on each side, `step` set).
    Normal {
        mus: Vec<f64>,
        sigmas: Vec<f64>,
        low: f64,
        high: f64,
        log: bool,
        step: Option<f64>,
    },
    /// Each component's probability of each choice.
    Categorical { probs: Vec<Vec<f64>> },
}

/// A mixture of product kernels over some dimensions.
#[derive(Debug, Clone)]
pub struct Parzen {
    /// Normalised component weights.
    weights: Vec<f64>,
    dims: Vec<Kernels>,
}

const SQRT_2: f64 = std::f64::consts::SQRT_2;

/// The standard normal's CDF.
fn phi(z: f64) -> f64 {
    0.5 * erfc(-z / SQRT_2)
}

/// `ln(Φ(b) − Φ(a))` for `a < b`, computed on the side of zero that keeps its precision.
fn log_mass(a: f64, b: f64) -> f64 {
    let mass = if a > 0.0 {
        phi(-a) - phi(-b)
    } else {
        phi(b) - phi(a)
    };
    mass.max(f64::MIN_POSITIVE).ln()
}

/// The model-scale bounds of a numeric domain and its step.
fn scale(domain: &Domain) -> Option<(f64, f64, bool, Option<f64>)> {
    match domain {
        Domain::Float { low, high, log } if *log => Some((low.ln(), high.ln(), true, None)),
        Domain::Float { low, high, .. } => Some((*low, *high, false, None)),
        Domain::Int { low, high } => {
            Some((*low as f64 - 0.5, *high as f64 + 0.5, false, Some(1.0)))
        }
        Domain::Choice(_) => None,
    }
}

/// Optuna's bandwidths: each observation's larger gap to its sorted neighbours (the range's
/// ends as the outer neighbours, the outermost kernels taking their inner gap), clipped to
/// `[range / min(100, 1 + kernels), range]`.
fn sigmas(mus: &[f64], low: f64, high: f64) -> Vec<f64> {
    let n = mus.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| mus[a].total_cmp(&mus[b]));
    let mut points = Vec::with_capacity(n + 2);
    points.push(low);
    points.extend(order.iter().map(|&i| mus[i]));
    points.push(high);
    let mut sorted: Vec<f64> = (1..=n)
        .map(|i| (points[i] - points[i - 1]).max(points[i + 1] - points[i]))
        .collect();
    if n >= 2 {
        sorted[0] = points[2] - points[1];
        sorted[n - 1] = points[n] - points[n - 1];
    }
    let range = high - low;
    let min_sigma = range / (1.0 + (n + 1) as f64).min(100.0);
    let mut out = vec![0.0; n];
    for (rank, &i) in order.iter().enumerate() {
        out[i] = sorted[rank].clamp(min_sigma, range);
    }
    out
}

impl Parzen {
    /// The estimator of `observations` (one internal number per domain each) with their
    /// `weights`, plus the prior with `prior_weight`.
    pub fn new(
        domains: &[&Domain],
        observations: &[Vec<f64>],
        weights: &[f64],
        prior_weight: f64,
    ) -> Parzen {
        let mut mixture: Vec<f64> = weights.to_vec();
        mixture.push(if observations.is_empty() {
            1.0
        } else {
            prior_weight
        });
        let total: f64 = mixture.iter().sum();
        mixture.iter_mut().for_each(|w| *w /= total);
        let dims = domains
            .iter()
            .enumerate()
            .map(|(d, domain)| {
                let column = observations.iter().map(|o| o[d]);
                match (scale(domain), domain.choices()) {
                    (Some((low, high, log, step)), _) => {
                        let mut mus: Vec<f64> =
                            column.map(|x| if log { x.ln() } else { x }).collect();
                        let mut sigmas = sigmas(&mus, low, high);
                        mus.push(0.5 * (low + high));
                        sigmas.push(high - low);
                        Kernels::Normal {
                            mus,
                            sigmas,
                            low,
                            high,
                            log,
                            step,
                        }
                    }
                    (None, choices) => {
                        let choices = choices.unwrap_or(1);
                        let kernels = observations.len() + 1;
                        let fill = prior_weight / kernels as f64;
                        let mut probs: Vec<Vec<f64>> = column
                            .map(|x| {
                                let mut row = vec![fill; choices];
                                row[x as usize] += 1.0;
                                row
                            })
                            .collect();
                        probs.push(vec![1.0; choices]);
                        for row in &mut probs {
                            let sum: f64 = row.iter().sum();
                            row.iter_mut().for_each(|p| *p /= sum);
                        }
                        Kernels::Categorical { probs }
                    }
                }
            })
            .collect();
        Parzen {
            weights: mixture,
            dims,
        }
    }

    /// `n` points drawn from the mixture, as internal numbers.
    pub fn sample(&self, rng: &mut ChaCha8Rng, n: usize) -> Vec<Vec<f64>> {
        (0..n)
            .map(|_| {
                let k = pick(&self.weights, rng);
                self.dims.iter().map(|d| d.sample(k, rng)).collect()
            })
            .collect()
    }

    /// The log density of a point (internal numbers), up to the log-scale Jacobian every
    /// estimator of the same space shares.
    pub fn log_pdf(&self, x: &[f64]) -> f64 {
        let terms: Vec<f64> = self
            .weights
            .iter()
            .enumerate()
            .map(|(k, w)| {
                w.ln()
                    + self
                        .dims
                        .iter()
                        .zip(x)
                        .map(|(d, &v)| d.log_pdf(k, v))
                        .sum::<f64>()
            })
            .collect();
        let top = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if top == f64::NEG_INFINITY {
            return top;
        }
        top + terms.iter().map(|t| (t - top).exp()).sum::<f64>().ln()
    }
}

/// An index drawn with probabilities `weights` (which sum to 1).
fn pick(weights: &[f64], rng: &mut ChaCha8Rng) -> usize {
    let u: f64 = rng.gen();
    let mut acc = 0.0;
    for (i, w) in weights.iter().enumerate() {
        acc += w;
        if u < acc {
            return i;
        }
    }
    weights.len() - 1
}

impl Kernels {
    fn sample(&self, k: usize, rng: &mut ChaCha8Rng) -> f64 {
        match self {
            Kernels::Normal {
                mus,
                sigmas,
                low,
                high,
                log,
                step,
            } => {
                let (mu, sigma) = (mus[k], sigmas[k]);
                let (a, b) = (phi((low - mu) / sigma), phi((high - mu) / sigma));
                let u = a + (b - a) * rng.gen::<f64>();
                let z = -SQRT_2 * erfc_inv(2.0 * u.clamp(1e-300, 1.0 - 1e-16));
                let y = (mu + sigma * z).clamp(*low, *high);
                match step {
                    Some(s) => (low + s / 2.0 + ((y - low - s / 2.0) / s).round() * s)
                        .clamp(low + s / 2.0, high - s / 2.0),
                    None if *log => y.exp(),
                    None => y,
                }
            }
            Kernels::Categorical { probs } => pick(&probs[k], rng) as f64,
        }
    }

    fn log_pdf(&self, k: usize, x: f64) -> f64 {
        match self {
            Kernels::Normal {
                mus,
                sigmas,
                low,
                high,
                log,
                step,
            } => {
                let (mu, sigma) = (mus[k], sigmas[k]);
                let norm = log_mass((low - mu) / sigma, (high - mu) / sigma);
                match step {
                    Some(s) => {
                        log_mass((x - s / 2.0 - mu) / sigma, (x + s / 2.0 - mu) / sigma) - norm
                    }
                    None => {
                        let y = if *log { x.ln() } else { x };
                        let z = (y - mu) / sigma;
                        -0.5 * z * z - (sigma * (2.0 * std::f64::consts::PI).sqrt()).ln() - norm
                    }
                }
            }
            Kernels::Categorical { probs } => probs[k][x as usize].ln(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn bandwidths_follow_optunas_neighbour_rule() {
        // Sorted 0.2, 0.5, 0.6 in [0, 1]: the outer kernels take their inner gap, the middle
        // one its larger gap; 3 observations clip at 1 / min(100, 5).
        let s = sigmas(&[0.5, 0.2, 0.6], 0.0, 1.0);
        assert_eq!(s, vec![0.3, 0.3, 0.2]);
        let s = sigmas(&[0.5, 0.51], 0.0, 1.0);
        assert!((s[0] - 0.25).abs() < 1e-12 && (s[1] - 0.25).abs() < 1e-12);
    }

    #[test]
    fn densities_integrate_to_one_and_samples_stay_in_range() {
        let float = Domain::Float {
            low: 0.0,
            high: 2.0,
            log: false,
        };
        let int = Domain::Int { low: 1, high: 4 };
        let choice = Domain::Choice(vec![1.into(), 2.into(), 3.into()]);
        let obs = vec![vec![0.3, 2.0, 1.0], vec![1.7, 4.0, 2.0]];
        let p = Parzen::new(&[&float, &int, &choice], &obs, &[1.0, 1.0], 1.0);
        let mut total = 0.0;
        let steps = 2000;
        for i in 0..steps {
            let x = (i as f64 + 0.5) * 2.0 / steps as f64;
            for j in 1..=4 {
                for c in 0..3 {
                    total += p.log_pdf(&[x, j as f64, c as f64]).exp() * 2.0 / steps as f64;
                }
            }
        }
        assert!((total - 1.0).abs() < 1e-3, "total mass {total}");
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for x in p.sample(&mut rng, 500) {
            assert!((0.0..=2.0).contains(&x[0]));
            assert!([1.0, 2.0, 3.0, 4.0].contains(&x[1]));
            assert!([0.0, 1.0, 2.0].contains(&x[2]));
        }
    }
}
