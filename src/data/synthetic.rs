//! Synthetic vehicles: procedural side views of the five classes of the vehicle example,
//! drawn with tiny-skia at any resolution, deterministic by seed and index.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tiny_skia::{Color, FillRule, Paint, Path, PathBuilder, Pixmap, Rect, Stroke, Transform};

use super::dataset::{DataError, Dataset, Sample};
use super::image::Image;

/// The five vehicle classes, in label order.
pub const VEHICLE_CLASSES: [&str; 5] = ["bicycle", "bus", "car", "motorcycle", "truck"];

/// A generated split: `len` images of `size × size`, labels cycling through `classes`.
pub struct SyntheticVehicles {
    seed: u64,
    split: u64,
    len: usize,
    size: usize,
    /// Indices into [`VEHICLE_CLASSES`], in label order.
    classes: Vec<usize>,
}

impl SyntheticVehicles {
    /// `split` keeps train and validation images apart (0 = train, 1 = val).
    pub fn new(seed: u64, split: u64, len: usize, size: usize, classes: Vec<usize>) -> Self {
        SyntheticVehicles {
            seed,
            split,
            len,
            size,
            classes,
        }
    }
}

impl Dataset for SyntheticVehicles {
    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, index: usize) -> Result<Sample, DataError> {
        let mut rng = generated_rng(self.seed, self.split, index, b"vehicle\0");
        let label = index % self.classes.len();
        let image = render(VEHICLE_CLASSES[self.classes[label]], self.size, &mut rng);
        Ok(Sample::classified(image, label))
    }
}

/// The RNG that generates item `index` of a split: the same (seed, split, index, generator)
/// always draws the same item.
pub(super) fn generated_rng(
    seed: u64,
    split: u64,
    index: usize,
    generator: &[u8; 8],
) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&split.to_le_bytes());
    key[16..24].copy_from_slice(&(index as u64).to_le_bytes());
    key[24..].copy_from_slice(generator);
    ChaCha8Rng::from_seed(key)
}

pub(super) fn color(rng: &mut impl Rng, lo: u8, hi: u8) -> Color {
    Color::from_rgba8(
        rng.gen_range(lo..=hi),
        rng.gen_range(lo..=hi),
        rng.gen_range(lo..=hi),
        255,
    )
}

/// A random colour at least a clear step away from `background` (sum of channel differences).
pub(super) fn contrasting(rng: &mut impl Rng, background: Color) -> Color {
    loop {
        let c = color(rng, 0, 255);
        let diff = (c.red() - background.red()).abs()
            + (c.green() - background.green()).abs()
            + (c.blue() - background.blue()).abs();
        if diff > 0.6 {
            return c;
        }
    }
}

pub(super) fn paint(c: Color) -> Paint<'static> {
    let mut p = Paint::default();
    p.set_color(c);
    p.anti_alias = true;
    p
}

pub(super) fn rect(x: f32, y: f32, w: f32, h: f32) -> Option<Path> {
    Rect::from_xywh(x, y, w, h).map(PathBuilder::from_rect)
}

/// Draws one scene: sky, ground, clutter, then the vehicle, and returns it as an RGB image.
pub fn render(class: &str, size: usize, rng: &mut impl Rng) -> Image {
    let s = size as f32;
    let mut pix = Pixmap::new(size as u32, size as u32).expect("image size is at least 1");
    let (sky, horizon) = draw_backdrop(&mut pix, rng);
    let width = s * rng.gen_range(0.65..0.92);
    let left = rng.gen_range(0.0..(s - width).max(1.0));
    let base = (horizon + rng.gen_range(0.2..0.8) * (s - horizon)).min(s - 1.0);
    let flip = rng.gen_bool(0.5);
    let t = if flip {
        Transform::from_row(-width, 0.0, 0.0, width, left + width, base)
    } else {
        Transform::from_row(width, 0.0, 0.0, width, left, base)
    };
    let body = contrasting(rng, sky);
    draw_vehicle(&mut pix, class, t, body, rng);
    to_image(&pix)
}

/// The pixmap's colour channels as an RGB image.
pub(super) fn to_image(pix: &Pixmap) -> Image {
    let rgb: Vec<u8> = pix
        .data()
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    Image::from_interleaved_u8(3, pix.height() as usize, pix.width() as usize, &rgb)
}

/// Fills `pix` with sky, ground and a few clouds; returns the sky colour and the horizon's row.
pub(super) fn draw_backdrop(pix: &mut Pixmap, rng: &mut impl Rng) -> (Color, f32) {
    let s = pix.width() as f32;
    let sky = color(rng, 150, 235);
    pix.fill(sky);
    let horizon = s * rng.gen_range(0.6..0.8);
    let ground = color(rng, 60, 150);
    if let Some(path) = rect(0.0, horizon, s, s - horizon) {
        pix.fill_path(
            &path,
            &paint(ground),
            FillRule::Winding,
            Transform::identity(),
            None,
        );
    }
    for _ in 0..rng.gen_range(0..3) {
        let (cx, cy, r) = (
            rng.gen_range(0.0..s),
            rng.gen_range(0.0..horizon * 0.6),
            s * rng.gen_range(0.03..0.08),
        );
        if let Some(blob) = PathBuilder::from_circle(cx, cy, r) {
            pix.fill_path(
                &blob,
                &paint(color(rng, 180, 255)),
                FillRule::Winding,
                Transform::identity(),
                None,
            );
        }
    }
    (sky, horizon)
}

/// A vehicle in unit coordinates: x from 0 to 1 (length), y up to about -0.7, wheels on y = 0.
pub(super) fn draw_vehicle(
    pix: &mut Pixmap,
    class: &str,
    t: Transform,
    body: Color,
    rng: &mut impl Rng,
) {
    let tyre = paint(Color::from_rgba8(25, 25, 25, 255));
    let hub = paint(Color::from_rgba8(190, 190, 190, 255));
    let glass = paint(Color::from_rgba8(170, 215, 240, 255));
    let body_paint = paint(body);
    let fill = |pix: &mut Pixmap, path: Option<Path>, p: &Paint| {
        if let Some(path) = path {
            pix.fill_path(&path, p, FillRule::Winding, t, None);
        }
    };
    let wheel = |pix: &mut Pixmap, x: f32, r: f32| {
        fill(pix, PathBuilder::from_circle(x, -r, r), &tyre);
        fill(pix, PathBuilder::from_circle(x, -r, r * 0.45), &hub);
    };
    // Thin strokes stay at least a pixel wide whatever the resolution.
    let line = |w: f32| Stroke {
        width: w.max(1.0 / t.sy.abs().max(1e-6)),
        ..Stroke::default()
    };
    match class {
        "car" => {
            let mut pb = PathBuilder::new();
            pb.move_to(0.0, -0.12);
            pb.line_to(0.0, -0.3);
            pb.line_to(0.22, -0.33);
            pb.line_to(0.32, -0.5);
            pb.line_to(0.7, -0.5);
            pb.line_to(0.82, -0.33);
            pb.line_to(1.0, -0.3);
            pb.line_to(1.0, -0.12);
            pb.close();
            fill(pix, pb.finish(), &body_paint);
            fill(pix, rect(0.35, -0.47, 0.15, 0.13), &glass);
            fill(pix, rect(0.53, -0.47, 0.15, 0.13), &glass);
            wheel(pix, 0.2, 0.12);
            wheel(pix, 0.8, 0.12);
        }
        "bus" => {
            fill(pix, rect(0.0, -0.62, 1.0, 0.52), &body_paint);
            let windows = rng.gen_range(4..7);
            for i in 0..windows {
                let w = 0.9 / windows as f32;
                fill(
                    pix,
                    rect(0.05 + i as f32 * w, -0.55, w * 0.75, 0.16),
                    &glass,
                );
            }
            wheel(pix, 0.17, 0.1);
            wheel(pix, 0.83, 0.1);
        }
        "truck" => {
            let cargo = paint(color(rng, 20, 255));
            fill(pix, rect(0.0, -0.68, 0.68, 0.55), &cargo);
            fill(pix, rect(0.71, -0.45, 0.29, 0.33), &body_paint);
            fill(pix, rect(0.8, -0.42, 0.16, 0.13), &glass);
            fill(pix, rect(0.0, -0.15, 1.0, 0.05), &tyre);
            wheel(pix, 0.13, 0.11);
            wheel(pix, 0.36, 0.11);
            wheel(pix, 0.86, 0.11);
        }
        "motorcycle" => {
            wheel(pix, 0.18, 0.17);
            wheel(pix, 0.82, 0.17);
            let mut pb = PathBuilder::new();
            pb.move_to(0.22, -0.2);
            pb.line_to(0.3, -0.42);
            pb.line_to(0.65, -0.45);
            pb.line_to(0.78, -0.22);
            pb.close();
            fill(pix, pb.finish(), &body_paint);
            fill(pix, rect(0.28, -0.5, 0.25, 0.07), &tyre);
            fill(
                pix,
                PathBuilder::from_circle(0.42, -0.82, 0.08),
                &paint(color(rng, 20, 255)),
            );
            fill(
                pix,
                rect(0.37, -0.75, 0.1, 0.26),
                &paint(color(rng, 20, 200)),
            );
        }
        _ => {
            let r = 0.2;
            let frame = paint(body);
            for x in [0.2, 0.8] {
                if let Some(c) = PathBuilder::from_circle(x, -r, r) {
                    pix.stroke_path(&c, &tyre, &line(0.05), t, None);
                }
            }
            let mut pb = PathBuilder::new();
            pb.move_to(0.2, -r);
            pb.line_to(0.45, -r);
            pb.line_to(0.7, -0.5);
            pb.line_to(0.38, -0.5);
            pb.close();
            pb.move_to(0.45, -r);
            pb.line_to(0.34, -0.58);
            pb.move_to(0.7, -0.5);
            pb.line_to(0.8, -r);
            pb.move_to(0.7, -0.5);
            pb.line_to(0.68, -0.62);
            if let Some(p) = pb.finish() {
                pix.stroke_path(&p, &frame, &line(0.045), t, None);
            }
        }
    }
}
