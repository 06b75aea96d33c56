//! Adapting a timm/DeiT checkpoint to a ViT (timm's `checkpoint_filter_fn`): wrapper
//! prefixes stripped, the distillation token dropped or mapped, an old linear patch embedding
//! reshaped, positions resampled to the model's grid.

use super::VitSpec;
use crate::model::coverage::Coverage;
use crate::model::state_dict::{StateDict, StateTensor};

fn rows(t: &StateTensor, from: usize, to: usize) -> StateTensor {
    let dim = t.shape[2];
    StateTensor {
        shape: vec![1, to - from, dim],
        data: t.data[from * dim..to * dim].to_vec(),
    }
}

fn concat_rows(parts: &[StateTensor]) -> StateTensor {
    let dim = parts[0].shape[2];
    let data: Vec<f32> = parts.iter().flat_map(|p| p.data.iter().copied()).collect();
    StateTensor {
        shape: vec![1, data.len() / dim, dim],
        data,
    }
}

/// Adapts a state dict to `spec`: strips `module.` (DataParallel) prefixes, and drops the
/// distillation token (with its position row and head) when the model has none, or maps the
/// class token's to it when the model has one and the file does not.
pub fn filter(mut sd: StateDict, spec: &VitSpec, coverage: &mut Coverage) -> StateDict {
    if sd.keys().any(|k| k.starts_with("module.")) {
        sd = sd
            .into_iter()
            .map(|(k, v)| (k.strip_prefix("module.").unwrap_or(&k).to_string(), v))
            .collect();
        coverage
            .adapted
            .push("stripped the `module.` prefix".into());
    }
    let has_dist = sd.contains_key("dist_token");
    let prefix_in_file = 1 + usize::from(has_dist);
    let patches = spec.grid_size() * spec.grid_size();
    // Rows of a well-formed `[1, rows, dim]` position table only: any other shape is left for
    // the shape check to report.
    let pos_rows = sd.get("pos_embed").and_then(|p| match p.shape.as_slice() {
        &[1, rows, dim] if dim > 0 && rows.checked_mul(dim) == Some(p.data.len()) => Some(rows),
        _ => None,
    });
    match (has_dist, spec.distilled) {
        (true, false) => {
            for key in ["dist_token", "head_dist.weight", "head_dist.bias"] {
                if sd.remove(key).is_some() {
                    coverage
                        .ignored
                        .push((key.into(), "the model has no distillation token".into()));
                }
            }
            if let Some(pos) = sd
                .get("pos_embed")
                .filter(|_| pos_rows == Some(patches + 2))
            {
                let kept = concat_rows(&[rows(pos, 0, 1), rows(pos, 2, patches + 2)]);
                sd.insert("pos_embed".into(), kept);
                coverage
                    .adapted
                    .push("dropped the distillation token's position row".into());
            }
        }
        (false, true) => {
            if let Some(cls) = sd.get("cls_token").cloned() {
                sd.insert("dist_token".into(), cls);
                coverage
                    .adapted
                    .push("dist_token initialised from cls_token".into());
            }
            if let Some(pos) = sd
                .get("pos_embed")
                .filter(|_| pos_rows == Some(patches + prefix_in_file))
            {
                let mapped =
                    concat_rows(&[rows(pos, 0, 1), rows(pos, 0, 1), rows(pos, 1, patches + 1)]);
                sd.insert("pos_embed".into(), mapped);
                coverage.adapted.push(
                    "the distillation token's position row copied from the class token's".into(),
                );
            }
        }
        _ => {}
    }
    convert_patch_embed(&mut sd, spec, coverage);
    resample_grid(&mut sd, spec, coverage);
    sd
}

/// Old checkpoints store the patch embedding as a linear layer, `[dim, channels × p × p]`;
/// reshaped to the convolution's `[dim, channels, p, p]` as timm's filter does.
fn convert_patch_embed(sd: &mut StateDict, spec: &VitSpec, coverage: &mut Coverage) {
    let key = "patch_embed.proj.weight";
    let (dim, ch, p) = (spec.embed_dim, spec.in_channels, spec.patch_size);
    if let Some(w) = sd.get_mut(key) {
        if w.shape == [dim, ch * p * p] {
            w.shape = vec![dim, ch, p, p];
            coverage.adapted.push(
                "patch_embed.proj.weight reshaped from a linear to a convolution layout".into(),
            );
        }
    }
}

/// Resamples the patch rows of `pos_embed` when the file's square grid differs from the
/// model's (prefix rows kept), as timm's `resample_abs_pos_embed`.
fn resample_grid(sd: &mut StateDict, spec: &VitSpec, coverage: &mut Coverage) {
    let prefix = spec.num_prefix_tokens();
    let new = spec.grid_size();
    let Some(pos) = sd.get("pos_embed") else {
        return;
    };
    let (rows, dim) = match pos.shape.as_slice() {
        &[1, rows, dim] if rows.checked_mul(dim) == Some(pos.data.len()) => (rows, dim),
        _ => return,
    };
    let old = ((rows.saturating_sub(prefix)) as f64).sqrt().round() as usize;
    if rows < prefix || old * old + prefix != rows || old == new || dim != spec.embed_dim {
        return;
    }
    let data = super::resample::resample_pos_embed(&pos.data, prefix, old, new, dim);
    sd.insert(
        "pos_embed".into(),
        StateTensor {
            shape: vec![1, prefix + new * new, dim],
            data,
        },
    );
    coverage.adapted.push(format!(
        "pos_embed resampled from a {old}×{old} to a {new}×{new} patch grid (bicubic, antialiased, as timm)"
    ));
}
