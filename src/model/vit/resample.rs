//! Resampling absolute position embeddings to another patch grid, as timm's
//! `resample_abs_pos_embed` does: prefix tokens kept, the patch rows resized as an image with
//! PyTorch's antialiased bicubic interpolation (`F.interpolate(mode="bicubic",
//! antialias=True)`: PIL's separable cubic filter with a = −0.5, its support widened by the
//! scale when shrinking, weights normalised per output pixel, `align_corners=False`).

/// The cubic convolution kernel with a = −0.5 (PIL's, used by PyTorch's antialiased path).
fn cubic(x: f64) -> f64 {
    let a = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * a
    } else {
        0.0
    }
}

/// For each output index: the first input index and the normalised weights of the inputs it
/// reads.
fn taps(input: usize, output: usize) -> Vec<(usize, Vec<f64>)> {
    let scale = input as f64 / output as f64;
    let support = if scale >= 1.0 { 2.0 * scale } else { 2.0 };
    let inv = if scale >= 1.0 { 1.0 / scale } else { 1.0 };
    (0..output)
        .map(|i| {
            let center = scale * (i as f64 + 0.5);
            let lo = ((center - support + 0.5).floor().max(0.0)) as usize;
            let hi = ((center + support + 0.5).floor() as usize).min(input);
            let mut w: Vec<f64> = (lo..hi)
                .map(|j| cubic((j as f64 - center + 0.5) * inv))
                .collect();
            let total: f64 = w.iter().sum();
            if total != 0.0 {
                w.iter_mut().for_each(|v| *v /= total);
            }
            (lo, w)
        })
        .collect()
}

/// Resizes a `[rows, cols, dim]` grid (row-major, `dim` channels per cell) to `[h, w, dim]`.
pub fn resize_grid(
    grid: &[f32],
    (rows, cols): (usize, usize),
    (h, w): (usize, usize),
    dim: usize,
) -> Vec<f32> {
    let across = taps(cols, w);
    let mut wide = vec![0f64; rows * w * dim];
    for r in 0..rows {
        for (x, (lo, weights)) in across.iter().enumerate() {
            for (k, wt) in weights.iter().enumerate() {
                let src = (r * cols + lo + k) * dim;
                let dst = (r * w + x) * dim;
                for c in 0..dim {
                    wide[dst + c] += wt * grid[src + c] as f64;
                }
            }
        }
    }
    let down = taps(rows, h);
    let mut out = vec![0f64; h * w * dim];
    for (y, (lo, weights)) in down.iter().enumerate() {
        for (k, wt) in weights.iter().enumerate() {
            let src_row = (lo + k) * w * dim;
            let dst_row = y * w * dim;
            for i in 0..w * dim {
                out[dst_row + i] += wt * wide[src_row + i];
            }
        }
    }
    out.into_iter().map(|v| v as f32).collect()
}

/// A `[1, prefix + old², dim]` position embedding resampled to `[1, prefix + new², dim]`.
pub fn resample_pos_embed(
    data: &[f32],
    prefix: usize,
    old: usize,
    new: usize,
    dim: usize,
) -> Vec<f32> {
    let mut out = data[..prefix * dim].to_vec();
    out.extend(resize_grid(
        &data[prefix * dim..],
        (old, old),
        (new, new),
        dim,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_size_is_the_identity_and_constants_stay_constant() {
        let grid: Vec<f32> = (0..4 * 4 * 2).map(|v| v as f32 * 0.1).collect();
        let same = resize_grid(&grid, (4, 4), (4, 4), 2);
        for (a, b) in grid.iter().zip(&same) {
            assert!((a - b).abs() < 1e-6);
        }
        let flat = vec![0.7f32; 7 * 7 * 3];
        for size in [3, 5, 11] {
            for v in resize_grid(&flat, (7, 7), (size, size), 3) {
                assert!((v - 0.7).abs() < 1e-6);
            }
        }
    }
}
