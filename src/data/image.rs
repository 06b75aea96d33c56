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
    /// half-pixel centres; shrinking by more than 2× averages over the covered area first
    /// (`⌊scale⌋²` bilinear samples per output pixel). The samples form a product grid and
    /// bilinear weights are products, so it runs as two 1-D passes with precomputed weights.
    pub fn crop_resize(
        &self,
        top: f32,
        left: f32,
        h: f32,
        w: f32,
        out_h: usize,
        out_w: usize,
    ) -> Image {
        let rows = axis_weights(top, h, out_h, self.height);
        let cols = axis_weights(left, w, out_w, self.width);
        // Source rows any output row reads, each given a slot in the intermediate image.
        let mut slot = vec![usize::MAX; self.height];
        let mut used = Vec::new();
        for (i, _) in rows.iter().flatten() {
            if slot[*i] == usize::MAX {
                slot[*i] = used.len();
                used.push(*i);
            }
        }
        let mut out = Image::new(self.channels, out_h, out_w);
        let mut wide = vec![0f32; used.len() * out_w];
        for c in 0..self.channels {
            let plane =
                &self.data[c * self.height * self.width..(c + 1) * self.height * self.width];
            for (s, &r) in used.iter().enumerate() {
                let src = &plane[r * self.width..(r + 1) * self.width];
                let dst = &mut wide[s * out_w..(s + 1) * out_w];
                for (d, taps) in dst.iter_mut().zip(&cols) {
                    *d = taps.iter().map(|&(j, wt)| src[j] * wt).sum();
                }
            }
            let target = &mut out.data[c * out_h * out_w..(c + 1) * out_h * out_w];
            for (oy, taps) in rows.iter().enumerate() {
                let dst = &mut target[oy * out_w..(oy + 1) * out_w];
                for &(i, wt) in taps {
                    let src = &wide[slot[i] * out_w..(slot[i] + 1) * out_w];
                    for (d, v) in dst.iter_mut().zip(src) {
                        *d += v * wt;
                    }
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

/// For each of `out` output positions along an axis of `size` pixels: the source indices and
/// weights of its `⌊len / out⌋` (at least 1) averaged bilinear samples over `[start, start+len)`,
/// with half-pixel centres and positions clamped to the image.
fn axis_weights(start: f32, len: f32, out: usize, size: usize) -> Vec<Vec<(usize, f32)>> {
    let step = len / out as f32;
    let taps = step.floor().max(1.0) as usize;
    let last = (size - 1) as f32;
    (0..out)
        .map(|o| {
            let mut weights: Vec<(usize, f32)> = Vec::with_capacity(2 * taps);
            let mut add = |i: usize, wt: f32| match weights.iter_mut().find(|(j, _)| *j == i) {
                Some((_, w)) => *w += wt,
                None => weights.push((i, wt)),
            };
            for k in 0..taps {
                let p = (start + (o as f32 + (k as f32 + 0.5) / taps as f32) * step - 0.5)
                    .clamp(0.0, last);
                let p0 = p.floor() as usize;
                let f = p - p0 as f32;
                add(p0, (1.0 - f) / taps as f32);
                add((p0 + 1).min(size - 1), f / taps as f32);
            }
            weights
        })
        .collect()
}
