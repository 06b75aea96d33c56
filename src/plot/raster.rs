//! Pixel work for report images: display copies of tensors-as-images, bilinear upsampling of a
//! patch-grid map, a perceptual colour map, overlays and patch-grid lines.

use crate::data::Image;

/// An 8-bit RGB picture, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Rgb {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl Rgb {
    /// A display copy of `image` (grey becomes RGB), un-normalised with `mean`/`std` when given,
    /// scaled by an integer factor with nearest-neighbour so small images stay crisp.
    pub fn from_image(image: &Image, denorm: Option<(&[f64], &[f64])>, scale: usize) -> Rgb {
        let (h, w) = (image.height, image.width);
        let scale = scale.max(1);
        let mut pixels = Vec::with_capacity(h * w * 9 * scale * scale);
        for y in 0..h * scale {
            for x in 0..w * scale {
                for c in 0..3 {
                    let ch = c.min(image.channels - 1);
                    let mut v = image.at(ch, y / scale, x / scale) as f64;
                    if let Some((mean, std)) = denorm {
                        v = v * std[ch.min(std.len() - 1)] + mean[ch.min(mean.len() - 1)];
                    }
                    pixels.push((v.clamp(0.0, 1.0) * 255.0).round() as u8);
                }
            }
        }
        Rgb {
            width: w * scale,
            height: h * scale,
            pixels,
        }
    }

    /// Writes a PNG.
    pub fn save(&self, path: &std::path::Path) -> image::ImageResult<()> {
        image::save_buffer(
            path,
            &self.pixels,
            self.width as u32,
            self.height as u32,
            image::ColorType::Rgb8,
        )
    }
}

/// Bilinear upsampling of a `grid × grid` map to `size × size` (pixel centres aligned).
pub fn upsample(map: &[f32], grid: usize, size: usize) -> Vec<f32> {
    let scale = grid as f32 / size as f32;
    let mut out = Vec::with_capacity(size * size);
    for y in 0..size {
        let fy = ((y as f32 + 0.5) * scale - 0.5).clamp(0.0, (grid - 1) as f32);
        let (y0, ty) = (fy.floor() as usize, fy.fract());
        let y1 = (y0 + 1).min(grid - 1);
        for x in 0..size {
            let fx = ((x as f32 + 0.5) * scale - 0.5).clamp(0.0, (grid - 1) as f32);
            let (x0, tx) = (fx.floor() as usize, fx.fract());
            let x1 = (x0 + 1).min(grid - 1);
            let top = map[y0 * grid + x0] * (1.0 - tx) + map[y0 * grid + x1] * tx;
            let bottom = map[y1 * grid + x0] * (1.0 - tx) + map[y1 * grid + x1] * tx;
            out.push(top * (1.0 - ty) + bottom * ty);
        }
    }
    out
}

/// Viridis (matplotlib's default map) at nine stops: perceptually uniform, its lightness rising
/// steadily from dark purple to yellow, and readable in grey and by colour-blind readers.
const VIRIDIS: [[f32; 3]; 9] = [
    [68.0, 1.0, 84.0],
    [71.0, 44.0, 122.0],
    [59.0, 81.0, 139.0],
    [44.0, 113.0, 142.0],
    [33.0, 144.0, 141.0],
    [39.0, 173.0, 129.0],
    [92.0, 200.0, 99.0],
    [170.0, 220.0, 50.0],
    [253.0, 231.0, 37.0],
];

/// The viridis colour of `v` in `[0, 1]` (low: dark purple, high: yellow).
pub fn heat(v: f32) -> [u8; 3] {
    let at = v.clamp(0.0, 1.0) * (VIRIDIS.len() - 1) as f32;
    let i = (at.floor() as usize).min(VIRIDIS.len() - 2);
    let t = at - i as f32;
    let (c0, c1) = (VIRIDIS[i], VIRIDIS[i + 1]);
    [0, 1, 2].map(|k| (c0[k] + (c1[k] - c0[k]) * t).round() as u8)
}

/// `base` with the heat map of `map` (values in `[0, 1]`, same size) blended over it.
pub fn overlay(base: &Rgb, map: &[f32], alpha: f32) -> Rgb {
    let mut out = base.clone();
    for (i, px) in out.pixels.chunks_mut(3).enumerate() {
        let h = heat(map[i]);
        for k in 0..3 {
            px[k] = (px[k] as f32 * (1.0 - alpha) + h[k] as f32 * alpha).round() as u8;
        }
    }
    out
}

/// Draws the patch grid's lines (every `cell` pixels) in white.
pub fn grid_lines(image: &mut Rgb, cell: usize) {
    for y in 0..image.height {
        for x in 0..image.width {
            if x % cell == 0 || y % cell == 0 {
                let i = (y * image.width + x) * 3;
                image.pixels[i..i + 3].copy_from_slice(&[255, 255, 255]);
            }
        }
    }
}

/// A `grid × grid` picture of per-cell RGB values in `[0, 1]`, each cell `cell` pixels wide.
pub fn cells(values: &[[f32; 3]], grid: usize, cell: usize) -> Rgb {
    let size = grid * cell;
    let mut pixels = Vec::with_capacity(size * size * 3);
    for y in 0..size {
        for x in 0..size {
            let v = values[(y / cell) * grid + x / cell];
            pixels.extend(v.map(|c| (c.clamp(0.0, 1.0) * 255.0).round() as u8));
        }
    }
    Rgb {
        width: size,
        height: size,
        pixels,
    }
}

/// Draws the outline of `corners` (in input pixels, drawn `scale` times larger) onto `image`,
/// two pixels thick and clipped to it.
/// Writes `text` `height` pixels tall in `ink` on a filled box of `paper` whose top-left corner
/// is `(x, y)` (moved inside the image where it would leave it): a box's label.
pub fn label(
    image: &mut Rgb,
    (x, y): (i64, i64),
    text: &str,
    height: f32,
    ink: [u8; 3],
    paper: [u8; 3],
) {
    use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
    let Ok(font) = FontRef::try_from_slice(super::font::DEJAVU_SANS) else {
        return;
    };
    let scale = PxScale::from(height);
    let scaled = font.as_scaled(scale);
    let width: f32 = text
        .chars()
        .map(|c| scaled.h_advance(font.glyph_id(c)))
        .sum::<f32>()
        + 4.0;
    let (w, h) = (image.width as i64, image.height as i64);
    let (bw, bh) = (width.ceil() as i64, (height + 2.0).ceil() as i64);
    let x = x.clamp(0, (w - bw).max(0));
    let y = y.clamp(0, (h - bh).max(0));
    let mut blend = |px: i64, py: i64, colour: [u8; 3], alpha: f32| {
        if (0..w).contains(&px) && (0..h).contains(&py) {
            let i = 3 * (py * w + px) as usize;
            for (value, target) in image.pixels[i..i + 3].iter_mut().zip(colour) {
                let old = f32::from(*value);
                *value = (old + (f32::from(target) - old) * alpha).round() as u8;
            }
        }
    };
    for py in y..y + bh {
        for px in x..x + bw {
            blend(px, py, paper, 1.0);
        }
    }
    let mut caret = x as f32 + 2.0;
    for c in text.chars() {
        let id = font.glyph_id(c);
        let glyph = id.with_scale_and_position(
            scale,
            ab_glyph::point(caret, y as f32 + 1.0 + scaled.ascent()),
        );
        caret += scaled.h_advance(id);
        if let Some(shape) = font.outline_glyph(glyph) {
            let bounds = shape.px_bounds();
            shape.draw(|gx, gy, coverage| {
                blend(
                    bounds.min.x as i64 + i64::from(gx),
                    bounds.min.y as i64 + i64::from(gy),
                    ink,
                    coverage.min(1.0),
                );
            });
        }
    }
}

/// Black or white, whichever reads better on `paper`.
pub fn ink_on(paper: [u8; 3]) -> [u8; 3] {
    let luma =
        0.2126 * f32::from(paper[0]) + 0.7152 * f32::from(paper[1]) + 0.0722 * f32::from(paper[2]);
    if luma > 140.0 {
        [0, 0, 0]
    } else {
        [255, 255, 255]
    }
}

pub fn outline(
    image: &mut Rgb,
    corners: &crate::data::boxes::Corners,
    scale: f64,
    colour: [u8; 3],
) {
    let (w, h) = (image.width as i64, image.height as i64);
    let at = |v: f64, limit: i64| ((v * scale).round() as i64).clamp(0, limit - 1);
    let (x0, x1) = (at(corners.x0, w), at(corners.x1, w));
    let (y0, y1) = (at(corners.y0, h), at(corners.y1, h));
    let mut put = |x: i64, y: i64| {
        if (0..w).contains(&x) && (0..h).contains(&y) {
            let i = 3 * (y * w + x) as usize;
            image.pixels[i..i + 3].copy_from_slice(&colour);
        }
    };
    for t in 0..2 {
        for x in x0..=x1 {
            put(x, y0 + t);
            put(x, y1 - t);
        }
        for y in y0..=y1 {
            put(x0 + t, y);
            put(x1 - t, y);
        }
    }
}

/// `base` with each pixel blended toward its colour in `colours` (one per pixel of a map
/// `width` wide, shown `scale` times larger; `None` leaves the pixel as it is).
pub fn tint(
    base: &Rgb,
    colours: &[Option<[u8; 3]>],
    width: usize,
    scale: usize,
    alpha: f32,
) -> Rgb {
    let mut out = base.clone();
    let scale = scale.max(1);
    for y in 0..out.height {
        for x in 0..out.width {
            if let Some(Some(c)) = colours.get((y / scale) * width + x / scale) {
                let i = 3 * (y * out.width + x);
                for (pixel, &target) in out.pixels[i..i + 3].iter_mut().zip(c) {
                    let v = f32::from(*pixel) * (1.0 - alpha) + f32::from(target) * alpha;
                    *pixel = v.round() as u8;
                }
            }
        }
    }
    out
}

/// `image` in grey (Rec. 601 luma), lightened halfway to white so that tints read on it.
pub fn grey(image: &Rgb) -> Rgb {
    let pixels = image
        .pixels
        .chunks(3)
        .flat_map(|p| {
            let luma = 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]);
            let v = (127.5 + luma / 2.0).round() as u8;
            [v, v, v]
        })
        .collect();
    Rgb {
        pixels,
        ..image.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_writes_ink_on_its_swatch_inside_the_image() {
        let mut image = Rgb {
            width: 60,
            height: 30,
            pixels: vec![0; 60 * 30 * 3],
        };
        // Asked for above the top edge: drawn at the top instead.
        label(
            &mut image,
            (10, -20),
            "car 0.87",
            12.0,
            [0, 0, 0],
            [250, 250, 250],
        );
        let px = |x: usize, y: usize| &image.pixels[3 * (y * 60 + x)..3 * (y * 60 + x) + 3];
        assert_eq!(
            px(10, 0),
            [250, 250, 250],
            "the swatch starts at the clamped corner"
        );
        assert_eq!(px(5, 5), [0, 0, 0], "nothing left of it");
        let inked = (0..14)
            .flat_map(|y| (10..60).map(move |x| (x, y)))
            .filter(|&(x, y)| px(x, y)[0] < 128)
            .count();
        assert!(inked > 20, "the text is drawn: {inked} dark pixels");
        assert_eq!(ink_on([250, 250, 250]), [0, 0, 0]);
        assert_eq!(ink_on([0, 114, 178]), [255, 255, 255]);
    }

    #[test]
    fn the_heat_map_gets_lighter_all_the_way_up() {
        let luma = |v: f32| {
            let [r, g, b] = heat(v);
            0.2126 * r as f32 + 0.7152 * g as f32 + 0.0722 * b as f32
        };
        let steps: Vec<f32> = (0..=100).map(|i| luma(i as f32 / 100.0)).collect();
        assert!(steps.windows(2).all(|w| w[1] >= w[0]), "{steps:?}");
        assert_eq!(heat(-1.0), heat(0.0));
        assert_eq!(heat(2.0), [253, 231, 37]);
    }
}
