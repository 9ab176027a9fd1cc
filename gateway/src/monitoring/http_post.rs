//! The monitor's HTTP to OpenAI-compatible chat endpoints (the judge, and an upstream
//! provider's checkpoint models): a client with the key as a sensitive bearer header, and one
//! JSON POST with the retry rules both share — connection errors, timeouts, 408, 429 and 5xx
//! are retried with exponential backoff (or the server's `retry-after`, at most
//! [`MAX_RETRY_AFTER`]); anything else is final.

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use serde_json::Value;
use std::time::Duration;

/// Attempts per request.
pub const ATTEMPTS: u32 = 4;
/// First retry delay; doubled on each further retry.
pub const BACKOFF: Duration = Duration::from_millis(250);
/// Longest `retry-after` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Why a POST gave no JSON answer.
#[derive(Debug, Clone, PartialEq)]
pub enum PostError {
    /// The endpoint could not be reached or kept failing (the message names the URL, the
    /// status and the attempts).
    Unavailable(String),
    /// It answered 2xx with something that is not JSON.
    BadResponse(String),
}

/// A client sending `key` (when given and not empty) as `Authorization: Bearer …`;
/// `key_name` names where the key came from and `what` the client ("the judge", "the upstream
/// monitor") in errors.
pub fn client(
    key: Option<&str>,
    key_name: &str,
    timeout: Duration,
    what: &str,
) -> Result<reqwest::Client, String> {
    let mut headers = HeaderMap::new();
    if let Some(key) = key.filter(|k| !k.is_empty()) {
        let mut v = HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| format!("{key_name} is not a valid header value"))?;
        v.set_sensitive(true);
        headers.insert(AUTHORIZATION, v);
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .connect_timeout(Duration::from_secs(10))
        .timeout(timeout)
        .build()
        .map_err(|e| format!("building {what}'s HTTP client: {e}"))
}

/// A private single-threaded runtime: the monitor's callers are synchronous (the worker, or a
/// blocking task of the runner).
pub fn runtime(what: &str) -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting {what}'s runtime: {e}"))
}

/// POSTs `body` to `url` and parses the 2xx answer, retrying what is transient.
pub async fn post_json(
    http: &reqwest::Client,
    url: &str,
    body: &Value,
) -> Result<Value, PostError> {
    let mut delay = BACKOFF;
    for attempt in 1..=ATTEMPTS {
        let last = attempt == ATTEMPTS;
        let resp = match http.post(url).json(body).send().await {
            Ok(r) => r,
            Err(e) if !last => {
                tracing::debug!(error = %e, attempt, url, "request failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                continue;
            }
            Err(e) => {
                return Err(PostError::Unavailable(format!(
                    "{url}: {e} (after {attempt} attempts)"
                )))
            }
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            return serde_json::from_str(&text)
                .map_err(|e| PostError::BadResponse(format!("not JSON ({e})")));
        }
        let transient =
            status.as_u16() == 408 || status.as_u16() == 429 || status.is_server_error();
        if !transient || last {
            let snippet: String = text.chars().take(200).collect();
            return Err(PostError::Unavailable(format!(
                "{url}: HTTP {status} after {attempt} attempt(s): {snippet}"
            )));
        }
        tokio::time::sleep(retry_after.unwrap_or(delay)).await;
        delay *= 2;
    }
    unreachable!("the last attempt returns")
}
