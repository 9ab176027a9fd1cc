//! Plain records the store reads and writes. These are storage types, not wire types:
//! `crate::api` maps them to OpenAI's objects.

use super::pipeline::Pipeline;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub has_more: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    Asc,
    Desc,
}

#[derive(Debug, Clone)]
pub struct FileQuery {
    pub after: Option<String>,
    pub limit: usize,
    pub order: SortOrder,
    pub purpose: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct JobQuery {
    pub after: Option<String>,
    pub limit: usize,
    /// Every pair must match the job's metadata exactly.
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileRecord {
    pub id: String,
    pub tenant: String,
    pub bytes: u64,
    pub created_at: i64,
    pub filename: String,
    pub purpose: String,
    pub expires_at: Option<i64>,
    pub blob_key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadStatus {
    Pending,
    Completed,
    Cancelled,
    Expired,
}

impl UploadStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UploadStatus::Pending => "pending",
            UploadStatus::Completed => "completed",
            UploadStatus::Cancelled => "cancelled",
            UploadStatus::Expired => "expired",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => UploadStatus::Pending,
            "completed" => UploadStatus::Completed,
            "cancelled" => UploadStatus::Cancelled,
            "expired" => UploadStatus::Expired,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UploadRecord {
    pub id: String,
    pub tenant: String,
    pub bytes: u64,
    pub created_at: i64,
    pub expires_at: i64,
    pub filename: String,
    pub mime_type: String,
    pub purpose: String,
    pub status: UploadStatus,
    pub file_id: Option<String>,
    /// `expires_after.seconds` from create: the completed file expires that long after it
    /// is created (None: it never expires).
    pub file_expires_after: Option<i64>,
    /// The `part_ids` a completed upload was completed with.
    pub completed_part_ids: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PartRecord {
    pub id: String,
    pub upload_id: String,
    pub created_at: i64,
    pub bytes: u64,
    pub blob_key: String,
}

/// Public job status (OpenAI's, plus `paused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    ValidatingFiles,
    Queued,
    Running,
    Paused,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 7] = [
        JobStatus::ValidatingFiles,
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Paused,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::ValidatingFiles => "validating_files",
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Paused => "paused",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        JobStatus::ALL.into_iter().find(|x| x.as_str() == s)
    }
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// The durable pipeline step a job will run next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStep {
    /// Resolve and record the operator policy (screening needs the plan's max length).
    Plan,
    /// Screen the files against the chat format and the plan's limits.
    Screen,
    Transform,
    Queue,
    Run,
    /// Cancelled by the client after its backend started: the backend's job is still to be
    /// cancelled (the runner retries until the backend confirms), then `Done`.
    Cancel,
    Done,
}

impl JobStep {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStep::Screen => "screen",
            JobStep::Plan => "plan",
            JobStep::Transform => "transform",
            JobStep::Queue => "queue",
            JobStep::Run => "run",
            JobStep::Cancel => "cancel",
            JobStep::Done => "done",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            JobStep::Screen,
            JobStep::Plan,
            JobStep::Transform,
            JobStep::Queue,
            JobStep::Run,
            JobStep::Cancel,
            JobStep::Done,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
    /// The public status a job shows while this step is next.
    pub fn status(self) -> JobStatus {
        match self {
            JobStep::Screen | JobStep::Plan | JobStep::Transform => JobStatus::ValidatingFiles,
            JobStep::Queue => JobStatus::Queued,
            JobStep::Run | JobStep::Done => JobStatus::Running,
            JobStep::Cancel => JobStatus::Cancelled,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobError {
    pub code: String,
    pub message: String,
    pub param: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub id: String,
    pub tenant: String,
    pub created_at: i64,
    pub model: String,
    pub training_file: String,
    pub validation_file: Option<String>,
    /// Resolved hyperparameters object (batch_size, learning_rate_multiplier, n_epochs).
    pub hyperparameters: Value,
    /// The method object as the job reports it.
    pub method: Value,
    pub suffix: Option<String>,
    pub seed: i64,
    pub metadata: Option<BTreeMap<String, String>>,
    pub status: JobStatus,
    pub step: JobStep,
    pub error: Option<JobError>,
    pub fine_tuned_model: Option<String>,
    pub finished_at: Option<i64>,
    pub trained_tokens: Option<i64>,
    pub result_files: Vec<String>,
    pub estimated_finish: Option<i64>,
    /// What the pipeline's steps recorded (plan, screening stats, blobs, backend state).
    pub pipeline: Pipeline,
    /// Advanced by every write of the job row; [`super::Store::update_job`] applies only to
    /// the revision it was read at (two replicas driving one job never both record a poll).
    pub revision: i64,
}

/// A status-only job transition (cancel, pause, resume).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    pub job_id: String,
    /// The status and step the change was decided on; it applies only if both still hold,
    /// so a pause or cancel never rewinds a pipeline step the runner has moved past.
    pub expected: JobStatus,
    pub expected_step: JobStep,
    pub status: JobStatus,
    pub step: JobStep,
    pub finished_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventLevel {
    Info,
    Warn,
    Error,
}

impl EventLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            EventLevel::Info => "info",
            EventLevel::Warn => "warn",
            EventLevel::Error => "error",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "info" => EventLevel::Info,
            "warn" => EventLevel::Warn,
            "error" => EventLevel::Error,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub id: String,
    pub job_id: String,
    pub created_at: i64,
    pub level: EventLevel,
    pub message: String,
    /// "message" or "metrics".
    pub kind: String,
    pub data: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointRecord {
    pub id: String,
    pub job_id: String,
    pub created_at: i64,
    pub fine_tuned_model_checkpoint: String,
    pub step_number: i64,
    pub metrics: Value,
    /// The blob key of the checkpoint's adapter (a tar of its PEFT directory), when the
    /// backend stored one (local jobs); not part of OpenAI's checkpoint object.
    pub artifact: Option<String>,
}

/// An idempotency record: `scope` is the tenant (explicit `Idempotency-Key`) or
/// tenant + key hash (body dedupe); a record only counts while `created_at >= not_before`.
/// With a `fingerprint` (the request body's digest) a reuse of `key` with another
/// fingerprint is a [`CreateOutcome::Conflict`] instead of a replay.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyKey {
    pub scope: String,
    pub key: String,
    pub not_before: i64,
    pub fingerprint: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CreateOutcome {
    Created,
    /// A live record names this job and the request matches it: replay it.
    Existing(String),
    /// A live record names this job but was made with a different request fingerprint.
    Conflict(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct PolicySnapshot {
    pub version_hash: String,
    pub created_at: i64,
    /// The policy set (or resolved plan) as JSON, for audit.
    pub body: Value,
}

/// A worker's hold on a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub job_id: String,
    pub worker_id: String,
    pub acquired_at: i64,
    pub heartbeat_at: i64,
    pub expires_at: i64,
}

/// The queue of local jobs at one moment (for the gateway's gauges).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocalQueue {
    /// Local jobs a worker may claim: running on the local backend, no live lease.
    pub waiting: u64,
    /// Live leases: workers training (or checkpointing) a job now.
    pub leased: u64,
    /// Claims ever made of a job whose previous worker's lease had expired (a worker that
    /// died or hung): a running total kept in the store, so every process's count is in it.
    pub takeovers: u64,
}

/// A job a worker just claimed.
#[derive(Debug, Clone)]
pub struct Claim {
    pub job: JobRecord,
    /// The worker whose lease had expired, when this claim takes the job over.
    pub takeover_from: Option<String>,
}
