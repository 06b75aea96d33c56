//! A float image in CHW layout and the geometric primitives augmentations are built from.

/// Pixels as `f32`, channel-major (`[channels, height, width]`), values in `[0, 1]` until
/// normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

impl Image {
    /// A black image.
    pub fn new(channels: usize, height: usize, width: usize) -> Image {
        Image {
            channels,
            height,
            width,
            data: vec![0.0; channels * height * width],
        }
    }

    /// From interleaved 8-bit pixels (`RGBRGB…` or grey).
    pub fn from_interleaved_u8(
        channels: usize,
        height: usize,
        width: usize,
        pixels: &[u8],
    ) -> Image {
        let mut img = Image::new(channels, height, width);
        let plane = height * width;
        for (i, px) in pixels.chunks_exact(channels).enumerate() {
            for (c, v) in px.iter().enumerate() {
                img.data[c * plane + i] = *v as f32 / 255.0;
            }
        }
        img
    }

    /// Interleaved 8-bit pixels, clamped to `[0, 1]` first.
    pub fn to_interleaved_u8(&self) -> Vec<u8> {
        let plane = self.height * self.width;
        let mut out = Vec::with_capacity(self.data.len());
        for i in 0..plane {
            for c in 0..self.channels {
                out.push((self.data[c * plane + i].clamp(0.0, 1.0) * 255.0).round() as u8);
            }
        }
        out
    }

    /// Pixel value of channel `c` at row `y`, column `x`.
    pub fn at(&self, c: usize, y: usize, x: usize) -> f32 {
        self.data[(c * self.height + y) * self.width + x]
    }

    fn at_mut(&mut self, c: usize, y: usize, x: usize) -> &mut f32 {
        &mut self.data[(c * self.height + y) * self.width + x]
    }

    /// Grey → 3 identical channels, RGB → 1 channel of ITU-R 601 luma.
    pub fn with_channels(self, channels: usize) -> Image {
        if channels == self.channels {
            return self;
        }
        let plane = self.height * self.width;
        let mut out = Image::new(channels, self.height, self.width);
        match (self.channels, channels) {
            (1, 3) => {
                for c in 0..3 {
                    out.data[c * plane..(c + 1) * plane].copy_from_slice(&self.data[..plane]);
                }
            }
            (3, 1) => {
                for i in 0..plane {
                    out.data[i] = 0.299 * self.data[i]
                        + 0.587 * self.data[plane + i]
                        + 0.114 * self.data[2 * plane + i];
                }
            }
            _ => {
                for c in 0..channels {
                    let src = c.min(self.channels - 1);
                    out.data[c * plane..(c + 1) * plane]
                        .copy_from_slice(&self.data[src * plane..(src + 1) * plane]);
                }
            }
        }
        out
    }

    /// The region `[top, top+h) × [left, left+w)` resized to `out_h × out_w`, bilinear with
    /// half-pixel centres; shrinking by more than 2× averages over the covered area first.
    pub fn crop_resize(
        &self,
        top: f32,
        left: f32,
        h: f32,
        w: f32,
        out_h: usize,
        out_w: usize,
    ) -> Image {
        let mut out = Image::new(self.channels, out_h, out_w);
        let sy = h / out_h as f32;
        let sx = w / out_w as f32;
        let ty = sy.floor().max(1.0) as usize;
        let tx = sx.floor().max(1.0) as usize;
        for c in 0..self.channels {
            for oy in 0..out_h {
                for ox in 0..out_w {
                    let mut acc = 0.0;
                    for ky in 0..ty {
                        for kx in 0..tx {
                            let y = top + (oy as f32 + (ky as f32 + 0.5) / ty as f32) * sy - 0.5;
                            let x = left + (ox as f32 + (kx as f32 + 0.5) / tx as f32) * sx - 0.5;
                            acc += self.bilinear(c, y, x);
                        }
                    }
                    *out.at_mut(c, oy, ox) = acc / (ty * tx) as f32;
                }
            }
        }
        out
    }

    /// The whole image resized to `out_h × out_w`.
    pub fn resize(&self, out_h: usize, out_w: usize) -> Image {
        if out_h == self.height && out_w == self.width {
            return self.clone();
        }
        self.crop_resize(
            0.0,
            0.0,
            self.height as f32,
            self.width as f32,
            out_h,
            out_w,
        )
    }

    fn bilinear(&self, c: usize, y: f32, x: f32) -> f32 {
        let y = y.clamp(0.0, (self.height - 1) as f32);
        let x = x.clamp(0.0, (self.width - 1) as f32);
        let (y0, x0) = (y.floor() as usize, x.floor() as usize);
        let (y1, x1) = ((y0 + 1).min(self.height - 1), (x0 + 1).min(self.width - 1));
        let (fy, fx) = (y - y0 as f32, x - x0 as f32);
        let top = self.at(c, y0, x0) * (1.0 - fx) + self.at(c, y0, x1) * fx;
        let bottom = self.at(c, y1, x0) * (1.0 - fx) + self.at(c, y1, x1) * fx;
        top * (1.0 - fy) + bottom * fy
    }

    /// Mirror left-right.
    pub fn hflip(&self) -> Image {
        let mut out = self.clone();
        for c in 0..self.channels {
            for y in 0..self.height {
                for x in 0..self.width {
                    *out.at_mut(c, y, x) = self.at(c, y, self.width - 1 - x);
                }
            }
        }
        out
    }

    /// Sets every pixel of the rectangle from `fill(channel, y, x)`.
    pub fn fill_rect(
        &mut self,
        top: usize,
        left: usize,
        h: usize,
        w: usize,
        mut fill: impl FnMut(usize) -> f32,
    ) {
        for c in 0..self.channels {
            for y in top..top + h {
                for x in left..left + w {
                    *self.at_mut(c, y, x) = fill(c);
                }
            }
        }
    }
}
