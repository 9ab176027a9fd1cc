//! The HTTP surface: OpenAI's routes under /v1, operator routes under /v1/tuneguard, and
//! health and metrics. `app(state)` builds the whole router (tests drive it with `oneshot`).

mod adapters;
mod admin;
mod files;
mod job_params;
mod jobs;
mod jobs_create;
mod observe;
pub(crate) mod proxied_models;
mod query;
mod uploads;
mod wire;

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Request};
use axum::routing::{get, post};
use axum::Router;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};

/// JSON bodies (job creation, upload creation…) are small; this caps them.
pub const JSON_BODY_MAX_BYTES: usize = 2 * 1024 * 1024;
/// Multipart framing around one upload part.
const PART_OVERHEAD_BYTES: u64 = 64 * 1024;

#[derive(Clone, Default)]
struct MakeId;

impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, _req: &Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&crate::ids::new_id(crate::ids::IdKind::Request))
            .ok()
            .map(RequestId::new)
    }
}

pub fn app(state: AppState) -> Router {
    let limits = &state.config.limits;
    let file_limit = state.config.server.max_body_bytes as usize;
    let part_limit = (limits.upload_part_max_bytes + PART_OVERHEAD_BYTES) as usize;
    Router::new()
        .route(
            "/v1/files",
            post(files::create)
                .layer(DefaultBodyLimit::max(file_limit))
                .get(files::list),
        )
        .route("/v1/files/{id}", get(files::retrieve).delete(files::delete))
        .route("/v1/files/{id}/content", get(files::content))
        .route("/v1/uploads", post(uploads::create))
        .route(
            "/v1/uploads/{id}/parts",
            post(uploads::add_part).layer(DefaultBodyLimit::max(part_limit)),
        )
        .route("/v1/uploads/{id}/complete", post(uploads::complete))
        .route("/v1/uploads/{id}/cancel", post(uploads::cancel))
        .route(
            "/v1/fine_tuning/jobs",
            post(jobs_create::create).get(jobs::list),
        )
        .route("/v1/fine_tuning/jobs/{id}", get(jobs::retrieve))
        .route("/v1/fine_tuning/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/fine_tuning/jobs/{id}/pause", post(jobs::pause))
        .route("/v1/fine_tuning/jobs/{id}/resume", post(jobs::resume))
        .route("/v1/fine_tuning/jobs/{id}/events", get(jobs::events))
        .route(
            "/v1/fine_tuning/jobs/{id}/checkpoints",
            get(jobs::checkpoints),
        )
        .route("/v1/tuneguard/plan", post(admin::plan))
        .route("/v1/tuneguard/jobs/{id}/adapter", get(adapters::download))
        .route(
            "/v1/tuneguard/jobs/{id}/report",
            get(crate::monitoring::report::report),
        )
        .route("/v1/tuneguard/admin/policies", get(admin::policies))
        .route("/v1/tuneguard/admin/jobs/{id}/dataset", get(admin::dataset))
        .route(
            "/v1/tuneguard/admin/jobs/{id}/manifest",
            get(admin::manifest),
        )
        .merge(local_serving(&state))
        .route("/healthz", get(observe::healthz))
        .route("/readyz", get(observe::readyz))
        .route("/metrics", get(observe::metrics))
        .fallback(observe::fallback)
        .method_not_allowed_fallback(observe::method_not_allowed)
        .layer(DefaultBodyLimit::max(JSON_BODY_MAX_BYTES))
        .layer(axum::middleware::from_fn(observe::openai_errors))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeId))
        .with_state(state)
}

/// Chat completions and the model list from local models, when no upstream provider serves
/// them (in upstream mode these routes are proxied).
fn local_serving(state: &AppState) -> Router<AppState> {
    if state.proxy.is_some() {
        return Router::new();
    }
    Router::new()
        .route(
            "/v1/chat/completions",
            post(crate::serving::routes::chat_completions),
        )
        .route("/v1/models", get(crate::serving::routes::models))
}

/// Maps axum's extractor rejections to OpenAI-shaped errors.
pub(crate) fn json_rejection(e: axum::extract::rejection::JsonRejection) -> ApiError {
    use axum::extract::rejection::JsonRejection as J;
    match e {
        J::BytesRejection(b) if b.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::too_large("body", "Request body is too large.")
        }
        other => ApiError::bad_request(format!("Invalid JSON body: {}", other.body_text())),
    }
}

#[cfg(test)]
mod tests {
    mod files;
    mod jobs;
    mod misc;
    mod uploads;
}
