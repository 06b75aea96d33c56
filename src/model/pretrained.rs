//! Starting from pretrained weights, kept apart from the model as timm's
//! `checkpoint_filter_fn` is: the state dict is adapted to the target architecture (wrapper
//! prefixes stripped, the distillation token dropped or mapped), then applied tensor by tensor,
//! and what was loaded, re-initialised and ignored is reported with why.

use super::state_dict::{apply_partial, StateDict, StateTensor};
use super::vit::{Vit, VitSpec};
use burn::tensor::backend::Backend;

/// What a pretrained load did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Coverage {
    /// Parameters set from the file.
    pub loaded: Vec<String>,
    /// Parameters that kept their fresh initialisation, with why.
    pub reinitialised: Vec<(String, String)>,
    /// Entries of the file no parameter took, with why.
    pub ignored: Vec<(String, String)>,
    /// What the filter changed before applying (prefixes stripped, tokens mapped).
    pub adapted: Vec<String>,
}

/// Whether `name` belongs to a task head or decoder (re-initialised freely on a class or task
/// change).
pub fn is_head(name: &str) -> bool {
    ["head.", "head_dist.", "decoder.", "detr."]
        .iter()
        .any(|p| name.starts_with(p))
}

impl Coverage {
    /// Whether every encoder parameter (all but the heads) came from the file.
    pub fn encoder_complete(&self) -> bool {
        self.reinitialised.iter().all(|(name, _)| is_head(name))
    }

    /// One paragraph for the console and the store.
    pub fn summary(&self) -> String {
        let list = |items: &[(String, String)]| {
            grouped(items)
                .iter()
                .map(|(n, why)| format!("{n} ({why})"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out = format!(
            "loaded {} tensors; re-initialised {}{}; ignored {}{}",
            self.loaded.len(),
            self.reinitialised.len(),
            if self.reinitialised.is_empty() {
                String::new()
            } else {
                format!(": {}", list(&self.reinitialised))
            },
            self.ignored.len(),
            if self.ignored.is_empty() {
                String::new()
            } else {
                format!(": {}", list(&self.ignored))
            },
        );
        if !self.adapted.is_empty() {
            out.push_str(&format!("; adapted: {}", self.adapted.join("; ")));
        }
        out
    }
}

/// More than this many entries under one top-level module, for one reason, are listed as one.
const LISTED_PER_MODULE: usize = 4;

/// `items` with the entries of a top-level module that share a reason folded into one
/// `module.*` entry when there are more than [`LISTED_PER_MODULE`] (a task decoder's dozens of
/// fresh tensors), in first-seen order.
fn grouped(items: &[(String, String)]) -> Vec<(String, String)> {
    let module = |name: &str| name.split('.').next().unwrap_or(name).to_string();
    let count = |m: &str, why: &str| {
        items
            .iter()
            .filter(|(n, w)| module(n) == m && w == why)
            .count()
    };
    let mut out: Vec<(String, String)> = Vec::new();
    for (name, why) in items {
        let m = module(name);
        let n = count(&m, why);
        if n <= LISTED_PER_MODULE {
            out.push((name.clone(), why.clone()));
        } else if !out
            .iter()
            .any(|(o, w)| *o == format!("{m}.*") && w.ends_with(why.as_str()))
        {
            out.push((format!("{m}.*"), format!("{n} tensors, {why}")));
        }
    }
    out
}

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
    let pos_rows = sd
        .get("pos_embed")
        .map(|p| p.shape.get(1).copied().unwrap_or(0));
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
        [1, rows, dim] => (*rows, *dim),
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

/// Why a parameter the file has with another shape was not loaded.
fn misshaped_reason(entry: &str, spec: &VitSpec) -> (String, String) {
    let (name, shapes) = entry.split_once(':').unwrap_or((entry, ""));
    let why = if is_head(name) {
        format!(
            "class count differs ({}); re-initialised for {} classes",
            shapes.trim(),
            spec.num_classes
        )
    } else if name == "pos_embed" {
        format!(
            "position rows differ ({}) and cannot be resampled (not a square grid)",
            shapes.trim()
        )
    } else {
        format!("shape differs ({})", shapes.trim())
    };
    (name.to_string(), why)
}

/// Applies a filtered state dict to a freshly initialised model; parameters it cannot fill
/// keep their initialisation and are reported.
pub fn apply_pretrained<B: Backend>(
    model: Vit<B>,
    sd: StateDict,
    spec: &VitSpec,
    device: &B::Device,
) -> (Vit<B>, Coverage) {
    let mut coverage = Coverage::default();
    let sd = filter(sd, spec, &mut coverage);
    let (model, applied) = apply_partial(model, &sd, device);
    coverage.loaded = applied.loaded;
    for m in &applied.misshaped {
        coverage.reinitialised.push(misshaped_reason(m, spec));
    }
    for m in &applied.missing {
        let name = m.split_whitespace().next().unwrap_or(m).to_string();
        coverage
            .reinitialised
            .push((name, "missing in the checkpoint".into()));
    }
    for u in &applied.unexpected {
        let name = u.split_whitespace().next().unwrap_or(u).to_string();
        coverage
            .ignored
            .push((name, "the model has no such parameter".into()));
    }
    (model, coverage)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decoder's many fresh tensors read as one entry; a few stay listed one by one.
    #[test]
    fn many_fresh_tensors_of_one_module_are_listed_as_one() {
        let missing = "missing in the checkpoint".to_string();
        let mut coverage = Coverage {
            loaded: vec!["cls_token".into()],
            reinitialised: vec![("head.weight".into(), "class count differs".into())],
            ..Coverage::default()
        };
        for i in 0..6 {
            coverage
                .reinitialised
                .push((format!("detr.layers.{i}.fc1.weight"), missing.clone()));
        }
        coverage
            .reinitialised
            .push(("decoder.stages.0.weight".into(), missing.clone()));
        assert_eq!(
            coverage.summary(),
            "loaded 1 tensors; re-initialised 8: head.weight (class count differs), detr.* (6 tensors, missing in the checkpoint), decoder.stages.0.weight (missing in the checkpoint); ignored 0"
        );
    }
}
