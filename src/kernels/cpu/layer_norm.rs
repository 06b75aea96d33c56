//! LayerNorm over the last dimension of a row-major `[rows, dim]` f32 buffer: one pass for the
//! row statistics and one for the output; the backward pass in two passes per row, with the
//! scale and shift gradients summed per block of rows and then across blocks in order.

use multiversion::multiversion;
use rayon::prelude::*;

use super::math::{lane_sum, lane_sum2, lane_sum3};

/// Rows per rayon task.
const ROWS_PER_TASK: usize = 64;

/// The forward pass's outputs: the normalised rows and, per row, the mean and `1/σ` that the
/// backward pass reuses.
pub struct Normalized {
    pub out: Vec<f32>,
    pub mean: Vec<f32>,
    pub rstd: Vec<f32>,
}

#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn forward_rows(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    out: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
) {
    let dim = gamma.len();
    for (((x, out), mean), rstd) in x
        .chunks_exact(dim)
        .zip(out.chunks_exact_mut(dim))
        .zip(mean.iter_mut())
        .zip(rstd.iter_mut())
    {
        let m = lane_sum(x, |v| v) / dim as f32;
        let var = lane_sum(x, |v| (v - m) * (v - m)) / dim as f32;
        let r = 1.0 / (var + eps).sqrt();
        for (((o, &v), &g), &b) in out.iter_mut().zip(x).zip(gamma).zip(beta) {
            *o = (v - m) * r * g + b;
        }
        *mean = m;
        *rstd = r;
    }
}

/// Normalises every row of `x` (`[rows, gamma.len()]`), then scales by `gamma` and shifts by
/// `beta`.
pub fn forward(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32) -> Normalized {
    let dim = gamma.len();
    assert!(
        dim > 0 && x.len().is_multiple_of(dim),
        "layer_norm: input is not [rows, {dim}]"
    );
    assert_eq!(
        beta.len(),
        dim,
        "layer_norm: beta length differs from gamma's"
    );
    let rows = x.len() / dim;
    let mut out = vec![0.0; x.len()];
    let mut mean = vec![0.0; rows];
    let mut rstd = vec![0.0; rows];
    let block = ROWS_PER_TASK * dim;
    out.par_chunks_mut(block)
        .zip(x.par_chunks(block))
        .zip(mean.par_chunks_mut(ROWS_PER_TASK))
        .zip(rstd.par_chunks_mut(ROWS_PER_TASK))
        .for_each(|(((out, x), mean), rstd)| forward_rows(x, gamma, beta, eps, out, mean, rstd));
    Normalized { out, mean, rstd }
}

/// Gradients of LayerNorm with respect to its input, scale and shift.
pub struct NormGrads {
    pub x: Vec<f32>,
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
}

#[allow(clippy::too_many_arguments)]
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn backward_rows(
    x: &[f32],
    gamma: &[f32],
    mean: &[f32],
    rstd: &[f32],
    grad: &[f32],
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    let dim = gamma.len();
    for ((((x, grad), dx), &m), &r) in x
        .chunks_exact(dim)
        .zip(grad.chunks_exact(dim))
        .zip(dx.chunks_exact_mut(dim))
        .zip(mean)
        .zip(rstd)
    {
        // With x̂ = (x − μ)/σ and g = dy·γ: dx = (g − mean(g) − x̂·mean(g·x̂)) / σ.
        let mean_g = lane_sum2(grad, gamma, |dy, g| dy * g) / dim as f32;
        let mean_gx = lane_sum3(x, grad, gamma, |v, dy, g| dy * g * (v - m) * r) / dim as f32;
        for (((((d, &v), &dy), &g), dg), db) in dx
            .iter_mut()
            .zip(x)
            .zip(grad)
            .zip(gamma)
            .zip(dgamma.iter_mut())
            .zip(dbeta.iter_mut())
        {
            let xhat = (v - m) * r;
            *d = (dy * g - mean_g - xhat * mean_gx) * r;
            *dg += dy * xhat;
            *db += dy;
        }
    }
}

/// The backward pass of [`forward`], given its input, scale, saved statistics and the
/// gradient of its output.
pub fn backward(x: &[f32], gamma: &[f32], mean: &[f32], rstd: &[f32], grad: &[f32]) -> NormGrads {
    let dim = gamma.len();
    assert_eq!(
        x.len(),
        grad.len(),
        "layer_norm backward: gradient shape differs"
    );
    assert_eq!(
        mean.len() * dim,
        x.len(),
        "layer_norm backward: statistics do not fit"
    );
    let block = ROWS_PER_TASK * dim;
    let mut dx = vec![0.0; x.len()];
    // One partial sum per fixed block of rows, added in block order: the same bits whatever
    // thread ran which block (a resumed run must replay the same numbers).
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(block)
        .zip(x.par_chunks(block))
        .zip(grad.par_chunks(block))
        .zip(
            mean.par_chunks(ROWS_PER_TASK)
                .zip(rstd.par_chunks(ROWS_PER_TASK)),
        )
        .map(|(((dx, x), grad), (mean, rstd))| {
            let (mut dgamma, mut dbeta) = (vec![0.0f32; dim], vec![0.0f32; dim]);
            backward_rows(x, gamma, mean, rstd, grad, dx, &mut dgamma, &mut dbeta);
            (dgamma, dbeta)
        })
        .collect();
    let (mut dgamma, mut dbeta) = (vec![0.0f32; dim], vec![0.0f32; dim]);
    for (pg, pb) in &partials {
        dgamma.iter_mut().zip(pg).for_each(|(a, b)| *a += b);
        dbeta.iter_mut().zip(pb).for_each(|(a, b)| *a += b);
    }
    NormGrads {
        x: dx,
        gamma: dgamma,
        beta: dbeta,
    }
}
