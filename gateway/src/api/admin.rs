//! Operator routes: the current policy set, plan explanation, and a job's transformed
//! dataset and interleave manifest.

use super::json_rejection;
use crate::auth::{Admin, Caller};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::run_blocking;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub async fn policies(State(state): State<AppState>, _admin: Admin) -> Json<Value> {
    Json(state.seams.planner.describe())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanBody {
    model: String,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    tenant: Option<String>,
}

/// Admins may ask for any tenant; a tenant key explains its own plans only.
pub async fn plan(State(state): State<AppState>, req: Request) -> Result<Json<Value>, ApiError> {
    let (mut parts, body) = req.into_parts();
    let admin = Admin::from_request_parts(&mut parts, &state).await.is_ok();
    let caller = if admin {
        None
    } else {
        Some(Caller::from_request_parts(&mut parts, &state).await?)
    };
    let req = Request::from_parts(parts, body);
    let parsed: Result<Json<PlanBody>, JsonRejection> =
        <Json<PlanBody> as axum::extract::FromRequest<AppState>>::from_request(req, &state).await;
    let Json(b) = parsed.map_err(json_rejection)?;
    let tenant = match (caller, b.tenant) {
        (Some(c), Some(t)) if t != c.tenant => {
            return Err(ApiError::forbidden(
                "A tenant key can only explain its own plans.",
            ))
        }
        (Some(c), _) => c.tenant,
        (None, Some(t)) => t,
        (None, None) => {
            return Err(ApiError::invalid(
                "tenant",
                "Missing required parameter: 'tenant' (admin requests name the tenant).",
            ))
        }
    };
    let out = state
        .seams
        .planner
        .plan(&tenant, &b.model, &b.metadata)
        .map_err(|f| {
            ApiError::invalid(f.param.as_deref().unwrap_or("model"), f.message).with_code(f.code)
        })?;
    Ok(Json(json!({
        "object": "tuneguard.plan",
        "tenant": tenant,
        "model": b.model,
        "policy": out.policy_name,
        "version_hash": out.version_hash,
        "plan": out.plan,
    })))
}

async fn job_blob(
    state: &AppState,
    id: &str,
    field: &str,
    content_type: &'static str,
) -> Result<Response, ApiError> {
    let i = id.to_string();
    let job = run_blocking(&state.store, move |s| s.get_job_any(&i))
        .await?
        .ok_or_else(|| ApiError::not_found("FineTuningJob", id))?;
    let key = match field {
        "dataset_blob" => job.pipeline.dataset_blob.as_deref(),
        _ => job.pipeline.manifest_blob.as_deref(),
    };
    let key = key.ok_or_else(|| {
        ApiError::invalid(
            "fine_tuning_job_id",
            format!(
                "Job {id} has no {field} yet (status {}).",
                job.status.as_str()
            ),
        )
    })?;
    let file = state.blobs.open_read(key).await?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

pub async fn dataset(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    job_blob(&state, &id, "dataset_blob", "application/jsonl").await
}

pub async fn manifest(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    job_blob(&state, &id, "manifest_blob", "application/json").await
}
