//! One error type for every API response, in OpenAI's shape:
//! `{"error":{"message","type","param","code"}}` with OpenAI's status codes.
//! Converting to a response is pure; internal details ride in a response extension
//! so the request layer (and only it) logs them.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Internal detail of a 5xx, attached to the response for the logging layer; never sent.
#[derive(Debug, Clone)]
pub struct InternalDetail(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<String>,
    internal: Option<String>,
    /// Set for a deliberate rejection whose status would otherwise invite a retry (e.g. 409).
    final_answer: bool,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
            param: None,
            code: None,
            internal: None,
            final_answer: false,
        }
    }

    /// An error of any status in OpenAI's shape (`invalid_request_error` for a 4xx,
    /// `server_error` otherwise), for responses no handler shaped (extractor rejections).
    pub fn with_status(status: StatusCode, message: impl Into<String>) -> Self {
        let kind = if status.is_client_error() {
            "invalid_request_error"
        } else {
            "server_error"
        };
        Self::new(status, kind, message)
    }

    /// 400 invalid_request_error naming the offending parameter.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message);
        e.param = Some(param.into());
        e
    }

    /// 400 invalid_request_error without a parameter.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 404 exactly as OpenAI words it: "No such File object: file-abc".
    pub fn not_found(object: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("No such {object} object: {id}"),
        )
    }

    /// 404 for a route that does not exist.
    pub fn unknown_route(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("Invalid URL ({method} {path})"),
        )
    }

    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            format!("Method {method} is not allowed for {path}"),
        )
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "authentication_error", message)
            .with_code("invalid_api_key")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission_error", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "invalid_request_error", message)
    }

    pub fn too_large(param: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            message,
        );
        e.param = Some(param.to_string());
        e
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
    }

    /// 500 with a generic message; `detail` is logged by the request layer, never sent.
    pub fn internal(detail: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "The server had an error while processing your request.",
        );
        e.internal = Some(detail.into());
        e
    }

    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Marks a deliberate rejection that no retry can fix, whatever its status.
    pub fn not_retryable(mut self) -> Self {
        self.final_answer = true;
        self
    }

    /// Whether a client retry could succeed: only 409, 429 and 5xx, unless marked
    /// [`ApiError::not_retryable`].
    pub fn retryable(&self) -> bool {
        !self.final_answer
            && (self.status == StatusCode::CONFLICT
                || self.status == StatusCode::TOO_MANY_REQUESTS
                || self.status.is_server_error())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.kind,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                message: &self.message,
                kind: self.kind,
                param: self.param.as_deref(),
                code: self.code.as_deref(),
            },
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if !self.retryable() {
            resp.headers_mut()
                .insert("x-should-retry", HeaderValue::from_static("false"));
        }
        if let Some(detail) = self.internal {
            resp.extensions_mut().insert(InternalDetail(detail));
        }
        resp
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::UnknownCursor(id) => ApiError::invalid(
                "after",
                format!(
                    "Invalid 'after': no object with id {id} in this list. Pass the id of the \
                     last object of the previous page."
                ),
            ),
            e => ApiError::internal(format!("store: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_json(resp: Response) -> serde_json::Value {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn not_found_matches_openai_shape() {
        let resp = ApiError::not_found("File", "file-abc").into_response();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(resp.headers()["x-should-retry"], "false");
        let v = body_json(resp).await;
        assert_eq!(v["error"]["message"], "No such File object: file-abc");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(v["error"]["param"].is_null());
        assert!(v["error"]["code"].is_null());
    }

    #[tokio::test]
    async fn internal_hides_detail_and_is_retryable() {
        let resp = ApiError::internal("disk on fire at /secret/path").into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(resp.headers().get("x-should-retry").is_none());
        assert!(resp.extensions().get::<InternalDetail>().is_some());
        let v = body_json(resp).await;
        assert!(!v.to_string().contains("secret"));
    }

    #[tokio::test]
    async fn unauthorized_has_invalid_api_key_code() {
        let v =
            body_json(ApiError::unauthorized("Incorrect API key provided.").into_response()).await;
        assert_eq!(v["error"]["type"], "authentication_error");
        assert_eq!(v["error"]["code"], "invalid_api_key");
    }
}
