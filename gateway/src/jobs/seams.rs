//! The seams the job pipeline calls through, one small trait per step. The gateway core owns
//! the pipeline; screening, policy resolution, dataset transforms and execution (upstream or
//! local) are implemented in their own modules and plugged in through [`Seams`].

use crate::store::{Backend, JobError, JobRecord};
use futures::future::BoxFuture;
use policies::Plan;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// A deliberate, stated failure of a step: it fails the job with this error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure {
    pub code: String,
    pub message: String,
    pub param: Option<String>,
    /// Bounded metric label for screening rejections (defaults to `code`).
    pub reason: Option<&'static str>,
}

impl StepFailure {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        StepFailure {
            code: code.to_string(),
            message: message.into(),
            param: None,
            reason: None,
        }
    }
    pub fn param(mut self, p: &str) -> Self {
        self.param = Some(p.to_string());
        self
    }
    pub fn reason(mut self, r: &'static str) -> Self {
        self.reason = Some(r);
        self
    }
}

impl From<StepFailure> for JobError {
    fn from(f: StepFailure) -> JobError {
        JobError {
            code: f.code,
            message: f.message,
            param: f.param,
        }
    }
}

pub type StepResult<T> = Result<T, StepFailure>;

/// Input of the screening step: the job, local paths of its committed files, and the limit
/// from the job's plan (resolved before screening).
#[derive(Debug, Clone)]
pub struct ScreenInput {
    pub job: JobRecord,
    pub training_path: PathBuf,
    pub validation_path: Option<PathBuf>,
    /// The plan's `training.max_length_tokens`: longer examples are counted as too long.
    pub max_length: usize,
}

/// Screening outcome: statistics to record (examples, tokens, percentiles…).
pub trait Screener: Send + Sync {
    fn screen(&self, input: ScreenInput) -> BoxFuture<'static, StepResult<Value>>;
    /// A short name for events ("builtin", "screen").
    fn name(&self) -> &'static str;
    /// Upload-time check of a fine-tune file (is it JSONL at all?); a failure is a 400.
    /// The default accepts everything.
    fn quick_check(&self, _path: PathBuf) -> BoxFuture<'static, StepResult<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// The resolved policy for a job.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanOutcome {
    pub policy_name: String,
    pub version_hash: String,
    /// The resolved plan, recorded on the job and shown to operators.
    pub plan: Plan,
    /// The whole policy set as JSON, snapshotted under `version_hash` for audit.
    pub snapshot: Value,
}

pub trait Planner: Send + Sync {
    fn plan(
        &self,
        tenant: &str,
        model: &str,
        metadata: &BTreeMap<String, String>,
    ) -> StepResult<PlanOutcome>;
    /// The current policy set for operators: name/version, policies, last reload error.
    fn describe(&self) -> Value;
}

/// Input of the transform step. The transformer writes the final dataset to `dataset_out` and
/// returns the manifest; the pipeline commits both as blobs.
#[derive(Debug, Clone)]
pub struct TransformInput {
    pub job: JobRecord,
    pub training_path: PathBuf,
    pub plan: Plan,
    pub dataset_out: PathBuf,
}

pub trait Transformer: Send + Sync {
    fn transform(&self, input: TransformInput) -> BoxFuture<'static, StepResult<Value>>;
}

/// What the execution backend reports on each poll.
#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    /// Still running; `state` is persisted and handed back on the next poll.
    Running {
        state: Value,
    },
    Succeeded {
        fine_tuned_model: Option<String>,
        trained_tokens: Option<i64>,
        state: Value,
        /// The blob key of the final adapter the backend stored (local jobs).
        artifact: Option<String>,
    },
    Failed(StepFailure),
    Cancelled,
}

/// One mirrored observation (event or checkpoint) from the backend.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    Event {
        level: crate::store::EventLevel,
        message: String,
        data: Option<Value>,
        /// The backend's own `type` and `created_at` when it has them (an upstream
        /// provider's events are mirrored as they were); else inferred and now.
        kind: Option<String>,
        created_at: Option<i64>,
    },
    Checkpoint {
        fine_tuned_model_checkpoint: String,
        step_number: i64,
        metrics: Value,
        /// The blob key of the checkpoint's adapter, stored before it is observed (local
        /// jobs; an upstream provider keeps its own).
        artifact: Option<String>,
    },
    /// The backend's hyperparameters: each `"auto"` of the job that the backend has resolved
    /// to a concrete value is replaced by it, as OpenAI shows once a job runs.
    Hyperparameters(Value),
    /// A result file (purpose `fine-tune-results`) the backend stored for the job.
    ResultFile(String),
    /// Training progress the poll measured (local jobs): the job's `estimated_finish` is
    /// written with the poll, and the steps are counted on the gateway's metrics only once
    /// that write is stored (a write refused by a racing pause counts nothing; the next poll
    /// measures the same steps again).
    Progress(Progress),
    /// The monitor's counter increments for the records this poll mirrored (evaluations, their
    /// cost, judge requests, rule firings, warnings). Like [`Observation::Progress`], added to
    /// the gateway's counters only once the poll's write is stored: a refused write counts
    /// nothing, and the next poll mirrors (and counts) the same records once.
    MonitorCounts(crate::monitoring::prom::MonitorCounts),
}

/// What one poll of a local job measured. See [`Observation::Progress`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Progress {
    /// The job's new `estimated_finish` (unix seconds; `None`: not known yet).
    pub estimated_finish: Option<i64>,
    /// Optimizer steps this poll mirrored for the first time.
    pub steps: u64,
    /// Tokens those steps trained on (their `tokens`, summed as `trained_tokens` is).
    pub tokens: u64,
    /// Wall-clock seconds of each of those steps, as the trainer measured them.
    pub step_seconds: Vec<f64>,
    /// On the poll that mirrors the job's first step: seconds from the job's creation to it.
    pub queue_wait_seconds: Option<f64>,
}

/// What the run step hands a backend to start a job: typed facts, no local paths (a worker
/// on another machine reads the dataset from the blob store by its key).
#[derive(Debug, Clone)]
pub struct StartInput {
    pub job: JobRecord,
    /// The job's plan, decoded once from its pipeline.
    pub plan: Plan,
    /// The blob key of the transformed dataset.
    pub dataset_blob: String,
    /// The backend [`super::route`] chose.
    pub backend: Backend,
}

/// Where a job trains: an upstream provider or the local trainer.
pub trait Executor: Send + Sync {
    /// Starts the job; returns the backend state to persist.
    fn start(&self, input: StartInput) -> BoxFuture<'static, StepResult<Value>>;
    /// Polls progress from the persisted state; new observations are recorded once each.
    fn poll(
        &self,
        job: JobRecord,
        state: Value,
    ) -> BoxFuture<'static, StepResult<(RunState, Vec<Observation>)>>;
    /// Best-effort cancel on the backend.
    fn cancel(&self, job: JobRecord, state: Value) -> BoxFuture<'static, StepResult<()>>;
    /// Best-effort pause on the backend when the client pauses a started job (default: the
    /// runner just stops polling).
    fn pause(&self, _job: JobRecord, _state: Value) -> BoxFuture<'static, StepResult<()>> {
        Box::pin(async { Ok(()) })
    }
    /// Best-effort resume on the backend of a job paused with [`Executor::pause`].
    fn resume(&self, _job: JobRecord, _state: Value) -> BoxFuture<'static, StepResult<()>> {
        Box::pin(async { Ok(()) })
    }
    /// A paused job, asked now and then by the runner: makes sure the backend holds it paused
    /// (a client's pause whose forwarding failed, or was lost with the process right after it
    /// was acknowledged, is forwarded again). `Ok(true)`: the backend holds it paused (or has
    /// nothing left to pause). Default: `Ok(true)` — backends that read the job's stored
    /// status themselves (local workers) owe nothing.
    fn hold_paused(&self, _job: JobRecord, _state: Value) -> BoxFuture<'static, StepResult<bool>> {
        Box::pin(async { Ok(true) })
    }
    /// Called once the job's terminal state (succeeded, failed, cancelled) is stored — never
    /// before, so nothing a running job still needs is touched: the backend may drop what
    /// only a resume would read (default: nothing).
    fn ended(&self, _job: JobRecord) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// The implementations the runner uses.
#[derive(Clone)]
pub struct Seams {
    pub screener: Arc<dyn Screener>,
    pub planner: Arc<dyn Planner>,
    pub transformer: Arc<dyn Transformer>,
    pub executor: Arc<dyn Executor>,
    /// The execution mode [`super::route`] decides each job's backend under.
    pub mode: crate::config::ExecutionMode,
}

/// Transparent forwarding of every `/v1` route the gateway does not serve itself.
pub trait Proxy: Send + Sync {
    fn forward(&self, req: axum::extract::Request) -> BoxFuture<'static, axum::response::Response>;
}
