//! Max pooling of NCHW images with a square window, one stride and one padding (never
//! chosen) for both axes, one rayon task per block of channel planes, separable: down the
//! columns (SIMD across them), then along the row. The forward pass can
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

/// Folds the input row `line` (row `y`) into each column's running max and its row.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn column_step(line: &[f32], y: u32, best: &mut [f32], row: &mut [u32]) {
    let (best, row) = (&mut best[..line.len()], &mut row[..line.len()]);
    for x in 0..line.len() {
        // A NaN wins, so that it reaches the output; `|` keeps the loop branch-free.
        let wins = (line[x] > best[x]) | line[x].is_nan();
        best[x] = if wins { line[x] } else { best[x] };
        row[x] = if wins { y } else { row[x] };
    }
}

/// Planes per rayon task.
const PLANES_PER_TASK: usize = 16;

/// The max of each window of `x` `[planes, h, w]`: `[planes, out_h, out_w]`, and with
/// `keep_indices` the index within its plane of each max (among equals, the leftmost column's
/// topmost).
pub fn forward(x: &[f32], s: PoolShape, keep_indices: bool) -> (Vec<f32>, Option<Vec<u32>>) {
    s.check(x);
    let (oh, ow) = (s.out_height(), s.out_width());
    let (plane_in, plane_out) = (s.height * s.width, oh * ow);
    let mut out = vec![0.0f32; s.planes * plane_out];
    let mut winners = keep_indices.then(|| vec![0u32; s.planes * plane_out]);
    // Separable: the max down each column of an output row's window rows (SIMD across the
    // columns), then across each window's columns of those maxima.
    let plane = |(column_max, column_row): &mut (Vec<f32>, Vec<u32>),
                 input: &[f32],
                 out: &mut [f32],
                 mut winners: Option<&mut [u32]>| {
        for oy in 0..oh {
            let rows = s.window(oy, s.height);
            column_max.copy_from_slice(&input[rows.start * s.width..(rows.start + 1) * s.width]);
            column_row.fill(rows.start as u32);
            for y in rows.start + 1..rows.end {
                let line = &input[y * s.width..(y + 1) * s.width];
                column_step(line, y as u32, column_max, column_row);
            }
            for ox in 0..ow {
                let cols = s.window(ox, s.width);
                let (mut best, mut at) = (column_max[cols.start], cols.start);
                for (x, &v) in column_max
                    .iter()
                    .enumerate()
                    .take(cols.end)
                    .skip(cols.start + 1)
                {
                    if v > best || v.is_nan() {
                        (best, at) = (v, x);
                    }
                }
                out[oy * ow + ox] = best;
                if let Some(winners) = winners.as_deref_mut() {
                    winners[oy * ow + ox] = column_row[at] * s.width as u32 + at as u32;
                }
            }
        }
    };
    let inputs = x.par_chunks(plane_in);
    let outputs = out.par_chunks_mut(plane_out);
    let scratch = || (vec![0.0f32; s.width], vec![0u32; s.width]);
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
