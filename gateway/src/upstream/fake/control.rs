//! `/_fake/*`: the pytest suite's view of the fake (no key needed, never recorded).
//!
//! - `GET /_fake/requests`: every recorded `/v1` request (`body` in hex).
//! - `GET /_fake/files`: every uploaded file (`meta`, `content` in hex).
//! - `GET /_fake/jobs`: every job (`obj`, `events` and `checkpoints` oldest first, `hold`).
//! - `POST /_fake/jobs/{id}` `{"hold": false}`: lift (or set) one job's hold.
//! - `GET /_fake/config`: the knobs, plus `stream_gate_timed_out`.
//! - `POST /_fake/config`: set any subset of the knobs (`hold_streams: true` re-arms the gate).
//! - `POST /_fake/release-streams`: let held streams go on.

use super::state::Knobs;
use super::FakeUpstream;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

pub(super) fn router(fake: FakeUpstream) -> Router {
    Router::new()
        .route("/_fake/requests", get(requests))
        .route("/_fake/files", get(files))
        .route("/_fake/jobs", get(jobs))
        .route("/_fake/jobs/{id}", post(set_hold))
        .route("/_fake/config", get(config).post(set_config))
        .route("/_fake/release-streams", post(release))
        .with_state(fake)
}

async fn requests(State(f): State<FakeUpstream>) -> Response {
    Json(f.requests()).into_response()
}

async fn files(State(f): State<FakeUpstream>) -> Response {
    f.with(|s| Json(&s.files).into_response())
}

async fn jobs(State(f): State<FakeUpstream>) -> Response {
    f.with(|s| Json(&s.jobs).into_response())
}

async fn set_hold(
    State(f): State<FakeUpstream>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let Some(hold) = body["hold"].as_bool() else {
        return (StatusCode::BAD_REQUEST, "want {\"hold\": bool}").into_response();
    };
    match f.with(|s| s.job_mut(&id).map(|j| j.hold = hold)) {
        Some(()) => StatusCode::NO_CONTENT.into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn config_json(f: &FakeUpstream) -> Value {
    f.with(|s| {
        let mut v = serde_json::to_value(&s.knobs).expect("knobs serialise");
        v["stream_gate_timed_out"] = json!(s.stream_gate_timed_out);
        v
    })
}

async fn config(State(f): State<FakeUpstream>) -> Response {
    Json(config_json(&f)).into_response()
}

/// Merges the posted fields over the current knobs; an unknown field is a 400.
async fn set_config(State(f): State<FakeUpstream>, Json(patch): Json<Value>) -> Response {
    let mut merged = f.with(|s| serde_json::to_value(&s.knobs).expect("knobs serialise"));
    for (k, v) in patch.as_object().into_iter().flatten() {
        merged[k] = v.clone();
    }
    let knobs: Knobs = match serde_json::from_value(merged) {
        Ok(k) => k,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let arm = knobs.hold_streams && patch["hold_streams"] == true;
    f.with(|s| s.knobs = knobs);
    if arm {
        f.hold_streams();
    }
    Json(config_json(&f)).into_response()
}

async fn release(State(f): State<FakeUpstream>) -> Response {
    f.release_streams();
    StatusCode::NO_CONTENT.into_response()
}
