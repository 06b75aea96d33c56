//! GELU (erf form) forward and backward over f32 slices, split across rayon's threads, each
//! chunk compiled for AVX-512, AVX2+FMA or NEON when the CPU has it (scalar otherwise).

use multiversion::multiversion;
use rayon::prelude::*;

use super::math;

/// Elements per rayon task: large enough to amortise scheduling, small enough for two cores
/// to share a ViT-Tiny activation evenly.
const CHUNK: usize = 16 * 1024;

#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn forward_chunk(x: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = math::gelu(v);
    }
}

#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn forward_chunk_in_place(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = math::gelu(*v);
    }
}

#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn backward_chunk(x: &[f32], grad: &[f32], out: &mut [f32]) {
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(grad) {
        *o = g * math::gelu_grad(v);
    }
}

/// `out = gelu(x)` on the calling thread (for a block another kernel owns).
pub fn apply(x: &[f32], out: &mut [f32]) {
    forward_chunk(x, out);
}

/// `x = gelu(x)` on the calling thread.
pub fn apply_in_place(x: &mut [f32]) {
    forward_chunk_in_place(x);
}

/// `gelu(x)`.
pub fn forward(x: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(out, x)| forward_chunk(x, out));
    out
}

/// `grad · gelu'(x)`.
pub fn backward(x: &[f32], grad: &[f32]) -> Vec<f32> {
    assert_eq!(
        x.len(),
        grad.len(),
        "gelu backward: input and gradient lengths differ"
    );
    let mut out = vec![0.0; x.len()];
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(grad.par_chunks(CHUNK)))
        .for_each(|(out, (x, grad))| backward_chunk(x, grad, out));
    out
}
