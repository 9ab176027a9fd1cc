//! The `/v1` routes and the layer in front of them: record the request, then answer an armed
//! failure or a wrong key before any route sees it.

use super::state::Recorded;
use super::{chat, files, jobs, FakeUpstream, KEY};
use axum::body::{to_bytes, Body};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

/// Large enough for any dataset a test uploads.
const BODY_LIMIT: usize = 64 << 20;

pub(super) fn router(fake: FakeUpstream) -> Router {
    Router::new()
        .route("/v1/files", post(files::create).get(files::list))
        .route("/v1/files/{id}", get(files::retrieve))
        .route("/v1/files/{id}/content", get(files::content))
        .route("/v1/fine_tuning/jobs", post(jobs::create).get(jobs::list))
        .route("/v1/fine_tuning/jobs/{id}", get(jobs::retrieve))
        .route("/v1/fine_tuning/jobs/{id}/events", get(jobs::events))
        .route(
            "/v1/fine_tuning/jobs/{id}/checkpoints",
            get(jobs::checkpoints),
        )
        .route("/v1/fine_tuning/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/fine_tuning/jobs/{id}/pause", post(jobs::pause))
        .route("/v1/fine_tuning/jobs/{id}/resume", post(jobs::resume))
        .route("/v1/models", get(chat::models))
        .route("/v1/models/{id}", get(chat::model))
        .route("/v1/chat/completions", post(chat::completions))
        .route("/v1/echo", post(chat::echo))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            fake.clone(),
            record_and_gate,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(fake)
}

/// OpenAI's error shape.
pub(super) fn error(status: StatusCode, message: &str, param: Option<&str>) -> Response {
    let code = (status == StatusCode::UNAUTHORIZED).then_some("invalid_api_key");
    let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}});
    (status, Json(body)).into_response()
}

async fn not_found(req: Request) -> Response {
    let msg = format!("Invalid URL ({} {})", req.method(), req.uri().path());
    error(StatusCode::NOT_FOUND, &msg, None)
}

/// The whole body is read first, as real providers do, so a refused upload still reaches
/// the client as a status rather than a connection reset; then it is recorded and replayed.
async fn record_and_gate(State(fake): State<FakeUpstream>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, BODY_LIMIT).await else {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
            None,
        );
    };
    let query = parts
        .uri
        .query()
        .map(|q| {
            url_pairs(q)
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>()
        })
        .unwrap_or_default();
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| {
            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (k.as_str().to_string(), v)
        })
        .collect();
    let failure = fake.with(|s| {
        s.requests.push(Recorded {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            query,
            headers,
            body: bytes.to_vec(),
        });
        let aimed = s
            .knobs
            .fail_path_suffix
            .as_deref()
            .is_none_or(|suffix| parts.uri.path().ends_with(suffix));
        if s.knobs.fail_next == 0 || !aimed {
            return None;
        }
        s.knobs.fail_next -= 1;
        Some((s.knobs.fail_status, s.knobs.fail_retry_after_ms))
    });
    let mut resp = if let Some((status, retry_after_ms)) = failure {
        let status = status
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut resp = error(status, "overloaded", None);
        if let Some(ms) = retry_after_ms {
            resp.headers_mut()
                .insert("retry-after-ms", HeaderValue::from(ms));
        }
        resp
    } else if parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {KEY}"))
    {
        error(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided.",
            None,
        )
    } else {
        next.run(Request::from_parts(parts, Body::from(bytes)))
            .await
    };
    resp.headers_mut()
        .insert("x-request-id", HeaderValue::from_static("req_upstream"));
    resp
}

/// `a=1&b=x%20y` → pairs, percent- and `+`-decoded (query keys such as
/// `metadata[tuneguard_job_id]` arrive encoded).
pub(super) fn url_pairs(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}
