//! Models, chat completions (`echo: <last message>`, or the reply `chat_replies` scripts for
//! the model; JSON or SSE one word per chunk) and the proxy tests' echo route.

use super::state::now;
use super::v1::error;
use super::FakeUpstream;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::time::Duration;

/// The one model the fake serves.
pub const MODEL: &str = "gpt-4o-mini";

/// How long a held stream waits to be released before it gives up and says so.
const STREAM_HOLD: Duration = Duration::from_secs(10);

fn model_object(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 1, "owned_by": "fake"})
}

/// The list carries a hop-by-hop header named in `Connection`, which a proxy must drop,
/// and an end-to-end one, which it must pass back.
pub(super) async fn models() -> Response {
    let mut resp = Json(json!({"object": "list", "data": [model_object(MODEL)]})).into_response();
    let h = resp.headers_mut();
    h.insert("connection", "x-internal".parse().expect("static"));
    h.insert("x-internal", "hop".parse().expect("static"));
    h.insert("x-upstream", "yes".parse().expect("static"));
    resp
}

pub(super) async fn model(Path(id): Path<String>) -> Response {
    if id == MODEL {
        return Json(model_object(&id)).into_response();
    }
    let msg = format!("The model '{id}' does not exist");
    error(StatusCode::NOT_FOUND, &msg, Some("model"))
}

pub(super) async fn completions(State(f): State<FakeUpstream>, Json(req): Json<Value>) -> Response {
    let last = req["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default();
    let scripted = f.with(|s| {
        let model = req["model"].as_str().unwrap_or_default();
        s.knobs
            .chat_replies
            .iter()
            .filter(|(k, _)| model.contains(k.as_str()))
            .max_by_key(|(k, _)| k.len())
            .map(|(_, v)| v.clone())
    });
    let reply = scripted.unwrap_or_else(|| format!("echo: {last}"));
    let (id, model) = ("chatcmpl-up", req["model"].clone());
    if req["stream"] != true {
        return Json(json!({"id": id, "object": "chat.completion", "created": now(), "model": model,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": reply}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}))
        .into_response();
    }
    let chunk = |delta: Value, finish: Value| {
        let c = json!({"id": id, "object": "chat.completion.chunk", "created": now(), "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        Bytes::from(format!("data: {c}\n\n"))
    };
    let mut frames: Vec<Bytes> = reply
        .split(' ')
        .enumerate()
        .map(|(i, w)| {
            let piece = if i == 0 {
                w.to_string()
            } else {
                format!(" {w}")
            };
            chunk(json!({"content": piece}), Value::Null)
        })
        .collect();
    frames.push(chunk(json!({}), json!("stop")));
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(held_after_first(f, frames)))
        .expect("static response")
}

/// The first frame at once; the rest after the streams are released when `hold_streams` is
/// on (or after [`STREAM_HOLD`], recording that the gateway never let the first one out).
fn held_after_first(
    f: FakeUpstream,
    mut frames: Vec<Bytes>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    use futures::StreamExt;
    let rest = frames.split_off(1.min(frames.len()));
    let wait = async move {
        if f.with(|s| s.knobs.hold_streams) {
            let mut released = f.streams_released.subscribe();
            let waited = tokio::time::timeout(STREAM_HOLD, released.wait_for(|r| *r)).await;
            if waited.is_err() {
                f.with(|s| s.stream_gate_timed_out = true);
            }
        }
        futures::stream::iter(rest.into_iter().map(Ok))
    };
    futures::stream::iter(frames.into_iter().map(Ok)).chain(futures::stream::once(wait).flatten())
}

pub(super) async fn echo(body: Bytes) -> Response {
    (StatusCode::CREATED, body).into_response()
}
