//! RandAugment with timm's op set and magnitude rules. The ops work on 8-bit pixels with
//! PIL's arithmetic (look-up tables, `Image.blend`, the `SMOOTH` filter, affine resampling
//! with PIL's bilinear and bicubic filters), since timm applies them to PIL images.

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use super::image::Image;
use crate::config::{RandAugmentConfig, Resample};

/// timm's magnitude scale: magnitudes are on `0..=LEVEL_DENOM`.
const LEVEL_DENOM: f64 = 10.0;

/// An 8-bit image, channel-major, as PIL holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bytes {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<u8>,
}

impl Bytes {
    /// Quantises a `[0, 1]` image to 8 bits (rounding), as `ToPILImage` would.
    pub fn from_image(image: &Image) -> Bytes {
        Bytes {
            channels: image.channels,
            height: image.height,
            width: image.width,
            data: image
                .data
                .iter()
                .map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
                .collect(),
        }
    }

    /// Back to `[0, 1]` floats.
    pub fn to_image(&self) -> Image {
        Image {
            channels: self.channels,
            height: self.height,
            width: self.width,
            data: self.data.iter().map(|&v| v as f32 / 255.0).collect(),
        }
    }

    fn plane(&self) -> usize {
        self.height * self.width
    }

    fn channel(&self, c: usize) -> &[u8] {
        &self.data[c * self.plane()..(c + 1) * self.plane()]
    }

    /// Each channel through its own 256-entry table (PIL's `Image.point`).
    fn lut(&self, tables: &[[u8; 256]]) -> Bytes {
        let plane = self.plane();
        let mut out = self.clone();
        for (i, v) in out.data.iter_mut().enumerate() {
            *v = tables[(i / plane).min(tables.len() - 1)][*v as usize];
        }
        out
    }

    fn histogram(&self, c: usize) -> [u64; 256] {
        let mut h = [0u64; 256];
        for &v in self.channel(c) {
            h[v as usize] += 1;
        }
        h
    }

    /// PIL's `convert("L")` of this image (itself when grey): `(19595 R + 38470 G + 7471 B
    /// + 2^15) >> 16`.
    fn luma(&self) -> Vec<u8> {
        if self.channels == 1 {
            return self.data.clone();
        }
        let (r, g, b) = (self.channel(0), self.channel(1), self.channel(2));
        (0..self.plane())
            .map(|i| {
                ((r[i] as u32 * 19595 + g[i] as u32 * 38470 + b[i] as u32 * 7471 + 0x8000) >> 16)
                    as u8
            })
            .collect()
    }
}

/// One RandAugment op with its resolved argument.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    AutoContrast,
    Equalize,
    Invert,
    /// Degrees, counter-clockwise, about the centre.
    Rotate(f64),
    /// Bits kept (0–8).
    Posterize(u32),
    /// Values at or above the threshold are inverted.
    Solarize(u32),
    /// Added to values below 128.
    SolarizeAdd(u32),
    /// Blend factors with the degenerate image (1 = unchanged).
    Color(f64),
    Contrast(f64),
    Brightness(f64),
    Sharpness(f64),
    ShearX(f64),
    ShearY(f64),
    /// Pixels.
    TranslateX(f64),
    TranslateY(f64),
}

/// The ops RandAugment draws from, in timm's order (`_RAND_TRANSFORMS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    AutoContrast,
    Equalize,
    Invert,
    Rotate,
    Posterize,
    Solarize,
    SolarizeAdd,
    Color,
    Contrast,
    Brightness,
    Sharpness,
    ShearX,
    ShearY,
    TranslateXRel,
    TranslateYRel,
}

impl OpKind {
    /// Every op, in timm's order.
    pub const ALL: [OpKind; 15] = [
        OpKind::AutoContrast,
        OpKind::Equalize,
        OpKind::Invert,
        OpKind::Rotate,
        OpKind::Posterize,
        OpKind::Solarize,
        OpKind::SolarizeAdd,
        OpKind::Color,
        OpKind::Contrast,
        OpKind::Brightness,
        OpKind::Sharpness,
        OpKind::ShearX,
        OpKind::ShearY,
        OpKind::TranslateXRel,
        OpKind::TranslateYRel,
    ];

    /// timm's name of the op (without the `Increasing` suffix of its increasing variant).
    pub fn name(self) -> &'static str {
        match self {
            OpKind::AutoContrast => "AutoContrast",
            OpKind::Equalize => "Equalize",
            OpKind::Invert => "Invert",
            OpKind::Rotate => "Rotate",
            OpKind::Posterize => "Posterize",
            OpKind::Solarize => "Solarize",
            OpKind::SolarizeAdd => "SolarizeAdd",
            OpKind::Color => "Color",
            OpKind::Contrast => "Contrast",
            OpKind::Brightness => "Brightness",
            OpKind::Sharpness => "Sharpness",
            OpKind::ShearX => "ShearX",
            OpKind::ShearY => "ShearY",
            OpKind::TranslateXRel => "TranslateXRel",
            OpKind::TranslateYRel => "TranslateYRel",
        }
    }

    /// The op timm calls `name`.
    pub fn from_name(name: &str) -> Option<OpKind> {
        OpKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

fn negate_half(rng: &mut impl Rng, v: f64) -> f64 {
    if rng.gen::<f64>() > 0.5 {
        -v
    } else {
        v
    }
}

/// timm's enhancement factor at `level` (0–1): `[0.1, 1.9]`, or under `increasing`
/// `1 ± 0.9·level` with a random sign, at least 0.1.
fn enhance_factor(level: f64, increasing: bool, rng: &mut impl Rng) -> f64 {
    if increasing {
        (1.0 + negate_half(rng, level * 0.9)).max(0.1)
    } else {
        level * 1.8 + 0.1
    }
}

/// The op `kind` at `magnitude`, with timm's level-to-argument rules (`increasing`: severity
/// grows with magnitude) and its random signs; translations are in pixels of an image of
/// `(height, width)`.
pub fn resolve(
    kind: OpKind,
    magnitude: f64,
    increasing: bool,
    translate_pct: f64,
    side: (usize, usize),
    rng: &mut impl Rng,
) -> Op {
    let level = magnitude / LEVEL_DENOM;
    let posterize = (level * 4.0) as u32;
    let solarize = ((level * 256.0) as u32).min(256);
    match kind {
        OpKind::AutoContrast => Op::AutoContrast,
        OpKind::Equalize => Op::Equalize,
        OpKind::Invert => Op::Invert,
        OpKind::Rotate => Op::Rotate(negate_half(rng, level * 30.0)),
        OpKind::Posterize if increasing => Op::Posterize(4 - posterize.min(4)),
        OpKind::Posterize => Op::Posterize(posterize),
        OpKind::Solarize if increasing => Op::Solarize(256 - solarize),
        OpKind::Solarize => Op::Solarize(solarize),
        OpKind::SolarizeAdd => Op::SolarizeAdd(((level * 110.0) as u32).min(128)),
        OpKind::Color => Op::Color(enhance_factor(level, increasing, rng)),
        OpKind::Contrast => Op::Contrast(enhance_factor(level, increasing, rng)),
        OpKind::Brightness => Op::Brightness(enhance_factor(level, increasing, rng)),
        OpKind::Sharpness => Op::Sharpness(enhance_factor(level, increasing, rng)),
        OpKind::ShearX => Op::ShearX(negate_half(rng, level * 0.3)),
        OpKind::ShearY => Op::ShearY(negate_half(rng, level * 0.3)),
        OpKind::TranslateXRel => {
            Op::TranslateX(negate_half(rng, level * translate_pct) * side.1 as f64)
        }
        OpKind::TranslateYRel => {
            Op::TranslateY(negate_half(rng, level * translate_pct) * side.0 as f64)
        }
    }
}

/// Applies `op`; geometric ops resample with `filter` and fill uncovered pixels with `fill`
/// (one value per channel).
pub fn apply(image: &Bytes, op: Op, filter: Filter, fill: &[u8]) -> Bytes {
    match op {
        Op::AutoContrast => auto_contrast(image),
        Op::Equalize => equalize(image),
        Op::Invert => image.lut(&[std::array::from_fn(|i| 255 - i as u8)]),
        Op::Posterize(bits) => {
            let mask = if bits >= 8 {
                0xff
            } else {
                !((1u32 << (8 - bits)) - 1) as u8
            };
            image.lut(&[std::array::from_fn(|i| i as u8 & mask)])
        }
        Op::Solarize(thresh) => image.lut(&[std::array::from_fn(|i| {
            if (i as u32) < thresh {
                i as u8
            } else {
                255 - i as u8
            }
        })]),
        Op::SolarizeAdd(add) => image.lut(&[std::array::from_fn(|i| {
            if i < 128 {
                (i as u32 + add).min(255) as u8
            } else {
                i as u8
            }
        })]),
        Op::Color(f) => blend(&grey_copy(image), image, f),
        Op::Contrast(f) => {
            let luma = image.luma();
            let mean = luma.iter().map(|&v| v as f64).sum::<f64>() / luma.len().max(1) as f64;
            let level = (mean + 0.5) as u8;
            let flat = Bytes {
                data: vec![level; image.data.len()],
                ..image.clone()
            };
            blend(&flat, image, f)
        }
        Op::Brightness(f) => {
            let black = Bytes {
                data: vec![0; image.data.len()],
                ..image.clone()
            };
            blend(&black, image, f)
        }
        Op::Sharpness(f) => blend(&smooth(image), image, f),
        Op::Rotate(degrees) => {
            let (w, h) = (image.width as f64, image.height as f64);
            let angle = -degrees.to_radians();
            let round15 = |v: f64| (v * 1e15).round() / 1e15;
            let (c, s) = (round15(angle.cos()), round15(angle.sin()));
            let (cx, cy) = (w / 2.0, h / 2.0);
            let m = [c, s, c * -cx + s * -cy + cx, -s, c, -s * -cx + c * -cy + cy];
            affine(image, m, filter, fill)
        }
        Op::ShearX(f) => affine(image, [1.0, f, 0.0, 0.0, 1.0, 0.0], filter, fill),
        Op::ShearY(f) => affine(image, [1.0, 0.0, 0.0, f, 1.0, 0.0], filter, fill),
        Op::TranslateX(px) => affine(image, [1.0, 0.0, px, 0.0, 1.0, 0.0], filter, fill),
        Op::TranslateY(px) => affine(image, [1.0, 0.0, 0.0, 0.0, 1.0, px], filter, fill),
    }
}

/// PIL's `ImageOps.autocontrast` (no cutoff): each channel stretched to 0–255.
fn auto_contrast(image: &Bytes) -> Bytes {
    let tables: Vec<[u8; 256]> = (0..image.channels)
        .map(|c| {
            let h = image.histogram(c);
            let lo = h.iter().position(|&n| n > 0).unwrap_or(0);
            let hi = h.iter().rposition(|&n| n > 0).unwrap_or(0);
            if hi <= lo {
                return std::array::from_fn(|i| i as u8);
            }
            let scale = 255.0 / (hi - lo) as f64;
            let offset = -(lo as f64) * scale;
            std::array::from_fn(|i| (i as f64 * scale + offset).trunc().clamp(0.0, 255.0) as u8)
        })
        .collect();
    image.lut(&tables)
}

/// PIL's `ImageOps.equalize`: each channel's histogram flattened.
fn equalize(image: &Bytes) -> Bytes {
    let tables: Vec<[u8; 256]> = (0..image.channels)
        .map(|c| {
            let h = image.histogram(c);
            let used: Vec<u64> = h.iter().copied().filter(|&n| n > 0).collect();
            let identity = std::array::from_fn(|i| i as u8);
            if used.len() <= 1 {
                return identity;
            }
            let step = (used.iter().sum::<u64>() - used[used.len() - 1]) / 255;
            if step == 0 {
                return identity;
            }
            let mut n = step / 2;
            std::array::from_fn(|i| {
                let v = (n / step).min(255) as u8;
                n += h[i];
                v
            })
        })
        .collect();
    image.lut(&tables)
}

/// The image's luma repeated in every channel (`convert("L").convert(mode)`).
fn grey_copy(image: &Bytes) -> Bytes {
    let luma = image.luma();
    Bytes {
        data: luma.repeat(image.channels),
        ..image.clone()
    }
}

/// PIL's `Image.blend(degenerate, image, factor)`: interpolation truncates, extrapolation
/// clips to 0–255.
fn blend(degenerate: &Bytes, image: &Bytes, factor: f64) -> Bytes {
    let alpha = factor as f32;
    let inside = (0.0..=1.0).contains(&alpha);
    let data = degenerate
        .data
        .iter()
        .zip(&image.data)
        .map(|(&a, &b)| {
            let v = a as f32 + alpha * (b as f32 - a as f32);
            if inside {
                v as u8
            } else {
                v.clamp(0.0, 255.0) as u8
            }
        })
        .collect();
    Bytes {
        data,
        ..image.clone()
    }
}

/// PIL's `ImageFilter.SMOOTH` (3×3, centre 5, others 1, over 13); the border is kept.
fn smooth(image: &Bytes) -> Bytes {
    let (h, w) = (image.height, image.width);
    let mut out = image.clone();
    if h < 3 || w < 3 {
        return out;
    }
    for c in 0..image.channels {
        let src = image.channel(c);
        let dst = &mut out.data[c * h * w..(c + 1) * h * w];
        for y in 1..h - 1 {
            for x in 1..w - 1 {
                let mut sum = 0.0f32;
                for dy in 0..3 {
                    for dx in 0..3 {
                        let weight = if dy == 1 && dx == 1 { 5.0 } else { 1.0 };
                        sum += weight * src[(y + dy - 1) * w + x + dx - 1] as f32;
                    }
                }
                dst[y * w + x] = (sum / 13.0 + 0.5).clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// A resampling filter of PIL's geometric transforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Bilinear,
    Bicubic,
}

/// PIL's `Image.transform(AFFINE, m)`: output pixel (x, y) samples the input at
/// `(m0·(x+½) + m1·(y+½) + m2, m3·(x+½) + m4·(y+½) + m5)`; samples outside the image are `fill`.
fn affine(image: &Bytes, m: [f64; 6], filter: Filter, fill: &[u8]) -> Bytes {
    let (h, w) = (image.height, image.width);
    let mut out = image.clone();
    for c in 0..image.channels {
        let src = image.channel(c);
        let background = fill[c.min(fill.len() - 1)];
        for y in 0..h {
            for x in 0..w {
                let (xo, yo) = (x as f64 + 0.5, y as f64 + 0.5);
                let xin = m[0] * xo + m[1] * yo + m[2];
                let yin = m[3] * xo + m[4] * yo + m[5];
                let v = if xin < 0.0 || xin >= w as f64 || yin < 0.0 || yin >= h as f64 {
                    background
                } else {
                    match filter {
                        Filter::Bilinear => bilinear(src, w, h, xin, yin),
                        Filter::Bicubic => bicubic(src, w, h, xin, yin),
                    }
                };
                out.data[c * h * w + y * w + x] = v;
            }
        }
    }
    out
}

fn clip(v: isize, n: usize) -> usize {
    v.clamp(0, n as isize - 1) as usize
}

/// PIL's `bilinear_filter8`: rows below the image repeat the last one; the result truncates.
fn bilinear(src: &[u8], w: usize, h: usize, xin: f64, yin: f64) -> u8 {
    let (xin, yin) = (xin - 0.5, yin - 0.5);
    let (x, y) = (xin.floor() as isize, yin.floor() as isize);
    let (dx, dy) = (xin - x as f64, yin - y as f64);
    let (x0, x1) = (clip(x, w), clip(x + 1, w));
    let row = |r: usize| {
        let (a, b) = (src[r * w + x0] as f64, src[r * w + x1] as f64);
        a + (b - a) * dx
    };
    let v1 = row(clip(y, h));
    let v2 = if y + 1 >= 0 && ((y + 1) as usize) < h {
        row((y + 1) as usize)
    } else {
        v1
    };
    (v1 + (v2 - v1) * dy).clamp(0.0, 255.0) as u8
}

/// PIL's `BICUBIC` kernel (a = −1) over four samples at fraction `d`.
fn cubic(v: [f64; 4], d: f64) -> f64 {
    let p1 = v[1];
    let p2 = -v[0] + v[2];
    let p3 = 2.0 * (v[0] - v[1]) + v[2] - v[3];
    let p4 = -v[0] + v[1] - v[2] + v[3];
    p1 + d * (p2 + d * (p3 + d * p4))
}

/// PIL's `bicubic_filter8`: missing rows repeat the previous one; the result clips and
/// truncates.
fn bicubic(src: &[u8], w: usize, h: usize, xin: f64, yin: f64) -> u8 {
    let (xin, yin) = (xin - 0.5, yin - 0.5);
    let (x, y) = (xin.floor() as isize, yin.floor() as isize);
    let (dx, dy) = (xin - x as f64, yin - y as f64);
    let (x, y) = (x - 1, y - 1);
    let cols: [usize; 4] = std::array::from_fn(|k| clip(x + k as isize, w));
    let row = |r: usize| cubic(cols.map(|c| src[r * w + c] as f64), dx);
    let mut v = [row(clip(y, h)); 4];
    for k in 1..4 {
        let r = y + k as isize;
        v[k] = if r >= 0 && (r as usize) < h {
            row(r as usize)
        } else {
            v[k - 1]
        };
    }
    cubic(v, dy).clamp(0.0, 255.0) as u8
}

/// The configured RandAugment, with the fill colour of uncovered pixels.
#[derive(Debug, Clone)]
pub struct RandAugment {
    config: RandAugmentConfig,
    fill: Vec<u8>,
}

impl RandAugment {
    /// `fill` is one 0–1 value per channel (timm: the normalisation mean).
    pub fn new(config: &RandAugmentConfig, fill: &[f64]) -> RandAugment {
        RandAugment {
            config: config.clone(),
            fill: fill
                .iter()
                .map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
                .collect(),
        }
    }

    fn magnitude(&self, rng: &mut impl Rng) -> f64 {
        let c = &self.config;
        let m = if c.magnitude_std > 100.0 {
            rng.gen_range(0.0..=c.magnitude)
        } else if c.magnitude_std > 0.0 {
            let z: f64 = StandardNormal.sample(rng);
            c.magnitude + c.magnitude_std * z
        } else {
            c.magnitude
        };
        m.clamp(0.0, c.magnitude_max)
    }

    /// Applies `num_ops` ops drawn with replacement; returns the image and the names of the
    /// ops that ran.
    pub fn apply(&self, image: &Image, rng: &mut impl Rng) -> (Image, Vec<&'static str>) {
        let c = &self.config;
        let mut bytes = Bytes::from_image(image);
        let mut ran = Vec::new();
        for _ in 0..c.num_ops {
            let kind = OpKind::ALL[rng.gen_range(0..OpKind::ALL.len())];
            if c.prob < 1.0 && rng.gen::<f64>() > c.prob {
                continue;
            }
            let magnitude = self.magnitude(rng);
            let side = (bytes.height, bytes.width);
            let op = resolve(kind, magnitude, c.increasing, c.translate_pct, side, rng);
            let filter = match c.resample {
                Resample::Bilinear => Filter::Bilinear,
                Resample::Bicubic => Filter::Bicubic,
                Resample::Random if rng.gen::<bool>() => Filter::Bilinear,
                Resample::Random => Filter::Bicubic,
            };
            bytes = apply(&bytes, op, filter, &self.fill);
            ran.push(kind.name());
        }
        (bytes.to_image(), ran)
    }
}
