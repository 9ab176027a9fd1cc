//! Upstream errors, classified by side (who is at fault) and whether a retry can help.

/// Which side an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The provider failed, was unreachable, refused our credentials or spoke nonsense.
    Upstream,
    /// The provider rejected the request for its content (the client's data or parameters).
    Downstream,
    /// Our own side (reading the dataset, building the request).
    Internal,
}

impl Side {
    /// Bounded metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Upstream => "upstream",
            Side::Downstream => "downstream",
            Side::Internal => "internal",
        }
    }
}

/// An upstream call failed. `code` is stable (job error code / metric label); `message`
/// is for people and never contains the upstream key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UpstreamError {
    pub side: Side,
    pub retryable: bool,
    /// HTTP status the provider answered with, if it answered.
    pub status: Option<u16>,
    pub code: &'static str,
    pub message: String,
    /// How long the provider asked us to wait before retrying (`retry-after[-ms]`).
    pub retry_after: Option<std::time::Duration>,
}

impl UpstreamError {
    /// The provider could not be reached or timed out (retryable).
    pub fn unreachable(what: &str, e: &reqwest::Error) -> Self {
        let kind = if e.is_timeout() {
            "timed out"
        } else {
            "could not be reached"
        };
        UpstreamError {
            side: Side::Upstream,
            retryable: true,
            status: None,
            code: "upstream_unavailable",
            message: format!("The upstream provider {kind} ({what}): {}", without_url(e)),
            retry_after: None,
        }
    }

    /// The provider answered `status` with (OpenAI-shaped) `body`.
    pub fn from_status(what: &str, status: u16, body: &[u8]) -> Self {
        let detail = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| {
                v.pointer("/error/message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned());
        let (side, retryable, code) = match status {
            408 | 409 | 429 | 500..=599 => (Side::Upstream, true, "upstream_unavailable"),
            401 | 403 => (Side::Upstream, false, "upstream_auth_failed"),
            400 | 404 | 413 | 422 => (Side::Downstream, false, "upstream_rejected"),
            _ => (Side::Upstream, false, "upstream_error"),
        };
        UpstreamError {
            side,
            retryable,
            status: Some(status),
            code,
            message: format!("The upstream provider answered {status} to {what}: {detail}"),
            retry_after: None,
        }
    }

    /// Records the provider's requested wait (from [`retry_after`]).
    pub fn with_retry_after(mut self, wait: Option<std::time::Duration>) -> Self {
        self.retry_after = wait;
        self
    }

    /// The provider's answer could not be understood.
    pub fn protocol(what: &str, detail: impl std::fmt::Display) -> Self {
        UpstreamError {
            side: Side::Upstream,
            retryable: false,
            status: None,
            code: "upstream_protocol_error",
            message: format!(
                "The upstream provider's answer to {what} was not understood: {detail}"
            ),
            retry_after: None,
        }
    }

    pub fn internal(what: &str, detail: impl std::fmt::Display) -> Self {
        UpstreamError {
            side: Side::Internal,
            retryable: false,
            status: None,
            code: "internal_error",
            message: format!("{what}: {detail}"),
            retry_after: None,
        }
    }
}

/// The wait a provider asks for: `retry-after-ms` (milliseconds), else `retry-after` in
/// seconds (the HTTP-date form is ignored). Unparsable or negative values count as absent.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<std::time::Duration> {
    let num = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|n| n.is_finite() && *n >= 0.0)
    };
    num("retry-after-ms")
        .map(|ms| ms / 1000.0)
        .or_else(|| num("retry-after"))
        .and_then(|secs| std::time::Duration::try_from_secs_f64(secs).ok())
}

/// reqwest's error text without the URL (kept out of messages as a precaution).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "<upstream>");
    }
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
