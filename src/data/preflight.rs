//! Before a trial is claimed: the files and folders an experiment's data keys name are there
//! and readable, so a typo in `data.path` is an error of `check`, `plan` and `run`, never a
//! failed trial in the store.

use std::path::Path;

use crate::config::{DataConfig, DatasetKind};

/// The first data key whose file or folder is missing or unreadable, with why and the fix.
pub fn preflight(data: &DataConfig) -> Result<(), (String, String)> {
    if matches!(
        data.dataset,
        DatasetKind::Synthetic | DatasetKind::SyntheticScenes | DatasetKind::SyntheticLesions
    ) {
        return Ok(());
    }
    let named = [
        ("data.path", &data.path, true),
        ("data.val_path", &data.val_path, true),
        ("data.annotations", &data.annotations, false),
        ("data.val_annotations", &data.val_annotations, false),
    ];
    for (key, value, folder) in named {
        let Some(value) = value else {
            continue;
        };
        readable(Path::new(value), folder).map_err(|why| (key.to_string(), why))?;
    }
    Ok(())
}

/// Whether `path` is a folder (or a file) this process can read.
fn readable(path: &Path, folder: bool) -> Result<(), String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("{shown} does not exist; fix the path in the experiment file (or install the dataset)")
        }
        _ => format!("{shown} cannot be read: {e}"),
    })?;
    let opened = if folder {
        if !meta.is_dir() {
            return Err(format!(
                "{shown} is not a folder; name the dataset's folder"
            ));
        }
        std::fs::read_dir(path).map(|_| ())
    } else {
        if !meta.is_file() {
            return Err(format!(
                "{shown} is not a file; name the annotations' JSON file"
            ));
        }
        std::fs::File::open(path).map(|_| ())
    };
    opened.map_err(|e| format!("{shown} cannot be read: {e}; check its permissions"))
}
