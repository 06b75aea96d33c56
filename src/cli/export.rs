//! `vitrun export`: a trial's weights as a timm state dict (`.safetensors`, timm's names and
//! layouts) beside a JSON its task writes of the timm model arguments and class names that
//! rebuild it.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::predict::Predictor;
use crate::model::{read_state_dict, write_safetensors};

/// Writes the export of `predictor`'s weights to `out` (`.safetensors`) and its arguments to
/// `out` with `.json`; returns the JSON's path.
pub fn export(predictor: &Predictor, out: &Path) -> anyhow::Result<PathBuf> {
    anyhow::ensure!(
        out.extension().is_some_and(|e| e == "safetensors"),
        "--out {}: the export is a .safetensors file",
        out.display()
    );
    let args = predictor.export_args()?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let weights = predictor.timm_weights(read_state_dict(&predictor.weights)?)?;
    write_safetensors(out, &weights)?;
    let json = out.with_extension("json");
    std::fs::write(&json, serde_json::to_string_pretty(&args)?)
        .with_context(|| format!("cannot write {}", json.display()))?;
    Ok(json)
}
