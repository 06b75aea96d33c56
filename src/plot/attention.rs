//! Attention maps from a ViT's softmax attention: the last block's CLS-token attention over the
//! patch grid, and attention rollout across all blocks (Abnar & Zuidema 2020). Matrices are
//! row-major `tokens × tokens`; a block's attention is `heads` such matrices back to back.

use crate::config::{Config, Pooling, TaskKind};

/// Whose attention a map shows: the token the model's head reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// The class token's row: a CLS-pooled classifier (timm's `global_pool="token"`).
    Cls,
    /// The mean of the patch tokens' rows: a mean-pooled classifier (`global_pool="avg"`) and
    /// the dense heads, which read every patch token.
    Patches,
}

impl Reader {
    /// What `config`'s head reads (a model without a class token has only patches).
    pub fn of(config: &Config, prefix: usize) -> Reader {
        match (config.head.task, config.model.pooling) {
            (TaskKind::Classification, Pooling::Cls) if prefix > 0 => Reader::Cls,
            _ => Reader::Patches,
        }
    }

    /// How a caption names the map.
    pub fn describe(self) -> &'static str {
        match self {
            Reader::Cls => "CLS attention",
            Reader::Patches => "mean attention of the patch tokens",
        }
    }
}

/// How the heads of one block are combined into one matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fusion {
    Mean,
    Max,
    Min,
}

impl std::str::FromStr for Fusion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "mean" => Ok(Fusion::Mean),
            "max" => Ok(Fusion::Max),
            "min" => Ok(Fusion::Min),
            other => Err(format!(
                "unknown head fusion {other:?}; use mean, max or min"
            )),
        }
    }
}

/// Fuses `heads` matrices of `n × n` into one, element by element.
pub fn fuse(attention: &[f32], heads: usize, n: usize, fusion: Fusion) -> Vec<f32> {
    let size = n * n;
    assert_eq!(attention.len(), heads * size, "attention is heads × n × n");
    (0..size)
        .map(|i| {
            let values = (0..heads).map(|h| attention[h * size + i]);
            match fusion {
                Fusion::Mean => values.sum::<f32>() / heads as f32,
                Fusion::Max => values.fold(f32::NEG_INFINITY, f32::max),
                Fusion::Min => values.fold(f32::INFINITY, f32::min),
            }
        })
        .collect()
}

/// Zeroes the lowest `ratio` of the weights of each row, in place; the shape stays, the
/// diagonal (a token's attention to itself) and each row's largest weight are never dropped.
pub fn discard_lowest(matrix: &mut [f32], n: usize, ratio: f32) {
    let drop = ((n as f32) * ratio.clamp(0.0, 1.0)).floor() as usize;
    if drop == 0 {
        return;
    }
    for (r, row) in matrix.chunks_mut(n).enumerate() {
        let top = (0..n).fold(0, |best, i| if row[i] > row[best] { i } else { best });
        let mut order: Vec<usize> = (0..n).filter(|&i| i != r && i != top).collect();
        order.sort_by(|&a, &b| row[a].total_cmp(&row[b]));
        for &i in order.iter().take(drop) {
            row[i] = 0.0;
        }
    }
}

fn matmul(a: &[f32], b: &[f32], n: usize) -> Vec<f32> {
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            if aik != 0.0 {
                for j in 0..n {
                    out[i * n + j] += aik * b[k * n + j];
                }
            }
        }
    }
    out
}

/// Attention rollout: per block, fuse the heads, discard the lowest weights, add the identity
/// for the residual path, renormalise rows, and multiply through the blocks (first block
/// rightmost). Returns the `n × n` flow from every token to every input token.
pub fn rollout(
    blocks: &[Vec<f32>],
    heads: usize,
    n: usize,
    fusion: Fusion,
    discard: f32,
) -> Vec<f32> {
    let mut flow: Vec<f32> = (0..n * n)
        .map(|i| if i % (n + 1) == 0 { 1.0 } else { 0.0 })
        .collect();
    for attention in blocks {
        let mut a = fuse(attention, heads, n, fusion);
        discard_lowest(&mut a, n, discard);
        for (r, row) in a.chunks_mut(n).enumerate() {
            row[r] += 1.0;
            let sum: f32 = row.iter().sum();
            row.iter_mut().for_each(|v| *v /= sum);
        }
        flow = matmul(&a, &flow, n);
    }
    flow
}

/// The reader's row of an `n × n` matrix (the CLS token's, or the mean of the patch tokens'),
/// over the patch tokens only (the `prefix` tokens — CLS and, in DeiT, the distillation token
/// — come first and are left out), as a `grid × grid` map scaled to a maximum of 1.
pub fn to_patches(matrix: &[f32], n: usize, prefix: usize, reader: Reader) -> Vec<f32> {
    let patches: Vec<f32> = match reader {
        Reader::Cls => matrix[prefix..n].to_vec(),
        Reader::Patches => {
            let rows = (n - prefix).max(1) as f32;
            (prefix..n)
                .map(|c| (prefix..n).map(|r| matrix[r * n + c]).sum::<f32>() / rows)
                .collect()
        }
    };
    let max = patches.iter().copied().fold(f32::MIN_POSITIVE, f32::max);
    patches.iter().map(|v| v / max).collect()
}

/// The last block's attention of `reader` over the patches, heads fused and lowest weights
/// discarded.
pub fn last_block_map(
    last: &[f32],
    (heads, n, prefix): (usize, usize, usize),
    reader: Reader,
    fusion: Fusion,
    discard: f32,
) -> Vec<f32> {
    let mut a = fuse(last, heads, n, fusion);
    discard_lowest(&mut a, n, discard);
    to_patches(&a, n, prefix, reader)
}

#[cfg(test)]
mod reader_tests {
    use super::*;

    #[test]
    fn a_mean_pooled_map_reads_the_patch_tokens_not_the_class_token() {
        // Tokens: CLS, patch a, patch b. CLS looks at a; both patches look at b.
        let matrix = [
            0.1, 0.8, 0.1, //
            0.1, 0.2, 0.7, //
            0.0, 0.1, 0.9,
        ];
        assert_eq!(to_patches(&matrix, 3, 1, Reader::Cls), [1.0, 0.125]);
        let pooled = to_patches(&matrix, 3, 1, Reader::Patches);
        assert!(
            pooled[1] == 1.0 && (pooled[0] - 0.15 / 0.8).abs() < 1e-6,
            "{pooled:?}"
        );
        let mut config = Config::default();
        assert_eq!(Reader::of(&config, 1), Reader::Cls);
        assert_eq!(Reader::of(&config, 0), Reader::Patches, "no class token");
        config.model.pooling = Pooling::Mean;
        assert_eq!(Reader::of(&config, 1), Reader::Patches);
    }
}
