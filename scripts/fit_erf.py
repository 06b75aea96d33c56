"""Fits the coefficients of vitrun's vectorised erf (src/kernels/cpu/math.rs) and prints them
with the worst error of the f32 evaluation, in ulp, against math.erf.

    target/bench-venv/bin/python scripts/fit_erf.py    (needs numpy)

Inner piece, |x| < 0.921875: erf(x) = x * P(x^2), P fitted for relative error.
Outer piece: erf(x) = 1 - exp(-R(|x|)) with |x| clamped to 4, R fitted to -ln erfc(x) weighted
by erfc(x), the error that an error in R makes in erf.
"""
import math

import numpy as np

SPLIT = 0.921875
INNER_TERMS, OUTER_TERMS = 7, 9


def chebyshev_nodes(lo, hi, n):
    return np.cos(np.linspace(0, np.pi, n)) * (hi - lo) / 2 + (hi + lo) / 2


def fit():
    x = chebyshev_nodes(1e-4, SPLIT, 4000)
    target = np.array([math.erf(v) / v for v in x])
    powers = np.vstack([(x * x) ** k for k in range(INNER_TERMS)]).T
    inner = np.linalg.lstsq(powers / target[:, None], np.ones_like(target), rcond=None)[0]
    t = chebyshev_nodes(SPLIT, 4.0, 6000)
    weight = np.array([math.erfc(v) for v in t])
    target = np.array([-math.log(math.erfc(v)) for v in t])
    powers = np.vstack([t**k for k in range(OUTER_TERMS)]).T
    outer = np.linalg.lstsq(powers * weight[:, None], target * weight, rcond=None)[0]
    return inner.astype(np.float32), outer.astype(np.float32)


def horner(coefficients, x):
    acc = np.zeros_like(x)
    for c in coefficients[::-1]:
        acc = acc * x + c
    return acc


def erf32(x, inner, outer):
    t = np.abs(x)
    near = x * horner(inner, x * x)
    r = horner(outer, np.minimum(t, np.float32(4.0)))
    far = np.copysign(np.float32(1.0) - np.exp(-r), x).astype(np.float32)
    return np.where(t < np.float32(SPLIT), near, far).astype(np.float32)


def main():
    inner, outer = fit()
    x = np.linspace(-6, 6, 600001).astype(np.float32)
    exact = np.array([math.erf(float(v)) for v in x]).astype(np.float32)
    ours = erf32(x, inner, outer)
    ulps = np.abs(ours.view(np.int32).astype(np.int64) - exact.view(np.int32).astype(np.int64))
    print("ERF_INNER:", ", ".join(str(c) for c in inner))
    print("ERF_OUTER:", ", ".join(str(c) for c in outer))
    print(f"worst error: {ulps.max()} ulp at x = {x[np.argmax(ulps)]}")


if __name__ == "__main__":
    main()
