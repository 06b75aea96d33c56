//! 2-D convolution of NCHW images with a square kernel, one stride and one zero padding for
//! both axes, optionally followed by ReLU: per image, an im2col into a `[channels·k·k,
//! out_pixels]` buffer and one matrix multiply, with rayon across images. The backward pass
//! recomputes the columns instead of keeping them (they are k² times the input), so a
//! training step keeps only the input and the output.

use std::cell::RefCell;

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

/// The kernel offsets `(ky, kx)` that touch the image at some output pixel. On feature maps
/// smaller than the kernel's reach (a 3×3 conv with padding 1 on a 1×1 map) the others only
/// ever see the zero padding: their columns would be all zeros, so they are left out of the
/// multiply, and their weights get a zero gradient.
fn live_offsets(s: &ConvShape) -> Vec<(usize, usize)> {
    let (oh, ow) = (s.out_height(), s.out_width());
    let live = |tap: usize, size: usize, outputs: usize| {
        let (lo, hi, _) = inside(tap, size, outputs, s);
        lo < hi
    };
    (0..s.kernel)
        .filter(|&ky| live(ky, s.height, oh))
        .flat_map(|ky| (0..s.kernel).map(move |kx| (ky, kx)))
        .filter(|&(_, kx)| live(kx, s.width, ow))
        .collect()
}

/// Each row of the column buffer, in order: (input channel, kernel row, kernel column) over
/// the live offsets.
fn taps<'a>(
    s: &ConvShape,
    offsets: &'a [(usize, usize)],
) -> impl Iterator<Item = (usize, usize, usize)> + 'a {
    (0..s.in_channels).flat_map(move |c| offsets.iter().map(move |&(ky, kx)| (c, ky, kx)))
}

/// The weight's columns of the live offsets: `[out, in·live]` (the weight itself when every
/// offset is live).
fn live_weight<'a>(
    weight: &'a [f32],
    s: &ConvShape,
    offsets: &[(usize, usize)],
) -> std::borrow::Cow<'a, [f32]> {
    let k = s.kernel;
    if offsets.len() == k * k {
        return std::borrow::Cow::Borrowed(weight);
    }
    let mut picked = Vec::with_capacity(s.out_channels * s.in_channels * offsets.len());
    for filter in weight.chunks_exact(k * k) {
        picked.extend(offsets.iter().map(|&(ky, kx)| filter[ky * k + kx]));
    }
    std::borrow::Cow::Owned(picked)
}

/// A gradient of the live columns `[out, in·live]` spread into the weight's shape, zeros at
/// the offsets left out.
fn spread_weight_grad(live: Vec<f32>, s: &ConvShape, offsets: &[(usize, usize)]) -> Vec<f32> {
    let k = s.kernel;
    if offsets.len() == k * k {
        return live;
    }
    let mut full = vec![0.0; s.out_channels * s.in_channels * k * k];
    let targets = (0..s.out_channels).flat_map(|o| {
        taps(s, offsets).map(move |(c, ky, kx)| ((o * s.in_channels + c) * k + ky) * k + kx)
    });
    for (i, v) in targets.zip(live) {
        full[i] = v;
    }
    full
}

/// Output widths below this are lowered by gathering from a zero-padded copy of each
/// channel (a fixed index per output pixel, nothing per row); wider ones copy rows, which is
/// faster once rows are long.
const GATHER_BELOW: usize = 16;

/// How a conv lowers an image to its column matrix and its gradient back: the live kernel
/// offsets, and for narrow outputs the gather plan.
struct Lowering {
    s: ConvShape,
    offsets: Vec<(usize, usize)>,
    gather: Option<Gather>,
}

/// Indices into a channel padded by `padding` on every side (`width` wide, `len` long): the
/// window's top-left corner of each output pixel, and each live offset's shift from it.
struct Gather {
    width: usize,
    len: usize,
    corner: Vec<usize>,
    shift: Vec<usize>,
    /// One past the largest corner: every window from a shift reaches this far.
    reach: usize,
}

impl Lowering {
    fn new(s: ConvShape) -> Lowering {
        let offsets = live_offsets(&s);
        let gather = (s.out_width() < GATHER_BELOW).then(|| {
            let width = s.width + 2 * s.padding;
            let len = width * (s.height + 2 * s.padding);
            let corner: Vec<usize> = (0..s.out_height())
                .flat_map(|oy| (0..s.out_width()).map(move |ox| (oy * width + ox) * s.stride))
                .collect();
            let shift = offsets.iter().map(|&(ky, kx)| ky * width + kx).collect();
            let reach = corner.iter().max().map_or(0, |c| c + 1);
            Gather {
                width,
                len,
                corner,
                shift,
                reach,
            }
        });
        Lowering { s, offsets, gather }
    }

    /// Rows of the column matrix.
    fn taps(&self) -> usize {
        self.s.in_channels * self.offsets.len()
    }

    /// Scratch the gather path needs: one padded channel.
    fn plane_len(&self) -> usize {
        self.gather.as_ref().map_or(0, |g| g.len)
    }

    /// Writes the columns of one image `[channels, h, w]` into `cols`: row `t` of the column
    /// matrix (`[taps, out_pixels]` for this image) at `cols[t·ld + at ..]`, so the images of
    /// a group sit side by side in one `[taps, images·out_pixels]` matrix (`ld` its row
    /// length).
    fn im2col(&self, image: &[f32], cols: &mut [f32], ld: usize, at: usize, scratch: &mut [f32]) {
        let s = &self.s;
        let Some(g) = &self.gather else {
            return im2col_rows(image, s, &self.offsets, cols, ld, at);
        };
        let (pixels, plane, p) = (s.out_pixels(), s.height * s.width, s.padding);
        scratch.fill(0.0);
        let mut rows = cols.chunks_mut(ld);
        for channel in image.chunks_exact(plane) {
            for (y, line) in channel.chunks_exact(s.width).enumerate() {
                let at = (y + p) * g.width + p;
                scratch[at..at + s.width].copy_from_slice(line);
            }
            for (&shift, row) in g.shift.iter().zip(&mut rows) {
                let window = &scratch[shift..];
                assert!(
                    g.reach <= window.len(),
                    "conv: gather plan out of its plane"
                );
                for (v, &corner) in row[at..at + pixels].iter_mut().zip(&g.corner) {
                    // SAFETY: every corner is below `reach` (Lowering::new), checked above
                    // against the window's length.
                    *v = unsafe { *window.get_unchecked(corner) };
                }
            }
        }
    }

    /// Adds one image's columns' gradient (laid out as [`Lowering::im2col`] writes them) into
    /// its gradient.
    fn col2im(&self, cols: &[f32], ld: usize, at: usize, image: &mut [f32], scratch: &mut [f32]) {
        let s = &self.s;
        let Some(g) = &self.gather else {
            return col2im_rows(cols, s, &self.offsets, ld, at, image);
        };
        let (pixels, plane, p) = (s.out_pixels(), s.height * s.width, s.padding);
        let mut rows = cols.chunks(ld);
        for channel in image.chunks_exact_mut(plane) {
            scratch.fill(0.0);
            for (&shift, row) in g.shift.iter().zip(&mut rows) {
                let window = &mut scratch[shift..];
                assert!(
                    g.reach <= window.len(),
                    "conv: gather plan out of its plane"
                );
                for (v, &corner) in row[at..at + pixels].iter().zip(&g.corner) {
                    // SAFETY: as in `im2col`.
                    unsafe { *window.get_unchecked_mut(corner) += v };
                }
            }
            for (y, line) in channel.chunks_exact_mut(s.width).enumerate() {
                let at = (y + p) * g.width + p;
                line.iter_mut()
                    .zip(&scratch[at..at + s.width])
                    .for_each(|(t, v)| *t += v);
            }
        }
    }
}

/// [`Lowering::im2col`] by copying rows.
fn im2col_rows(
    image: &[f32],
    s: &ConvShape,
    offsets: &[(usize, usize)],
    cols: &mut [f32],
    ld: usize,
    at: usize,
) {
    let (oh, ow, plane) = (s.out_height(), s.out_width(), s.height * s.width);
    for ((c, ky, kx), row) in taps(s, offsets).zip(cols.chunks_mut(ld)) {
        let row = &mut row[at..at + oh * ow];
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

/// [`Lowering::col2im`] by rows.
fn col2im_rows(
    cols: &[f32],
    s: &ConvShape,
    offsets: &[(usize, usize)],
    ld: usize,
    at: usize,
    image: &mut [f32],
) {
    let (oh, ow, plane) = (s.out_height(), s.out_width(), s.height * s.width);
    for ((c, ky, kx), row) in taps(s, offsets).zip(cols.chunks(ld)) {
        let row = &row[at..at + oh * ow];
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

/// Columns a matrix multiply should get at least: below this the multiply's kernel runs
/// mostly empty, so small feature maps (a ResNet's last stages: 4, 1 pixels) are multiplied
/// several images at once.
const TARGET_COLUMNS: usize = 256;

/// The most images multiplied at once.
const MAX_GROUP: usize = 32;

/// Images multiplied at once for shape `s`: the smallest power of two whose output pixels
/// reach [`TARGET_COLUMNS`], at most [`MAX_GROUP`]. It depends on the shape alone, so the sums
/// (and the gradients) are the same bits whatever the thread count.
fn group(s: &ConvShape) -> usize {
    let mut g = 1;
    while g < MAX_GROUP && g * s.out_pixels() < TARGET_COLUMNS {
        g *= 2;
    }
    g
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

/// Images per rayon task of the backward pass (at least; a multiple of [`group`]). Fixed by
/// the shape, so that the backward pass sums the same partial weight gradients in the same
/// order whatever the thread count: gradients are reproducible bit for bit.
const IMAGES_PER_TASK: usize = 8;

fn task_images(s: &ConvShape) -> usize {
    IMAGES_PER_TASK.max(group(s))
}

/// What [`forward`] does to each output channel after the multiply: times `scale` (when
/// given; a BatchNorm folded in), plus `bias`, then ReLU when `relu`.
#[derive(Debug, Clone, Copy)]
pub struct Epilogue<'a> {
    pub scale: Option<&'a [f32]>,
    pub bias: &'a [f32],
    pub relu: bool,
}

impl Epilogue<'_> {
    /// Output channel `c`'s map from its product: `v·scale + bias`, then ReLU. (Without a
    /// scale it multiplies by 1, which is exact: the same bits as `v + bias`.)
    fn channel(&self, c: usize) -> impl Fn(f32) -> f32 {
        let (scale, bias, relu) = (self.scale.map_or(1.0, |s| s[c]), self.bias[c], self.relu);
        move |v| {
            let v = v * scale + bias;
            if relu {
                v.max(0.0)
            } else {
                v
            }
        }
    }
}

/// The convolution of `x` `[batch, in, h, w]` with `weight` `[out, in, k, k]`, then `epilogue`
/// per output channel: `[batch, out, out_h, out_w]`.
pub fn forward(x: &[f32], weight: &[f32], epilogue: Epilogue, s: ConvShape) -> Vec<f32> {
    s.check(x, weight);
    assert!(
        epilogue.bias.len() == s.out_channels
            && epilogue
                .scale
                .is_none_or(|scale| scale.len() == s.out_channels),
        "conv: bias or scale is not [out]"
    );
    let lowering = Lowering::new(s);
    let weight = live_weight(weight, &s, &lowering.offsets);
    let (pixels, taps, g) = (s.out_pixels(), lowering.taps(), group(&s));
    let out_len = s.out_channels * pixels;
    let mut out = vec![0.0f32; s.batch * out_len];
    out.par_chunks_mut(g * out_len)
        .zip(x.par_chunks(g * s.in_len()))
        .with_min_len(IMAGES_PER_TASK.div_ceil(g))
        .for_each(|(out, images)| {
            let n = images.len() / s.in_len();
            let ld = n * pixels;
            let sizes = [taps * ld, out_len * n, 0, lowering.plane_len()];
            with_scratch(
                sizes,
                |Scratch {
                     cols,
                     product,
                     plane,
                     ..
                 }| {
                    let (cols, product) = (&mut cols[..taps * ld], &mut product[..out_len * n]);
                    let plane = &mut plane[..lowering.plane_len()];
                    for (i, image) in images.chunks_exact(s.in_len()).enumerate() {
                        lowering.im2col(image, cols, ld, i * pixels, plane);
                    }
                    // One image's product is already in the output's layout.
                    let dst = if n == 1 { &mut *out } else { &mut *product };
                    matmul(
                        [s.out_channels, ld, taps],
                        dst,
                        View::rows(&weight, taps),
                        View::rows(cols, ld),
                        false,
                    );
                    // The epilogue as the product moves into the output's layout: one pass.
                    for (i, image_out) in out.chunks_exact_mut(out_len).enumerate() {
                        for (c, channel) in image_out.chunks_exact_mut(pixels).enumerate() {
                            let finish = epilogue.channel(c);
                            if n > 1 {
                                let at = c * ld + i * pixels;
                                for (o, &v) in channel.iter_mut().zip(&product[at..at + pixels]) {
                                    *o = finish(v);
                                }
                            } else {
                                channel.iter_mut().for_each(|v| *v = finish(*v));
                            }
                        }
                    }
                },
            );
        });
    out
}

/// Gradients of [`forward`]: the input's (when asked for), the weight's and the bias's.
pub struct ConvGrads {
    pub x: Option<Vec<f32>>,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// One task's sums over its images.
struct Partial {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

/// A thread's work buffers, kept from call to call: convs on small maps are called often for
/// little work each, and allocating and zeroing the buffers every call showed in profiles.
/// Every use writes what it reads.
#[derive(Default)]
struct Scratch {
    /// A group's column matrix.
    cols: Vec<f32>,
    /// The forward's product; the backward's output gradients side by side.
    product: Vec<f32>,
    /// The backward's gradient of the columns.
    grad_cols: Vec<f32>,
    /// One padded channel (the gather lowering).
    plane: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` on this thread's scratch, its buffers at least `sizes` long (cols, product,
/// grad_cols, plane). `f` must not call back into rayon (it would borrow the scratch twice).
fn with_scratch<R>(sizes: [usize; 4], f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| {
        let mut guard = cell.borrow_mut();
        let scratch = &mut *guard;
        let buffers = [
            &mut scratch.cols,
            &mut scratch.product,
            &mut scratch.grad_cols,
            &mut scratch.plane,
        ];
        for (buffer, size) in buffers.into_iter().zip(sizes) {
            if buffer.len() < size {
                buffer.resize(size, 0.0);
            }
        }
        f(scratch)
    })
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
    let lowering = Lowering::new(s);
    let weight = live_weight(weight, &s, &lowering.offsets);
    let (pixels, taps) = (s.out_pixels(), lowering.taps());
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
    let g = group(&s);
    // The output gradients of images `items` side by side, `[out, images·pixels]`, then their
    // columns, as `forward` multiplied them.
    let images = |acc: &mut Partial,
                  scratch: &mut Scratch,
                  items: std::ops::Range<usize>,
                  dx: Option<&mut [f32]>| {
        let n = items.len();
        let ld = n * pixels;
        let cols = &mut scratch.cols[..taps * ld];
        let grads = &mut scratch.product[..s.out_channels * ld];
        let plane = &mut scratch.plane[..lowering.plane_len()];
        for (i, item) in items.clone().enumerate() {
            let image_grad = &grad[item * out_len..(item + 1) * out_len];
            for (c, channel) in image_grad.chunks_exact(pixels).enumerate() {
                grads[c * ld + i * pixels..c * ld + (i + 1) * pixels].copy_from_slice(channel);
            }
            let image = &x[item * s.in_len()..(item + 1) * s.in_len()];
            lowering.im2col(image, cols, ld, i * pixels, plane);
        }
        let grads = &*grads;
        matmul(
            [s.out_channels, taps, ld],
            &mut acc.weight,
            View::rows(grads, ld),
            View::transposed(cols, ld),
            true,
        );
        for (b, row) in acc.bias.iter_mut().zip(grads.chunks_exact(ld)) {
            *b += row.iter().sum::<f32>();
        }
        if let Some(dx) = dx {
            let grad_cols = &mut scratch.grad_cols[..taps * ld];
            matmul(
                [taps, ld, s.out_channels],
                grad_cols,
                View::transposed(&weight, taps),
                View::rows(grads, ld),
                false,
            );
            for (i, dx) in dx.chunks_exact_mut(s.in_len()).enumerate() {
                lowering.col2im(grad_cols, ld, i * pixels, dx, plane);
            }
        }
    };
    let per_task = task_images(&s);
    let task = |first: usize, dx: Option<&mut [f32]>| {
        let mut acc = Partial {
            weight: vec![0.0; s.out_channels * taps],
            bias: vec![0.0; s.out_channels],
        };
        let end = (first + per_task).min(s.batch);
        let starts = (first..end).step_by(g);
        let columns = taps * g * pixels;
        let sizes = [
            columns,
            s.out_channels * g * pixels,
            if dx.is_some() { columns } else { 0 },
            lowering.plane_len(),
        ];
        with_scratch(sizes, |scratch| match dx {
            Some(dx) => starts
                .zip(dx.chunks_mut(g * s.in_len()))
                .for_each(|(start, dx)| {
                    images(&mut acc, scratch, start..(start + g).min(end), Some(dx))
                }),
            None => starts
                .for_each(|start| images(&mut acc, scratch, start..(start + g).min(end), None)),
        });
        acc
    };
    let mut dx = input_grad.then(|| vec![0.0f32; x.len()]);
    let partials: Vec<Partial> = match dx.as_mut() {
        Some(dx) => dx
            .par_chunks_mut(per_task * s.in_len())
            .enumerate()
            .map(|(t, dx)| task(t * per_task, Some(dx)))
            .collect(),
        None => (0..s.batch.div_ceil(per_task))
            .into_par_iter()
            .map(|t| task(t * per_task, None))
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
        weight: spread_weight_grad(weight_grad, &s, &lowering.offsets),
        bias: bias_grad,
    }
}
