//! Errors a user can get from an experiment file, each naming the place, the key and the fix.

use std::path::PathBuf;

/// Why an experiment could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read experiment file {file}: {reason}")]
    Read { file: PathBuf, reason: String },
    #[error("{file} is not valid TOML: {reason}")]
    Syntax { file: PathBuf, reason: String },
    #[error("{place}: unknown key `{key}`; did you mean `{nearest}`?")]
    UnknownKey {
        place: String,
        key: String,
        nearest: String,
    },
    #[error("{place}: `{key}`: {reason}")]
    Invalid {
        place: String,
        key: String,
        reason: String,
    },
    #[error("bad --set `{arg}`: {reason}")]
    BadSet { arg: String, reason: String },
}
