//! Transform failures; each maps to a job error code.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    #[error("Interleave method `{method}` required by the policy is not available: {reason}")]
    MethodUnavailable { method: String, reason: String },
    /// A failure of engine-backed selection (model, adapter, scoring, generation).
    #[error("{message}")]
    Selection { code: &'static str, message: String },
    #[error("invalid plan: `{field}` {reason}")]
    InvalidPlan { field: String, reason: String },
    #[error("interleave pool {} has {size} examples but the plan needs {needed}", .pool.display())]
    PoolTooSmall {
        pool: PathBuf,
        size: u64,
        needed: u64,
    },
    #[error("interleave pool {} line {line}: {reason}", .pool.display())]
    BadPoolLine {
        pool: PathBuf,
        line: u64,
        reason: String,
    },
    #[error("training data line {line}: {reason}")]
    BadClientLine { line: u64, reason: String },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl TransformError {
    /// The job error code.
    pub fn code(&self) -> &'static str {
        match self {
            TransformError::MethodUnavailable { .. } => "interleave_method_unavailable",
            TransformError::Selection { code, .. } => code,
            TransformError::InvalidPlan { .. } => "invalid_plan",
            TransformError::PoolTooSmall { .. } => "interleave_pool_too_small",
            TransformError::BadPoolLine { .. } => "invalid_interleave_pool",
            TransformError::BadClientLine { .. } => "invalid_training_file",
            TransformError::Io { .. } => "internal_error",
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        TransformError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
