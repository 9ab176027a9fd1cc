//! The transparent proxy for every `/v1/*` route the gateway does not serve itself:
//! method, path, query and (streamed) body go to the upstream with the upstream key in place
//! of the client's; hop-by-hop headers are dropped both ways; the response streams back
//! unbuffered (SSE included), its `x-request-id` renamed `x-upstream-request-id` so the
//! gateway's own id takes its place; an unreachable upstream is a 502 in OpenAI's error shape.

use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use std::time::Duration;

const REQUEST_ID: &str = "x-request-id";
/// Where a proxied response keeps the upstream's `x-request-id`.
pub const UPSTREAM_REQUEST_ID: &str = "x-upstream-request-id";

/// Headers never forwarded: hop-by-hop (RFC 9110 §7.6.1), plus the client's credentials and
/// OpenAI account headers, which belong to the client's key, not the upstream's.
const DROP: [&str; 13] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "authorization",
    "openai-organization",
    "openai-project",
];

/// The route families the gateway serves itself (OpenAI's, plus its own operator routes). A
/// request the router did not match that still names one of them (`/v1/files/`,
/// `/v1//uploads`, `/v1/fine%5Ftuning/jobs`, `/v1/Files`) is a look-alike: forwarding it would reach the upstream with the gateway's
/// key and bypass screening and tenant scoping, so it is never proxied.
const OWNED: [&str; 4] = ["files", "uploads", "fine_tuning", "tuneguard"];

/// A request path's segments as the upstream will resolve them: percent-decoded, empty and
/// `.` segments dropped, `..` applied (the HTTP client normalises dot segments before
/// sending), `\\` taken as `/`.
pub fn path_segments(path: &str) -> Vec<String> {
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    let mut segments: Vec<String> = Vec::new();
    for seg in decoded.split(['/', '\\']) {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s.to_string()),
        }
    }
    segments
}

/// Whether a request path, once normalised ([`path_segments`]) and letters folded to lower
/// case, falls under one of [`OWNED`] below `/v1`.
pub fn gateway_owned(path: &str) -> bool {
    matches!(path_segments(path).as_slice(), [v1, family, ..]
        if v1.eq_ignore_ascii_case("v1") && OWNED.contains(&family.to_ascii_lowercase().as_str()))
}

/// Forwards requests to one upstream base URL (`…/v1`).
#[derive(Clone)]
pub struct UpstreamProxy {
    http: reqwest::Client,
    base_url: String,
    auth: HeaderValue,
}

impl UpstreamProxy {
    pub fn new(base_url: &str, api_key: &str) -> Result<Self, super::UpstreamError> {
        let mut auth = HeaderValue::from_str(&format!("Bearer {api_key}")).map_err(|_| {
            super::UpstreamError::internal("upstream.api_key", "is not a valid header value")
        })?;
        auth.set_sensitive(true);
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| super::UpstreamError::internal("building the proxy client", e))?;
        Ok(UpstreamProxy {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            auth,
        })
    }

    /// The upstream URL for a gateway path (`/v1/models?x=1` → `{base}/models?x=1`), or
    /// None for a path outside `/v1` or one the gateway owns (see [`gateway_owned`]).
    pub fn target(&self, path_and_query: &str) -> Option<String> {
        let rest = path_and_query.strip_prefix("/v1")?;
        if !(rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')) {
            return None;
        }
        let path = path_and_query.split('?').next().unwrap_or_default();
        if gateway_owned(path) {
            return None;
        }
        Some(format!("{}{rest}", self.base_url))
    }

    /// Forwards one request and streams the answer back.
    pub async fn forward(&self, req: Request) -> Response {
        let (parts, body) = req.into_parts();
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let Some(url) = self.target(pq) else {
            return error(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "unknown_url",
                &format!("Invalid URL ({} {})", parts.method, parts.uri.path()),
            );
        };
        let mut headers = forwardable(&parts.headers);
        headers.insert(header::AUTHORIZATION, self.auth.clone());
        let mut rb = self.http.request(parts.method, url).headers(headers);
        // A request without a body (most GETs) must not grow a chunked one on the way.
        if !HttpBody::is_end_stream(&body) {
            rb = rb.body(reqwest::Body::wrap_stream(body.into_data_stream()));
        }
        let sent = rb.send().await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                let e = e.without_url();
                tracing::warn!(error = %e, "upstream proxy request failed");
                let msg = if e.is_timeout() {
                    "The upstream provider timed out."
                } else {
                    "The upstream provider could not be reached."
                };
                return error(
                    StatusCode::BAD_GATEWAY,
                    "api_error",
                    "upstream_unavailable",
                    msg,
                );
            }
        };
        let status = resp.status();
        let mut headers = forwardable(resp.headers());
        // `x-request-id` on a gateway response is always the gateway's own (set by the
        // request-id layer); the upstream's stays visible under its own name.
        if let Some(upstream_id) = headers.remove(REQUEST_ID) {
            headers.insert(UPSTREAM_REQUEST_ID, upstream_id);
        }
        let stream = resp.bytes_stream().map_err(std::io::Error::other);
        let mut out = Response::new(Body::from_stream(stream));
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        out
    }
}

/// `headers` minus hop-by-hop ones, credentials, and any named in `Connection`.
pub fn forwardable(headers: &HeaderMap) -> HeaderMap {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if DROP.contains(&name.as_str()) || named.contains(name) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

fn error(status: StatusCode, kind: &str, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
