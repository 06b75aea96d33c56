//! Pareto fronts of several objectives: dominance, non-domination ranks, hypervolume and
//! the greedy hypervolume subset selection that breaks ties at a front's edge. Points are
//! losses (every objective minimised; see [`losses`]).

use crate::contract::Goal;

/// A point's objective values as losses: each negated where it is maximised.
pub fn losses(values: &[f64], goals: &[Goal]) -> Vec<f64> {
    values
        .iter()
        .zip(goals)
        .map(|(v, g)| super::history::loss(*v, *g))
        .collect()
}

/// Whether `a` dominates `b`: no worse in every objective and better in one.
pub fn dominates(a: &[f64], b: &[f64]) -> bool {
    a.iter().zip(b).all(|(x, y)| x <= y) && a.iter().zip(b).any(|(x, y)| x < y)
}

/// Each point's non-domination rank: 0 for the Pareto front, 1 for the front of the rest, …
pub fn ranks(points: &[Vec<f64>]) -> Vec<usize> {
    let n = points.len();
    let mut rank = vec![usize::MAX; n];
    let mut left: Vec<usize> = (0..n).collect();
    let mut current = 0;
    while !left.is_empty() {
        let front: Vec<usize> = left
            .iter()
            .copied()
            .filter(|&i| !left.iter().any(|&j| dominates(&points[j], &points[i])))
            .collect();
        for &i in &front {
            rank[i] = current;
        }
        left.retain(|i| rank[*i] == usize::MAX);
        current += 1;
    }
    rank
}

/// Which of the points (objective values with their goals) are on the Pareto front.
pub fn front(values: &[Vec<f64>], goals: &[Goal]) -> Vec<bool> {
    let points: Vec<Vec<f64>> = values.iter().map(|v| losses(v, goals)).collect();
    ranks(&points).into_iter().map(|r| r == 0).collect()
}

/// The volume the points dominate up to `reference` (every point below it in each
/// objective), by slicing along the last objective.
pub fn hypervolume(points: &[Vec<f64>], reference: &[f64]) -> f64 {
    let inside: Vec<&Vec<f64>> = points
        .iter()
        .filter(|p| p.iter().zip(reference).all(|(x, r)| x < r))
        .collect();
    if inside.is_empty() {
        return 0.0;
    }
    let d = reference.len();
    if d == 1 {
        return reference[0] - inside.iter().map(|p| p[0]).fold(f64::INFINITY, f64::min);
    }
    let mut order: Vec<&Vec<f64>> = inside;
    order.sort_by(|a, b| a[d - 1].total_cmp(&b[d - 1]));
    let mut volume = 0.0;
    for (i, p) in order.iter().enumerate() {
        let next = order.get(i + 1).map_or(reference[d - 1], |q| q[d - 1]);
        let depth = next - p[d - 1];
        if depth > 0.0 {
            let slice: Vec<Vec<f64>> = order[..=i].iter().map(|q| q[..d - 1].to_vec()).collect();
            volume += depth * hypervolume(&slice, &reference[..d - 1]);
        }
    }
    volume
}

/// Optuna's reference point for a set of losses: each objective's worst, moved 10 % outward.
pub fn reference_point(points: &[Vec<f64>]) -> Vec<f64> {
    let d = points.first().map_or(0, Vec::len);
    (0..d)
        .map(|k| {
            let worst = points
                .iter()
                .map(|p| p[k])
                .fold(f64::NEG_INFINITY, f64::max);
            if worst == 0.0 {
                1e-12
            } else if worst > 0.0 {
                1.1 * worst
            } else {
                0.9 * worst
            }
        })
        .collect()
}

/// `k` of the points chosen greedily, each adding the most hypervolume to those chosen before
/// (ties to the earlier point): Optuna's tie-break at the edge of a front.
pub fn select_by_hypervolume(points: &[Vec<f64>], k: usize) -> Vec<usize> {
    let reference = reference_point(points);
    let mut chosen: Vec<usize> = Vec::new();
    let mut chosen_points: Vec<Vec<f64>> = Vec::new();
    while chosen.len() < k.min(points.len()) {
        let base = hypervolume(&chosen_points, &reference);
        let best = (0..points.len())
            .filter(|i| !chosen.contains(i))
            .map(|i| {
                let mut with = chosen_points.clone();
                with.push(points[i].clone());
                (i, hypervolume(&with, &reference) - base)
            })
            .fold(None, |best: Option<(usize, f64)>, (i, gain)| match best {
                Some((_, g)) if g >= gain => best,
                _ => Some((i, gain)),
            });
        let Some((i, _)) = best else {
            break;
        };
        chosen.push(i);
        chosen_points.push(points[i].clone());
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypervolume_of_a_staircase() {
        let points = vec![vec![1.0, 3.0], vec![2.0, 2.0], vec![3.0, 1.0]];
        // Reference (4, 4): 3·1 + 2·1 + 1·1 = 6.
        assert!((hypervolume(&points, &[4.0, 4.0]) - 6.0).abs() < 1e-12);
        let cube = vec![vec![0.0, 0.0, 0.0]];
        assert!((hypervolume(&cube, &[2.0, 2.0, 2.0]) - 8.0).abs() < 1e-12);
        let two = vec![vec![0.0, 1.0, 1.0], vec![1.0, 0.0, 0.0]];
        // |A| = 2·1·1, |B| = 1·2·2, |A ∩ B| = 1·1·1: 2 + 4 − 1.
        assert!((hypervolume(&two, &[2.0, 2.0, 2.0]) - 5.0).abs() < 1e-12);
    }

    #[test]
    fn ranks_peel_fronts() {
        let points = vec![
            vec![1.0, 4.0],
            vec![2.0, 2.0],
            vec![4.0, 1.0],
            vec![3.0, 3.0],
            vec![5.0, 5.0],
        ];
        assert_eq!(ranks(&points), vec![0, 0, 0, 1, 2]);
    }
}
