//! Upstream mode end to end through the real binary: a job's transformed dataset goes to a
//! fake OpenAI-compatible provider, and its status, events and checkpoints come back under
//! the gateway's own ids.

mod common;

use axum::routing::{get, post};
use axum::Json;
use bytes::Bytes;
use common::{get_json, send, start, write_config};
use http_body_util::Full;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Seen {
    uploaded: Vec<u8>,
    created: Option<Value>,
}

fn fake_upstream(seen: Arc<Mutex<Seen>>) -> axum::Router {
    let s1 = seen.clone();
    let s2 = seen.clone();
    axum::Router::new()
        .route(
            "/v1/files",
            post(move |mut mp: axum::extract::Multipart| async move {
                while let Ok(Some(f)) = mp.next_field().await {
                    if f.name() == Some("file") {
                        let bytes = f.bytes().await.unwrap_or_default();
                        s1.lock().unwrap().uploaded = bytes.to_vec();
                    }
                }
                Json(json!({"id": "file-up", "object": "file", "bytes": 1, "created_at": 1, "filename": "x", "purpose": "fine-tune", "status": "processed"}))
            }),
        )
        .route(
            "/v1/fine_tuning/jobs",
            get(|| async { Json(json!({"object": "list", "data": [], "has_more": false})) }).post(
                move |Json(body): Json<Value>| async move {
                    s2.lock().unwrap().created = Some(body);
                    Json(json!({"id": "ftjob-up", "object": "fine_tuning.job", "status": "queued", "training_file": "file-up"}))
                },
            ),
        )
        .route(
            "/v1/fine_tuning/jobs/ftjob-up",
            get(|| async {
                Json(json!({"id": "ftjob-up", "object": "fine_tuning.job", "status": "succeeded", "fine_tuned_model": "ft:m:up", "trained_tokens": 1234}))
            }),
        )
        .route(
            "/v1/fine_tuning/jobs/ftjob-up/events",
            get(|| async {
                Json(json!({"object": "list", "has_more": false, "data": [
                    {"id": "ftevent-up2", "object": "fine_tuning.job.event", "created_at": 2, "level": "info", "message": "upstream step 2", "type": "message"},
                    {"id": "ftevent-up1", "object": "fine_tuning.job.event", "created_at": 1, "level": "info", "message": "upstream step 1", "type": "message"}
                ]}))
            }),
        )
        .route(
            "/v1/fine_tuning/jobs/ftjob-up/checkpoints",
            get(|| async {
                Json(json!({"object": "list", "has_more": false, "data": [
                    {"id": "ftckpt-up1", "object": "fine_tuning.job.checkpoint", "created_at": 1, "fine_tuned_model_checkpoint": "ft:m:up:ckpt-1", "fine_tuning_job_id": "ftjob-up", "step_number": 10, "metrics": {"step": 10, "train_loss": 0.5}}
                ]}))
            }),
        )
}

const EXAMPLE: &str = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"hello\"}]}\n";

#[tokio::test]
async fn job_is_forwarded_and_mirrored_back() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    let app = fake_upstream(seen.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!("[upstream]\nbase_url = \"http://{up}/v1\"\napi_key = \"sk-up\"\n"),
    );
    let srv = start(&config);

    let data = EXAMPLE.repeat(12);
    let boundary = "UpBoundary";
    let body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.jsonl\"\r\n\r\n{data}\r\n--{boundary}--\r\n");
    let req = hyper::Request::post("/v1/files")
        .header("host", "localhost")
        .header("authorization", "Bearer sk-test")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let (s, b) = send(&srv.addr, req).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let file: Value = serde_json::from_slice(&b).unwrap();

    let req = hyper::Request::post("/v1/fine_tuning/jobs")
        .header("host", "localhost")
        .header("authorization", "Bearer sk-test")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(json!({"model": "gpt-4o-mini", "training_file": file["id"], "hyperparameters": {"n_epochs": 2}}).to_string())))
        .unwrap();
    let (s, b) = send(&srv.addr, req).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let job: Value = serde_json::from_slice(&b).unwrap();
    let id = job["id"].as_str().unwrap().to_string();

    let mut last = Value::Null;
    for _ in 0..300 {
        let (_, j) = get_json(&srv.addr, &format!("/v1/fine_tuning/jobs/{id}"), "sk-test").await;
        if j["status"] == "succeeded" || j["status"] == "failed" {
            last = j;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(last["status"], "succeeded", "{last}");
    assert_eq!(last["fine_tuned_model"], "ft:m:up");
    assert_eq!(
        last["id"],
        id.as_str(),
        "the gateway's own id, not the upstream one"
    );
    {
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.uploaded,
            data.as_bytes(),
            "the default policy forwards the dataset unchanged"
        );
        let created = seen.created.clone().unwrap();
        assert_eq!(created["training_file"], "file-up");
        assert_eq!(created["model"], "gpt-4o-mini");
    }
    let (_, ev) = get_json(
        &srv.addr,
        &format!("/v1/fine_tuning/jobs/{id}/events?limit=100"),
        "sk-test",
    )
    .await;
    let msgs: Vec<String> = ev["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(msgs.iter().any(|m| m == "upstream step 1"), "{msgs:?}");
    assert!(ev["data"].as_array().unwrap().iter().all(|e| e["id"]
        .as_str()
        .unwrap()
        .starts_with("ftevent-")
        && e["id"] != "ftevent-up1"));
    let (_, ck) = get_json(
        &srv.addr,
        &format!("/v1/fine_tuning/jobs/{id}/checkpoints"),
        "sk-test",
    )
    .await;
    assert_eq!(ck["data"][0]["step_number"], 10);
    assert_eq!(ck["data"][0]["fine_tuning_job_id"], id.as_str());
    assert_ne!(ck["data"][0]["id"], "ftckpt-up1");
}
