//! Mixup and CutMix over a batch, with timm's `Mixup` semantics: image i is mixed with image
//! n−1−i (the reversed batch), and its target becomes the same blend of the two smoothed
//! one-hot labels.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution};

use super::batch::{Batch, BatchTransform, Labels, SoftTargets};
use crate::config::{AugmentConfig, MixMode};

/// One draw, applied to an image (or to every image of the batch, or to both of a pair).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Draw {
    Unmixed,
    /// Mixup: the image keeps this share of itself.
    Blend(f64),
    /// CutMix: the partner's pixels inside the box; the image keeps this share (the box's
    /// complement).
    Paste(CutBox, f64),
}

impl Draw {
    /// The share of the image's own content.
    fn lam(self) -> f64 {
        match self {
            Draw::Unmixed => 1.0,
            Draw::Blend(lam) | Draw::Paste(_, lam) => lam,
        }
    }
}

/// The configured Mixup/CutMix, for batches of `classes` classes.
#[derive(Debug, Clone)]
pub struct Mixer {
    mixup_alpha: Option<f64>,
    cutmix_alpha: Option<f64>,
    cutmix_minmax: Option<[f64; 2]>,
    correct_lam: bool,
    prob: f64,
    switch_prob: f64,
    mode: MixMode,
    smoothing: f64,
    classes: usize,
    seed: u64,
    /// Keeps each batch's images before mixing (for a distillation teacher).
    keep_unmixed: bool,
}

/// The RNG of one batch's mixing: the same (seed, epoch, batch) gives the same draws.
fn batch_rng(seed: u64, epoch: usize, batch: usize) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(epoch as u64).to_le_bytes());
    key[16..24].copy_from_slice(&(batch as u64).to_le_bytes());
    key[24..].copy_from_slice(b"mixcut\0\0");
    ChaCha8Rng::from_seed(key)
}

fn beta(rng: &mut impl Rng, alpha: f64) -> f64 {
    Beta::new(alpha, alpha)
        .map(|d| d.sample(rng))
        .unwrap_or(1.0)
}

/// A CutMix box `[y0, y1) × [x0, x1)` on an `h × w` image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CutBox {
    y0: usize,
    y1: usize,
    x0: usize,
    x1: usize,
}

impl CutBox {
    fn area(&self) -> usize {
        (self.y1 - self.y0) * (self.x1 - self.x0)
    }
}

/// timm's `rand_bbox`: sides `size·sqrt(1−lam)` around a uniform centre, clipped to the image.
fn lam_box(h: usize, w: usize, lam: f64, rng: &mut impl Rng) -> CutBox {
    let ratio = (1.0 - lam).max(0.0).sqrt();
    let (cut_h, cut_w) = ((h as f64 * ratio) as usize, (w as f64 * ratio) as usize);
    let (cy, cx) = (rng.gen_range(0..h), rng.gen_range(0..w));
    CutBox {
        y0: cy.saturating_sub(cut_h / 2),
        y1: (cy + cut_h / 2).min(h),
        x0: cx.saturating_sub(cut_w / 2),
        x1: (cx + cut_w / 2).min(w),
    }
}

/// timm's `rand_bbox_minmax`: sides uniform in `[min, max)` of the image's, placed inside it.
fn minmax_box(h: usize, w: usize, minmax: [f64; 2], rng: &mut impl Rng) -> CutBox {
    let (cut_h, cut_w) = (minmax_side(h, minmax, rng), minmax_side(w, minmax, rng));
    let y0 = rng.gen_range(0..=h - cut_h);
    let x0 = rng.gen_range(0..=w - cut_w);
    CutBox {
        y0,
        y1: y0 + cut_h,
        x0,
        x1: x0 + cut_w,
    }
}

fn minmax_side(n: usize, minmax: [f64; 2], rng: &mut impl Rng) -> usize {
    let (lo, hi) = (
        (n as f64 * minmax[0]) as usize,
        (n as f64 * minmax[1]) as usize,
    );
    if hi > lo {
        rng.gen_range(lo..hi)
    } else {
        lo
    }
}

impl Mixer {
    /// The mixer `[augment.mixup]`/`[augment.cutmix]` describe, or `None` when both are off.
    /// `smoothing` is the loss's label smoothing, folded into the soft targets as timm does.
    pub fn new(a: &AugmentConfig, smoothing: f64, classes: usize, seed: u64) -> Option<Mixer> {
        if !a.mixup.enabled && !a.cutmix.enabled {
            return None;
        }
        Some(Mixer {
            mixup_alpha: a.mixup.enabled.then_some(a.mixup.alpha),
            cutmix_alpha: a.cutmix.enabled.then_some(a.cutmix.alpha),
            cutmix_minmax: a.cutmix.minmax,
            correct_lam: a.cutmix.correct_lam,
            prob: a.mixup.prob,
            switch_prob: a.mixup.switch_prob,
            mode: a.mixup.mode,
            smoothing,
            classes,
            seed,
            keep_unmixed: false,
        })
    }

    /// The mixer that also keeps each batch's images as they were before mixing
    /// ([`Batch::unmixed`]), for a distillation teacher that sees them.
    pub fn keeping_unmixed(self) -> Mixer {
        Mixer {
            keep_unmixed: true,
            ..self
        }
    }

    /// One draw of timm's `_params_per_batch` for `size`-pixel images: mixed with
    /// probability `prob`, CutMix (with its box) with `switch_prob` when both are on.
    fn draw(&self, size: usize, rng: &mut impl Rng) -> Draw {
        if rng.gen::<f64>() >= self.prob {
            return Draw::Unmixed;
        }
        let cutmix = match (self.mixup_alpha, self.cutmix_alpha) {
            (Some(_), Some(_)) => rng.gen::<f64>() < self.switch_prob,
            (None, Some(_)) => true,
            _ => false,
        };
        let alpha = if cutmix {
            self.cutmix_alpha
        } else {
            self.mixup_alpha
        };
        let lam = alpha.map_or(1.0, |a| beta(rng, a));
        if cutmix {
            let (b, share) = self.cut(size, size, lam, rng);
            Draw::Paste(b, share)
        } else {
            Draw::Blend(lam)
        }
    }

    /// The box a CutMix draw pastes, and the share it leaves (corrected to the clipped box
    /// under `correct_lam` or `minmax`, as timm's `cutmix_bbox_and_lam`).
    fn cut(&self, h: usize, w: usize, lam: f64, rng: &mut impl Rng) -> (CutBox, f64) {
        let b = match self.cutmix_minmax {
            Some(mm) => minmax_box(h, w, mm, rng),
            None => lam_box(h, w, lam, rng),
        };
        let lam = if self.correct_lam || self.cutmix_minmax.is_some() {
            1.0 - b.area() as f64 / (h * w) as f64
        } else {
            lam
        };
        (b, lam)
    }

    /// Mixes batch `index` of `epoch` in place and returns its soft targets.
    pub fn mix(&self, batch: &mut Batch<Labels>, epoch: usize, index: usize) -> SoftTargets {
        let mut rng = batch_rng(self.seed, epoch, index);
        let (n, size) = (batch.len(), batch.size);
        let draws: Vec<Draw> = match self.mode {
            MixMode::Batch => vec![self.draw(size, &mut rng); n],
            MixMode::Elem => (0..n).map(|_| self.draw(size, &mut rng)).collect(),
            MixMode::Pair => {
                let half: Vec<Draw> = (0..n / 2).map(|_| self.draw(size, &mut rng)).collect();
                (0..n)
                    .map(|i| half.get(i.min(n - 1 - i)).copied().unwrap_or(Draw::Unmixed))
                    .collect()
            }
        };
        let unmixed = mix_pixels(batch, &draws);
        batch.unmixed = self.keep_unmixed.then_some(unmixed);
        self.targets(&batch.targets.labels, &draws)
    }

    /// timm's `mixup_target`: `lam · onehot(y) + (1 − lam) · onehot(partner)`, both smoothed.
    fn targets(&self, labels: &[i64], draws: &[Draw]) -> SoftTargets {
        let lam: Vec<f64> = draws.iter().map(|d| d.lam()).collect();
        let (n, k) = (labels.len(), self.classes);
        let off = self.smoothing / k as f64;
        let on = 1.0 - self.smoothing + off;
        let mut values = vec![0f32; n * k];
        let mut dominant = Vec::with_capacity(n);
        for i in 0..n {
            let (own, partner) = (labels[i] as usize, labels[n - 1 - i] as usize);
            let row = &mut values[i * k..(i + 1) * k];
            for (c, v) in row.iter_mut().enumerate() {
                let hot = |label: usize| if c == label { on } else { off };
                *v = (lam[i] * hot(own) + (1.0 - lam[i]) * hot(partner)) as f32;
            }
            dominant.push(if lam[i] >= 0.5 {
                labels[i]
            } else {
                labels[n - 1 - i]
            });
        }
        SoftTargets {
            values,
            dominant,
            lam,
            cutmix: draws.iter().map(|d| matches!(d, Draw::Paste(..))).collect(),
        }
    }
}

impl BatchTransform<Labels> for Mixer {
    fn apply(&self, batch: &mut Batch<Labels>, epoch: usize, index: usize) {
        batch.targets.mixed = Some(self.mix(batch, epoch, index));
    }
}

/// Blends or pastes each image's partner (image n−1−i of the batch as it was) into it, and
/// gives back the images as they were.
fn mix_pixels(batch: &mut Batch<Labels>, draws: &[Draw]) -> Vec<f32> {
    let n = batch.len();
    let (c, s) = (batch.channels, batch.size);
    let plane = s * s;
    let per_image = c * plane;
    let original = batch.images.clone();
    for (i, draw) in draws.iter().enumerate() {
        let j = n - 1 - i;
        let partner = &original[j * per_image..(j + 1) * per_image];
        let image = &mut batch.images[i * per_image..(i + 1) * per_image];
        match *draw {
            Draw::Unmixed => {}
            Draw::Blend(lam) => {
                for (p, q) in image.iter_mut().zip(partner) {
                    *p = *p * lam as f32 + *q * (1.0 - lam) as f32;
                }
            }
            Draw::Paste(b, _) => {
                for ch in 0..c {
                    for y in b.y0..b.y1 {
                        let row = ch * plane + y * s;
                        image[row + b.x0..row + b.x1]
                            .copy_from_slice(&partner[row + b.x0..row + b.x1]);
                    }
                }
            }
        }
    }
    original
}
