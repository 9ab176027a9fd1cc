//! Upstream mode plugged into the pipeline: [`UpstreamExecutor`] implements the job
//! runner's [`Executor`] and [`UpstreamProxy`] its [`Proxy`].

use super::client::UpstreamClient;
use super::error::UpstreamError;
use super::proxy::UpstreamProxy;
use super::types::*;
use crate::jobs::seams::{
    Executor, Observation, Proxy, RunState, StartInput, StepFailure, StepResult,
};
use crate::monitoring::upstream::{MonitorState, Target, UpstreamMonitor};
use crate::store::{Backend, BlobStore, EventLevel, JobRecord};
use futures::future::BoxFuture;
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Consecutive failed polls with retryable errors before the job fails.
const MAX_POLL_ERRORS_IN_A_ROW: u32 = 30;
/// Attempts of a start that keeps failing with retryable errors.
const START_ATTEMPTS: u32 = 3;
/// The longest wait between start attempts, whatever `retry-after` the provider asks for.
const MAX_START_RETRY_WAIT: Duration = Duration::from_secs(30);

/// Polls that must find the provider paused under a running gateway job before the resume is
/// forwarded again: two, so a poll racing a client's pause (the job read running, the pause
/// forwarded meanwhile) does not undo it.
const RESUME_AFTER_PAUSED_POLLS: u32 = 2;

/// The executor state persisted between polls (`pipeline.exec_state`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ExecState {
    upstream: Option<UpstreamJobRef>,
    #[serde(default)]
    cursor: MirrorCursor,
    /// Warnings to record as events on the next poll (states of builds that recorded the
    /// route's warnings here; the run step records them itself now).
    #[serde(default)]
    pending_warnings: Vec<String>,
    #[serde(default)]
    errors_in_a_row: u32,
    /// Polls in a row that found the provider holding the job paused while the gateway has it
    /// running (a client's resume that did not reach the provider): at
    /// [`RESUME_AFTER_PAUSED_POLLS`] the resume is forwarded again.
    #[serde(default)]
    paused_polls: u32,
    /// The checkpoint monitor's records, queue and cursor (`monitoring::upstream`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    monitor: Option<MonitorState>,
}

/// Forwards jobs to the upstream provider and mirrors them back.
pub struct UpstreamExecutor {
    client: UpstreamClient,
    /// Where the job's transformed dataset is read from (by its blob key) for the upload.
    blobs: BlobStore,
    retry_delay: Duration,
    /// Evaluates the provider's checkpoint models (`[monitor] upstream_checkpoints`).
    monitor: Option<Arc<UpstreamMonitor>>,
}

impl UpstreamExecutor {
    pub fn new(base_url: &str, api_key: &str, blobs: BlobStore) -> Result<Self, UpstreamError> {
        Ok(UpstreamExecutor {
            client: UpstreamClient::new(base_url, api_key)?,
            blobs,
            retry_delay: Duration::from_millis(500),
            monitor: None,
        })
    }

    /// Same, evaluating every checkpoint the provider lists with `monitor`.
    pub fn with_monitor(mut self, monitor: UpstreamMonitor) -> Self {
        self.monitor = Some(Arc::new(monitor));
        self
    }

    /// Same, with a given delay between start attempts (tests use zero).
    pub fn with_retry_delay(mut self, d: Duration) -> Self {
        self.retry_delay = d;
        self
    }
}

fn failure(e: &UpstreamError) -> StepFailure {
    StepFailure::new(e.code, e.message.clone())
}

fn spec_of(job: &JobRecord) -> JobSpec {
    JobSpec {
        gateway_job_id: job.id.clone(),
        model: job.model.clone(),
        hyperparameters: job.hyperparameters.clone(),
        seed: Some(job.seed),
        suffix: job.suffix.clone(),
    }
}

impl Executor for UpstreamExecutor {
    fn start(&self, input: StartInput) -> BoxFuture<'static, StepResult<Value>> {
        let client = self.client.clone();
        let delay = self.retry_delay;
        let blobs = self.blobs.clone();
        let dataset_blob = input.dataset_blob.clone();
        let local = input.backend == Backend::Local;
        let job = input.job;
        async move {
            if local {
                // Reached only without local routing (`crate::local::RoutingExecutor` hands
                // such jobs to the local workers): never forward one without its defense.
                return Err(StepFailure::new(
                    "local_training_unavailable",
                    "The job's plan routes it to local workers (a training-time defense with upstream.on_unenforceable = run_locally), but this gateway runs none.",
                ));
            }
            let dataset_path = blobs.local_file(&dataset_blob).await.map_err(|e| {
                StepFailure::new("internal_error", format!("the job's dataset blob: {e}"))
            })?;
            let spec = spec_of(&job);
            let mut attempt = 1;
            let upstream = loop {
                match client.start(&spec, &dataset_path).await {
                    Ok(r) => break r,
                    Err(e) if e.retryable && attempt < START_ATTEMPTS => {
                        let wait = e.retry_after.unwrap_or(delay * attempt).min(MAX_START_RETRY_WAIT);
                        tracing::warn!(job = %job.id, code = e.code, wait_ms = wait.as_millis() as u64, "upstream start failed, retrying");
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                    }
                    Err(e) if e.retryable => {
                        return Err(StepFailure::new(
                            e.code,
                            format!("{} (gave up after {attempt} attempts)", e.message),
                        ))
                    }
                    Err(e) => return Err(failure(&e)),
                }
            };
            let state = ExecState {
                upstream: Some(upstream),
                ..ExecState::default()
            };
            serde_json::to_value(&state).map_err(|e| StepFailure::new("internal_error", e.to_string()))
        }
        .boxed()
    }

    fn poll(
        &self,
        job: JobRecord,
        state: Value,
    ) -> BoxFuture<'static, StepResult<(RunState, Vec<Observation>)>> {
        let client = self.client.clone();
        let monitor = self.monitor.clone();
        async move {
            let mut st: ExecState = serde_json::from_value(state).map_err(|e| {
                StepFailure::new("internal_error", format!("upstream executor state: {e}"))
            })?;
            let Some(upstream) = st.upstream.clone() else {
                return Err(StepFailure::new(
                    "internal_error",
                    "upstream executor state has no upstream job",
                ));
            };
            let mut obs: Vec<Observation> = std::mem::take(&mut st.pending_warnings)
                .into_iter()
                .map(|message| Observation::Event {
                    level: EventLevel::Warn,
                    message,
                    data: None,
                    kind: None,
                    created_at: None,
                })
                .collect();
            // A pause or cancel the monitor decided at the previous poll is taken now, alone.
            if let Some(mon) = &monitor {
                if let Some(taken) = take_pending(mon, &client, &job, &upstream, &mut st).await? {
                    return Ok(taken);
                }
            }
            let snap = match client.poll(&upstream, &st.cursor).await {
                Ok(s) => s,
                Err(e) if e.retryable && st.errors_in_a_row + 1 < MAX_POLL_ERRORS_IN_A_ROW => {
                    st.errors_in_a_row += 1;
                    return Ok((
                        RunState::Running {
                            state: to_value(&st)?,
                        },
                        obs,
                    ));
                }
                Err(e) => return Err(failure(&e)),
            };
            st.errors_in_a_row = 0;
            st.cursor = snap.cursor.clone();
            obs.extend(observations(&snap));
            if let Some(event) = resume_if_held(&client, &job, &upstream, &mut st, snap.status).await
            {
                obs.push(event);
            }
            let ended = matches!(
                snap.status,
                UpstreamStatus::Failed | UpstreamStatus::Cancelled
            );
            let plan = job.pipeline.plan().ok();
            let gated = plan.is_some_and(|p| p.monitor.rolls_back());
            if let (Some(mon), Some(plan), false) = (&monitor, plan, ended) {
                let ms = st
                    .monitor
                    .get_or_insert_with(|| MonitorState::new(&job.model));
                ms.track(snap.new_checkpoints.iter().map(|c| Target {
                    step: c.step_number.max(0) as u64,
                    model: c.fine_tuned_model_checkpoint.clone(),
                    loss: c.metrics.get("train_loss").and_then(Value::as_f64),
                    attempts: 0,
                }));
                obs.extend(mon.step(&job, plan, ms).await);
            }
            let hold = st.monitor.as_ref().is_some_and(|m| m.holds_success());
            if let Some(ms) = st.monitor.as_mut() {
                let finishing = ended
                    || (snap.status == UpstreamStatus::Succeeded && !hold)
                    || ms.rollback.is_some();
                if gated || !ms.held.is_empty() {
                    ms.gate(&mut obs, finishing);
                }
                if let Some(r) = &ms.rollback {
                    // The job ends with checkpoint `to`: the ones past the decision (the
                    // drift it rolls back) are not offered to the client.
                    obs.retain(|o| {
                        !matches!(o, Observation::Checkpoint { step_number, .. } if *step_number > r.step as i64)
                    });
                }
            }
            let ms = st.monitor.as_mut();
            let succeeded = snap.status == UpstreamStatus::Succeeded;
            if let Some(ms) = ms {
                let pause = ms.cursor.pending.as_ref().map(|p| p.action)
                    == Some(monitor::RuleAction::Pause);
                if succeeded && pause {
                    // The upstream job already finished: there is nothing left to pause (as
                    // for a local job whose worker finished), which the events say.
                    if let Some(p) = ms.cursor.pending.take() {
                        obs.push(not_paused_event(&p));
                    }
                }
            }
            let rollback = st.monitor.as_ref().and_then(|m| m.rollback.clone());
            let state = to_value(&st)?;
            let run = match snap.status {
                UpstreamStatus::Succeeded if hold => RunState::Running { state },
                UpstreamStatus::Succeeded => {
                    let mut model = snap.fine_tuned_model;
                    if let (Some(mon), Some(r)) = (&monitor, &rollback) {
                        obs.push(mon.rollback_event(r));
                        obs.push(Observation::MonitorCounts(
                            crate::monitoring::prom::MonitorCounts::rollback(),
                        ));
                        model = Some(r.model.clone());
                    }
                    RunState::Succeeded {
                        fine_tuned_model: model,
                        trained_tokens: snap.trained_tokens,
                        state,
                        artifact: None,
                    }
                }
                UpstreamStatus::Failed => RunState::Failed(job_failure(snap.error.as_ref())),
                UpstreamStatus::Cancelled => RunState::Cancelled,
                _ => RunState::Running { state },
            };
            if let (Some(mon), false) = (&monitor, matches!(run, RunState::Running { .. })) {
                mon.forget(&job.id);
            }
            Ok((run, obs))
        }
        .boxed()
    }

    fn cancel(&self, job: JobRecord, state: Value) -> BoxFuture<'static, StepResult<()>> {
        if let Some(m) = &self.monitor {
            m.forget(&job.id);
        }
        let client = self.client.clone();
        async move {
            let st: ExecState = serde_json::from_value(state).unwrap_or_default();
            match st.upstream {
                Some(u) => client.cancel(&u).await.map_err(|e| failure(&e)),
                None => Ok(()),
            }
        }
        .boxed()
    }

    /// Forwards a client's pause to the provider (a paused job must stop training upstream).
    fn pause(&self, job: JobRecord, state: Value) -> BoxFuture<'static, StepResult<()>> {
        UpstreamExecutor::pause(self, job, state)
    }

    /// Forwards a client's resume to the provider.
    fn resume(&self, job: JobRecord, state: Value) -> BoxFuture<'static, StepResult<()>> {
        UpstreamExecutor::resume(self, job, state)
    }

    /// A paused job the provider still runs (the client's pause never reached it) is paused
    /// there again. A job the provider has ended has nothing left to pause: the resume's
    /// first poll reads how it ended.
    fn hold_paused(&self, job: JobRecord, state: Value) -> BoxFuture<'static, StepResult<bool>> {
        let client = self.client.clone();
        async move {
            let st: ExecState = serde_json::from_value(state).unwrap_or_default();
            let Some(u) = st.upstream else {
                return Ok(true);
            };
            match client.status(&u).await.map_err(|e| failure(&e))? {
                UpstreamStatus::Running
                | UpstreamStatus::Queued
                | UpstreamStatus::ValidatingFiles => {
                    client.pause(&u).await.map_err(|e| failure(&e))?;
                    tracing::warn!(job = %job.id, upstream = %u.job_id, "the provider was still running a paused job; the pause was forwarded again");
                    Ok(false)
                }
                _ => Ok(true),
            }
        }
        .boxed()
    }
}

impl UpstreamExecutor {
    /// Pauses the upstream job of a persisted executor `state` (for the runner's pause; same
    /// shape as [`Executor::cancel`]). A state without an upstream job is a no-op.
    pub fn pause(&self, _job: JobRecord, state: Value) -> BoxFuture<'static, StepResult<()>> {
        self.control(state, Control::Pause)
    }

    /// Resumes the upstream job of a persisted executor `state` (for the runner's resume).
    pub fn resume(&self, _job: JobRecord, state: Value) -> BoxFuture<'static, StepResult<()>> {
        self.control(state, Control::Resume)
    }

    fn control(&self, state: Value, what: Control) -> BoxFuture<'static, StepResult<()>> {
        let client = self.client.clone();
        async move {
            let st: ExecState = serde_json::from_value(state).unwrap_or_default();
            let Some(u) = st.upstream else {
                return Ok(());
            };
            let r = match what {
                Control::Pause => client.pause(&u).await,
                Control::Resume => client.resume(&u).await,
            };
            r.map_err(|e| failure(&e))
        }
        .boxed()
    }
}

/// Takes the monitor's pending pause or cancel: forwarded to the provider, then written in the
/// store (one conditional write with the cleared cursor and the action's event). `None`: there
/// was none. A provider error that may pass leaves it pending for the next poll (at most
/// [`MAX_POLL_ERRORS_IN_A_ROW`] times); one that will not (the provider cannot pause, or the
/// job already ended there) is logged and the action is taken in the gateway all the same, so
/// the job is never exposed as running on.
async fn take_pending(
    mon: &UpstreamMonitor,
    client: &UpstreamClient,
    job: &JobRecord,
    upstream: &UpstreamJobRef,
    st: &mut ExecState,
) -> StepResult<Option<(RunState, Vec<Observation>)>> {
    let Some(p) = st.monitor.as_mut().and_then(|m| m.cursor.pending.take()) else {
        return Ok(None);
    };
    let forwarded = match p.action {
        monitor::RuleAction::Cancel => client.cancel(upstream).await,
        _ => client.pause(upstream).await,
    };
    let ms = st.monitor.as_mut().expect("taken from it above");
    if let Err(e) = forwarded {
        if e.retryable && ms.action_errors + 1 < MAX_POLL_ERRORS_IN_A_ROW {
            tracing::warn!(job = %job.id, code = e.code, "forwarding the monitor's action failed; retrying on the next poll");
            ms.action_errors += 1;
            ms.cursor.pending = Some(p);
            return Ok(Some((
                RunState::Running {
                    state: to_value(st)?,
                },
                Vec::new(),
            )));
        }
        if p.action == monitor::RuleAction::Pause && !e.retryable {
            // The provider will not pause it (the job most likely finished there): the gateway
            // does not show a paused job either; the next poll reads how it ended.
            tracing::warn!(job = %job.id, code = e.code, error = %e.message, "the provider refused the monitor's pause");
            ms.action_errors = 0;
            let event = not_paused_event(&p);
            return Ok(Some((
                RunState::Running {
                    state: to_value(st)?,
                },
                vec![event],
            )));
        }
        tracing::warn!(job = %job.id, code = e.code, error = %e.message, "the provider refused the monitor's action; taking it in the gateway");
    }
    ms.action_errors = 0;
    let state = to_value(st)?;
    mon.take_pending(job, state.clone(), &p)
        .await
        .map_err(|e| StepFailure::new("internal_error", e.to_string()))?;
    // The job's status changed (or a client's change won): the runner's own write of this
    // poll is refused, and the job is read again.
    Ok(Some((RunState::Running { state }, Vec::new())))
}

/// A running job the provider has held paused for [`RESUME_AFTER_PAUSED_POLLS`] polls (the
/// client's resume never reached it): the resume is forwarded again; an event says so once it
/// is taken.
async fn resume_if_held(
    client: &UpstreamClient,
    job: &JobRecord,
    upstream: &UpstreamJobRef,
    st: &mut ExecState,
    status: UpstreamStatus,
) -> Option<Observation> {
    if status != UpstreamStatus::Paused {
        st.paused_polls = 0;
        return None;
    }
    st.paused_polls += 1;
    if st.paused_polls < RESUME_AFTER_PAUSED_POLLS {
        return None;
    }
    match client.resume(upstream).await {
        Ok(()) => {
            st.paused_polls = 0;
            Some(Observation::Event {
                level: EventLevel::Info,
                message: "The provider still held the job paused after it was resumed; the resume was forwarded again.".into(),
                data: None,
                kind: Some("message".into()),
                created_at: None,
            })
        }
        Err(e) => {
            tracing::warn!(job = %job.id, code = e.code, error = %e.message, "forwarding the resume again failed; retrying on the next poll");
            None
        }
    }
}

/// A monitor pause that could not be taken: the upstream job had already finished.
fn not_paused_event(p: &crate::monitoring::mirror::PendingAction) -> Observation {
    Observation::Event {
        level: EventLevel::Warn,
        message: format!(
            "Monitor decided to pause the job at step {} ({}), but the upstream job had already finished training: nothing left to pause.",
            p.step, p.reason
        ),
        data: None,
        kind: None,
        created_at: None,
    }
}

enum Control {
    Pause,
    Resume,
}

fn to_value(st: &ExecState) -> StepResult<Value> {
    serde_json::to_value(st).map_err(|e| StepFailure::new("internal_error", e.to_string()))
}

fn job_failure(e: Option<&UpstreamJobError>) -> StepFailure {
    match e {
        Some(e) => {
            let f = StepFailure::new(
                e.code.as_deref().unwrap_or("upstream_job_failed"),
                format!("The upstream job failed: {}", e.message),
            );
            match &e.param {
                Some(p) => f.param(p),
                None => f,
            }
        }
        None => StepFailure::new(
            "upstream_job_failed",
            "The upstream job failed without an error message.",
        ),
    }
}

/// Upstream events and checkpoints as observations. An event keeps the provider's level,
/// message, `type`, `data` and `created_at` exactly, so a client reading
/// `event.data["train_loss"]` of a metrics event sees what OpenAI would send; only the id is
/// the gateway's own.
fn observations(snap: &UpstreamSnapshot) -> Vec<Observation> {
    let mut out = Vec::with_capacity(snap.new_events.len() + snap.new_checkpoints.len());
    for e in &snap.new_events {
        let level = match e.level.as_str() {
            "warn" => EventLevel::Warn,
            "error" => EventLevel::Error,
            _ => EventLevel::Info,
        };
        out.push(Observation::Event {
            level,
            message: e.message.clone(),
            data: e.data.clone(),
            kind: e.kind.clone(),
            created_at: (e.created_at > 0).then_some(e.created_at),
        });
    }
    if let Some(h) = &snap.hyperparameters {
        out.push(Observation::Hyperparameters(h.clone()));
    }
    for c in &snap.new_checkpoints {
        out.push(Observation::Checkpoint {
            fine_tuned_model_checkpoint: c.fine_tuned_model_checkpoint.clone(),
            step_number: c.step_number,
            metrics: c.metrics.clone(),
            artifact: None,
        });
    }
    out
}

impl Proxy for UpstreamProxy {
    fn forward(&self, req: axum::extract::Request) -> BoxFuture<'static, axum::response::Response> {
        let this = self.clone();
        async move { UpstreamProxy::forward(&this, req).await }.boxed()
    }
}
