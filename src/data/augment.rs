//! Training and validation transforms, seeded per (seed, epoch, sample) so a run replays.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::geometry::Step;
use super::image::Image;
use super::rand_augment::RandAugment;
use crate::config::{AugmentConfig, ErasingValue, Interpolation};

/// The RNG for one sample's augmentation: the same (seed, epoch, index) gives the same draws.
pub fn sample_rng(seed: u64, epoch: usize, index: usize) -> ChaCha8Rng {
    repeat_rng(seed, epoch, index, 0)
}

/// The RNG for the `repeat`-th draw of one sample in an epoch (repeated augmentation); repeat 0
/// is [`sample_rng`].
pub fn repeat_rng(seed: u64, epoch: usize, index: usize, repeat: u8) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(epoch as u64).to_le_bytes());
    key[16..24].copy_from_slice(&(index as u64).to_le_bytes());
    key[24..].copy_from_slice(b"augment\0");
    key[31] = repeat;
    ChaCha8Rng::from_seed(key)
}

/// A configured transform pipeline for one split.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub train: bool,
    pub size: usize,
    pub channels: usize,
    pub config: AugmentConfig,
    /// The resize filter (`data.interpolation`).
    pub interpolation: Interpolation,
    /// RandAugment, when enabled (training only).
    rand_augment: Option<RandAugment>,
}

/// A transformed image, the names of the transforms that changed it, and the geometric steps
/// (in order) that its boxes and masks must follow.
#[derive(Debug, Clone)]
pub struct Augmented {
    pub image: Image,
    pub applied: Vec<String>,
    pub geometry: Vec<Step>,
}

impl Pipeline {
    /// Training pipeline: crop, flip, RandAugment, jitter, normalise, erase (each as
    /// configured).
    pub fn train(config: &AugmentConfig, size: usize, channels: usize) -> Pipeline {
        Pipeline {
            train: true,
            size,
            channels,
            config: config.clone(),
            interpolation: Interpolation::default(),
            rand_augment: config
                .rand_augment
                .enabled
                .then(|| RandAugment::new(&config.rand_augment, &config.normalize.mean)),
        }
    }

    /// Validation pipeline: resize (+ centre crop), normalise.
    pub fn val(config: &AugmentConfig, size: usize, channels: usize) -> Pipeline {
        Pipeline {
            train: false,
            size,
            channels,
            config: config.clone(),
            interpolation: Interpolation::default(),
            rand_augment: None,
        }
    }

    /// How the validation pipeline brings an image to the model's size, in words: the filter,
    /// and the short-side resize with its centre crop, or the whole image squashed.
    pub fn describe_resize(&self) -> String {
        let filter = match self.interpolation {
            Interpolation::Bilinear => "bilinear (vitrun's, area-averaged when shrinking)",
            Interpolation::Bicubic => "bicubic (PIL's, as timm)",
            Interpolation::Area => "area (PIL's box filter)",
        };
        let size = self.size;
        let crop = &self.config.center_crop;
        if crop.enabled {
            format!(
                "{filter}: short side to {size}·{} then the central {size}×{size}",
                crop.ratio
            )
        } else {
            format!("{filter}: the whole image to {size}×{size}")
        }
    }

    /// This pipeline resizing with `interpolation` (`data.interpolation`).
    pub fn with_interpolation(mut self, interpolation: Interpolation) -> Pipeline {
        self.interpolation = interpolation;
        self
    }

    /// The same pipeline resizing the whole image to the model's size (no centre crop), so that
    /// every input pixel maps back to a pixel of the image.
    pub fn whole_image(mut self) -> Pipeline {
        self.config.center_crop.enabled = false;
        self
    }

    /// Runs the pipeline on one image.
    pub fn apply(&self, image: Image, rng: &mut impl Rng) -> Augmented {
        let a = &self.config;
        let mut applied = Vec::new();
        let mut image = image.with_channels(self.channels);
        let mut geometry: Vec<Step> = if self.train && a.random_resized_crop.enabled {
            applied.push("random_resized_crop".into());
            let c = &a.random_resized_crop;
            vec![random_resized_crop_step(
                image.height,
                image.width,
                c.scale,
                c.ratio,
                self.size,
                rng,
            )]
        } else if !self.train && a.center_crop.enabled {
            applied.push("center_crop".into());
            let steps = match self.interpolation {
                Interpolation::Bilinear => center_crop_steps,
                Interpolation::Bicubic | Interpolation::Area => timm_center_crop_steps,
            };
            steps(image.height, image.width, self.size, a.center_crop.ratio).to_vec()
        } else {
            vec![Step::resize(
                image.height,
                image.width,
                self.size,
                self.size,
            )]
        };
        if self.train && a.hflip.enabled && rng.gen::<f64>() < a.hflip.p {
            applied.push("hflip".into());
            geometry.push(Step::HFlip);
        }
        for step in &geometry {
            image = step.image_as(&image, self.interpolation);
        }
        if let Some(ra) = &self.rand_augment {
            let (augmented, ran) = ra.apply(&image, rng);
            image = augmented;
            applied.extend(ran.iter().map(|op| format!("ra:{op}")));
        }
        if self.train && a.color_jitter.enabled {
            applied.push("color_jitter".into());
            let j = &a.color_jitter;
            color_jitter(
                &mut image,
                [j.brightness, j.contrast, j.saturation, j.hue],
                rng,
            );
        }
        if a.normalize.enabled {
            normalize(&mut image, &a.normalize.mean, &a.normalize.std);
        }
        let e = &a.random_erasing;
        if self.train
            && e.enabled
            && rng.gen::<f64>() < e.p
            && random_erasing(&mut image, e.scale, e.ratio, e.value, rng)
        {
            applied.push("random_erasing".into());
        }
        Augmented {
            image,
            applied,
            geometry,
        }
    }
}

fn log_uniform(rng: &mut impl Rng, range: [f64; 2]) -> f64 {
    let (lo, hi) = (range[0].ln(), range[1].ln());
    if hi > lo {
        rng.gen_range(lo..hi).exp()
    } else {
        range[0]
    }
}

fn uniform(rng: &mut impl Rng, range: [f64; 2]) -> f64 {
    if range[1] > range[0] {
        rng.gen_range(range[0]..range[1])
    } else {
        range[0]
    }
}

/// torchvision's `RandomResizedCrop.get_params`: 10 tries at a random area and aspect ratio,
/// then a centre crop clamped to the ratio range; the window is resampled to `size × size`.
pub fn random_resized_crop_step(
    height: usize,
    width: usize,
    scale: [f64; 2],
    ratio: [f64; 2],
    size: usize,
    rng: &mut impl Rng,
) -> Step {
    let (h_in, w_in) = (height as f64, width as f64);
    let area = h_in * w_in;
    let window = |top: f32, left: f32, h: f64, w: f64| Step::CropResize {
        top,
        left,
        h: h as f32,
        w: w as f32,
        out_h: size,
        out_w: size,
    };
    for _ in 0..10 {
        let target = area * uniform(rng, scale);
        let aspect = log_uniform(rng, ratio);
        let w = (target * aspect).sqrt().round();
        let h = (target / aspect).sqrt().round();
        if w > 0.0 && h > 0.0 && w <= w_in && h <= h_in {
            let top = rng.gen_range(0..=(h_in - h) as usize) as f32;
            let left = rng.gen_range(0..=(w_in - w) as usize) as f32;
            return window(top, left, h, w);
        }
    }
    let in_ratio = w_in / h_in;
    let (w, h) = if in_ratio < ratio[0] {
        (w_in, (w_in / ratio[0]).round())
    } else if in_ratio > ratio[1] {
        ((h_in * ratio[1]).round(), h_in)
    } else {
        (w_in, h_in)
    };
    let top = ((h_in - h) / 2.0).floor() as f32;
    let left = ((w_in - w) / 2.0).floor() as f32;
    window(top, left, h, w)
}

/// [`random_resized_crop_step`] applied to an image.
pub fn random_resized_crop(
    img: &Image,
    scale: [f64; 2],
    ratio: [f64; 2],
    size: usize,
    rng: &mut impl Rng,
) -> Image {
    random_resized_crop_step(img.height, img.width, scale, ratio, size, rng).image(img)
}

/// Resize the short side to `round(size * ratio)`, then take the central `size × size`: the
/// two steps.
pub fn center_crop_steps(height: usize, width: usize, size: usize, ratio: f64) -> [Step; 2] {
    let short = (size as f64 * ratio).round();
    let scale = short / height.min(width) as f64;
    let (rh, rw) = (
        (height as f64 * scale).round().max(size as f64) as usize,
        (width as f64 * scale).round().max(size as f64) as usize,
    );
    [
        Step::resize(height, width, rh, rw),
        Step::CropResize {
            top: ((rh - size) / 2) as f32,
            left: ((rw - size) / 2) as f32,
            h: size as f32,
            w: size as f32,
            out_h: size,
            out_w: size,
        },
    ]
}

/// timm's eval transform in torchvision's arithmetic: the short side resized to
/// `⌊size · ratio⌋` (timm's `⌊size / crop_pct⌋`), the long side in proportion (truncated), and
/// the central `size × size` at `round((side − size) / 2)` (half to even, as Python rounds).
pub fn timm_center_crop_steps(height: usize, width: usize, size: usize, ratio: f64) -> [Step; 2] {
    // The epsilon keeps 224 · (256 / 224) at 256 despite the ratio's rounding.
    let short = ((size as f64 * ratio + 1e-6).floor() as usize).max(size);
    let (in_short, in_long) = (height.min(width), height.max(width));
    let long = short * in_long / in_short;
    let (rh, rw) = if height <= width {
        (short, long)
    } else {
        (long, short)
    };
    let centre = |side: usize| {
        let gap = side - size;
        // round(gap / 2) half to even: an odd gap rounds to the even one of gap/2 ± 0.5.
        if gap.is_multiple_of(2) || (gap / 2).is_multiple_of(2) {
            gap / 2
        } else {
            gap / 2 + 1
        }
    };
    [
        Step::resize(height, width, rh, rw),
        Step::CropResize {
            top: centre(rh) as f32,
            left: centre(rw) as f32,
            h: size as f32,
            w: size as f32,
            out_h: size,
            out_w: size,
        },
    ]
}

/// [`center_crop_steps`] applied to an image.
pub fn center_crop(img: &Image, size: usize, ratio: f64) -> Image {
    center_crop_steps(img.height, img.width, size, ratio)
        .iter()
        .fold(img.clone(), |image, step| step.image(&image))
}

/// Brightness, contrast, saturation and hue in a random order (torchvision `ColorJitter`);
/// saturation and hue only touch RGB images.
pub fn color_jitter(img: &mut Image, strength: [f64; 4], rng: &mut impl Rng) {
    let mut order = [0usize, 1, 2, 3];
    for i in (1..4).rev() {
        order.swap(i, rng.gen_range(0..=i));
    }
    let factor = |rng: &mut ChaCha8Rng, s: f64| uniform(rng, [(1.0 - s).max(0.0), 1.0 + s]) as f32;
    let mut local = ChaCha8Rng::from_rng(&mut *rng).expect("ChaCha seeds from any RNG");
    for op in order {
        let s = strength[op];
        if s == 0.0 {
            continue;
        }
        match op {
            0 => {
                let f = factor(&mut local, s);
                img.data
                    .iter_mut()
                    .for_each(|v| *v = (*v * f).clamp(0.0, 1.0));
            }
            1 => {
                let f = factor(&mut local, s);
                let grey = img.clone().with_channels(1);
                let mean = grey.data.iter().sum::<f32>() / grey.data.len() as f32;
                img.data
                    .iter_mut()
                    .for_each(|v| *v = (mean + (*v - mean) * f).clamp(0.0, 1.0));
            }
            2 if img.channels == 3 => {
                let f = factor(&mut local, s);
                let grey = img.clone().with_channels(1);
                let plane = img.height * img.width;
                for c in 0..3 {
                    for i in 0..plane {
                        let v = &mut img.data[c * plane + i];
                        *v = (grey.data[i] + (*v - grey.data[i]) * f).clamp(0.0, 1.0);
                    }
                }
            }
            3 if img.channels == 3 => {
                let shift = uniform(&mut local, [-s, s]) as f32;
                shift_hue(img, shift);
            }
            _ => {}
        }
    }
}

/// Rotates every pixel's hue by `shift` turns (HSV round trip).
pub fn shift_hue(img: &mut Image, shift: f32) {
    let plane = img.height * img.width;
    for i in 0..plane {
        let (r, g, b) = (img.data[i], img.data[plane + i], img.data[2 * plane + i]);
        let max = r.max(g).max(b);
        let min = r.min(g).min(b);
        let delta = max - min;
        let mut h = if delta == 0.0 {
            0.0
        } else if max == r {
            ((g - b) / delta).rem_euclid(6.0)
        } else if max == g {
            (b - r) / delta + 2.0
        } else {
            (r - g) / delta + 4.0
        } / 6.0;
        let s = if max == 0.0 { 0.0 } else { delta / max };
        h = (h + shift).rem_euclid(1.0);
        let (r, g, b) = hsv_to_rgb(h, s, max);
        img.data[i] = r;
        img.data[plane + i] = g;
        img.data[2 * plane + i] = b;
    }
}

fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    let h6 = h * 6.0;
    let sector = h6.floor() as i32 % 6;
    let f = h6 - h6.floor();
    let p = v * (1.0 - s);
    let q = v * (1.0 - s * f);
    let t = v * (1.0 - s * (1.0 - f));
    match sector {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

/// `(x - mean) / std` per channel.
pub fn normalize(img: &mut Image, mean: &[f64], std: &[f64]) {
    let plane = img.height * img.width;
    for c in 0..img.channels {
        let (m, s) = (mean[c] as f32, std[c] as f32);
        img.data[c * plane..(c + 1) * plane]
            .iter_mut()
            .for_each(|v| *v = (*v - m) / s);
    }
}

/// timm's `RandomErasing`: one rectangle of random area and aspect, filled with per-pixel
/// normal noise or zeros. Returns whether a rectangle fitted.
pub fn random_erasing(
    img: &mut Image,
    scale: [f64; 2],
    ratio: [f64; 2],
    value: ErasingValue,
    rng: &mut impl Rng,
) -> bool {
    let area = (img.height * img.width) as f64;
    for _ in 0..10 {
        let target = area * uniform(rng, scale);
        let aspect = log_uniform(rng, ratio);
        let h = (target * aspect).sqrt().round() as usize;
        let w = (target / aspect).sqrt().round() as usize;
        if h > 0 && w > 0 && h < img.height && w < img.width {
            let top = rng.gen_range(0..=img.height - h);
            let left = rng.gen_range(0..=img.width - w);
            img.fill_rect(top, left, h, w, |_| match value {
                ErasingValue::Random => StandardNormal.sample(rng),
                ErasingValue::Zero => 0.0,
            });
            return true;
        }
    }
    false
}
