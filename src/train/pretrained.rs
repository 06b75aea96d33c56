//! Where `[model] pretrained` points: a checkpoint file, a vitrun trial folder, or `trial:ID`
//! (a trial id or prefix in the run store, its `best/` weights, else `last/`).

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::track::Store;

/// The weights file of a checkpoint or trial folder: its `model.safetensors`, else `best/`'s,
/// else `last/`'s.
pub fn weights_in(dir: &Path) -> Option<PathBuf> {
    [
        "model.safetensors",
        "best/model.safetensors",
        "last/model.safetensors",
    ]
    .iter()
    .map(|f| dir.join(f))
    .find(|p| p.is_file())
}

/// The weights file `spec` names.
pub fn source(spec: &str, store: &Store, runs_dir: &Path) -> anyhow::Result<PathBuf> {
    if let Some(prefix) = spec.strip_prefix("trial:") {
        let id = &store
            .unique_trial(prefix)
            .with_context(|| format!("model.pretrained = {spec:?}"))?;
        let (_, experiment) = store
            .trial_config(id)?
            .with_context(|| format!("trial {id} is not in the store"))?;
        let dir = runs_dir.join(experiment).join(id);
        return weights_in(&dir).with_context(|| {
            format!(
                "model.pretrained = {spec:?}: trial {id} has no checkpoint in {} (best/ or last/)",
                dir.display()
            )
        });
    }
    let path = PathBuf::from(spec);
    if path.is_dir() {
        return weights_in(&path).with_context(|| {
            format!(
                "model.pretrained = {spec:?}: the folder holds no model.safetensors (nor best/ or last/ of a trial)"
            )
        });
    }
    anyhow::ensure!(
        path.is_file(),
        "model.pretrained = {spec:?}: no such file; give a .safetensors, .pth or .bin checkpoint, a trial folder, or trial:ID"
    );
    Ok(path)
}
