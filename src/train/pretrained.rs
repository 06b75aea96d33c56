//! Where `[model] pretrained` points: a checkpoint file, a vitrun trial folder, or `trial:ID`
//! (a trial id or prefix in the run store, its `best/` weights, else `last/`).

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::contract::weights_in;
use crate::track::Store;

/// The folder of the one trial under `runs_dir` whose id starts with `prefix`, found by its
/// folder alone (on a cluster node, which does not read the store).
fn trial_folder(runs_dir: &Path, prefix: &str) -> anyhow::Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(runs_dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        // Experiment names never start with a dot; `.teacher-cache` is not one.
        .filter(|exp| !exp.file_name().to_string_lossy().starts_with('.'))
        .flat_map(|exp| std::fs::read_dir(exp.path()).into_iter().flatten())
        .filter_map(|e| e.ok())
        .filter(|t| t.file_name().to_string_lossy().starts_with(prefix))
        .map(|t| t.path())
        .filter(|p| p.is_dir())
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => anyhow::bail!(
            "no trial folder under {} starts with {prefix:?}",
            runs_dir.display()
        ),
        n => anyhow::bail!(
            "{n} trial folders under {} start with {prefix:?}; give more of the id",
            runs_dir.display()
        ),
    }
}

/// The weights file `spec`, the value of `key`, names (`trial:` ids are looked up in `store` where this process
/// reads it, else by their folder under `runs_dir`).
pub fn source(
    key: &str,
    spec: &str,
    store: Option<&Store>,
    runs_dir: &Path,
) -> anyhow::Result<PathBuf> {
    if let Some(prefix) = spec.strip_prefix("trial:") {
        let dir = match store {
            Some(store) => {
                let id = &store
                    .unique_trial(prefix)
                    .with_context(|| format!("{key} = {spec:?}"))?;
                let (_, experiment) = store
                    .trial_config(id)?
                    .with_context(|| format!("trial {id} is not in the store"))?;
                runs_dir.join(experiment).join(id)
            }
            None => trial_folder(runs_dir, prefix).with_context(|| format!("{key} = {spec:?}"))?,
        };
        let id = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        return weights_in(&dir).with_context(|| {
            format!(
                "{key} = {spec:?}: trial {id} has no checkpoint in {} (best/ or last/)",
                dir.display()
            )
        });
    }
    let path = PathBuf::from(spec);
    if path.is_dir() {
        return weights_in(&path).with_context(|| {
            format!(
                "{key} = {spec:?}: the folder holds no model.safetensors (nor best/ or last/ of a trial)"
            )
        });
    }
    anyhow::ensure!(
        path.is_file(),
        "{key} = {spec:?}: no such file; give a .safetensors, .pth or .bin checkpoint, a trial folder, or trial:ID"
    );
    Ok(path)
}
