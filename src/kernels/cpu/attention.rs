//! Multi-head self-attention straight from the fused qkv projection `[batch, tokens, 3, heads,
//! head_dim]` (timm's column order), with no strided copies: every (batch, head) pair is one
//! rayon task whose matrix multiplies read q, k and v in place through their strides and write
//! the context (or the qkv gradient) in place. Scores are computed for a block of query rows
//! at a time (flash-attention's tiling over queries; the rows of a block see all keys, so the
//! softmax needs no rescaling). In training the softmax weights `[batch, heads, tokens,
//! tokens]` are kept for the backward pass, as the composed graph keeps them.

use gemm::Parallelism;
use multiversion::multiversion;
use rayon::prelude::*;

use super::math;

/// Scores computed at a time, in elements (256 KiB of f32, an L2's worth): a ViT-Tiny's 65 or
/// 197 tokens fit in one block; longer sequences are scored a block of query rows at a time,
/// so inference never holds a whole tokens² matrix.
const SCORE_BLOCK: usize = 64 * 1024;

/// Query rows per block for `tokens` keys.
fn query_block(tokens: usize) -> usize {
    (SCORE_BLOCK / tokens).clamp(1, tokens)
}

/// Sizes of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    pub batch: usize,
    pub tokens: usize,
    pub heads: usize,
    pub head_dim: usize,
}

impl AttentionShape {
    fn dim(&self) -> usize {
        self.heads * self.head_dim
    }

    fn weights_len(&self) -> usize {
        self.batch * self.heads * self.tokens * self.tokens
    }

    /// `head_dim^-1/2`, the scale of the scores.
    pub fn scale(&self) -> f32 {
        (self.head_dim as f32).powf(-0.5)
    }

    /// Element offset of head `head`'s q in batch item `item` of the qkv buffer (k and v are
    /// `dim` and `2·dim` further).
    fn qkv_offset(&self, item: usize, head: usize) -> usize {
        item * self.tokens * 3 * self.dim() + head * self.head_dim
    }

    /// Element offset of head `head`'s context in batch item `item` of a `[batch, tokens, dim]`
    /// buffer.
    fn context_offset(&self, item: usize, head: usize) -> usize {
        item * self.tokens * self.dim() + head * self.head_dim
    }
}

/// A read-only strided matrix: element (i, j) at `ptr + i·row + j·col`.
#[derive(Clone, Copy)]
struct Strided {
    ptr: *const f32,
    row: isize,
    col: isize,
}

/// A base pointer that rayon tasks share to write disjoint elements of one buffer.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: tasks holding it write only the elements of their own (batch, head) pair, which no
// other task reads or writes (see the offsets in `AttentionShape`), and the buffer outlives
// the parallel loop that uses it.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The element `offset` places past the base.
    ///
    /// # Safety
    /// `offset` must lie inside the buffer.
    unsafe fn at(self, offset: usize) -> *mut f32 {
        self.0.add(offset)
    }
}

/// `dst (m×n, row stride dst_row) = scale · lhs (m×k) · rhs (k×n)`, single-threaded.
///
/// # Safety
/// Every element the three views address must lie inside live buffers, and `dst` must not
/// overlap `lhs` or `rhs` nor be written concurrently.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_row: isize,
    lhs: Strided,
    rhs: Strided,
    scale: f32,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_row,
        false,
        lhs.ptr,
        lhs.col,
        lhs.row,
        rhs.ptr,
        rhs.col,
        rhs.row,
        0.0,
        scale,
        false,
        false,
        false,
        Parallelism::None,
    )
}

#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn softmax_rows(scores: &mut [f32], tokens: usize) {
    for row in scores.chunks_exact_mut(tokens) {
        let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        row.iter_mut().for_each(|v| *v = math::exp(*v - max));
        let inv = 1.0 / math::lane_sum(row, |v| v);
        row.iter_mut().for_each(|v| *v *= inv);
    }
}

/// `dS = P ⊙ (dP − Σⱼ Pⱼ·dPⱼ) · scale`, row by row, in place of `dP`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn softmax_backward_rows(weights: &[f32], grad: &mut [f32], tokens: usize, scale: f32) {
    for (p, dp) in weights
        .chunks_exact(tokens)
        .zip(grad.chunks_exact_mut(tokens))
    {
        let dot = math::lane_sum2(p, dp, |p, d| p * d);
        for (d, &p) in dp.iter_mut().zip(p) {
            *d = p * (*d - dot) * scale;
        }
    }
}

fn check(qkv: &[f32], shape: AttentionShape) {
    let AttentionShape {
        batch,
        tokens,
        heads,
        head_dim,
    } = shape;
    assert!(
        batch * tokens * heads * head_dim > 0,
        "attention: empty shape {shape:?}"
    );
    assert_eq!(
        qkv.len(),
        batch * tokens * 3 * heads * head_dim,
        "attention: qkv is not [batch, tokens, 3·heads·head_dim] for {shape:?}"
    );
}

/// The context `[batch, tokens, heads·head_dim]`; the softmax weights `[batch, heads, tokens,
/// tokens]` are written to `weights` when given, else dropped.
fn run(qkv: &[f32], shape: AttentionShape, weights: Option<&mut [f32]>) -> Vec<f32> {
    check(qkv, shape);
    let (n, hd, dim) = (shape.tokens, shape.head_dim, shape.dim());
    let row = 3 * dim as isize;
    let mut context = vec![0.0f32; shape.batch * n * dim];
    let out = SharedOut(context.as_mut_ptr());
    let scale = shape.scale();
    // `scores` holds either all tokens² weights of the pair (kept for the backward pass) or
    // one block of query rows (inference), reused block after block.
    let pair = |(pair, scores): (usize, &mut [f32])| {
        let (item, head) = (pair / shape.heads, pair % shape.heads);
        let keep = scores.len() == n * n;
        for start in (0..n).step_by(query_block(n)) {
            let rows = query_block(n).min(n - start);
            let block = if keep {
                &mut scores[start * n..(start + rows) * n]
            } else {
                &mut scores[..rows * n]
            };
            let q = qkv[shape.qkv_offset(item, head) + start * 3 * dim..].as_ptr();
            let k = qkv[shape.qkv_offset(item, head) + dim..].as_ptr();
            // SAFETY: `check` fixed the qkv length; the q rows start..start+rows and all k and
            // v rows of this pair lie inside this item (offsets below 3·dim in rows of stride
            // 3·dim), so every read is in bounds. `block` is this task's own buffer of
            // rows·tokens elements, and these context rows of this (item, head) pair are
            // written by this task only.
            unsafe {
                let k_t = Strided {
                    ptr: k,
                    row: 1,
                    col: row,
                };
                let q = Strided {
                    ptr: q,
                    row,
                    col: 1,
                };
                matmul(rows, n, hd, block.as_mut_ptr(), n as isize, q, k_t, scale);
                softmax_rows(block, n);
                let p = Strided {
                    ptr: block.as_ptr(),
                    row: n as isize,
                    col: 1,
                };
                let v = Strided {
                    ptr: k.add(dim),
                    row,
                    col: 1,
                };
                let dst = out.at(shape.context_offset(item, head) + start * dim);
                matmul(rows, hd, n, dst, dim as isize, p, v, 1.0);
            }
        }
    };
    match weights {
        Some(weights) => weights
            .par_chunks_mut(n * n)
            .enumerate()
            .for_each(|(i, scores)| pair((i, scores))),
        None => (0..shape.batch * shape.heads)
            .into_par_iter()
            .for_each_init(
                || vec![0.0f32; query_block(n) * n],
                |scores, i| pair((i, scores)),
            ),
    }
    context
}

/// The context `[batch, tokens, heads·head_dim]`.
pub fn forward(qkv: &[f32], shape: AttentionShape) -> Vec<f32> {
    run(qkv, shape, None)
}

/// The context and the softmax weights `[batch, heads, tokens, tokens]` that [`backward`]
/// needs.
pub fn forward_keeping_weights(qkv: &[f32], shape: AttentionShape) -> (Vec<f32>, Vec<f32>) {
    let mut weights = vec![0.0f32; shape.weights_len()];
    let context = run(qkv, shape, Some(&mut weights));
    (context, weights)
}

/// The gradient of the qkv buffer, given it, the softmax weights of the forward pass and the
/// gradient of the context.
pub fn backward(qkv: &[f32], weights: &[f32], grad: &[f32], shape: AttentionShape) -> Vec<f32> {
    check(qkv, shape);
    let (n, hd, dim) = (shape.tokens, shape.head_dim, shape.dim());
    assert_eq!(
        weights.len(),
        shape.weights_len(),
        "attention backward: weights shape"
    );
    assert_eq!(
        grad.len(),
        shape.batch * n * dim,
        "attention backward: gradient shape"
    );
    let row = 3 * dim as isize;
    let mut dqkv = vec![0.0f32; qkv.len()];
    let out = SharedOut(dqkv.as_mut_ptr());
    let scale = shape.scale();
    weights.par_chunks(n * n).enumerate().for_each_init(
        || vec![0.0f32; n * n],
        |dp, (pair, p)| {
            let (item, head) = (pair / shape.heads, pair % shape.heads);
            let base = shape.qkv_offset(item, head);
            let q = qkv[base..].as_ptr();
            let d_out = grad[shape.context_offset(item, head)..].as_ptr();
            // SAFETY: as in `forward`: lengths are checked above, every view stays inside this
            // item's rows, `dp` is this task's own buffer, and the dq, dk and dv columns of
            // this (item, head) pair in `dqkv` are written by this task only.
            unsafe {
                let (k, v) = (q.add(dim), q.add(2 * dim));
                let dst = out.at(base);
                let d_out = Strided {
                    ptr: d_out,
                    row: dim as isize,
                    col: 1,
                };
                let v_t = Strided {
                    ptr: v,
                    row: 1,
                    col: row,
                };
                matmul(n, n, hd, dp.as_mut_ptr(), n as isize, d_out, v_t, 1.0);
                let p_t = Strided {
                    ptr: p.as_ptr(),
                    row: 1,
                    col: n as isize,
                };
                matmul(n, hd, n, dst.add(2 * dim), row, p_t, d_out, 1.0);
                softmax_backward_rows(p, dp, n, scale);
                let ds = Strided {
                    ptr: dp.as_ptr(),
                    row: n as isize,
                    col: 1,
                };
                let ds_t = Strided {
                    ptr: dp.as_ptr(),
                    row: 1,
                    col: n as isize,
                };
                matmul(
                    n,
                    hd,
                    n,
                    dst,
                    row,
                    ds,
                    Strided {
                        ptr: k,
                        row,
                        col: 1,
                    },
                    1.0,
                );
                matmul(
                    n,
                    hd,
                    n,
                    dst.add(dim),
                    row,
                    ds_t,
                    Strided {
                        ptr: q,
                        row,
                        col: 1,
                    },
                    1.0,
                );
            }
        },
    );
    dqkv
}
