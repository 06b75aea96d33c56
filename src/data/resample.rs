//! PIL's `Image.resize`, which timm's and torchvision's pipelines run on PIL images: separable
//! filters whose support widens with the shrink factor (antialiasing), coefficients in 22-bit
//! fixed point, and rounding to 8 bits after each pass (rows first, then columns). On images
//! whose values lie on the 8-bit grid (decoded files) it gives PIL's bytes.

use super::image::Image;

/// A resampling filter of PIL's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Keys' cubic with a = −0.5 (`Image.BICUBIC`).
    Bicubic,
    /// The box filter: each output averages the inputs it covers (`Image.BOX`).
    Area,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bicubic => 2.0,
            Filter::Area => 0.5,
        }
    }

    fn weight(self, x: f64) -> f64 {
        match self {
            Filter::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Area => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// One output pixel's taps along an axis: the first input and the fixed-point weights.
struct Taps {
    first: usize,
    weights: Vec<i32>,
}

/// PIL's `precompute_coeffs` and `normalize_coeffs_8bpc` for `out` outputs from the input
/// span `[in0, in1)` of an axis of `size` inputs.
fn taps(size: usize, in0: f64, in1: f64, out: usize, filter: Filter) -> Vec<Taps> {
    let scale = (in1 - in0) / out as f64;
    let filter_scale = scale.max(1.0);
    let support = filter.support() * filter_scale;
    (0..out)
        .map(|o| {
            let center = in0 + (o as f64 + 0.5) * scale;
            // C's (int) truncates toward zero; negative starts are clamped to 0 anyway.
            let first = ((center - support + 0.5) as i64).max(0) as usize;
            let last = ((center + support + 0.5) as i64).clamp(0, size as i64) as usize;
            let raw: Vec<f64> = (first..last.max(first))
                .map(|x| filter.weight((x as f64 - center + 0.5) / filter_scale))
                .collect();
            let total: f64 = raw.iter().sum();
            let weights = raw
                .iter()
                .map(|w| {
                    let w = if total != 0.0 { w / total } else { *w };
                    let fixed = w * f64::from(1u32 << PRECISION_BITS);
                    (if w < 0.0 { fixed - 0.5 } else { fixed + 0.5 }) as i32
                })
                .collect();
            Taps { first, weights }
        })
        .collect()
}

/// PIL's `clip8` of a fixed-point sum.
fn clip8(sum: i64) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// One pass along rows (`horizontal`) or columns of 8-bit planes `[channels, h, w]`.
fn pass(
    src: &[u8],
    [channels, h, w]: [usize; 3],
    taps: &[Taps],
    horizontal: bool,
) -> (Vec<u8>, [usize; 3]) {
    let (out_h, out_w) = if horizontal {
        (h, taps.len())
    } else {
        (taps.len(), w)
    };
    let mut out = vec![0u8; channels * out_h * out_w];
    let half = 1i64 << (PRECISION_BITS - 1);
    for c in 0..channels {
        let plane = &src[c * h * w..(c + 1) * h * w];
        let dst = &mut out[c * out_h * out_w..(c + 1) * out_h * out_w];
        for y in 0..out_h {
            for x in 0..out_w {
                let (t, at) = if horizontal {
                    (&taps[x], y * w)
                } else {
                    (&taps[y], x)
                };
                let stride = if horizontal { 1 } else { w };
                let sum = t.weights.iter().enumerate().fold(half, |s, (i, &k)| {
                    s + i64::from(plane[at + (t.first + i) * stride]) * i64::from(k)
                });
                dst[y * out_w + x] = clip8(sum);
            }
        }
    }
    (out, [channels, out_h, out_w])
}

/// The window `[top, top+h) × [left, left+w)` of `img` cut out, then resized to
/// `out_h × out_w` as PIL resizes (torchvision's `resized_crop` on a PIL image: crop first, so
/// the filter never reads outside the window). Values are taken to 8 bits first.
pub fn crop_resize(
    img: &Image,
    [top, left, h, w]: [f32; 4],
    out_h: usize,
    out_w: usize,
    filter: Filter,
) -> Image {
    // The window's whole pixels, and the window within them.
    let (y0, x0) = (
        top.floor().max(0.0) as usize,
        left.floor().max(0.0) as usize,
    );
    let y1 = ((top + h).ceil() as usize).clamp(y0 + 1, img.height);
    let x1 = ((left + w).ceil() as usize).clamp(x0 + 1, img.width);
    let (ch, cw) = (y1 - y0, x1 - x0);
    let mut bytes = vec![0u8; img.channels * ch * cw];
    for c in 0..img.channels {
        for y in 0..ch {
            for x in 0..cw {
                let v = img.at(c, y0 + y, x0 + x);
                bytes[(c * ch + y) * cw + x] = (v * 255.0).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    let span = |start: f32, len: f32, origin: usize| {
        let a = f64::from(start) - origin as f64;
        (a, a + f64::from(len))
    };
    let (ya, yb) = span(top, h, y0);
    let (xa, xb) = span(left, w, x0);
    let mut dims = [img.channels, ch, cw];
    if out_w != cw || xa != 0.0 || xb != cw as f64 {
        (bytes, dims) = pass(&bytes, dims, &taps(cw, xa, xb, out_w, filter), true);
    }
    if out_h != ch || ya != 0.0 || yb != ch as f64 {
        (bytes, dims) = pass(&bytes, dims, &taps(ch, ya, yb, out_h, filter), false);
    }
    let [channels, height, width] = dims;
    Image {
        channels,
        height,
        width,
        data: bytes.iter().map(|&b| f32::from(b) / 255.0).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A box filter shrinking by 2 averages each 2×2 block (PIL rounds half up).
    #[test]
    fn area_shrinking_by_two_averages_blocks() {
        let values = [0u8, 10, 20, 31, 100, 101, 200, 255];
        let mut img = Image::new(1, 2, 4);
        for (i, v) in values.iter().enumerate() {
            img.data[i] = f32::from(*v) / 255.0;
        }
        let out = crop_resize(&img, [0.0, 0.0, 2.0, 4.0], 1, 2, Filter::Area);
        let bytes: Vec<u8> = out.data.iter().map(|v| (v * 255.0).round() as u8).collect();
        // (0+10+100+101)/4 = 52.75 → 53; (20+31+200+255)/4 = 126.5 → 127.
        assert_eq!(bytes, [53, 127]);
    }

    /// At scale 1 on whole pixels bicubic weights are 1 at the centre and 0 elsewhere: a
    /// crop is a copy.
    #[test]
    fn a_crop_at_scale_one_copies_the_window() {
        let mut img = Image::new(1, 4, 4);
        for (i, v) in img.data.iter_mut().enumerate() {
            *v = (i * 13 % 256) as f32 / 255.0;
        }
        let out = crop_resize(&img, [1.0, 1.0, 2.0, 2.0], 2, 2, Filter::Bicubic);
        assert_eq!(
            out.data,
            [
                img.at(0, 1, 1),
                img.at(0, 1, 2),
                img.at(0, 2, 1),
                img.at(0, 2, 2)
            ]
        );
    }
}
