//! Errors of loading, validating and resolving policies. Every message names the file and,
//! where there is one, the key (`policies/strict.toml: key "interleave.fraction": ...`).

use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// The directory or a file in it could not be read.
    #[error("{}: {message}", .path.display())]
    Io { path: PathBuf, message: String },
    /// The file is not valid TOML.
    #[error("{file}: not valid TOML: {message}")]
    Syntax { file: String, message: String },
    /// A key is unknown, has the wrong type or an out-of-range value.
    #[error("{file}: key \"{key}\": {message}")]
    Invalid {
        file: String,
        key: String,
        message: String,
    },
    /// The file name does not make a valid policy name.
    #[error("{file}: the file name must be <name>.toml with a name of a-z, 0-9, '-' or '_'")]
    BadName { file: String },
    /// No policy matches the job and there is no `default` policy.
    #[error(
        "no policy matches tenant \"{tenant}\", model \"{model}\" and there is no `default` policy"
    )]
    NoMatch { tenant: String, model: String },
}

impl PolicyError {
    pub(crate) fn invalid(file: &str, key: &str, message: impl Into<String>) -> PolicyError {
        PolicyError::Invalid {
            file: file.to_string(),
            key: key.to_string(),
            message: message.into(),
        }
    }
}
