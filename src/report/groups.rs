//! Seeds as replicates: trials whose resolved configs differ only in `seed` form a group, and a
//! group's main metric is summarised as mean ± sample standard deviation with a Student-t 95 %
//! confidence interval (n ≥ 3).

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{canonical_json, Config};

/// Mean, spread and interval of one group's values.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation (n − 1); `None` for a single value.
    pub std: Option<f64>,
    /// The 95 % confidence interval of the mean, for n ≥ 3.
    pub ci95: Option<(f64, f64)>,
}

/// Two-sided 95 % quantiles of Student's t (the 0.975 quantile) by degrees of freedom.
const T975: [(usize, f64); 34] = [
    (1, 12.706),
    (2, 4.303),
    (3, 3.182),
    (4, 2.776),
    (5, 2.571),
    (6, 2.447),
    (7, 2.365),
    (8, 2.306),
    (9, 2.262),
    (10, 2.228),
    (11, 2.201),
    (12, 2.179),
    (13, 2.160),
    (14, 2.145),
    (15, 2.131),
    (16, 2.120),
    (17, 2.110),
    (18, 2.101),
    (19, 2.093),
    (20, 2.086),
    (21, 2.080),
    (22, 2.074),
    (23, 2.069),
    (24, 2.064),
    (25, 2.060),
    (26, 2.056),
    (27, 2.052),
    (28, 2.048),
    (29, 2.045),
    (30, 2.042),
    (40, 2.021),
    (60, 2.000),
    (120, 1.980),
    (usize::MAX, 1.960),
];

/// The 0.975 quantile of Student's t with `df` degrees of freedom (tabulated to 30, then
/// interpolated in 1/df towards the normal's 1.960).
pub fn t975(df: usize) -> f64 {
    let df = df.max(1);
    let at = T975.partition_point(|(d, _)| *d < df);
    let (d1, t1) = T975[at];
    if d1 == df || at == 0 {
        return t1;
    }
    let (d0, t0) = T975[at - 1];
    let inv = |d: usize| if d == usize::MAX { 0.0 } else { 1.0 / d as f64 };
    let w = (inv(d0) - inv(df)) / (inv(d0) - inv(d1));
    t0 + (t1 - t0) * w
}

/// Summarises `values` (`None` when empty).
pub fn stats(values: &[f64]) -> Option<Stats> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let std = (n > 1).then(|| {
        let ss: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
        (ss / (n - 1) as f64).sqrt()
    });
    let ci95 = std.filter(|_| n >= 3).map(|s| {
        let half = t975(n - 1) * s / (n as f64).sqrt();
        (mean - half, mean + half)
    });
    Some(Stats { n, mean, std, ci95 })
}

/// What makes trials replicates: their identity (the trial id's input) without `seed`.
pub fn replicate_key(config: &Config) -> String {
    let mut identity = config.identity_json();
    if let Some(map) = identity.as_object_mut() {
        map.remove("seed");
    }
    canonical_json(&identity)
}

/// Indices of `configs` grouped into replicates, groups in order of first appearance.
pub fn replicates(configs: &[&Config]) -> Vec<Vec<usize>> {
    let mut order: Vec<String> = Vec::new();
    let mut members: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, c) in configs.iter().enumerate() {
        let key = replicate_key(c);
        if !members.contains_key(&key) {
            order.push(key.clone());
        }
        members.entry(key).or_default().push(i);
    }
    order
        .into_iter()
        .map(|k| members.remove(&k).unwrap_or_default())
        .collect()
}

/// For each config, `key=value` of the keys (other than `seed` and the placement keys) whose
/// values differ between the configs; `-` when none does.
pub fn labels(configs: &[&Config]) -> Vec<String> {
    let params: Vec<BTreeMap<String, String>> = configs
        .iter()
        .map(|c| c.flat_params().into_iter().collect())
        .collect();
    let placement = crate::config::EXECUTION_KEYS;
    // Every key once, then only those that differ (each key checked once, not once per
    // config that has it: a thousand configs stay linear).
    let all: BTreeSet<&String> = params.iter().flat_map(|p| p.keys()).collect();
    let keys: BTreeSet<&String> = all
        .into_iter()
        .filter(|k| *k != "seed" && !k.starts_with("sweep") && !placement.contains(&k.as_str()))
        .filter(|k| {
            let first = params[0].get(*k);
            params.iter().any(|p| p.get(*k) != first)
        })
        .collect();
    params
        .iter()
        .map(|p| {
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}={}", p.get(*k).map_or("-", String::as_str)))
                .collect();
            if parts.is_empty() {
                "-".into()
            } else {
                parts.join(" ")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_match_the_table_and_approach_the_normal() {
        assert_eq!(t975(2), 4.303);
        assert!((t975(35) - 2.03).abs() < 0.01);
        assert!((t975(100_000) - 1.96).abs() < 0.001);
        assert!(t975(45) < t975(40) && t975(45) > t975(60));
    }
}
