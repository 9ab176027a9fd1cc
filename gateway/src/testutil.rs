//! Test helpers: a state on a temp dir with tenants `acme` (key `sk-acme`), `beta`
//! (`sk-beta`) and an admin (`sk-admin`), request builders and body readers.

use crate::auth::hash_key;
use crate::config::Config;
use crate::jobs::Seams;
use crate::state::AppState;
use axum::body::Body;
use axum::http::{Request, Response};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub struct TestApp {
    pub state: AppState,
    pub dir: tempfile::TempDir,
}

pub fn config(dir: &std::path::Path, extra: &str) -> Config {
    let text = format!(
        "[storage]\ndata_dir = {:?}\n[auth]\nadmin_key_hashes = [\"sha256:{}\"]\n\
         [[tenants]]\nname = \"acme\"\napi_key_hashes = [\"sha256:{}\"]\n\
         [[tenants]]\nname = \"beta\"\napi_key_hashes = [\"sha256:{}\"]\n{extra}",
        dir.display().to_string(),
        hash_key("sk-admin"),
        hash_key("sk-acme"),
        hash_key("sk-beta"),
    );
    Config::from_sources(Some(("test.toml", &text)), Vec::new()).expect("test config")
}

pub fn app_with(extra: &str, seams: Seams) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), extra);
    let state = crate::serve::build_state_with(cfg, seams).expect("state");
    state.set_ready(true);
    TestApp { state, dir }
}

pub fn app() -> TestApp {
    app_with("", Seams::builtin())
}

impl TestApp {
    pub async fn send(&self, req: Request<Body>) -> Response<Body> {
        crate::api::app(self.state.clone())
            .oneshot(req)
            .await
            .expect("infallible")
    }

    pub async fn json(
        &self,
        method: &str,
        uri: &str,
        key: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {key}"));
        let body = match body {
            Some(v) => {
                b = b.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let resp = self.send(b.body(body).expect("request")).await;
        let status = resp.status().as_u16();
        (status, body_json(resp).await)
    }

    pub async fn upload_file(&self, key: &str, purpose: &str, content: &[u8]) -> (u16, Value) {
        let (ct, body) = multipart(&[
            ("purpose", None, purpose.as_bytes()),
            ("file", Some("train.jsonl"), content),
        ]);
        let req = Request::post("/v1/files")
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", ct)
            .body(Body::from(body))
            .expect("request");
        let resp = self.send(req).await;
        let status = resp.status().as_u16();
        (status, body_json(resp).await)
    }

    /// Names of files under data_dir/blobs.
    pub fn blob_names(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.path().join("blobs"))
            .expect("blobs dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
            .collect();
        v.sort();
        v
    }
}

/// (content-type, body) of a multipart form: (name, filename, bytes).
pub fn multipart(fields: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "XtuneguardBoundaryX";
    let mut body = Vec::new();
    for (name, filename, data) in fields {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match filename {
            Some(f) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
            ),
            None => body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

pub async fn body_bytes(resp: Response<Body>) -> Vec<u8> {
    resp.into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec()
}

pub async fn body_json(resp: Response<Body>) -> Value {
    let b = body_bytes(resp).await;
    if b.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(&b)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&b).to_string()))
}

pub const TRAIN: &[u8] = b"{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"hello\"}]}\n";

/// A job record for tests that put jobs in a store directly: created at 1, `finished_at` 2
/// when `status` is terminal, pipeline empty.
pub fn job_record(
    id: &str,
    tenant: &str,
    status: crate::store::JobStatus,
) -> crate::store::JobRecord {
    use crate::store::*;
    JobRecord {
        revision: 0,
        id: id.into(),
        tenant: tenant.into(),
        created_at: 1,
        model: "gpt-4o-mini".into(),
        training_file: "file-1".into(),
        validation_file: None,
        hyperparameters: serde_json::json!({}),
        method: serde_json::json!({"type": "supervised"}),
        suffix: None,
        seed: 1,
        metadata: None,
        status,
        step: if status.is_terminal() {
            JobStep::Done
        } else {
            JobStep::Run
        },
        error: None,
        fine_tuned_model: None,
        finished_at: status.is_terminal().then_some(2),
        trained_tokens: None,
        result_files: vec![],
        estimated_finish: None,
        pipeline: Pipeline::default(),
    }
}

/// An info event `name` of job `job_id`.
pub fn event_record(job_id: &str, name: &str) -> crate::store::EventRecord {
    crate::store::EventRecord {
        id: format!("ev-{job_id}-{name}"),
        job_id: job_id.into(),
        created_at: 1,
        level: crate::store::EventLevel::Info,
        message: name.into(),
        kind: "message".into(),
        data: None,
    }
}
