//! Synthetic lesions: grey, scan-like images (an oval of textured tissue with noise and an
//! intensity drift) holding zero to three irregular blobs, all bright or all dark, of varying
//! contrast, with their binary mask (0 = background, 1 = lesion). A stand-in for the
//! tutorial's brain-tumour example; synthetic, and labelled so everywhere.

use rand::Rng;
use rand_distr::{Distribution, Normal};

use super::dataset::{DataError, Dataset, Sample, Target};
use super::geometry::Mask;
use super::image::Image;
use super::synthetic::generated_rng;

/// The two classes of a lesion mask, in label order.
pub const LESION_CLASSES: [&str; 2] = ["background", "lesion"];

/// Most blobs in one scan.
pub const MAX_LESIONS: usize = 3;

/// One generated scan.
#[derive(Debug, Clone)]
pub struct Scan {
    /// One grey channel in [0, 1].
    pub image: Image,
    /// 1 under a lesion, 0 elsewhere.
    pub mask: Mask,
}

/// A generated split of scans.
pub struct SyntheticLesions {
    seed: u64,
    split: u64,
    len: usize,
    size: usize,
}

impl SyntheticLesions {
    /// `split` keeps train and validation apart (0 = train, 1 = val).
    pub fn new(seed: u64, split: u64, len: usize, size: usize) -> Self {
        SyntheticLesions {
            seed,
            split,
            len,
            size,
        }
    }

    /// Scan `index` (the same for the same seed, split and index).
    pub fn scan(&self, index: usize) -> Scan {
        let mut rng = generated_rng(self.seed, self.split, index, b"lesions\0");
        render_scan(self.size, &mut rng)
    }
}

impl Dataset for SyntheticLesions {
    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, index: usize) -> Result<Sample, DataError> {
        let scan = self.scan(index);
        Ok(Sample {
            image: scan.image,
            target: Target::Mask(scan.mask),
        })
    }
}

/// A blob: centre, base radius, a few harmonics that make its outline irregular, and how much
/// brighter (or darker, when negative) than the tissue it is.
struct Blob {
    cx: f32,
    cy: f32,
    radius: f32,
    harmonics: [(f32, f32); 3],
    contrast: f32,
}

impl Blob {
    /// Signed distance in pixels from the outline (negative inside).
    fn outside_by(&self, x: f32, y: f32) -> f32 {
        let (dx, dy) = (x - self.cx, y - self.cy);
        let angle = dy.atan2(dx);
        let wobble: f32 = self
            .harmonics
            .iter()
            .enumerate()
            .map(|(k, &(amplitude, phase))| amplitude * ((k as f32 + 2.0) * angle + phase).cos())
            .sum();
        (dx * dx + dy * dy).sqrt() - self.radius * (1.0 + wobble)
    }
}

/// Draws one scan of `size × size`.
pub fn render_scan(size: usize, rng: &mut impl Rng) -> Scan {
    let s = size as f32;
    let level = rng.gen_range(0.35f32..0.6);
    let drift = [rng.gen_range(-0.15f32..0.15), rng.gen_range(-0.15f32..0.15)];
    let waves: Vec<[f32; 4]> = (0..4)
        .map(|_| {
            [
                rng.gen_range(1.0f32..6.0) * std::f32::consts::TAU / s,
                rng.gen_range(1.0f32..6.0) * std::f32::consts::TAU / s,
                rng.gen_range(0.0f32..std::f32::consts::TAU),
                rng.gen_range(0.02f32..0.07),
            ]
        })
        .collect();
    let noise = Normal::new(0.0f32, rng.gen_range(0.02f32..0.06)).expect("positive spread");
    // The tissue oval.
    let (ox, oy) = (s * rng.gen_range(0.45..0.55), s * rng.gen_range(0.45..0.55));
    let (rx, ry) = (s * rng.gen_range(0.38..0.47), s * rng.gen_range(0.38..0.47));
    // Lesions in one scan share their polarity (all bright or all dark), as in a real series.
    let sign = if rng.gen_bool(0.5) { 1.0 } else { -1.0 };
    let blobs: Vec<Blob> = (0..rng.gen_range(0..=MAX_LESIONS))
        .map(|_| {
            let angle = rng.gen_range(0.0f32..std::f32::consts::TAU);
            let reach = rng.gen_range(0.0f32..0.6);
            Blob {
                cx: ox + reach * rx * angle.cos(),
                cy: oy + reach * ry * angle.sin(),
                radius: s * rng.gen_range(0.08..0.18),
                harmonics: [(); 3].map(|_| {
                    (
                        rng.gen_range(0.0f32..0.15),
                        rng.gen_range(0.0f32..std::f32::consts::TAU),
                    )
                }),
                contrast: sign * rng.gen_range(0.15f32..0.35),
            }
        })
        .collect();
    let mut image = Image::new(1, size, size);
    let mut mask = Mask::filled(size, size, 0);
    for y in 0..size {
        for x in 0..size {
            let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
            let inside_tissue = ((fx - ox) / rx).powi(2) + ((fy - oy) / ry).powi(2) <= 1.0;
            let mut v = if inside_tissue {
                let texture: f32 = waves
                    .iter()
                    .map(|w| w[3] * (w[0] * fx + w[1] * fy + w[2]).sin())
                    .sum();
                level + drift[0] * (fx / s - 0.5) + drift[1] * (fy / s - 0.5) + texture
            } else {
                0.05
            };
            for blob in &blobs {
                let d = blob.outside_by(fx, fy);
                // A soft edge a pixel and a half wide; the mask takes the outline itself.
                let weight = (0.5 - d / 1.5).clamp(0.0, 1.0);
                v += blob.contrast * weight;
                if d <= 0.0 {
                    mask.labels[y * size + x] = 1;
                }
            }
            image.data[y * size + x] = (v + noise.sample(rng)).clamp(0.0, 1.0);
        }
    }
    Scan { image, mask }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_are_deterministic_and_lesions_differ_from_tissue() {
        let gen = SyntheticLesions::new(5, 0, 40, 64);
        let (mut with, mut without) = (0, 0);
        for i in 0..40 {
            let a = gen.scan(i);
            assert_eq!(a.image, gen.scan(i).image);
            assert_eq!(a.mask, gen.scan(i).mask);
            let lesion = a.mask.count(1);
            if lesion == 0 {
                without += 1;
                continue;
            }
            with += 1;
            // Lesion pixels stand out from the tissue around them on average.
            let mean = |label: u8| {
                let values: Vec<f32> = a
                    .mask
                    .labels
                    .iter()
                    .zip(&a.image.data)
                    .filter(|(&l, &v)| l == label && v > 0.1)
                    .map(|(_, &v)| v)
                    .collect();
                values.iter().sum::<f32>() / values.len().max(1) as f32
            };
            assert!(
                (mean(1) - mean(0)).abs() > 0.04,
                "scan {i}: lesion mean {} vs tissue {}",
                mean(1),
                mean(0)
            );
        }
        assert!(
            with > 20 && without > 3,
            "{with} scans with lesions, {without} without"
        );
    }
}
