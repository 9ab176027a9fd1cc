//! The engine's error type: every variant names the file, tensor or field at fault.

use std::path::PathBuf;

/// Errors from loading, tokenizing, scoring and generating.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file's content is malformed (bad JSON, missing field, inconsistent value).
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the field.
        message: String,
    },
    /// A tensor is missing, has the wrong shape or an unsupported dtype.
    #[error("{path}: tensor `{tensor}`: {message}")]
    Tensor {
        /// The file the tensor was expected in.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
        /// What is wrong.
        message: String,
    },
    /// The chat template failed to render.
    #[error("chat template: {0}")]
    Template(String),
    /// A caller passed an invalid argument (unknown adapter, empty batch, ...).
    #[error("{0}")]
    Invalid(String),
}

/// Result alias for the engine.
pub type Result<T> = std::result::Result<T, EngineError>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> EngineError {
    let path = path.into();
    move |source| EngineError::Io { path, source }
}

pub(crate) fn format_err(path: impl Into<PathBuf>, message: impl Into<String>) -> EngineError {
    EngineError::Format {
        path: path.into(),
        message: message.into(),
    }
}

/// Reads and parses a JSON file, naming the file in errors.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    serde_json::from_str(&text).map_err(|e| format_err(path, format!("invalid JSON: {e}")))
}
