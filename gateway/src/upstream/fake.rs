//! A tiny in-process "upstream" speaking OpenAI's wire format, for tests: files, fine-tuning
//! jobs (events and checkpoints newest first, cursor pages), models, chat completions (with
//! an SSE stream held open until the test releases it) and an echo route.

use axum::body::{Body, Bytes};
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

pub(crate) const KEY: &str = "sk-upstream-secret";

#[derive(Default)]
pub(crate) struct FakeState {
    pub files: Vec<(String, String, Vec<u8>)>,
    pub jobs: Vec<Value>,
    pub creates: Vec<Value>,
    /// Per job, oldest first.
    pub events: HashMap<String, Vec<Value>>,
    pub checkpoints: HashMap<String, Vec<Value>>,
    pub last_headers: Option<HeaderMap>,
    /// Answer the next N requests with 503 (or `fail_status`).
    pub fail_next: u32,
    /// The status `fail_next` answers with; 503 when unset.
    pub fail_status: Option<StatusCode>,
    /// Sent as `retry-after-ms` on `fail_next` answers.
    pub fail_retry_after_ms: Option<u64>,
}

#[derive(Clone)]
pub(crate) struct Fake {
    pub state: Arc<Mutex<FakeState>>,
    pub release: Arc<Notify>,
    pub base_url: String,
}

impl Fake {
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
        f(&mut self.state.lock().expect("fake state"))
    }

    pub(crate) fn push_event(&self, job: &str, level: &str, message: &str) {
        self.with(|s| {
            let list = s.events.entry(job.to_string()).or_default();
            let id = format!("ftevent-up{}", list.len());
            list.push(json!({"id": id, "object": "fine_tuning.job.event", "created_at": 1, "level": level, "message": message, "type": "message"}));
        });
    }

    pub(crate) fn push_checkpoint(&self, job: &str, step: i64) {
        self.with(|s| {
            let list = s.checkpoints.entry(job.to_string()).or_default();
            list.push(json!({"id": format!("ftckpt-up{step}"), "object": "fine_tuning.job.checkpoint", "created_at": 1,
                "fine_tuned_model_checkpoint": format!("ft:m:ckpt-step-{step}"), "fine_tuning_job_id": job,
                "step_number": step, "metrics": {"step": step, "train_loss": 0.5}}));
        });
    }

    pub(crate) fn set_job(&self, job: &str, patch: Value) {
        self.with(|s| {
            if let Some(j) = s.jobs.iter_mut().find(|j| j["id"] == job) {
                for (k, v) in patch.as_object().into_iter().flatten() {
                    j[k] = v.clone();
                }
            }
        });
    }
}

fn err(status: StatusCode, msg: &str) -> Response {
    (status, Json(json!({"error": {"message": msg, "type": "invalid_request_error", "param": null, "code": null}}))).into_response()
}

async fn gate(fake: &Fake, headers: &HeaderMap) -> Option<Response> {
    let mut s = fake.state.lock().expect("fake state");
    s.last_headers = Some(headers.clone());
    if s.fail_next > 0 {
        s.fail_next -= 1;
        let status = s.fail_status.unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut resp = err(status, "overloaded");
        if let Some(ms) = s.fail_retry_after_ms {
            resp.headers_mut()
                .insert("retry-after-ms", axum::http::HeaderValue::from(ms));
        }
        return Some(resp);
    }
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    (auth != Some(&format!("Bearer {KEY}")))
        .then(|| err(StatusCode::UNAUTHORIZED, "Incorrect API key provided"))
}

async fn files(State(f): State<Fake>, headers: HeaderMap, mut mp: Multipart) -> Response {
    // The body is read before any error answer, as real providers do, so the client sees
    // the status rather than a connection reset mid-upload.
    let (mut purpose, mut data, mut name) = (String::new(), Vec::new(), String::new());
    while let Ok(Some(field)) = mp.next_field().await {
        match field.name() {
            Some("purpose") => purpose = field.text().await.unwrap_or_default(),
            Some("file") => {
                name = field.file_name().unwrap_or_default().to_string();
                data = field.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
            }
            _ => {}
        }
    }
    if let Some(r) = gate(&f, &headers).await {
        return r;
    }
    let id = f.with(|s| {
        let id = format!("file-up{}", s.files.len());
        s.files.push((id.clone(), purpose.clone(), data.clone()));
        id
    });
    Json(json!({"id": id, "object": "file", "bytes": data.len(), "created_at": 1, "filename": name, "purpose": purpose, "status": "processed"})).into_response()
}

async fn create_job(
    State(f): State<Fake>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(r) = gate(&f, &headers).await {
        return r;
    }
    let job = f.with(|s| {
        s.creates.push(body.clone());
        let job = json!({"id": format!("ftjob-up{}", s.jobs.len()), "object": "fine_tuning.job", "status": "validating_files",
            "model": body["model"], "training_file": body["training_file"], "metadata": body["metadata"],
            "fine_tuned_model": null, "trained_tokens": null, "error": null});
        s.jobs.push(job.clone());
        job
    });
    Json(job).into_response()
}

async fn list_jobs(
    State(f): State<Fake>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = gate(&f, &headers).await {
        return r;
    }
    let want = q.get("metadata[tuneguard_job_id]").cloned();
    let data: Vec<Value> = f.with(|s| {
        s.jobs
            .iter()
            .filter(|j| {
                want.as_deref()
                    .is_none_or(|w| j["metadata"]["tuneguard_job_id"] == w)
            })
            .cloned()
            .collect()
    });
    Json(json!({"object": "list", "data": data, "has_more": false})).into_response()
}

async fn get_job(State(f): State<Fake>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = gate(&f, &headers).await {
        return r;
    }
    match f.with(|s| s.jobs.iter().find(|j| j["id"] == id.as_str()).cloned()) {
        Some(j) => Json(j).into_response(),
        None => err(
            StatusCode::NOT_FOUND,
            &format!("No such fine-tuning job: {id}"),
        ),
    }
}

fn page(all: Vec<Value>, q: &HashMap<String, String>) -> Value {
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(20);
    let mut newest_first: Vec<Value> = all.into_iter().rev().collect();
    if let Some(a) = q.get("after") {
        if let Some(i) = newest_first.iter().position(|e| e["id"] == a.as_str()) {
            newest_first.drain(..=i);
        }
    }
    let has_more = newest_first.len() > limit;
    newest_first.truncate(limit);
    json!({"object": "list", "data": newest_first, "has_more": has_more})
}

async fn events(
    State(f): State<Fake>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = gate(&f, &headers).await {
        return r;
    }
    Json(page(
        f.with(|s| s.events.get(&id).cloned().unwrap_or_default()),
        &q,
    ))
    .into_response()
}

async fn checkpoints(
    State(f): State<Fake>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = gate(&f, &headers).await {
        return r;
    }
    Json(page(
        f.with(|s| s.checkpoints.get(&id).cloned().unwrap_or_default()),
        &q,
    ))
    .into_response()
}

async fn cancel(State(f): State<Fake>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = gate(&f, &headers).await {
        return r;
    }
    f.set_job(&id, json!({"status": "cancelled"}));
    get_job(State(f), headers, Path(id)).await
}

async fn pause(State(f): State<Fake>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = gate(&f, &headers).await {
        return r;
    }
    f.set_job(&id, json!({"status": "paused"}));
    get_job(State(f), headers, Path(id)).await
}

async fn resume(State(f): State<Fake>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = gate(&f, &headers).await {
        return r;
    }
    f.set_job(&id, json!({"status": "running"}));
    get_job(State(f), headers, Path(id)).await
}

/// `GET /v1/models/{id}`: only `gpt-test` exists; anything else is OpenAI's 404.
async fn model(State(f): State<Fake>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = gate(&f, &headers).await {
        return r;
    }
    if id == "gpt-test" {
        return Json(json!({"id": id, "object": "model", "created": 1, "owned_by": "fake"}))
            .into_response();
    }
    err(
        StatusCode::NOT_FOUND,
        &format!("The model '{id}' does not exist"),
    )
}

async fn models(
    State(f): State<Fake>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = gate(&f, &headers).await {
        return r;
    }
    let mut resp = Json(json!({"object": "list", "data": [{"id": "gpt-test", "object": "model", "created": 1, "owned_by": "fake"}], "query": q})).into_response();
    resp.headers_mut()
        .insert("connection", "x-internal".parse().expect("static"));
    resp.headers_mut()
        .insert("x-internal", "hop".parse().expect("static"));
    resp.headers_mut()
        .insert("x-upstream", "yes".parse().expect("static"));
    resp
}

async fn chat(State(f): State<Fake>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Some(r) = gate(&f, &headers).await {
        return r;
    }
    if body["stream"] != true {
        return Json(json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop"}]})).into_response();
    }
    let release = f.release.clone();
    let chunk = |content: &str| {
        let c = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-test",
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]});
        Bytes::from(format!("data: {c}\n\n"))
    };
    let first = chunk("Hel");
    let second = chunk("lo");
    let stream = async_stream(first, release, second);
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .expect("static response")
}

/// First chunk at once; the rest only after the test calls `release.notify_one()`.
fn async_stream(
    first: Bytes,
    release: Arc<Notify>,
    second: Bytes,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    use futures::StreamExt;
    let rest = futures::stream::once(async move {
        release.notified().await;
        futures::stream::iter(vec![
            Ok(second),
            Ok(Bytes::from_static(b"data: [DONE]\n\n")),
        ])
    })
    .flatten();
    futures::stream::iter(vec![Ok(first)]).chain(rest)
}

async fn echo(State(f): State<Fake>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = gate(&f, &headers).await {
        return r;
    }
    (StatusCode::CREATED, body).into_response()
}

/// Starts the fake on 127.0.0.1:0; `base_url` ends in `/v1`.
pub(crate) async fn spawn() -> Fake {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let fake = Fake {
        state: Arc::default(),
        release: Arc::new(Notify::new()),
        base_url: format!("http://{addr}/v1"),
    };
    let app = Router::new()
        .route("/v1/files", post(files))
        .route("/v1/fine_tuning/jobs", post(create_job).get(list_jobs))
        .route("/v1/fine_tuning/jobs/{id}", get(get_job))
        .route("/v1/fine_tuning/jobs/{id}/events", get(events))
        .route("/v1/fine_tuning/jobs/{id}/checkpoints", get(checkpoints))
        .route("/v1/fine_tuning/jobs/{id}/cancel", post(cancel))
        .route("/v1/fine_tuning/jobs/{id}/pause", post(pause))
        .route("/v1/fine_tuning/jobs/{id}/resume", post(resume))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/echo", post(echo))
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    fake
}
