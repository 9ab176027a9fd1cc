//! Which fine-tuned models the transparent proxy lets a tenant reach. Every tenant's upstream
//! jobs run under the gateway's one provider key, so without this check any tenant who knew a
//! name could call (or delete) another tenant's model, or a model the monitor withheld: the
//! provider's final model of a rolled-back or cancelled job, a checkpoint after a rollback
//! decision. The rule is the local serving route's: a tenant reaches an `ft:` model only when
//! the gateway lists it to that tenant — the `fine_tuned_model` of one of its succeeded jobs,
//! or a checkpoint of one of its jobs ([`Store::model_listed`]). Any other `ft:` name is
//! OpenAI's 404 `model_not_found`, exactly as for a name that does not exist; base models
//! pass through. `GET /v1/models` comes back with the `ft:` entries the tenant may not reach
//! left out.
//!
//! Where a model is named: the path of `/v1/models/{model}` (any method), and the top-level
//! `model` of a JSON request body (chat completions, completions, responses, embeddings, …),
//! which is buffered for that, up to [`JSON_MAX_BYTES`].

use crate::error::ApiError;
use crate::jobs::seams::Proxy;
use crate::state::AppState;
use crate::store::{run_blocking, Store};
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::sync::Arc;

/// The largest JSON request body read to find its model (images inline as base64 make chat
/// bodies large; OpenAI caps a request at about this).
pub const JSON_MAX_BYTES: usize = 32 * 1024 * 1024;
/// The largest model list read back for filtering.
const LIST_MAX_BYTES: usize = 16 * 1024 * 1024;

/// The 404 OpenAI answers for a model that does not exist or that the caller may not use.
pub fn model_not_found(model: &str) -> ApiError {
    ApiError::with_status(
        StatusCode::NOT_FOUND,
        format!("The model `{model}` does not exist or you do not have access to it."),
    )
    .with_code("model_not_found")
    .with_param("model")
}

/// Whether `model` names a fine-tuned model (OpenAI's `ft:` prefix, in any case).
fn fine_tuned(model: &str) -> bool {
    model
        .get(..3)
        .is_some_and(|p| p.eq_ignore_ascii_case("ft:"))
}

/// Ok when `tenant` may reach `model` through the proxy.
async fn check(store: &Arc<dyn Store>, tenant: &str, model: &str) -> Result<(), ApiError> {
    if !fine_tuned(model) {
        return Ok(());
    }
    let (t, m) = (tenant.to_string(), model.to_string());
    if run_blocking(store, move |s| s.model_listed(&t, &m)).await? {
        Ok(())
    } else {
        Err(model_not_found(model))
    }
}

/// What a request path names under `/v1/models`, percent-decoded.
#[derive(Debug, PartialEq)]
enum ModelsPath {
    /// `/v1/models`
    List,
    /// `/v1/models/{model}`
    One(String),
    Other,
}

fn models_path(path: &str) -> ModelsPath {
    match crate::upstream::path_segments(path).as_slice() {
        [v1, models] if family(v1, models) => ModelsPath::List,
        [v1, models, model] if family(v1, models) => ModelsPath::One(model.clone()),
        _ => ModelsPath::Other,
    }
}

fn family(v1: &str, models: &str) -> bool {
    v1.eq_ignore_ascii_case("v1") && models.eq_ignore_ascii_case("models")
}

fn is_json(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| {
            let c = c.trim_start().to_ascii_lowercase();
            c.starts_with("application/json") || c.starts_with("text/json")
        })
}

/// Forwards `req` for `tenant` unless it names an `ft:` model the tenant may not reach.
pub async fn forward(
    state: &AppState,
    proxy: Arc<dyn Proxy>,
    tenant: &str,
    req: Request,
) -> Response {
    match models_path(req.uri().path()) {
        ModelsPath::One(model) => {
            if let Err(e) = check(&state.store, tenant, &model).await {
                return e.into_response();
            }
            proxy.forward(req).await
        }
        ModelsPath::List if req.method() == Method::GET => {
            // The list is read back to filter it: ask for it unencoded.
            let mut req = req;
            req.headers_mut().remove(header::ACCEPT_ENCODING);
            let resp = proxy.forward(req).await;
            filter_list(&state.store, tenant, resp).await
        }
        _ if is_json(&req) => {
            let (parts, body) = req.into_parts();
            let bytes = match axum::body::to_bytes(body, JSON_MAX_BYTES).await {
                Ok(b) => b,
                Err(_) => {
                    return ApiError::too_large(
                        "body",
                        format!("Request body is larger than {JSON_MAX_BYTES} bytes."),
                    )
                    .into_response()
                }
            };
            // A body that is not JSON goes on as it came: the provider answers it.
            let model = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("model")?.as_str().map(String::from));
            if let Some(model) = model {
                if let Err(e) = check(&state.store, tenant, &model).await {
                    return e.into_response();
                }
            }
            proxy
                .forward(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        _ => proxy.forward(req).await,
    }
}

/// The provider's model list without the `ft:` models `tenant` may not reach. A list that is
/// not a JSON object with `data` (an error, an unexpected shape) cannot be filtered safely and
/// is answered as a 502 rather than passed on.
async fn filter_list(store: &Arc<dyn Store>, tenant: &str, resp: Response) -> Response {
    if !resp.status().is_success() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let unreadable = || {
        ApiError::with_status(
            StatusCode::BAD_GATEWAY,
            "The upstream provider's model list could not be read.".to_string(),
        )
        .with_code("upstream_unavailable")
        .into_response()
    };
    let Ok(bytes) = axum::body::to_bytes(body, LIST_MAX_BYTES).await else {
        return unreadable();
    };
    let Ok(mut list) = serde_json::from_slice::<Value>(&bytes) else {
        return unreadable();
    };
    let Some(data) = list.get_mut("data").and_then(Value::as_array_mut) else {
        return unreadable();
    };
    let mut kept = Vec::with_capacity(data.len());
    for entry in data.drain(..) {
        let id = entry.get("id").and_then(Value::as_str).unwrap_or_default();
        if check(store, tenant, id).await.is_ok() {
            kept.push(entry);
        }
    }
    *data = kept;
    let body = list.to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_ENCODING);
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_paths() {
        assert_eq!(models_path("/v1/models"), ModelsPath::List);
        assert_eq!(models_path("/v1/models/"), ModelsPath::List);
        assert_eq!(
            models_path("/v1/models/ft%3Agpt-4o-mini%3Aorg%3A%3Aabc"),
            ModelsPath::One("ft:gpt-4o-mini:org::abc".into())
        );
        assert_eq!(
            models_path("/v1//models/ft:m:o::j:ckpt-step-2"),
            ModelsPath::One("ft:m:o::j:ckpt-step-2".into())
        );
        assert_eq!(models_path("/v1/chat/completions"), ModelsPath::Other);
        assert_eq!(models_path("/v1/models/a/b"), ModelsPath::Other);
        // What the HTTP client will send after normalising dot segments and case.
        assert_eq!(
            models_path("/v1/files/../Models/ft:m:o::j"),
            ModelsPath::One("ft:m:o::j".into())
        );
        assert_eq!(models_path("/V1/MODELS"), ModelsPath::List);
    }

    #[test]
    fn fine_tuned_names() {
        assert!(fine_tuned("ft:gpt-4o-mini:org::abc"));
        assert!(fine_tuned("FT:x"));
        assert!(!fine_tuned("gpt-4o-mini"));
        assert!(!fine_tuned("ft"));
        assert!(!fine_tuned("é"));
        assert!(!fine_tuned("a€b"));
    }
}
