//! Which run store a command uses, the same way for every subcommand: `--runs-dir DIR`, else
//! `$VITRUN_RUNS_DIR` (`$VITRUN_TRAIN__RUNS_DIR`, the config key's own variable, wins), else the `runs/` folder of the nearest directory from here upward that
//! holds a store (as cargo finds `Cargo.toml`; the search stops at a repository root), else
//! `./runs`. A command that loads an experiment file takes the same folder as its
//! `train.runs_dir` unless the file, `--set` or `VITRUN_TRAIN__RUNS_DIR` name another.

use std::path::{Path, PathBuf};

use crate::config::{Loaded, Source, RUNS_DIR_VAR};
use crate::contract::RunsDir;

/// `--runs-dir`, taken by every subcommand.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RunsDirArg {
    /// The run store's folder, e.g. --runs-dir /scratch/me/runs [default: $VITRUN_RUNS_DIR,
    /// else the nearest runs/ with a store from here up to the repository root, else ./runs]
    #[arg(long = "runs-dir", value_name = "DIR")]
    runs_dir: Option<PathBuf>,
}

impl RunsDirArg {
    /// The folder a store command reads and writes.
    pub fn resolve(&self) -> PathBuf {
        self.runs_dir
            .clone()
            .or_else(|| from_env("VITRUN_TRAIN__RUNS_DIR"))
            .or_else(|| from_env(RUNS_DIR_VAR))
            .or_else(|| {
                std::env::current_dir()
                    .ok()
                    .and_then(|here| discover(&here))
            })
            .unwrap_or_else(|| PathBuf::from("runs"))
    }

    /// Loads the experiment `file` with `sets`, its `train.runs_dir` from `--runs-dir` (below
    /// any `--set` of it) or, where nothing names one, from the discovered store; the `--set`s
    /// it was loaded with are returned for the processes it starts.
    pub fn load(&self, file: &Path, sets: &[String]) -> anyhow::Result<(Loaded, Vec<String>)> {
        let with_dir = |dir: &Path, sets: &[String]| {
            let value = toml::Value::String(dir.display().to_string());
            std::iter::once(format!("train.runs_dir={value}"))
                .chain(sets.iter().cloned())
                .collect::<Vec<_>>()
        };
        let sets = match &self.runs_dir {
            Some(dir) => with_dir(dir, sets),
            None => sets.to_vec(),
        };
        let loaded = crate::config::load(file, &sets)?;
        if loaded.sources.get("train.runs_dir") != Some(&Source::Default) {
            return Ok((loaded, sets));
        }
        let found = std::env::current_dir()
            .ok()
            .and_then(|here| discover(&here));
        match found {
            Some(dir) => {
                let sets = with_dir(&dir, &sets);
                Ok((crate::config::load(file, &sets)?, sets))
            }
            None => Ok((loaded, sets)),
        }
    }
}

fn from_env(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The `runs/` folder of the nearest directory at or above `here` whose `runs/` holds a store,
/// not above a repository root (a directory with `.git`); `None` when that is `here` itself
/// (`./runs` is the default anyway) or there is none.
pub fn discover(here: &Path) -> Option<PathBuf> {
    for dir in here.ancestors() {
        let runs = dir.join("runs");
        if RunsDir::new(&runs).store().is_file() {
            return (dir != here).then_some(runs);
        }
        if dir.join(".git").exists() {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_at(root: &Path) {
        std::fs::create_dir_all(root.join("runs")).unwrap();
        std::fs::write(RunsDir::new(root.join("runs")).store(), b"").unwrap();
    }

    #[test]
    fn the_nearest_store_upward_is_found_and_the_repository_root_bounds_the_search() {
        let tmp = tempfile::tempdir().unwrap();
        let project = tmp.path().join("project");
        let deep = project.join("experiments/sub");
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(discover(&deep), None, "no store anywhere");
        store_at(&project);
        assert_eq!(discover(&deep), Some(project.join("runs")));
        assert_eq!(discover(&project), None, "./runs is the default already");
        // A store above the repository root is another project's.
        let outer = tmp.path();
        std::fs::remove_dir_all(project.join("runs")).unwrap();
        std::fs::create_dir_all(project.join(".git")).unwrap();
        store_at(outer);
        assert_eq!(discover(&deep), None);
        std::fs::remove_dir_all(project.join(".git")).unwrap();
        assert_eq!(discover(&deep), Some(outer.join("runs")));
    }
}
