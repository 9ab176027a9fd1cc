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
//! Where a model can be named, and how each is read (failing closed: a request that might
//! name one the gateway cannot read is refused, never forwarded unread):
//! - the path of `/v1/models/{model}` (any method), normalised as the HTTP client will send it;
//! - any query parameter's value;
//! - a JSON body (any content type, buffered up to [`JSON_MAX_BYTES`]): every string in the
//!   whole document (`model`, and nested ones such as an eval run's `data_source.model`), and
//!   the body forwarded is the document as checked, serialised again, so the provider parses
//!   exactly what the gateway read;
//! - a `multipart/form-data` or `application/x-www-form-urlencoded` body: every text field;
//! - any other body: refused when its bytes contain `ft:` in any case; a body that looks like
//!   JSON but does not parse, or one with a `Content-Encoding`, is refused outright.
//!
//! A string names a fine-tuned model when, trimmed, it starts with `ft:` in any case.

use crate::error::ApiError;
use crate::jobs::seams::Proxy;
use crate::state::AppState;
use crate::store::run_blocking;
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

/// Whether `model` names a fine-tuned model (OpenAI's `ft:` prefix, in any case, past any
/// white space).
fn fine_tuned(model: &str) -> bool {
    model
        .trim()
        .get(..3)
        .is_some_and(|p| p.eq_ignore_ascii_case("ft:"))
}

/// How long a "listed" answer is reused. Only positive answers are kept: a model becomes
/// listed (its job succeeds) the moment the store says so, and stops being listed only when a
/// rollback finishes its job with an earlier checkpoint — seen here at most this late.
const LISTED_FOR: std::time::Duration = std::time::Duration::from_secs(5);
/// Entries kept at most (cleared whole when full: a cache, not a record).
const LISTED_MAX: usize = 10_000;

/// Recent positive answers of [`Store::model_listed`], by tenant and model: a proxied request
/// naming a fine-tuned model asks the store at most once per [`LISTED_FOR`].
#[derive(Default)]
pub struct ListedCache(
    std::sync::Mutex<std::collections::HashMap<(String, String), std::time::Instant>>,
);

impl ListedCache {
    fn fresh(&self, tenant: &str, model: &str) -> bool {
        let Ok(map) = self.0.lock() else { return false };
        map.get(&(tenant.to_string(), model.to_string()))
            .is_some_and(|at| at.elapsed() < LISTED_FOR)
    }

    fn remember(&self, tenant: &str, model: &str) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= LISTED_MAX {
                map.clear();
            }
            map.insert(
                (tenant.to_string(), model.to_string()),
                std::time::Instant::now(),
            );
        }
    }
}

/// Ok when `tenant` may reach `model` through the proxy.
async fn check(state: &AppState, tenant: &str, model: &str) -> Result<(), ApiError> {
    if !fine_tuned(model) || state.listed_models.fresh(tenant, model) {
        return Ok(());
    }
    let (t, m) = (tenant.to_string(), model.to_string());
    if run_blocking(&state.store, move |s| s.model_listed(&t, &m)).await? {
        state.listed_models.remember(tenant, model);
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

/// Forwards `req` for `tenant` unless it names an `ft:` model the tenant may not reach.
pub async fn forward(
    state: &AppState,
    proxy: Arc<dyn Proxy>,
    tenant: &str,
    req: Request,
) -> Response {
    match models_path(req.uri().path()) {
        ModelsPath::One(model) => {
            if let Err(e) = check(state, tenant, &model).await {
                return e.into_response();
            }
            match checked_body(state, tenant, req).await {
                Ok(req) => proxy.forward(req).await,
                Err(e) => e.into_response(),
            }
        }
        ModelsPath::List if req.method() == Method::GET => {
            // The list is read back to filter it: ask for it unencoded.
            let mut req = req;
            req.headers_mut().remove(header::ACCEPT_ENCODING);
            let resp = proxy.forward(req).await;
            filter_list(state, tenant, resp).await
        }
        _ => match checked_body(state, tenant, req).await {
            Ok(req) => proxy.forward(req).await,
            Err(e) => e.into_response(),
        },
    }
}

/// Ok when every model a request names — by query or body (see the module's doc) — may be
/// reached by `tenant`; the request to forward comes back (its body as checked).
async fn checked_body(state: &AppState, tenant: &str, req: Request) -> Result<Request, ApiError> {
    let (mut parts, body) = req.into_parts();
    let mut named: Vec<String> = parts
        .uri
        .query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(_, v)| v.into_owned())
                .filter(|v| fine_tuned(v))
                .collect()
        })
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(body, JSON_MAX_BYTES)
        .await
        .map_err(|_| {
            ApiError::too_large(
                "body",
                format!("Request body is larger than {JSON_MAX_BYTES} bytes."),
            )
        })?;
    let body = if bytes.is_empty() {
        Body::empty()
    } else {
        if parts.headers.contains_key(header::CONTENT_ENCODING) {
            return Err(ApiError::with_status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Request bodies sent through the gateway must not be content-encoded: it reads them for the models they name.".to_string(),
            ));
        }
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if content_type.starts_with("multipart/form-data") {
            named.extend(multipart_fields(&parts.headers, bytes.clone()).await?);
            Body::from(bytes)
        } else if content_type.starts_with("application/x-www-form-urlencoded") {
            named.extend(
                form_urlencoded::parse(&bytes)
                    .map(|(_, v)| v.into_owned())
                    .filter(|v| fine_tuned(v)),
            );
            Body::from(bytes)
        } else {
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(doc) => {
                    strings_naming_models(&doc, &mut named);
                    let again = serde_json::to_vec(&doc)
                        .map_err(|e| ApiError::internal(format!("serialising the body: {e}")))?;
                    parts
                        .headers
                        .insert(header::CONTENT_LENGTH, again.len().into());
                    Body::from(again)
                }
                Err(e) if content_type.contains("json") || looks_like_json(&bytes) => {
                    return Err(ApiError::bad_request(format!(
                        "We could not parse the JSON body of your request: {e}"
                    )));
                }
                Err(_) => {
                    let lower = bytes.to_ascii_lowercase();
                    if lower.windows(3).any(|w| w == b"ft:") {
                        return Err(ApiError::bad_request(
                            "The request body names a fine-tuned model (`ft:`) in a form the gateway cannot read; send JSON, multipart or form data.".to_string(),
                        ));
                    }
                    Body::from(bytes)
                }
            }
        }
    };
    for model in &named {
        check(state, tenant, model).await?;
    }
    Ok(Request::from_parts(parts, body))
}

/// Whether `bytes`, past a byte-order mark and white space, open a JSON object or array.
fn looks_like_json(bytes: &[u8]) -> bool {
    let b = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    matches!(
        b.iter().find(|c| !c.is_ascii_whitespace()),
        Some(b'{') | Some(b'[')
    ) || bytes.starts_with(&[0xfe, 0xff])
        || bytes.starts_with(&[0xff, 0xfe])
}

/// Every string in `doc` that names a fine-tuned model, at any depth.
fn strings_naming_models(doc: &Value, out: &mut Vec<String>) {
    match doc {
        Value::String(s) if fine_tuned(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings_naming_models(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings_naming_models(v, out)),
        _ => {}
    }
}

/// The text fields of a multipart body that name fine-tuned models.
async fn multipart_fields(
    headers: &axum::http::HeaderMap,
    bytes: bytes::Bytes,
) -> Result<Vec<String>, ApiError> {
    use axum::extract::FromRequest;
    let mut req = Request::new(Body::from(bytes));
    *req.headers_mut() = headers.clone();
    let unreadable = |e: &dyn std::fmt::Display| {
        ApiError::bad_request(format!(
            "We could not read the multipart body of your request: {e}"
        ))
    };
    let mut form = axum::extract::Multipart::from_request(req, &())
        .await
        .map_err(|e| unreadable(&e))?;
    let mut out = Vec::new();
    while let Some(field) = form.next_field().await.map_err(|e| unreadable(&e))? {
        if field.file_name().is_some() {
            continue;
        }
        let text = field.text().await.map_err(|e| unreadable(&e))?;
        if fine_tuned(&text) {
            out.push(text);
        }
    }
    Ok(out)
}

/// The provider's model list without the `ft:` models `tenant` may not reach. A list that is
/// not a JSON object with `data` (an error, an unexpected shape) cannot be filtered safely and
/// is answered as a 502 rather than passed on.
async fn filter_list(state: &AppState, tenant: &str, resp: Response) -> Response {
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
    let id = |e: &Value| {
        e.get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    // One query for every fine-tuned model in the list (a provider may list thousands).
    let listed = if data.iter().any(|e| fine_tuned(&id(e))) {
        let t = tenant.to_string();
        match run_blocking(&state.store, move |s| s.listed_models(&t)).await {
            Ok(l) => l,
            Err(e) => return ApiError::from(e).into_response(),
        }
    } else {
        Default::default()
    };
    data.retain(|e| {
        let id = id(e);
        !fine_tuned(&id) || listed.contains(&id)
    });
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
        assert!(fine_tuned(" \tft:x"), "as a lenient provider would trim it");
    }
}
