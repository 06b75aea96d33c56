//! Max pooling of NCHW images with a square window, one stride and one padding (never
//! chosen) for both axes, one rayon task per block of channel planes, separable: down the
//! columns, then along the row, both branch-free and SIMD across a row. The forward pass can
//! keep each output's winning input index for the backward pass, which routes each output
//! gradient to its winner.

use multiversion::multiversion;
use rayon::prelude::*;

/// Sizes of one max pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolShape {
    /// Images times channels.
    pub planes: usize,
    pub height: usize,
    pub width: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl PoolShape {
    /// Output rows.
    pub fn out_height(&self) -> usize {
        (self.height + 2 * self.padding - self.kernel) / self.stride + 1
    }

    /// Output columns.
    pub fn out_width(&self) -> usize {
        (self.width + 2 * self.padding - self.kernel) / self.stride + 1
    }

    fn check(&self, x: &[f32]) {
        assert!(
            self.kernel > 0
                && self.stride > 0
                && self.padding < self.kernel
                && self.height + 2 * self.padding >= self.kernel
                && self.width + 2 * self.padding >= self.kernel,
            "max pool: window does not fit {self:?}"
        );
        assert_eq!(
            x.len(),
            self.planes * self.height * self.width,
            "max pool: input is not [planes, h, w] for {self:?}"
        );
    }

    /// The input indices along an axis of `size` that output `o`'s window covers.
    fn window(&self, o: usize, size: usize) -> std::ops::Range<usize> {
        let start = (o * self.stride).saturating_sub(self.padding);
        let end = (o * self.stride + self.kernel - self.padding).min(size);
        start..end
    }
}

/// Folds `candidates` (at input indices `index`) into each lane's running max and its index:
/// a NaN wins, so that it reaches the output; among equals the earlier stays. Branch-free and
/// SIMD across the lanes: on real feature maps which input wins is a coin flip, and
/// mispredicted branches cost more than the pass itself.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn fold_max(candidates: &[f32], index: &[u32], best: &mut [f32], at: &mut [u32]) {
    let n = candidates.len();
    let (index, best, at) = (&index[..n], &mut best[..n], &mut at[..n]);
    for i in 0..n {
        let (v, b) = (candidates[i], best[i]);
        // All ones where `v` wins, as bits: a `bool` select here is compiled to branches.
        let wins = (((v > b) | v.is_nan()) as u32).wrapping_neg();
        best[i] = f32::from_bits((v.to_bits() & wins) | (b.to_bits() & !wins));
        at[i] = (index[i] & wins) | (at[i] & !wins);
    }
}

/// Planes per rayon task.
const PLANES_PER_TASK: usize = 16;

/// Where each output column's window reads along a row: tap `j` of output `ox` is input
/// column `taps[j][ox]`, its window's last column repeated where the window is short (at a
/// padded edge), which never changes the max or its index.
fn column_taps(s: &PoolShape) -> Vec<Vec<u32>> {
    let windows: Vec<_> = (0..s.out_width()).map(|ox| s.window(ox, s.width)).collect();
    (0..s.kernel)
        .map(|j| {
            windows
                .iter()
                .map(|w| (w.start + j).min(w.end - 1) as u32)
                .collect()
        })
        .collect()
}

/// Per-task buffers of [`forward`]: the running max down each column and its row, the
/// gathered taps of an output row with their columns, and each output's winning column.
struct PoolScratch {
    column_max: Vec<f32>,
    column_row: Vec<u32>,
    tap: Vec<f32>,
    tap_column: Vec<u32>,
    out_column: Vec<u32>,
}

/// The max of each window of `x` `[planes, h, w]`: `[planes, out_h, out_w]`, and with
/// `keep_indices` the index within its plane of each max (among equals, the leftmost column's
/// topmost).
pub fn forward(x: &[f32], s: PoolShape, keep_indices: bool) -> (Vec<f32>, Option<Vec<u32>>) {
    s.check(x);
    let (oh, ow) = (s.out_height(), s.out_width());
    let (plane_in, plane_out) = (s.height * s.width, oh * ow);
    let mut out = vec![0.0f32; s.planes * plane_out];
    let mut winners = keep_indices.then(|| vec![0u32; s.planes * plane_out]);
    let taps = column_taps(&s);
    // Separable: the max down each column of an output row's window rows, then across each
    // window's columns of those maxima; both SIMD across a row.
    let plane =
        |b: &mut PoolScratch, input: &[f32], out: &mut [f32], mut winners: Option<&mut [u32]>| {
            for oy in 0..oh {
                let window = s.window(oy, s.height);
                let first = window.start * s.width;
                b.column_max.copy_from_slice(&input[first..first + s.width]);
                b.column_row.fill(window.start as u32);
                for y in window.start + 1..window.end {
                    let line = &input[y * s.width..(y + 1) * s.width];
                    b.tap_column.fill(y as u32);
                    fold_max(line, &b.tap_column, &mut b.column_max, &mut b.column_row);
                }
                let best = &mut out[oy * ow..(oy + 1) * ow];
                for (j, columns) in taps.iter().enumerate() {
                    for ((t, &c), tc) in b.tap.iter_mut().zip(columns).zip(&mut b.tap_column) {
                        (*t, *tc) = (b.column_max[c as usize], c);
                    }
                    if j == 0 {
                        best.copy_from_slice(&b.tap[..ow]);
                        b.out_column.copy_from_slice(&b.tap_column[..ow]);
                    } else {
                        fold_max(&b.tap[..ow], &b.tap_column, best, &mut b.out_column);
                    }
                }
                if let Some(winners) = winners.as_deref_mut() {
                    for (w, &c) in winners[oy * ow..(oy + 1) * ow]
                        .iter_mut()
                        .zip(&b.out_column)
                    {
                        *w = b.column_row[c as usize] * s.width as u32 + c;
                    }
                }
            }
        };
    let inputs = x.par_chunks(plane_in);
    let outputs = out.par_chunks_mut(plane_out);
    let lanes = s.width.max(ow);
    let scratch = || PoolScratch {
        column_max: vec![0.0; s.width],
        column_row: vec![0; s.width],
        tap: vec![0.0; lanes],
        tap_column: vec![0; lanes],
        out_column: vec![0; ow],
    };
    match winners.as_mut() {
        Some(winners) => inputs
            .zip(outputs)
            .zip(winners.par_chunks_mut(plane_out))
            .with_min_len(PLANES_PER_TASK)
            .for_each_init(scratch, |buffers, ((input, out), winners)| {
                plane(buffers, input, out, Some(winners))
            }),
        None => inputs
            .zip(outputs)
            .with_min_len(PLANES_PER_TASK)
            .for_each_init(scratch, |buffers, (input, out)| {
                plane(buffers, input, out, None)
            }),
    }
    (out, winners)
}

/// The input gradient `[planes, h, w]` from the output gradient and the winners that
/// [`forward`] kept.
pub fn backward(grad: &[f32], winners: &[u32], s: PoolShape) -> Vec<f32> {
    let plane_out = s.out_height() * s.out_width();
    assert!(
        grad.len() == s.planes * plane_out && winners.len() == grad.len(),
        "max pool: gradient or winners are not [planes, out_h, out_w] for {s:?}"
    );
    let plane_in = s.height * s.width;
    let mut dx = vec![0.0f32; s.planes * plane_in];
    dx.par_chunks_mut(plane_in)
        .zip(
            grad.par_chunks(plane_out)
                .zip(winners.par_chunks(plane_out)),
        )
        .with_min_len(PLANES_PER_TASK)
        .for_each(|(dx, (grad, winners))| {
            for (g, &at) in grad.iter().zip(winners) {
                dx[at as usize] += g;
            }
        });
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(height: usize, width: usize) -> PoolShape {
        PoolShape {
            planes: 1,
            height,
            width,
            kernel: 3,
            stride: 2,
            padding: 1,
        }
    }

    /// A NaN anywhere in a window reaches that window's output (as in PyTorch), so a
    /// diverged stem is not hidden by the pool; windows without it are untouched.
    #[test]
    fn a_nan_in_a_window_reaches_its_output() {
        let mut x: Vec<f32> = (0..16).map(|i| i as f32).collect();
        x[5] = f32::NAN;
        let (out, winners) = forward(&x, shape(4, 4), true);
        assert!(out[0].is_nan() && out[1].is_nan() && out[2].is_nan() && out[3].is_nan());
        assert_eq!(winners.unwrap()[0], 5);
        x[5] = 5.0;
        x[15] = f32::NAN;
        let (out, _) = forward(&x, shape(4, 4), false);
        assert_eq!(&out[..3], &[5.0, 7.0, 13.0]);
        assert!(out[3].is_nan());
    }

    /// Equal maxima send the gradient to one winner only: the leftmost column's topmost.
    #[test]
    fn ties_route_the_gradient_to_one_input() {
        let x = vec![1.0f32; 9];
        let s = shape(3, 3);
        let (_, winners) = forward(&x, s, true);
        let winners = winners.unwrap();
        assert_eq!(winners, vec![0, 1, 3, 4]);
        let dx = backward(&[1.0; 4], &winners, s);
        assert_eq!(dx.iter().sum::<f32>(), 4.0);
        assert_eq!(dx.iter().filter(|&&g| g != 0.0).count(), 4);
    }
}
