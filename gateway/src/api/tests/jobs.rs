use crate::testutil::*;
use serde_json::{json, Value};

async fn file(t: &TestApp, key: &str, purpose: &str) -> String {
    let (s, f) = t.upload_file(key, purpose, TRAIN).await;
    assert_eq!(s, 200);
    f["id"].as_str().unwrap().to_string()
}

async fn create(t: &TestApp, key: &str, body: Value) -> (u16, Value) {
    t.json("POST", "/v1/fine_tuning/jobs", key, Some(body))
        .await
}

/// A job create by sk-acme with an `Idempotency-Key` header.
async fn create_keyed(t: &TestApp, key: &str, body: Value) -> axum::response::Response {
    let req = axum::http::Request::post("/v1/fine_tuning/jobs")
        .header("authorization", "Bearer sk-acme")
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    t.send(req).await
}

#[tokio::test]
async fn create_retrieve_list_and_isolation() {
    let t = app();
    let fid = file(&t, "sk-acme", "fine-tune").await;
    let (s, j) = create(&t, "sk-acme", json!({"model": "m", "training_file": fid, "metadata": {"team": "a"}, "suffix": "x", "seed": 5})).await;
    assert_eq!(s, 200, "{j}");
    let id = j["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("ftjob-"));
    assert_eq!(j["object"], "fine_tuning.job");
    assert_eq!(j["status"], "validating_files");
    assert_eq!(j["seed"], 5);
    assert_eq!(j["method"]["type"], "supervised");
    assert_eq!(j["hyperparameters"]["n_epochs"], "auto");
    let (_, j2) = create(
        &t,
        "sk-acme",
        json!({"model": "m", "training_file": fid, "metadata": {"team": "b"}}),
    )
    .await;

    let (_, all) = t.json("GET", "/v1/fine_tuning/jobs", "sk-acme", None).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 2);
    assert_eq!(all["data"][0]["id"], j2["id"]);
    let (_, filtered) = t
        .json(
            "GET",
            "/v1/fine_tuning/jobs?metadata[team]=a",
            "sk-acme",
            None,
        )
        .await;
    assert_eq!(filtered["data"].as_array().unwrap().len(), 1);
    assert_eq!(filtered["data"][0]["id"], id.as_str());
    let (_, page) = t
        .json("GET", "/v1/fine_tuning/jobs?limit=1", "sk-acme", None)
        .await;
    assert_eq!(page["has_more"], true);

    let (_, other) = t.json("GET", "/v1/fine_tuning/jobs", "sk-beta", None).await;
    assert_eq!(other["data"].as_array().unwrap().len(), 0);
    for (m, p) in [
        ("GET", format!("/v1/fine_tuning/jobs/{id}")),
        ("GET", format!("/v1/fine_tuning/jobs/{id}/events")),
        ("GET", format!("/v1/fine_tuning/jobs/{id}/checkpoints")),
        ("POST", format!("/v1/fine_tuning/jobs/{id}/cancel")),
        ("POST", format!("/v1/fine_tuning/jobs/{id}/pause")),
        ("POST", format!("/v1/fine_tuning/jobs/{id}/resume")),
    ] {
        let (s, v) = t.json(m, &p, "sk-beta", None).await;
        assert_eq!(s, 404, "{m} {p}");
        assert_eq!(
            v["error"]["message"],
            format!("No such FineTuningJob object: {id}")
        );
    }
    // beta cannot use acme's file either
    let (s, v) = create(&t, "sk-beta", json!({"model": "m", "training_file": fid})).await;
    assert_eq!(s, 404);
    assert_eq!(v["error"]["param"], "training_file");
}

#[tokio::test]
async fn file_checks_and_unsupported_methods() {
    let t = app();
    let (s, v) = create(
        &t,
        "sk-acme",
        json!({"model": "m", "training_file": "file-missing"}),
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(v["error"]["message"], "No such File object: file-missing");
    let batch = file(&t, "sk-acme", "batch").await;
    let (s, v) = create(&t, "sk-acme", json!({"model": "m", "training_file": batch})).await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["param"], "training_file");
    let fid = file(&t, "sk-acme", "fine-tune").await;
    let (s, v) = create(
        &t,
        "sk-acme",
        json!({"model": "m", "training_file": fid, "validation_file": "file-nope"}),
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(v["error"]["param"], "validation_file");
    let (s, v) = create(
        &t,
        "sk-acme",
        json!({"model": "m", "training_file": fid, "method": {"type": "dpo"}}),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["param"], "method.type");
}

#[tokio::test]
async fn idempotency_key_and_body_dedupe() {
    let t = app();
    let fid = file(&t, "sk-acme", "fine-tune").await;
    let body = json!({"model": "m", "training_file": fid});
    let (_, a) = create(&t, "sk-acme", body.clone()).await;
    let (_, b) = create(&t, "sk-acme", body.clone()).await;
    assert_eq!(
        a["id"], b["id"],
        "SDK retry without a key must not create a second job"
    );
    let (_, c) = create(&t, "sk-acme", json!({"model": "m2", "training_file": fid})).await;
    assert_ne!(a["id"], c["id"]);

    let send = |key: &'static str, body: Value| create_keyed(&t, key, body);
    let x = body_json(send("k1", json!({"model": "m3", "training_file": fid})).await).await;
    let y = body_json(send("k1", json!({"model": "m3", "training_file": fid})).await).await;
    assert_eq!(x["id"], y["id"], "same key and body replays the job");
    let (_, all) = t.json("GET", "/v1/fine_tuning/jobs", "sk-acme", None).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn explicit_keys_decide_and_dead_jobs_are_not_replayed() {
    let t = app();
    let fid = file(&t, "sk-acme", "fine-tune").await;
    let body = json!({"model": "m", "training_file": fid});
    let send = |key: &'static str| create_keyed(&t, key, body.clone());
    // Two keys with one body: the caller said these are two requests, not a retry.
    let a = body_json(send("ka").await).await;
    let b = body_json(send("kb").await).await;
    assert_ne!(a["id"], b["id"]);
    assert_eq!(body_json(send("kb").await).await["id"], b["id"]);

    // Without a key, the body window replays a live job but not a cancelled one.
    let other = json!({"model": "m2", "training_file": fid});
    let (_, c) = create(&t, "sk-acme", other.clone()).await;
    let (_, c2) = create(&t, "sk-acme", other.clone()).await;
    assert_eq!(c["id"], c2["id"]);
    let cancel = format!("/v1/fine_tuning/jobs/{}/cancel", c["id"].as_str().unwrap());
    let (s, v) = t.json("POST", &cancel, "sk-acme", None).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("cancelled")));
    let (s, d) = create(&t, "sk-acme", other).await;
    assert_eq!(s, 200);
    assert_ne!(
        d["id"], c["id"],
        "re-submitting after a cancel starts a new job"
    );
    let (_, all) = t.json("GET", "/v1/fine_tuning/jobs", "sk-acme", None).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn idempotency_key_reused_with_other_body_is_409() {
    let t = app();
    let fid = file(&t, "sk-acme", "fine-tune").await;
    let send = |key: &'static str, body: Value| create_keyed(&t, key, body);
    let first = body_json(send("k2", json!({"model": "m", "training_file": fid})).await).await;
    let resp = send("k2", json!({"model": "other", "training_file": fid})).await;
    assert_eq!(resp.status(), 409);
    assert_eq!(resp.headers()["x-should-retry"], "false");
    let v = body_json(resp).await;
    assert_eq!(v["error"]["code"], "idempotency_key_reused");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"]["param"].is_null());
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("different parameters"), "{msg}");
    // the original request still replays, and no second job exists
    let again = body_json(send("k2", json!({"model": "m", "training_file": fid})).await).await;
    assert_eq!(first["id"], again["id"]);
    let (_, all) = t.json("GET", "/v1/fine_tuning/jobs", "sk-acme", None).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn body_dedupe_can_be_disabled() {
    let t = app_with(
        "[limits]\nidempotency_window_seconds = 0\n",
        crate::jobs::Seams::builtin(),
    );
    let fid = file(&t, "sk-acme", "fine-tune").await;
    let body = json!({"model": "m", "training_file": fid});
    let (_, a) = create(&t, "sk-acme", body.clone()).await;
    let (_, b) = create(&t, "sk-acme", body).await;
    assert_ne!(a["id"], b["id"]);
}

#[tokio::test]
async fn cancel_pause_resume_and_events() {
    let t = app();
    let fid = file(&t, "sk-acme", "fine-tune").await;
    let (_, j) = create(&t, "sk-acme", json!({"model": "m", "training_file": fid})).await;
    let id = j["id"].as_str().unwrap();
    let (s, p) = t
        .json(
            "POST",
            &format!("/v1/fine_tuning/jobs/{id}/pause"),
            "sk-acme",
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(p["status"], "paused");
    let (s, r) = t
        .json(
            "POST",
            &format!("/v1/fine_tuning/jobs/{id}/resume"),
            "sk-acme",
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(r["status"], "validating_files");
    let (s, v) = t
        .json(
            "POST",
            &format!("/v1/fine_tuning/jobs/{id}/resume"),
            "sk-acme",
            None,
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, c) = t
        .json(
            "POST",
            &format!("/v1/fine_tuning/jobs/{id}/cancel"),
            "sk-acme",
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(c["status"], "cancelled");
    assert!(c["finished_at"].is_i64());
    let (s, _) = t
        .json(
            "POST",
            &format!("/v1/fine_tuning/jobs/{id}/pause"),
            "sk-acme",
            None,
        )
        .await;
    assert_eq!(s, 400);
    let (_, ev) = t
        .json(
            "GET",
            &format!("/v1/fine_tuning/jobs/{id}/events"),
            "sk-acme",
            None,
        )
        .await;
    let msgs: Vec<_> = ev["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(msgs[0], "Job cancelled");
    assert_eq!(
        msgs.last().unwrap(),
        &format!("Validating training file: {fid}")
    );
    assert_eq!(ev["data"][0]["object"], "fine_tuning.job.event");
    let (_, page) = t
        .json(
            "GET",
            &format!("/v1/fine_tuning/jobs/{id}/events?limit=2"),
            "sk-acme",
            None,
        )
        .await;
    assert_eq!(page["has_more"], true);
    let after = page["data"][1]["id"].as_str().unwrap();
    let (_, rest) = t
        .json(
            "GET",
            &format!("/v1/fine_tuning/jobs/{id}/events?after={after}"),
            "sk-acme",
            None,
        )
        .await;
    assert_eq!(rest["data"][0]["message"], msgs[2].as_str());
    let (s, ck) = t
        .json(
            "GET",
            &format!("/v1/fine_tuning/jobs/{id}/checkpoints"),
            "sk-acme",
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(ck["data"].as_array().unwrap().len(), 0);
}
