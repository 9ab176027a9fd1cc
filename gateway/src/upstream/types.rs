//! What upstream mode sends and mirrors back, independent of the gateway's store types.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The job to create upstream (mapped from the gateway's job).
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    /// The gateway's own job id, sent as upstream metadata `tuneguard_job_id` so a retried
    /// start finds the job it already created instead of creating a second one.
    pub gateway_job_id: String,
    pub model: String,
    /// `{batch_size, learning_rate_multiplier, n_epochs}`, numbers or "auto"; other keys and
    /// nulls are dropped.
    pub hyperparameters: Value,
    pub seed: Option<i64>,
    pub suffix: Option<String>,
}

/// The upstream ids of a started job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamJobRef {
    pub job_id: String,
    pub training_file_id: String,
}

/// How far events and checkpoints have been mirrored (newest ids seen).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorCursor {
    pub last_event_id: Option<String>,
    pub last_checkpoint_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamStatus {
    ValidatingFiles,
    Queued,
    Running,
    Paused,
    Succeeded,
    Failed,
    Cancelled,
}

impl UpstreamStatus {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "validating_files" => UpstreamStatus::ValidatingFiles,
            "queued" => UpstreamStatus::Queued,
            "running" => UpstreamStatus::Running,
            "paused" => UpstreamStatus::Paused,
            "succeeded" => UpstreamStatus::Succeeded,
            "failed" => UpstreamStatus::Failed,
            "cancelled" => UpstreamStatus::Cancelled,
            _ => return None,
        })
    }
}

/// One upstream event, oldest first in a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamEvent {
    pub id: String,
    pub created_at: i64,
    /// info | warn | error
    pub level: String,
    pub message: String,
    /// OpenAI's event `type`: `message` or `metrics` (None when absent or unknown).
    pub kind: Option<String>,
    pub data: Option<Value>,
}

/// One upstream checkpoint, oldest first in a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamCheckpoint {
    pub id: String,
    pub fine_tuned_model_checkpoint: String,
    pub step_number: i64,
    pub metrics: Value,
}

/// The upstream job's error object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamJobError {
    pub code: Option<String>,
    pub message: String,
    pub param: Option<String>,
}

/// One poll: the job's state plus what is new since the cursor.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamSnapshot {
    pub status: UpstreamStatus,
    pub fine_tuned_model: Option<String>,
    pub trained_tokens: Option<i64>,
    pub error: Option<UpstreamJobError>,
    /// The provider's `hyperparameters` (concrete once it has resolved its `auto`s).
    pub hyperparameters: Option<Value>,
    pub new_events: Vec<UpstreamEvent>,
    pub new_checkpoints: Vec<UpstreamCheckpoint>,
    /// The cursor to pass to the next poll.
    pub cursor: MirrorCursor,
}
