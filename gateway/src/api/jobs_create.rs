//! POST /v1/fine_tuning/jobs: validation of every field, idempotency (`Idempotency-Key`, and
//! identical-body dedupe per API key within `idempotency_window_seconds`), then the durable
//! insert that the runner picks up.

use super::files::get_file;
use super::job_params::validate;
use super::{json_rejection, wire};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::ids::{new_id, now_unix, IdKind};
use crate::state::AppState;
use crate::store::*;
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// How long an explicit `Idempotency-Key` keeps naming its job.
const EXPLICIT_KEY_TTL_SECONDS: i64 = 24 * 3600;

async fn check_file(state: &AppState, tenant: &str, id: &str, param: &str) -> Result<(), ApiError> {
    let f = get_file(state, tenant, id)
        .await
        .map_err(|e| e.with_param(param))?;
    if f.purpose != "fine-tune" {
        return Err(ApiError::invalid(
            param,
            format!(
                "File {id} has purpose '{}'; fine-tuning needs purpose 'fine-tune'.",
                f.purpose
            ),
        ));
    }
    Ok(())
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body.map_err(json_rejection)?;
    let req = validate(&body)?;
    check_file(&state, &caller.tenant, &req.training_file, "training_file").await?;
    if let Some(v) = &req.validation_file {
        check_file(&state, &caller.tenant, v, "validation_file").await?;
    }
    let now = now_unix();
    let digest = hex::encode(Sha256::digest(body.to_string().as_bytes()));
    let mut keys = Vec::new();
    if let Some(k) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
    {
        keys.push(IdempotencyKey {
            scope: caller.tenant.clone(),
            key: format!("header:{k}"),
            not_before: now - EXPLICIT_KEY_TTL_SECONDS,
            fingerprint: Some(digest.clone()),
        });
    }
    // The body window stands in for the key the SDK does not send. A caller who sends a key
    // has said which requests are retries, so two keys with one body are two jobs.
    let window = state.config.limits.idempotency_window_seconds;
    if window > 0 && keys.is_empty() {
        keys.push(IdempotencyKey {
            scope: format!("{}:{}", caller.tenant, caller.key_hash),
            key: format!("body:{digest}"),
            not_before: now - window,
            fingerprint: None,
        });
    }
    let id = new_id(IdKind::Job);
    let job = JobRecord {
        revision: 0,
        id: id.clone(),
        tenant: caller.tenant.clone(),
        created_at: now,
        model: req.model,
        training_file: req.training_file.clone(),
        validation_file: req.validation_file,
        hyperparameters: req.hyperparameters.clone(),
        method: json!({"type": "supervised", "supervised": {"hyperparameters": req.hyperparameters}}),
        suffix: req.suffix,
        seed: req
            .seed
            .unwrap_or_else(|| rand::random::<u32>() as i64 & 0x7fff_ffff),
        metadata: req.metadata,
        status: JobStatus::ValidatingFiles,
        step: JobStep::Plan,
        error: None,
        fine_tuned_model: None,
        finished_at: None,
        trained_tokens: None,
        result_files: Vec::new(),
        estimated_finish: None,
        pipeline: Pipeline::default(),
    };
    let ev = EventRecord {
        id: new_id(IdKind::Event),
        job_id: id.clone(),
        created_at: now,
        level: EventLevel::Info,
        message: format!("Validating training file: {}", req.training_file),
        kind: "message".into(),
        data: None,
    };
    let j = job.clone();
    let outcome = run_blocking(&state.store, move |s| s.create_job(&j, &ev, &keys)).await?;
    let job = match outcome {
        CreateOutcome::Created => {
            state.metrics.job_entered(JobStatus::ValidatingFiles);
            state.runner.wake();
            job
        }
        CreateOutcome::Existing(existing) => {
            let t = caller.tenant.clone();
            run_blocking(&state.store, move |s| s.get_job(&t, &existing))
                .await?
                .ok_or_else(|| ApiError::internal("idempotency record names a missing job"))?
        }
        CreateOutcome::Conflict(existing) => {
            return Err(ApiError::conflict(format!(
                "This Idempotency-Key was already used with different parameters \
                 (it names job {existing}); use a new key for a different request."
            ))
            .with_code("idempotency_key_reused")
            .not_retryable());
        }
    };
    Ok(Json(wire::job(&job)))
}
