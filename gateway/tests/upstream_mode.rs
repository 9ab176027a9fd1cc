//! Upstream mode end to end through the real binary: a job's transformed dataset goes to a
//! fake OpenAI-compatible provider, and its status, events and checkpoints come back under
//! the gateway's own ids.

mod common;

use bytes::Bytes;
use common::{get_json, send, start, write_config};
use gateway::upstream::fake::{self, Knobs, KEY};
use http_body_util::Full;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const EXAMPLE: &str = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"hello\"}]}\n";

#[tokio::test]
async fn job_is_forwarded_and_mirrored_back() {
    // The crate's one fake provider, as the pytest suite runs it: jobs advance as polled.
    let up = fake::spawn_with(Knobs::provider()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[upstream]\nbase_url = \"{}\"\napi_key = \"{KEY}\"\n",
            up.base_url
        ),
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

    // The fake's own state is an event to wait on; the gateway, another process, is not:
    // once the upstream job has succeeded, its status is polled (with a deadline) until the
    // gateway has mirrored it.
    up.wait_until(Duration::from_secs(30), |s| {
        s.jobs
            .first()
            .is_some_and(|j| j.obj["status"] == "succeeded")
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let last = loop {
        let (_, j) = get_json(&srv.addr, &format!("/v1/fine_tuning/jobs/{id}"), "sk-test").await;
        if j["status"] == "succeeded" || j["status"] == "failed" || Instant::now() > deadline {
            break j;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(last["status"], "succeeded", "{last}");
    let up_job = up.with(|s| s.jobs[0].clone());
    assert_eq!(last["fine_tuned_model"], up_job.obj["fine_tuned_model"]);
    assert_eq!(
        last["id"],
        id.as_str(),
        "the gateway's own id, not the upstream one"
    );
    assert_eq!(
        up.uploaded_training_files(),
        vec![data.as_bytes().to_vec()],
        "the default policy forwards the dataset unchanged"
    );
    let created = up.with(|s| s.creates[0].clone());
    assert_eq!(created["training_file"], "file-up0");
    assert_eq!(created["model"], "gpt-4o-mini");
    assert!(up
        .requests()
        .iter()
        .all(|r| r.headers.get("authorization").map(String::as_str)
            == Some(&format!("Bearer {KEY}"))));
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
    assert!(
        msgs.iter().any(|m| m == "Fine-tuning job started"),
        "{msgs:?}"
    );
    assert!(msgs
        .iter()
        .any(|m| m == "The job has successfully completed"));
    assert!(ev["data"].as_array().unwrap().iter().all(|e| {
        let id = e["id"].as_str().unwrap();
        id.starts_with("ftevent-") && !id.starts_with("ftevent-up")
    }));
    let (_, ck) = get_json(
        &srv.addr,
        &format!("/v1/fine_tuning/jobs/{id}/checkpoints"),
        "sk-test",
    )
    .await;
    let steps: Vec<i64> = ck["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["step_number"].as_i64().unwrap())
        .collect();
    assert_eq!(steps, vec![2, 1], "newest first");
    assert_eq!(ck["data"][0]["fine_tuning_job_id"], id.as_str());
    assert!(!ck["data"][0]["id"]
        .as_str()
        .unwrap()
        .starts_with("ftckpt-up"));
}
