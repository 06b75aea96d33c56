//! DETR's bipartite matching: each ground-truth box gets the one prediction (query) that costs
//! least overall, by the Hungarian algorithm (`pathfinding`'s Kuhn–Munkres) on a cost of class
//! probability, L1 box distance and generalized IoU.

use pathfinding::kuhn_munkres::kuhn_munkres_min;
use pathfinding::matrix::Matrix;

use crate::data::boxes::Corners;

/// Costs are solved in integers: this many units per unit of cost (far below any cost
/// difference that matters, far from overflowing with hundreds of queries).
const COST_UNITS: f64 = 1e9;

/// How much each part of the matching cost weighs (DETR: class 1, L1 5, GIoU 2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatchWeights {
    pub class: f64,
    pub l1: f64,
    pub giou: f64,
}

impl Default for MatchWeights {
    fn default() -> Self {
        MatchWeights {
            class: 1.0,
            l1: 5.0,
            giou: 2.0,
        }
    }
}

/// A ground-truth object: class index and box `[cx, cy, w, h]` in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TargetBox {
    pub class: usize,
    pub center_size: [f64; 4],
}

/// Cost of explaining `target` by a prediction that gives its class probability `class_prob`
/// and predicts box `center_size`.
pub fn pair_cost(
    class_prob: f64,
    center_size: [f64; 4],
    target: &TargetBox,
    weights: MatchWeights,
) -> f64 {
    let l1: f64 = center_size
        .iter()
        .zip(target.center_size)
        .map(|(p, t)| (p - t).abs())
        .sum();
    let [cx, cy, w, h] = center_size;
    let [tx, ty, tw, th] = target.center_size;
    let giou = Corners::from_center(cx, cy, w, h).giou(&Corners::from_center(tx, ty, tw, th));
    -weights.class * class_prob + weights.l1 * l1 - weights.giou * giou
}

/// The assignment of least total cost in a `rows × cols` row-major cost matrix: `min(rows,
/// cols)` pairs `(row, col)`, each row and column used at most once, sorted by row.
pub fn assign(costs: &[f64], rows: usize, cols: usize) -> Vec<(usize, usize)> {
    assert_eq!(costs.len(), rows * cols, "cost matrix is rows × cols");
    if rows == 0 || cols == 0 {
        return Vec::new();
    }
    let units = |c: f64| {
        if c.is_finite() {
            (c * COST_UNITS).round() as i64
        } else {
            i64::MAX / (4 * rows.max(cols) as i64)
        }
    };
    if rows <= cols {
        let matrix = Matrix::from_fn(rows, cols, |(r, c)| units(costs[r * cols + c]));
        let (_, cols_of_rows) = kuhn_munkres_min(&matrix);
        cols_of_rows.into_iter().enumerate().collect()
    } else {
        let matrix = Matrix::from_fn(cols, rows, |(c, r)| units(costs[r * cols + c]));
        let (_, rows_of_cols) = kuhn_munkres_min(&matrix);
        let mut pairs: Vec<(usize, usize)> = rows_of_cols
            .into_iter()
            .enumerate()
            .map(|(c, r)| (r, c))
            .collect();
        pairs.sort_unstable();
        pairs
    }
}

/// Matches one image's targets to its predictions. `probs` is `queries × classes` (softmax
/// over the classes, no-object last or absent: only target classes are read), `boxes` the
/// predicted `[cx, cy, w, h]` per query. Returns `(query, target)` pairs, one per target when
/// there are at least as many queries as targets.
pub fn match_queries(
    probs: &[f32],
    classes: usize,
    boxes: &[[f32; 4]],
    targets: &[TargetBox],
    weights: MatchWeights,
) -> Vec<(usize, usize)> {
    let queries = boxes.len();
    assert_eq!(probs.len(), queries * classes, "probs is queries × classes");
    let mut costs = Vec::with_capacity(targets.len() * queries);
    for target in targets {
        for (q, b) in boxes.iter().enumerate() {
            let prob = f64::from(probs[q * classes + target.class]);
            costs.push(pair_cost(prob, b.map(f64::from), target, weights));
        }
    }
    assign(&costs, targets.len(), queries)
        .into_iter()
        .map(|(t, q)| (q, t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Least total cost over every injective map of the smaller side into the larger.
    fn brute_force(costs: &[f64], rows: usize, cols: usize) -> f64 {
        fn go(costs: &[f64], rows: usize, cols: usize, r: usize, used: &mut Vec<bool>) -> f64 {
            if r == rows {
                return 0.0;
            }
            let mut best = f64::INFINITY;
            for c in 0..cols {
                if !used[c] {
                    used[c] = true;
                    best = best.min(costs[r * cols + c] + go(costs, rows, cols, r + 1, used));
                    used[c] = false;
                }
            }
            best
        }
        if rows <= cols {
            go(costs, rows, cols, 0, &mut vec![false; cols])
        } else {
            let transposed: Vec<f64> = (0..cols * rows)
                .map(|i| costs[(i % rows) * cols + i / rows])
                .collect();
            go(&transposed, cols, rows, 0, &mut vec![false; rows])
        }
    }

    #[test]
    fn assignment_is_optimal_against_brute_force() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for case in 0..300 {
            let rows = rng.gen_range(1..=6);
            let cols = rng.gen_range(1..=6);
            let costs: Vec<f64> = (0..rows * cols)
                .map(|_| rng.gen_range(-3.0..10.0))
                .collect();
            let pairs = assign(&costs, rows, cols);
            assert_eq!(pairs.len(), rows.min(cols), "case {case}");
            let mut seen_r = vec![false; rows];
            let mut seen_c = vec![false; cols];
            for &(r, c) in &pairs {
                assert!(
                    !seen_r[r] && !seen_c[c],
                    "case {case}: {pairs:?} reuses a row or column"
                );
                seen_r[r] = true;
                seen_c[c] = true;
            }
            let total: f64 = pairs.iter().map(|&(r, c)| costs[r * cols + c]).sum();
            let best = brute_force(&costs, rows, cols);
            assert!(
                (total - best).abs() < 1e-6,
                "case {case} {rows}×{cols}: {total} vs {best}"
            );
        }
    }

    #[test]
    fn each_target_gets_the_query_that_predicts_it() {
        let targets = [
            TargetBox {
                class: 1,
                center_size: [0.2, 0.2, 0.1, 0.1],
            },
            TargetBox {
                class: 0,
                center_size: [0.7, 0.6, 0.3, 0.2],
            },
        ];
        // Query 2 predicts target 0, query 0 predicts target 1, query 1 predicts nothing useful.
        let boxes = [
            [0.69, 0.61, 0.3, 0.2],
            [0.5, 0.5, 0.9, 0.9],
            [0.21, 0.2, 0.1, 0.11],
        ];
        let probs = [0.8, 0.1, 0.1, 0.3, 0.3, 0.4, 0.1, 0.8, 0.1];
        let pairs = match_queries(&probs, 3, &boxes, &targets, MatchWeights::default());
        assert_eq!(pairs, vec![(2, 0), (0, 1)]);
        assert!(match_queries(&probs, 3, &boxes, &[], MatchWeights::default()).is_empty());
    }
}
