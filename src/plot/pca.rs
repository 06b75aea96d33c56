//! The first principal components of a set of vectors (patch embeddings), by power iteration
//! with deflation on the covariance matrix.

fn normalize(v: &mut [f64]) -> f64 {
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    norm
}

/// Projections of `rows` (`count × dim`, row-major) onto their first `k` principal components:
/// `count × k`, row-major.
pub fn project(rows: &[f32], count: usize, dim: usize, k: usize) -> Vec<f32> {
    let mean: Vec<f64> = (0..dim)
        .map(|j| (0..count).map(|i| rows[i * dim + j] as f64).sum::<f64>() / count.max(1) as f64)
        .collect();
    let centered: Vec<f64> = (0..count * dim)
        .map(|i| rows[i] as f64 - mean[i % dim])
        .collect();
    let mut cov = vec![0.0; dim * dim];
    for r in centered.chunks(dim) {
        for a in 0..dim {
            if r[a] == 0.0 {
                continue;
            }
            for b in 0..dim {
                cov[a * dim + b] += r[a] * r[b];
            }
        }
    }
    let mut components: Vec<Vec<f64>> = Vec::new();
    for c in 0..k {
        let mut v: Vec<f64> = (0..dim)
            .map(|j| 1.0 + ((j * 7 + c * 13) % 11) as f64 / 11.0)
            .collect();
        normalize(&mut v);
        let mut eigen = 0.0;
        for _ in 0..200 {
            let mut next: Vec<f64> = (0..dim)
                .map(|a| (0..dim).map(|b| cov[a * dim + b] * v[b]).sum())
                .collect();
            for p in &components {
                let dot: f64 = next.iter().zip(p).map(|(x, y)| x * y).sum();
                next.iter_mut().zip(p).for_each(|(x, y)| *x -= dot * y);
            }
            eigen = normalize(&mut next);
            let change: f64 = next.iter().zip(&v).map(|(a, b)| (a - b).abs()).sum();
            v = next;
            if change < 1e-9 {
                break;
            }
        }
        if eigen == 0.0 {
            v.iter_mut().for_each(|x| *x = 0.0);
        }
        components.push(v);
    }
    centered
        .chunks(dim)
        .flat_map(|r| {
            components
                .iter()
                .map(|p| r.iter().zip(p).map(|(x, y)| x * y).sum::<f64>() as f32)
                .collect::<Vec<_>>()
        })
        .collect()
}
