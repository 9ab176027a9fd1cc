//! /v1/fine_tuning/jobs: list, retrieve, cancel, pause, resume, events, checkpoints.

use super::query::ListParams;
use super::wire;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::ids::{new_id, now_unix, IdKind};
use crate::state::AppState;
use crate::store::*;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde_json::Value;

pub(crate) async fn get_job(
    state: &AppState,
    tenant: &str,
    id: &str,
) -> Result<JobRecord, ApiError> {
    let (t, i) = (tenant.to_string(), id.to_string());
    run_blocking(&state.store, move |s| s.get_job(&t, &i))
        .await?
        .ok_or_else(|| ApiError::not_found("FineTuningJob", id))
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let p = ListParams::parse(&pairs, 100)?;
    let q = JobQuery {
        after: p.after,
        limit: p.limit.unwrap_or(20),
        metadata: p.metadata,
    };
    let page = run_blocking(&state.store, move |s| s.list_jobs(&caller.tenant, &q)).await?;
    Ok(Json(wire::page(&page, wire::job)))
}

pub async fn retrieve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(wire::job(
        &get_job(&state, &caller.tenant, &id).await?,
    )))
}

/// The change a request asks for, given the job's current state: None = already there.
type Change = Result<Option<(JobStatus, JobStep, Option<i64>, &'static str)>, ApiError>;

/// Applies `change` to the job's current status with a status-only conditional write (the
/// runner's pipeline state is never overwritten), retrying when a step changed the status in
/// between; returns the job as stored afterwards.
async fn transition(
    state: &AppState,
    tenant: &str,
    id: &str,
    change: impl Fn(&JobRecord) -> Change,
) -> Result<JobRecord, ApiError> {
    for _ in 0..8 {
        let job = get_job(state, tenant, id).await?;
        let Some((status, step, finished_at, message)) = change(&job)? else {
            return Ok(job);
        };
        let c = StatusChange {
            job_id: job.id.clone(),
            expected: job.status,
            expected_step: job.step,
            status,
            step,
            finished_at,
        };
        let ev = EventRecord {
            id: new_id(IdKind::Event),
            job_id: job.id.clone(),
            created_at: now_unix(),
            level: EventLevel::Info,
            message: message.to_string(),
            kind: "message".into(),
            data: None,
        };
        if run_blocking(&state.store, move |s| s.set_job_status(&c, &ev)).await? {
            state.metrics.job_entered(status);
            state.runner.wake();
            return get_job(state, tenant, id).await;
        }
    }
    Err(ApiError::conflict(format!(
        "Job {id} is changing state; retry the request."
    )))
}

fn finished(j: &JobRecord, verb: &str) -> ApiError {
    ApiError::invalid(
        "fine_tuning_job_id",
        format!(
            "Job {} has already {}; it cannot be {verb}.",
            j.id,
            j.status.as_str()
        ),
    )
}

pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = transition(&state, &caller.tenant, &id, |j| match j.status {
        JobStatus::Cancelled => Ok(None),
        s if s.is_terminal() => Err(finished(j, "cancelled")),
        // A backend that has the job still has to cancel it: the step says so durably, and
        // the runner (woken by the write) forwards it, retrying until the backend confirms. A
        // backend job the runner started but could not record is handed over the same way.
        _ => Ok(Some((
            JobStatus::Cancelled,
            if j.pipeline.exec_state.is_some() {
                JobStep::Cancel
            } else {
                JobStep::Done
            },
            Some(now_unix()),
            "Job cancelled",
        ))),
    })
    .await?;
    Ok(Json(wire::job(&job)))
}

#[derive(Clone, Copy)]
enum BackendCall {
    Pause,
    Resume,
}

/// Tells the execution backend (in the background, best effort) when the job has started there.
fn on_backend(state: &AppState, job: &JobRecord, call: BackendCall) {
    let Some(exec) = job.pipeline.exec_state.clone() else {
        return;
    };
    let executor = state.seams.executor.clone();
    let j = job.clone();
    tokio::spawn(async move {
        let result = match call {
            BackendCall::Pause => executor.pause(j.clone(), exec).await,
            BackendCall::Resume => executor.resume(j.clone(), exec).await,
        };
        if let Err(f) = result {
            tracing::warn!(job = %j.id, code = %f.code, "backend call failed");
        }
    });
}

pub async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = transition(&state, &caller.tenant, &id, |j| match j.status {
        JobStatus::Paused => Ok(None),
        s if s.is_terminal() => Err(finished(j, "paused")),
        _ => Ok(Some((JobStatus::Paused, j.step, None, "Job paused"))),
    })
    .await?;
    if job.status == JobStatus::Paused {
        on_backend(&state, &job, BackendCall::Pause);
    }
    Ok(Json(wire::job(&job)))
}

pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = transition(&state, &caller.tenant, &id, |j| match j.status {
        JobStatus::Paused => Ok(Some((j.step.status(), j.step, None, "Job resumed"))),
        s => Err(ApiError::invalid(
            "fine_tuning_job_id",
            format!(
                "Job {} is {}, not paused; it cannot be resumed.",
                j.id,
                s.as_str()
            ),
        )),
    })
    .await?;
    on_backend(&state, &job, BackendCall::Resume);
    Ok(Json(wire::job(&job)))
}

pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let job = get_job(&state, &caller.tenant, &id).await?;
    let p = ListParams::parse(&pairs, 100)?;
    let limit = p.limit.unwrap_or(20);
    let page = run_blocking(&state.store, move |s| {
        s.list_events(&job.id, p.after.as_deref(), limit)
    })
    .await?;
    Ok(Json(wire::page(&page, wire::event)))
}

pub async fn checkpoints(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let job = get_job(&state, &caller.tenant, &id).await?;
    let p = ListParams::parse(&pairs, 100)?;
    let limit = p.limit.unwrap_or(10);
    // A job a monitor rollback finished with one of its checkpoints lists none after it (they
    // are not served either: `Store::model_listed`). Those are the newest, so they can only
    // open the first page: it is read past them.
    // Only a checkpoint's name can be a rollback target: other jobs skip the scan below.
    let finished_with = job
        .fine_tuned_model
        .clone()
        .filter(|m| m.contains(":ckpt-step-"));
    let page = run_blocking(&state.store, move |s| {
        let Some(name) = finished_with.filter(|_| p.after.is_none()) else {
            return s.list_checkpoints(&job.id, p.after.as_deref(), limit);
        };
        // How many checkpoints come before (are newer than) the one the job finished with.
        let mut newer = 0;
        let mut after: Option<String> = None;
        let skipped = loop {
            let page = s.list_checkpoints(&job.id, after.as_deref(), 100)?;
            if let Some(i) = page
                .data
                .iter()
                .position(|c| c.fine_tuned_model_checkpoint == name)
            {
                break newer + i;
            }
            newer += page.data.len();
            match page.data.last() {
                Some(last) if page.has_more => after = Some(last.id.clone()),
                _ => break 0, // its final model is its own, not a checkpoint
            }
        };
        let mut page = s.list_checkpoints(&job.id, None, limit + skipped)?;
        page.data.drain(..skipped.min(page.data.len()));
        Ok(page)
    })
    .await?;
    Ok(Json(wire::page(&page, wire::checkpoint)))
}
