//! What the fake holds: its knobs, the recorded requests, files and jobs (each job's events
//! and checkpoints oldest first, as they happened; the routes answer newest first).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Behaviour a test sets; over HTTP, `POST /_fake/config` with any subset of these fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Knobs {
    /// Act as a provider: a job advances one step per retrieve and writes its own events.
    /// Off (the unit tests' default), a job changes only when the test changes it.
    pub auto_advance: bool,
    /// New jobs stay running (a checkpoint per retrieve) until a test lifts their `hold`.
    pub hold_running: bool,
    /// SSE streams pause after their first event until released (see `FakeUpstream`).
    pub hold_streams: bool,
    /// Answer the next N `/v1` requests with `fail_status` (503 when unset).
    pub fail_next: u32,
    pub fail_status: Option<u16>,
    /// Sent as `retry-after-ms` on those answers.
    pub fail_retry_after_ms: Option<u64>,
    /// When set, only requests whose path ends with it count toward `fail_next` (e.g.
    /// `"/cancel"`); others are answered normally.
    pub fail_path_suffix: Option<String>,
    /// Chat replies by model: a request whose model contains a key is answered with its text
    /// (the longest such key wins; e.g. `"ckpt-step-2"` for one checkpoint model); any other
    /// request with `echo: <last message>`.
    pub chat_replies: BTreeMap<String, String>,
}

impl Knobs {
    /// The knobs of a fake that plays a provider on its own (the binary's default).
    pub fn provider() -> Knobs {
        Knobs {
            auto_advance: true,
            ..Knobs::default()
        }
    }
}

/// One `/v1` request as it arrived. Header names are lowercase; a repeated header or query
/// key keeps its last value.
#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub headers: BTreeMap<String, String>,
    #[serde(serialize_with = "as_hex")]
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UpFile {
    /// The file object the routes answer with.
    pub meta: Value,
    #[serde(serialize_with = "as_hex")]
    pub content: Vec<u8>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UpJob {
    /// The job object the routes answer with.
    pub obj: Value,
    pub events: Vec<Value>,
    pub checkpoints: Vec<Value>,
    /// Kept running by `hold_running` when it was created.
    pub hold: bool,
}

/// Bytes travel to the Python client as hex: JSON has no bytes, and `hex` is already here.
fn as_hex<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes))
}

#[derive(Debug, Default)]
pub struct FakeState {
    pub knobs: Knobs,
    pub requests: Vec<Recorded>,
    /// In upload order; ids `file-up0`, `file-up1`, …
    pub files: Vec<UpFile>,
    /// In creation order; ids `ftjob-up0`, `ftjob-up1`, …
    pub jobs: Vec<UpJob>,
    /// The bodies of the job creates the fake accepted.
    pub creates: Vec<Value>,
    /// A held stream waited 10 s without being released: the gateway buffered it.
    pub stream_gate_timed_out: bool,
    /// For event and checkpoint ids, unique across jobs as OpenAI's are.
    pub(super) next_id: u64,
}

pub(super) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl FakeState {
    pub fn job(&self, id: &str) -> Option<&UpJob> {
        self.jobs.iter().find(|j| j.obj["id"] == id)
    }

    pub fn job_mut(&mut self, id: &str) -> Option<&mut UpJob> {
        self.jobs.iter_mut().find(|j| j.obj["id"] == id)
    }

    pub fn file(&self, id: &str) -> Option<&UpFile> {
        self.files.iter().find(|f| f.meta["id"] == id)
    }

    fn mint(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{}", self.next_id)
    }

    /// Appends an event; `data` makes it a `metrics` event, as OpenAI sends step metrics.
    pub fn push_event(&mut self, job: &str, level: &str, message: &str, data: Option<Value>) {
        let id = self.mint("ftevent-up");
        if let Some(j) = self.job_mut(job) {
            let kind = if data.is_some() { "metrics" } else { "message" };
            j.events.push(
                json!({"id": id, "object": "fine_tuning.job.event", "created_at": now(),
                "level": level, "message": message, "type": kind, "data": data}),
            );
        }
    }

    /// Appends a checkpoint at `step` (model `ft:<model>:fake::ckpt-step-<step>`).
    pub fn push_checkpoint(&mut self, job: &str, step: i64) {
        let id = self.mint("ftckpt-up");
        if let Some(j) = self.job_mut(job) {
            let model = j.obj["model"].as_str().unwrap_or("m").to_string();
            j.checkpoints.push(json!({"id": id, "object": "fine_tuning.job.checkpoint",
                "created_at": now(), "fine_tuned_model_checkpoint": format!("ft:{model}:fake::ckpt-step-{step}"),
                "fine_tuning_job_id": job, "step_number": step,
                "metrics": {"step": step, "train_loss": 0.5, "train_mean_token_accuracy": 0.8}}));
        }
    }
}
