//! Request observation (one log line and the request metrics per request, with the request
//! id and never a key), health, readiness, /metrics, and the fallback for unknown routes.

use crate::auth::Caller;
use crate::error::{ApiError, InternalDetail};
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Instant;

pub async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().clone();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let resp = next.run(req).await;
    let status = resp.status();
    let elapsed = start.elapsed();
    let m = &state.metrics;
    m.http_requests
        .with_label_values(&[route.as_str(), method.as_str(), status.as_str()])
        .inc();
    m.http_latency
        .with_label_values(&[route.as_str(), method.as_str()])
        .observe(elapsed.as_secs_f64());
    if let Some(InternalDetail(detail)) = resp.extensions().get::<InternalDetail>() {
        tracing::error!(request_id, %method, route, status = status.as_u16(), detail, "request failed");
    } else {
        tracing::info!(request_id, %method, route, status = status.as_u16(), ms = elapsed.as_millis() as u64, "request");
    }
    resp
}

pub async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    if state.is_ready() {
        axum::Json(serde_json::json!({"status": "ready"})).into_response()
    } else {
        ApiError::unavailable("The gateway is starting or shutting down.").into_response()
    }
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    match crate::store::run_blocking(&state.store, |s| s.count_jobs()).await {
        Ok(counts) => state.metrics.set_jobs(&counts),
        Err(e) => tracing::warn!(error = %e, "counting jobs for /metrics failed"),
    }
    let now = crate::ids::now_unix();
    match crate::store::run_blocking(&state.store, move |s| s.local_queue(now)).await {
        Ok(queue) => state
            .metrics
            .set_local_queue(queue, supervised_workers(&state)),
        Err(e) => tracing::warn!(error = %e, "reading the local queue for /metrics failed"),
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// The worker processes `serve` supervises: `[local] workers`, where local jobs run at all
/// (local mode, or upstream mode with `[[models]]` for `run_locally` policies).
fn supervised_workers(state: &AppState) -> u64 {
    let c = &state.config;
    let local = c.execution == crate::config::ExecutionMode::Local || !c.models.entries.is_empty();
    if local {
        c.local.workers as u64
    } else {
        0
    }
}

/// Any error response on a gateway route that no handler shaped itself (axum's plain-text
/// extractor rejections: a path or query it cannot decode, such as `/v1/files/%FF`, or a
/// body that is not `multipart/form-data`) gets OpenAI's error shape. Proxied responses (no matched route) pass through untouched.
pub async fn openai_errors(req: Request, next: Next) -> Response {
    let ours = req.extensions().get::<MatchedPath>().is_some();
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if !ours || is_json || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let bytes = axum::body::to_bytes(resp.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("Error").to_string()
    } else {
        text
    };
    ApiError::with_status(status, message).into_response()
}

/// A known path with the wrong method.
pub async fn method_not_allowed(req: Request) -> Response {
    ApiError::method_not_allowed(req.method().as_str(), req.uri().path()).into_response()
}

/// Unknown routes: under /v1 with an upstream configured, an authenticated tenant's request
/// is proxied (never an anonymous one: the upstream key is the gateway's), never reaching a
/// fine-tuned model the gateway does not list to that tenant; else OpenAI's 404.
pub async fn fallback(State(state): State<AppState>, req: Request) -> Response {
    if let Some(proxy) = state.proxy.clone() {
        if req.uri().path().starts_with("/v1/") {
            let (mut parts, body) = req.into_parts();
            let caller = match Caller::from_request_parts(&mut parts, &state).await {
                Ok(c) => c,
                Err(e) => return e.into_response(),
            };
            let req = Request::from_parts(parts, body);
            return super::proxied_models::forward(&state, proxy, &caller.tenant, req).await;
        }
    }
    ApiError::unknown_route(req.method().as_str(), req.uri().path()).into_response()
}
