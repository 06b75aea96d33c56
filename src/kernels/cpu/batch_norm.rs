//! BatchNorm of a row-major `[batch, channels, plane]` f32 buffer (NCHW with the spatial axes
//! flattened into planes): each channel's statistics over the batch and its planes, the
//! normalisation with an optional fused ReLU, and the backward pass under batch statistics.
//! Sums are taken per plane in SIMD lanes (rayon across planes), then added per channel in
//! batch order in f64: the same bits whichever thread ran which plane.

use multiversion::multiversion;
use rayon::prelude::*;

use super::math::{lane_sum, lane_sum2, lane_sum3};

/// The layout of a BatchNorm input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaneShape {
    pub batch: usize,
    pub channels: usize,
    /// Elements per channel per image (height × width).
    pub plane: usize,
}

impl PlaneShape {
    fn len(&self) -> usize {
        self.batch * self.channels * self.plane
    }

    /// Elements each channel's statistics are taken over.
    fn count(&self) -> f64 {
        (self.batch * self.plane) as f64
    }

    fn check(&self, name: &str, x: &[f32]) {
        assert!(
            self.plane > 0 && x.len() == self.len(),
            "batch_norm: {name} has {} elements, not {:?}",
            x.len(),
            self
        );
    }

    /// Adds per-plane values into per-channel sums, plane by plane in batch order.
    fn per_channel(&self, per_plane: &[f32]) -> Vec<f64> {
        let mut sums = vec![0.0f64; self.channels];
        for image in per_plane.chunks_exact(self.channels) {
            sums.iter_mut()
                .zip(image)
                .for_each(|(sum, &v)| *sum += f64::from(v));
        }
        sums
    }
}

/// Each channel's mean and biased variance.
#[derive(Debug, Clone, PartialEq)]
pub struct Statistics {
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
}

#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn plane_sum(p: &[f32]) -> f32 {
    lane_sum(p, |v| v)
}

#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn plane_squared_deviation(p: &[f32], mean: f32) -> f32 {
    lane_sum(p, |v| (v - mean) * (v - mean))
}

/// Each channel's mean and biased variance over the batch and the planes (two passes: the
/// mean, then the squared deviations from it).
pub fn statistics(x: &[f32], s: PlaneShape) -> Statistics {
    s.check("input", x);
    let sums: Vec<f32> = x.par_chunks(s.plane).map(plane_sum).collect();
    let mean: Vec<f32> = s
        .per_channel(&sums)
        .iter()
        .map(|sum| (sum / s.count()) as f32)
        .collect();
    let squares: Vec<f32> = x
        .par_chunks(s.plane)
        .enumerate()
        .map(|(index, p)| plane_squared_deviation(p, mean[index % s.channels]))
        .collect();
    let var = s
        .per_channel(&squares)
        .iter()
        .map(|sum| (sum / s.count()) as f32)
        .collect();
    Statistics { mean, var }
}

/// Each channel's `γ/√(var + ε)` and `β − mean·γ/√(var + ε)`.
fn scale_shift(gamma: &[f32], beta: &[f32], stats: &Statistics, eps: f32) -> Vec<(f32, f32)> {
    gamma
        .iter()
        .zip(beta)
        .zip(stats.mean.iter().zip(&stats.var))
        .map(|((&g, &b), (&m, &v))| {
            let scale = g / (v + eps).sqrt();
            (scale, b - m * scale)
        })
        .collect()
}

#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn normalize_plane(x: &[f32], (scale, shift): (f32, f32), relu: bool, out: &mut [f32]) {
    if relu {
        out.iter_mut()
            .zip(x)
            .for_each(|(o, &v)| *o = (v * scale + shift).max(0.0));
    } else {
        out.iter_mut()
            .zip(x)
            .for_each(|(o, &v)| *o = v * scale + shift);
    }
}

/// `x` normalised by `stats`, scaled by `gamma` and shifted by `beta` per channel, then ReLU
/// when `relu`.
pub fn normalize(
    x: &[f32],
    [gamma, beta]: [&[f32]; 2],
    stats: &Statistics,
    eps: f32,
    relu: bool,
    s: PlaneShape,
) -> Vec<f32> {
    s.check("input", x);
    for (name, v) in [
        ("gamma", gamma),
        ("beta", beta),
        ("mean", &stats.mean[..]),
        ("var", &stats.var[..]),
    ] {
        assert_eq!(v.len(), s.channels, "batch_norm: {name} is not per channel");
    }
    let affine = scale_shift(gamma, beta, stats, eps);
    let mut out = vec![0.0; x.len()];
    out.par_chunks_mut(s.plane)
        .zip(x.par_chunks(s.plane))
        .enumerate()
        .for_each(|(index, (out, x))| normalize_plane(x, affine[index % s.channels], relu, out));
    out
}

/// Gradients of BatchNorm with respect to its input, scale and shift.
pub struct BatchNormGrads {
    pub x: Vec<f32>,
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
}

/// The gradient that reaches the norm's output through a fused ReLU: `grad` where the ReLU let
/// the output through (`out > 0`), else 0.
#[inline(always)]
fn through_relu(grad: f32, out: f32) -> f32 {
    if out > 0.0 {
        grad
    } else {
        0.0
    }
}

/// `Σ g` and `Σ g·x̂` over a plane, `g` being the gradient that reaches the norm's output.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn plane_grad_sums(
    grad: &[f32],
    x: &[f32],
    out: Option<&[f32]>,
    [mean, rstd]: [f32; 2],
) -> (f32, f32) {
    match out {
        Some(out) => (
            lane_sum2(grad, out, through_relu),
            lane_sum3(grad, out, x, |g, o, v| {
                through_relu(g, o) * (v - mean) * rstd
            }),
        ),
        None => (
            lane_sum(grad, |g| g),
            lane_sum2(grad, x, |g, v| g * (v - mean) * rstd),
        ),
    }
}

#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn input_grad_plane(
    x: &[f32],
    grad: &[f32],
    out: Option<&[f32]>,
    coefficients: [f32; 5],
    dx: &mut [f32],
) {
    // dx = γ/σ · (g − mean(g) − x̂·mean(g·x̂)), with x̂ = (x − μ)/σ.
    let [mean, rstd, mean_g, mean_gx, gamma] = coefficients;
    let gain = gamma * rstd;
    let input_grad = |g: f32, v: f32| (g - mean_g - (v - mean) * rstd * mean_gx) * gain;
    match out {
        Some(out) => dx
            .iter_mut()
            .zip(x.iter().zip(grad).zip(out))
            .for_each(|(d, ((&v, &g), &o))| *d = input_grad(through_relu(g, o), v)),
        None => dx
            .iter_mut()
            .zip(x.iter().zip(grad))
            .for_each(|(d, (&v, &g))| *d = input_grad(g, v)),
    }
}

/// The backward pass of [`normalize`] under the batch's own `stats` (from [`statistics`] of
/// `x`), given the output when ReLU was fused and the gradient of the output.
pub fn backward(
    x: &[f32],
    out: Option<&[f32]>,
    grad: &[f32],
    gamma: &[f32],
    stats: &Statistics,
    eps: f32,
    s: PlaneShape,
) -> BatchNormGrads {
    s.check("input", x);
    s.check("gradient", grad);
    if let Some(out) = out {
        s.check("output", out);
    }
    let rstd: Vec<f32> = stats.var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let out_plane = |index: usize| out.map(|out| &out[index * s.plane..(index + 1) * s.plane]);
    let (plain, weighted): (Vec<f32>, Vec<f32>) = grad
        .par_chunks(s.plane)
        .zip(x.par_chunks(s.plane))
        .enumerate()
        .map(|(index, (grad, x))| {
            let c = index % s.channels;
            plane_grad_sums(grad, x, out_plane(index), [stats.mean[c], rstd[c]])
        })
        .unzip();
    let beta: Vec<f32> = s.per_channel(&plain).iter().map(|&v| v as f32).collect();
    let gamma_grad: Vec<f32> = s.per_channel(&weighted).iter().map(|&v| v as f32).collect();
    let count = s.count() as f32;
    let mut dx = vec![0.0; x.len()];
    dx.par_chunks_mut(s.plane)
        .zip(x.par_chunks(s.plane).zip(grad.par_chunks(s.plane)))
        .enumerate()
        .for_each(|(index, (dx, (x, grad)))| {
            let c = index % s.channels;
            let coefficients = [
                stats.mean[c],
                rstd[c],
                beta[c] / count,
                gamma_grad[c] / count,
                gamma[c],
            ];
            input_grad_plane(x, grad, out_plane(index), coefficients, dx)
        });
    BatchNormGrads {
        x: dx,
        gamma: gamma_grad,
        beta,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> PlaneShape {
        PlaneShape {
            batch: 3,
            channels: 2,
            plane: 5,
        }
    }

    fn input() -> Vec<f32> {
        (0..30).map(|i| ((i * 7 % 11) as f32 - 4.0) * 0.5).collect()
    }

    #[test]
    fn statistics_are_per_channel_over_batch_and_plane() {
        let x = input();
        let s = shape();
        let stats = statistics(&x, s);
        for c in 0..2 {
            let values: Vec<f32> = (0..3)
                .flat_map(|n| x[(n * 2 + c) * 5..(n * 2 + c + 1) * 5].to_vec())
                .collect();
            let mean = values.iter().sum::<f32>() / 15.0;
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 15.0;
            assert!((stats.mean[c] - mean).abs() < 1e-6, "{c}");
            assert!((stats.var[c] - var).abs() < 1e-5, "{c}");
        }
    }

    #[test]
    fn relu_gradient_stops_where_the_output_is_zero() {
        let x = input();
        let s = shape();
        let stats = statistics(&x, s);
        let gamma = [1.5, -0.5];
        let out = normalize(&x, [&gamma, &[0.1, 0.2]], &stats, 1e-5, true, s);
        assert!(out.iter().all(|&v| v >= 0.0));
        let grad = vec![1.0; 30];
        let d = backward(&x, Some(&out), &grad, &gamma, &stats, 1e-5, s);
        let on = out.iter().filter(|&&v| v > 0.0).count() as f32;
        assert!((d.beta.iter().sum::<f32>() - on).abs() < 1e-5);
    }
}
