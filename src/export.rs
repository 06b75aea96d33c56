//! `vitrun export`: a trial's weights as a timm state dict (`.safetensors`, timm's names and
//! layouts) beside a JSON of the timm model arguments and class names that rebuild it.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::{Config, Pooling};
use crate::model::{read_state_dict, write_safetensors};
use crate::predict::Predictor;

/// timm's `VisionTransformer` (or `VisionTransformerDistilled`) keyword arguments for the
/// model `config` describes, with its class names.
pub fn timm_args(config: &Config, classes: &[String]) -> serde_json::Value {
    let m = &config.model;
    serde_json::json!({
        "architecture": if m.distilled { "VisionTransformerDistilled" } else { "VisionTransformer" },
        "model_args": {
            "img_size": config.data.image_size,
            "patch_size": m.patch_size,
            "in_chans": config.data.channels,
            "num_classes": classes.len(),
            "embed_dim": m.embed_dim,
            "depth": m.depth,
            "num_heads": m.num_heads,
            "mlp_ratio": m.mlp_ratio,
            "global_pool": match m.pooling { Pooling::Cls => "token", Pooling::Mean => "avg" },
            "fc_norm": m.pooling == Pooling::Mean,
            "qkv_bias": true,
        },
        "label_names": classes,
        "mean": config.augment.normalize.enabled.then_some(&config.augment.normalize.mean),
        "std": config.augment.normalize.enabled.then_some(&config.augment.normalize.std),
    })
}

/// Writes the export of `predictor`'s weights to `out` (`.safetensors`) and its arguments to
/// `out` with `.json`; returns the JSON's path.
pub fn export(predictor: &Predictor, out: &Path) -> anyhow::Result<PathBuf> {
    anyhow::ensure!(
        out.extension().is_some_and(|e| e == "safetensors"),
        "--out {}: the export is a .safetensors file",
        out.display()
    );
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let stem = &predictor.config().model.conv_stem;
    anyhow::ensure!(
        stem.is_empty(),
        "vitrun export writes timm's VisionTransformer, which has no conv stem, and this model has model.conv_stem = {stem:?}; vitrun predict runs it as it is"
    );
    let weights = read_state_dict(&predictor.weights)?;
    write_safetensors(out, &weights)?;
    let json = out.with_extension("json");
    let args = timm_args(predictor.config(), predictor.classes());
    std::fs::write(&json, serde_json::to_string_pretty(&args)?)
        .with_context(|| format!("cannot write {}", json.display()))?;
    Ok(json)
}
