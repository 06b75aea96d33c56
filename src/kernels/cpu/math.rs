//! Branch-free `exp` and `erf` for f32 that compile to SIMD with fused multiply-adds when
//! inlined into a loop built for AVX2+FMA, AVX-512 or NEON (the scalar `libm` calls they
//! replace do not vectorise). Built without FMA, `mul_add` is a library call: correct, slower.

/// Cephes' polynomial for `(e^r − 1 − r) / r²`, lowest degree first.
const EXP_POLY: [f32; 6] = [
    0.5,
    1.666_666_5e-1,
    4.166_579_6e-2,
    8.333_452e-3,
    1.398_199_9e-3,
    1.987_569_1e-4,
];

/// `exp(x)`: Cephes' range reduction to `x = n·ln2 + r`, `|r| ≤ ln2/2`, a degree-5 polynomial
/// for `e^r`, and `2^n` assembled in the exponent bits. Within 2 ulp of the true value over
/// the normal range; saturates to 0 below `-87.3` and to `f32::MAX`-ish above `88.4`.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer without a libm call.
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.336_54, 88.376_26);
    // `shifted` holds n = round(x·log2 e) in its low mantissa bits: its bit pattern is
    // ROUND's plus n. Reading n from the bits (not `as i32`, which does not vectorise) keeps
    // the loop in SIMD registers.
    let shifted = x.mul_add(std::f32::consts::LOG2_E, ROUND);
    let n = shifted - ROUND;
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    let p = poly(&EXP_POLY, r);
    let e_r = (p * r).mul_add(r, r + 1.0);
    // n ∈ [-126, 127] after the clamp, so the biased exponent n + 127 stays in 1..=254.
    let biased = shifted
        .to_bits()
        .wrapping_sub(ROUND.to_bits())
        .wrapping_add(127);
    let scale = f32::from_bits(biased << 23);
    e_r * scale
}

/// Below this |x|, erf is fitted as `x·P(x²)`; from it on as `1 − exp(−R(|x|))`.
const ERF_SPLIT: f32 = 0.921_875;
/// `P` of [`erf`]'s inner piece, lowest degree first (`scripts/fit_erf.py`).
const ERF_INNER: [f32; 7] = [
    std::f32::consts::FRAC_2_SQRT_PI,
    -0.376_126_35,
    0.112_837_08,
    -0.026_859_958,
    0.005_202_175_6,
    -0.000_815_377_4,
    8.410_992e-5,
];
/// `R ≈ −ln erfc` of [`erf`]'s outer piece, lowest degree first (`scripts/fit_erf.py`).
const ERF_OUTER: [f32; 9] = [
    -0.000_169_766_14,
    1.129_485_4,
    0.633_423_27,
    0.108_169_86,
    -0.025_022_186,
    0.004_117_395,
    -0.000_416_375_8,
    1.769_361_4e-5,
    2.732_021e-7,
];

/// `Σ cᵢ·xⁱ` by Horner's rule.
#[inline(always)]
fn poly<const N: usize>(coefficients: &[f32; N], x: f32) -> f32 {
    coefficients
        .iter()
        .rev()
        .fold(0.0, |acc, &c| acc.mul_add(x, c))
}

/// `erf(x)` within 2 ulp of the correctly rounded value (1 ulp from |x| = 0.92 on), branch
/// free: both pieces are computed and one selected, so a loop of it vectorises.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let t = x.abs();
    let inner = x * poly(&ERF_INNER, x * x);
    let outer = (1.0 - exp(-poly(&ERF_OUTER, t.min(4.0)))).copysign(x);
    if t < ERF_SPLIT {
        inner
    } else {
        outer
    }
}

/// Independent accumulators, so that sums vectorise under strict f32 semantics.
pub const LANES: usize = 16;

/// `Σ f(xᵢ)` with `LANES` partial sums.
#[inline(always)]
pub fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += f(v);
        }
    }
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    acc.iter().sum::<f32>() + tail
}

/// `Σ f(xᵢ, yᵢ)` with `LANES` partial sums.
#[inline(always)]
pub fn lane_sum2(x: &[f32], y: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut xs = x.chunks_exact(LANES);
    let mut ys = y.chunks_exact(LANES);
    for (cx, cy) in (&mut xs).zip(&mut ys) {
        for ((a, &u), &v) in acc.iter_mut().zip(cx).zip(cy) {
            *a += f(u, v);
        }
    }
    let tail: f32 = xs
        .remainder()
        .iter()
        .zip(ys.remainder())
        .map(|(&u, &v)| f(u, v))
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// `Σ f(xᵢ, yᵢ, zᵢ)` with `LANES` partial sums.
#[inline(always)]
pub fn lane_sum3(x: &[f32], y: &[f32], z: &[f32], f: impl Fn(f32, f32, f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (mut xs, mut ys, mut zs) = (
        x.chunks_exact(LANES),
        y.chunks_exact(LANES),
        z.chunks_exact(LANES),
    );
    for ((cx, cy), cz) in (&mut xs).zip(&mut ys).zip(&mut zs) {
        for (((a, &u), &v), &w) in acc.iter_mut().zip(cx).zip(cy).zip(cz) {
            *a += f(u, v, w);
        }
    }
    let tail: f32 = xs
        .remainder()
        .iter()
        .zip(ys.remainder())
        .zip(zs.remainder())
        .map(|((&u, &v), &w)| f(u, v, w))
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// `1/√(2π)`, the standard normal density at 0.
pub const INV_SQRT_2PI: f32 = 0.398_942_3;

/// GELU with the exact (erf) form: `x·Φ(x)`.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    let half_x = 0.5 * x;
    half_x.mul_add(erf(x * std::f32::consts::FRAC_1_SQRT_2), half_x)
}

/// d GELU / dx: `Φ(x) + x·φ(x)`.
#[inline(always)]
pub fn gelu_grad(x: f32) -> f32 {
    let cdf = 0.5f32.mul_add(erf(x * std::f32::consts::FRAC_1_SQRT_2), 0.5);
    (x * INV_SQRT_2PI).mul_add(exp(-0.5 * x * x), cdf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between two finite f32 of the same sign.
    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    fn grid(lo: f32, hi: f32, steps: usize) -> impl Iterator<Item = f32> {
        (0..=steps).map(move |i| lo + (hi - lo) * i as f32 / steps as f32)
    }

    #[test]
    fn exp_is_within_two_ulp_over_the_normal_range() {
        let worst = grid(-87.0, 88.0, 200_000)
            .map(|x| ulps(exp(x), (x as f64).exp() as f32))
            .max()
            .unwrap();
        assert!(worst <= 2, "exp off by {worst} ulp");
        assert_eq!(exp(-200.0), exp(-87.336_54));
        assert!(exp(-200.0) < 1e-37);
    }

    #[test]
    fn erf_is_within_two_ulp_where_it_is_not_tiny() {
        let worst = grid(-6.0, 6.0, 200_000)
            .filter(|x| x.abs() > 1e-3)
            .map(|x| ulps(erf(x), libm::erf(x as f64) as f32))
            .max()
            .unwrap();
        assert!(worst <= 2, "erf off by {worst} ulp");
        let worst_abs = grid(-1e-3, 1e-3, 1000)
            .map(|x| (erf(x) as f64 - libm::erf(x as f64)).abs())
            .fold(0.0, f64::max);
        assert!(worst_abs < 1e-9, "erf near 0 off by {worst_abs}");
    }

    #[test]
    fn gelu_and_its_gradient_match_the_f64_formulas() {
        for x in grid(-10.0, 10.0, 20_000) {
            let xd = x as f64;
            let cdf = 0.5 * (1.0 + libm::erf(xd / std::f64::consts::SQRT_2));
            let pdf = (-0.5 * xd * xd).exp() / (2.0 * std::f64::consts::PI).sqrt();
            assert!(
                (gelu(x) as f64 - xd * cdf).abs() <= 1e-6 * (1.0 + xd.abs()),
                "gelu({x})"
            );
            assert!(
                (gelu_grad(x) as f64 - (cdf + xd * pdf)).abs() <= 1e-6,
                "gelu'({x})"
            );
        }
    }
}
