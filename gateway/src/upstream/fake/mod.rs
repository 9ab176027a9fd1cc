//! The one fake OpenAI-compatible provider every test suite runs against: the unit tests
//! (in process), `tests/*.rs` (in process, through the `test-upstream` feature) and the
//! pytest suite (the `fake-upstream` binary, driven over `/_fake/*`).
//!
//! `/v1` speaks OpenAI's wire format: files (multipart create, list, retrieve, content),
//! fine-tuning jobs (create, list with `after`/`limit`/`metadata[k]`, retrieve, events,
//! checkpoints, cancel, pause, resume), models, chat completions (JSON, or SSE when `stream`
//! is true) and, for the proxy's tests, `POST /v1/echo`. Every `/v1` request is recorded
//! (method, path, query, headers, body) before anything answers it, so tests can assert what
//! the gateway sent, including requests the fake refused.
//!
//! Two ways to drive a job ([`Knobs::auto_advance`]): scripted, where only the test changes
//! it (`set_job`, `push_event`, `push_checkpoint`) — the unit tests assert exact mirrors;
//! or as a provider, where a job advances one step each time it is retrieved:
//! validating_files, then running (an event per step, a checkpoint per running step), then
//! succeeded after two steps unless `hold_running` held it.

mod chat;
mod control;
mod files;
mod jobs;
mod state;
mod v1;

pub use state::{FakeState, Knobs, Recorded, UpFile, UpJob};

use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The only key the fake accepts (`Authorization: Bearer …`).
pub const KEY: &str = "sk-upstream-secret";

/// A running fake: a handle to its state, shared with the server task.
#[derive(Clone)]
pub struct FakeUpstream {
    state: Arc<Mutex<FakeState>>,
    /// Bumped after every change to the state, so tests wait on it instead of sleeping.
    changes: Arc<watch::Sender<u64>>,
    /// `true` once held streams may go on; reset whenever `hold_streams` is set.
    streams_released: Arc<watch::Sender<bool>>,
    /// `http://127.0.0.1:PORT/v1`.
    pub base_url: String,
}

/// Starts a scripted fake (jobs move only when the test moves them) on 127.0.0.1:0.
pub async fn spawn() -> FakeUpstream {
    spawn_with(Knobs::default()).await
}

/// Starts a fake with these knobs on 127.0.0.1:0; `base_url` ends in `/v1`.
pub async fn spawn_with(knobs: Knobs) -> FakeUpstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the fake upstream");
    let addr = listener.local_addr().expect("addr");
    let fake = FakeUpstream {
        state: Arc::new(Mutex::new(FakeState {
            knobs,
            ..FakeState::default()
        })),
        changes: Arc::new(watch::channel(0).0),
        streams_released: Arc::new(watch::channel(false).0),
        base_url: format!("http://{addr}/v1"),
    };
    let app = v1::router(fake.clone()).merge(control::router(fake.clone()));
    tokio::spawn(async move { axum::serve(listener, app).await });
    fake
}

impl FakeUpstream {
    /// Runs `f` on the state under its lock; every call counts as a change.
    pub fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
        let out = f(&mut self.state.lock().expect("fake state"));
        self.changes.send_modify(|n| *n += 1);
        out
    }

    /// Waits until `pred` holds on the state, woken by each change; panics after `timeout`.
    pub async fn wait_until(&self, timeout: Duration, pred: impl Fn(&FakeState) -> bool) {
        let mut rx = self.changes.subscribe();
        let waited = tokio::time::timeout(timeout, async {
            loop {
                rx.borrow_and_update();
                if pred(&self.state.lock().expect("fake state")) {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "the fake upstream never reached the state waited for"
        );
    }

    /// Every `/v1` request so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.with(|s| s.requests.clone())
    }

    /// The recorded requests with this method whose path starts with `path_prefix`.
    pub fn received(&self, method: &str, path_prefix: &str) -> Vec<Recorded> {
        self.with(|s| {
            s.requests
                .iter()
                .filter(|r| r.method == method && r.path.starts_with(path_prefix))
                .cloned()
                .collect()
        })
    }

    /// The contents of every file uploaded with purpose `fine-tune`, in upload order.
    pub fn uploaded_training_files(&self) -> Vec<Vec<u8>> {
        self.with(|s| {
            s.files
                .iter()
                .filter(|f| f.meta["purpose"] == "fine-tune")
                .map(|f| f.content.clone())
                .collect()
        })
    }

    /// Appends an event (oldest first) to a job's list.
    pub fn push_event(&self, job: &str, level: &str, message: &str) {
        self.with(|s| s.push_event(job, level, message, None));
    }

    /// Appends a checkpoint at `step` to a job's list.
    pub fn push_checkpoint(&self, job: &str, step: i64) {
        self.with(|s| s.push_checkpoint(job, step));
    }

    /// Overwrites these fields of a job's object.
    pub fn set_job(&self, job: &str, patch: Value) {
        self.with(|s| {
            if let Some(j) = s.job_mut(job) {
                for (k, v) in patch.as_object().into_iter().flatten() {
                    j.obj[k] = v.clone();
                }
            }
        });
    }

    /// Holds every SSE stream after its first event until [`release_streams`](Self::release_streams)
    /// (proof that the gateway streams rather than buffers).
    pub fn hold_streams(&self) {
        self.with(|s| s.knobs.hold_streams = true);
        self.streams_released.send_replace(false);
    }

    /// Lets every held stream, and every later one, go on.
    pub fn release_streams(&self) {
        self.streams_released.send_replace(true);
    }
}
