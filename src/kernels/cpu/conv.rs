//! 2-D convolution of NCHW images with a square kernel, one stride and one zero padding for
//! both axes, optionally followed by ReLU: per image, an im2col into a `[channels·k·k,
//! out_pixels]` buffer and one matrix multiply, with rayon across images. The backward pass
//! recomputes the columns instead of keeping them (they are k² times the input), so a
//! training step keeps only the input and the output.

use gemm::Parallelism;
use rayon::prelude::*;

/// Sizes of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    pub batch: usize,
    pub in_channels: usize,
    pub height: usize,
    pub width: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl ConvShape {
    /// Output rows.
    pub fn out_height(&self) -> usize {
        (self.height + 2 * self.padding - self.kernel) / self.stride + 1
    }

    /// Output columns.
    pub fn out_width(&self) -> usize {
        (self.width + 2 * self.padding - self.kernel) / self.stride + 1
    }

    fn in_len(&self) -> usize {
        self.in_channels * self.height * self.width
    }

    fn out_pixels(&self) -> usize {
        self.out_height() * self.out_width()
    }

    /// Rows of the column buffer: one per (input channel, kernel row, kernel column).
    fn taps(&self) -> usize {
        self.in_channels * self.kernel * self.kernel
    }

    fn check(&self, x: &[f32], weight: &[f32]) {
        assert!(
            self.batch > 0 && self.in_channels > 0 && self.out_channels > 0,
            "conv: empty shape {self:?}"
        );
        assert!(
            self.kernel > 0
                && self.stride > 0
                && self.height + 2 * self.padding >= self.kernel
                && self.width + 2 * self.padding >= self.kernel,
            "conv: kernel larger than the padded image in {self:?}"
        );
        assert_eq!(
            x.len(),
            self.batch * self.in_len(),
            "conv: input is not [batch, channels, h, w] for {self:?}"
        );
        assert_eq!(
            weight.len(),
            self.out_channels * self.taps(),
            "conv: weight is not [out, in, k, k] for {self:?}"
        );
    }
}

/// For kernel offset `tap` along an axis of `size` inputs, the outputs `lo..hi` whose input
/// `o·stride + tap − padding` lies inside, and the input of the first (`lo`).
fn inside(tap: usize, size: usize, outputs: usize, s: &ConvShape) -> (usize, usize, usize) {
    let lo = s.padding.saturating_sub(tap).div_ceil(s.stride);
    let hi = if size + s.padding > tap {
        ((size + s.padding - tap - 1) / s.stride + 1).min(outputs)
    } else {
        0
    };
    let hi = hi.max(lo);
    let first = (lo * s.stride + tap).saturating_sub(s.padding).min(size);
    (lo, hi, first)
}

/// Each row of the column buffer, in order: (input channel, kernel row, kernel column).
fn taps(s: &ConvShape) -> impl Iterator<Item = (usize, usize, usize)> {
    let k = s.kernel;
    (0..s.in_channels)
        .flat_map(move |c| (0..k).flat_map(move |ky| (0..k).map(move |kx| (c, ky, kx))))
}

/// Writes the columns of one image `[channels, h, w]` into `cols` `[taps, out_pixels]`.
fn im2col(image: &[f32], s: &ConvShape, cols: &mut [f32]) {
    let (oh, ow, plane) = (s.out_height(), s.out_width(), s.height * s.width);
    for ((c, ky, kx), row) in taps(s).zip(cols.chunks_exact_mut(oh * ow)) {
        let channel = &image[c * plane..(c + 1) * plane];
        let (y_lo, y_hi, y_first) = inside(ky, s.height, oh, s);
        let (x_lo, x_hi, x_first) = inside(kx, s.width, ow, s);
        row[..y_lo * ow].fill(0.0);
        row[y_hi * ow..].fill(0.0);
        for (i, out) in row[y_lo * ow..y_hi * ow].chunks_exact_mut(ow).enumerate() {
            let iy = y_first + i * s.stride;
            let line = &channel[iy * s.width..(iy + 1) * s.width];
            out[..x_lo].fill(0.0);
            out[x_hi..].fill(0.0);
            let out = &mut out[x_lo..x_hi];
            if s.stride == 1 {
                out.copy_from_slice(&line[x_first..x_first + out.len()]);
            } else {
                let taken = line[x_first..].iter().step_by(s.stride);
                out.iter_mut().zip(taken).for_each(|(o, v)| *o = *v);
            }
        }
    }
}

/// Adds the columns' gradient `cols` `[taps, out_pixels]` into one image's gradient.
fn col2im(cols: &[f32], s: &ConvShape, image: &mut [f32]) {
    let (oh, ow, plane) = (s.out_height(), s.out_width(), s.height * s.width);
    for ((c, ky, kx), row) in taps(s).zip(cols.chunks_exact(oh * ow)) {
        let channel = &mut image[c * plane..(c + 1) * plane];
        let (y_lo, y_hi, y_first) = inside(ky, s.height, oh, s);
        let (x_lo, x_hi, x_first) = inside(kx, s.width, ow, s);
        for (i, grad) in row[y_lo * ow..y_hi * ow].chunks_exact(ow).enumerate() {
            let iy = y_first + i * s.stride;
            let line = &mut channel[iy * s.width..(iy + 1) * s.width];
            let targets = line[x_first..].iter_mut().step_by(s.stride);
            targets.zip(&grad[x_lo..x_hi]).for_each(|(t, g)| *t += g);
        }
    }
}

/// A row-major or transposed view of a matrix: element (i, j) at `i·row + j·col`.
#[derive(Clone, Copy)]
struct View<'a> {
    data: &'a [f32],
    row: usize,
    col: usize,
}

impl<'a> View<'a> {
    fn rows(data: &'a [f32], columns: usize) -> Self {
        View {
            data,
            row: columns,
            col: 1,
        }
    }

    fn transposed(data: &'a [f32], columns: usize) -> Self {
        View {
            data,
            row: 1,
            col: columns,
        }
    }

    /// Whether an `m × n` matrix through this view stays inside its data.
    fn fits(&self, m: usize, n: usize) -> bool {
        m == 0 || n == 0 || (m - 1) * self.row + (n - 1) * self.col < self.data.len()
    }
}

/// `dst (m×n, row-major) = lhs (m×k) · rhs (k×n)`, plus the old `dst` when `accumulate`;
/// single-threaded.
fn matmul([m, n, k]: [usize; 3], dst: &mut [f32], lhs: View, rhs: View, accumulate: bool) {
    assert!(
        dst.len() == m * n && lhs.fits(m, k) && rhs.fits(k, n),
        "conv: matmul operands do not hold [{m}×{k}]·[{k}×{n}]"
    );
    // SAFETY: the assert above keeps every element the three views address inside their
    // slices; `dst` is borrowed mutably, so it overlaps neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col as isize,
            lhs.row as isize,
            rhs.data.as_ptr(),
            rhs.col as isize,
            rhs.row as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

/// Images per rayon task. Fixed, so that the backward pass sums the same partial weight
/// gradients in the same order whatever the thread count: gradients are reproducible bit for
/// bit.
const IMAGES_PER_TASK: usize = 8;

/// The convolution of `x` `[batch, in, h, w]` with `weight` `[out, in, k, k]` plus `bias`
/// `[out]`, then ReLU if `relu`: `[batch, out, out_h, out_w]`.
pub fn forward(x: &[f32], weight: &[f32], bias: &[f32], relu: bool, s: ConvShape) -> Vec<f32> {
    s.check(x, weight);
    assert_eq!(bias.len(), s.out_channels, "conv: bias is not [out]");
    let (pixels, taps) = (s.out_pixels(), s.taps());
    let mut out = vec![0.0f32; s.batch * s.out_channels * pixels];
    out.par_chunks_mut(s.out_channels * pixels)
        .zip(x.par_chunks(s.in_len()))
        .with_min_len(IMAGES_PER_TASK)
        .for_each_init(
            || vec![0.0f32; taps * pixels],
            |cols, (out, image)| {
                im2col(image, &s, cols);
                matmul(
                    [s.out_channels, pixels, taps],
                    out,
                    View::rows(weight, taps),
                    View::rows(cols, pixels),
                    false,
                );
                for (channel, b) in out.chunks_exact_mut(pixels).zip(bias) {
                    if relu {
                        channel.iter_mut().for_each(|v| *v = (*v + b).max(0.0));
                    } else {
                        channel.iter_mut().for_each(|v| *v += b);
                    }
                }
            },
        );
    out
}

/// Gradients of [`forward`]: the input's (when asked for), the weight's and the bias's.
pub struct ConvGrads {
    pub x: Option<Vec<f32>>,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// One task's sums over its images, and its scratch buffers.
struct Partial {
    weight: Vec<f32>,
    bias: Vec<f32>,
    cols: Vec<f32>,
    grad_cols: Vec<f32>,
}

/// Backward pass of [`forward`] for the output gradient `grad`. `out` is the forward output,
/// needed (and only read) when ReLU followed; `input_grad` asks for the input's gradient.
pub fn backward(
    x: &[f32],
    weight: &[f32],
    out: Option<&[f32]>,
    grad: &[f32],
    input_grad: bool,
    s: ConvShape,
) -> ConvGrads {
    s.check(x, weight);
    let (pixels, taps) = (s.out_pixels(), s.taps());
    let out_len = s.out_channels * pixels;
    assert_eq!(
        grad.len(),
        s.batch * out_len,
        "conv: gradient is not the output's shape"
    );
    let grad = match out {
        Some(out) => {
            assert_eq!(
                out.len(),
                grad.len(),
                "conv: output is not the gradient's shape"
            );
            grad.iter()
                .zip(out)
                .map(|(g, o)| if *o > 0.0 { *g } else { 0.0 })
                .collect::<Vec<_>>()
        }
        None => grad.to_vec(),
    };
    let image = |acc: &mut Partial, item: usize, dx: Option<&mut [f32]>| {
        let g = &grad[item * out_len..(item + 1) * out_len];
        im2col(
            &x[item * s.in_len()..(item + 1) * s.in_len()],
            &s,
            &mut acc.cols,
        );
        matmul(
            [s.out_channels, taps, pixels],
            &mut acc.weight,
            View::rows(g, pixels),
            View::transposed(&acc.cols, pixels),
            true,
        );
        for (b, channel) in acc.bias.iter_mut().zip(g.chunks_exact(pixels)) {
            *b += channel.iter().sum::<f32>();
        }
        if let Some(dx) = dx {
            matmul(
                [taps, pixels, s.out_channels],
                &mut acc.grad_cols,
                View::transposed(weight, taps),
                View::rows(g, pixels),
                false,
            );
            col2im(&acc.grad_cols, &s, dx);
        }
    };
    let task = |first: usize, dx: Option<&mut [f32]>| {
        let mut acc = Partial {
            weight: vec![0.0; s.out_channels * taps],
            bias: vec![0.0; s.out_channels],
            cols: vec![0.0; taps * pixels],
            grad_cols: vec![0.0; if dx.is_some() { taps * pixels } else { 0 }],
        };
        let items = first..(first + IMAGES_PER_TASK).min(s.batch);
        match dx {
            Some(dx) => items
                .zip(dx.chunks_exact_mut(s.in_len()))
                .for_each(|(item, dx)| image(&mut acc, item, Some(dx))),
            None => items.for_each(|item| image(&mut acc, item, None)),
        }
        acc
    };
    let mut dx = input_grad.then(|| vec![0.0f32; x.len()]);
    let partials: Vec<Partial> = match dx.as_mut() {
        Some(dx) => dx
            .par_chunks_mut(IMAGES_PER_TASK * s.in_len())
            .enumerate()
            .map(|(t, dx)| task(t * IMAGES_PER_TASK, Some(dx)))
            .collect(),
        None => (0..s.batch.div_ceil(IMAGES_PER_TASK))
            .into_par_iter()
            .map(|t| task(t * IMAGES_PER_TASK, None))
            .collect(),
    };
    let (mut weight_grad, mut bias_grad) =
        (vec![0.0; s.out_channels * taps], vec![0.0; s.out_channels]);
    let add = |a: &mut [f32], b: &[f32]| a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
    for partial in &partials {
        add(&mut weight_grad, &partial.weight);
        add(&mut bias_grad, &partial.bias);
    }
    ConvGrads {
        x: dx,
        weight: weight_grad,
        bias: bias_grad,
    }
}
