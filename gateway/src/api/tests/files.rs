use crate::testutil::*;
use axum::body::Body;
use axum::http::Request;

#[tokio::test]
async fn file_lifecycle_and_tenant_isolation() {
    let t = app();
    let (s, f) = t.upload_file("sk-acme", "fine-tune", TRAIN).await;
    assert_eq!(s, 200, "{f}");
    let id = f["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("file-"));
    assert_eq!(f["object"], "file");
    assert_eq!(f["bytes"], TRAIN.len());
    assert_eq!(f["filename"], "train.jsonl");
    assert_eq!(f["purpose"], "fine-tune");

    let (s, got) = t
        .json("GET", &format!("/v1/files/{id}"), "sk-acme", None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(got, f);
    let resp = t
        .send(
            Request::get(format!("/v1/files/{id}/content"))
                .header("authorization", "Bearer sk-acme")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(body_bytes(resp).await, TRAIN);

    // another tenant sees nothing, exactly as a missing id
    for (m, p) in [
        ("GET", format!("/v1/files/{id}")),
        ("GET", format!("/v1/files/{id}/content")),
        ("DELETE", format!("/v1/files/{id}")),
    ] {
        let (s, v) = t.json(m, &p, "sk-beta", None).await;
        assert_eq!(s, 404, "{m} {p}");
        assert_eq!(v["error"]["message"], format!("No such File object: {id}"));
    }
    let (_, list) = t.json("GET", "/v1/files", "sk-beta", None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0);

    let (s, d) = t
        .json("DELETE", &format!("/v1/files/{id}"), "sk-acme", None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        d,
        serde_json::json!({"id": id, "object": "file", "deleted": true})
    );
    let (s, _) = t
        .json("GET", &format!("/v1/files/{id}"), "sk-acme", None)
        .await;
    assert_eq!(s, 404);
    assert!(t.blob_names().is_empty());
}

#[tokio::test]
async fn list_pages_orders_and_filters() {
    let t = app();
    let mut ids = Vec::new();
    for purpose in ["fine-tune", "batch", "fine-tune"] {
        let (_, f) = t.upload_file("sk-acme", purpose, TRAIN).await;
        ids.push(f["id"].as_str().unwrap().to_string());
    }
    let (_, p) = t.json("GET", "/v1/files?limit=2", "sk-acme", None).await;
    assert_eq!(p["object"], "list");
    assert_eq!(p["has_more"], true);
    assert_eq!(p["data"][0]["id"], ids[2]);
    assert_eq!(p["data"][1]["id"], ids[1]);
    let (_, p2) = t
        .json(
            "GET",
            &format!("/v1/files?limit=2&after={}", ids[1]),
            "sk-acme",
            None,
        )
        .await;
    assert_eq!(p2["data"][0]["id"], ids[0]);
    assert_eq!(p2["has_more"], false);
    let (_, asc) = t
        .json(
            "GET",
            "/v1/files?order=asc&purpose=fine-tune",
            "sk-acme",
            None,
        )
        .await;
    let got: Vec<_> = asc["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, vec![ids[0].clone(), ids[2].clone()]);
    let (s, v) = t.json("GET", "/v1/files?limit=0", "sk-acme", None).await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["param"], "limit");
}

#[tokio::test]
async fn files_with_expires_after_expire() {
    let t = app();
    let (ct, body) = multipart(&[
        ("purpose", None, b"batch"),
        ("expires_after[anchor]", None, b"created_at"),
        ("expires_after[seconds]", None, b"3600"),
        ("file", Some("a.jsonl"), TRAIN),
    ]);
    let req = Request::post("/v1/files")
        .header("authorization", "Bearer sk-acme")
        .header("content-type", ct)
        .body(Body::from(body))
        .unwrap();
    let f = body_json(t.send(req).await).await;
    assert_eq!(
        f["expires_at"].as_i64().unwrap() - f["created_at"].as_i64().unwrap(),
        3600
    );
    assert_eq!(crate::sweep::expire_files(&t.state).await.unwrap(), 0);
    let store = t.state.store.clone();
    let gone = crate::store::run_blocking(&store, |s| {
        s.delete_expired_files(crate::ids::now_unix() + 3600)
    })
    .await
    .unwrap();
    assert_eq!(gone.len(), 1);
    let (s, _) = t
        .json(
            "GET",
            &format!("/v1/files/{}", f["id"].as_str().unwrap()),
            "sk-acme",
            None,
        )
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn rejected_uploads_leave_nothing_behind() {
    let t = app();
    let (s, v) = t.upload_file("sk-acme", "homework", TRAIN).await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["param"], "purpose");
    let (ct, body) = multipart(&[("purpose", None, b"fine-tune")]);
    let req = Request::post("/v1/files")
        .header("authorization", "Bearer sk-acme")
        .header("content-type", ct)
        .body(Body::from(body))
        .unwrap();
    let resp = t.send(req).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["x-should-retry"], "false");
    assert_eq!(body_json(resp).await["error"]["param"], "file");
    assert!(t.blob_names().is_empty());
}

#[tokio::test]
async fn file_larger_than_json_cap_is_accepted_and_body_limit_enforced() {
    let t = app_with(
        "[server]\nmax_body_bytes = 4000000\n",
        crate::jobs::Seams::builtin(),
    );
    let big = vec![b'x'; 3 * 1024 * 1024];
    let (s, f) = t.upload_file("sk-acme", "batch", &big).await;
    assert_eq!(s, 200, "{f}");
    let too_big = vec![b'x'; 5 * 1024 * 1024];
    let (s, v) = t.upload_file("sk-acme", "batch", &too_big).await;
    assert_eq!(s, 413, "{v}");
    assert_eq!(t.blob_names().len(), 1);
}

/// An `after` cursor naming no object of the list (missing, or another tenant's) is a 400
/// naming `after`, the same for both, on every cursor-paged route.
#[tokio::test]
async fn unknown_or_foreign_after_cursor_is_400_naming_after() {
    let t = app();
    let (_, mine) = t.upload_file("sk-acme", "fine-tune", TRAIN).await;
    let (_, theirs) = t.upload_file("sk-beta", "fine-tune", TRAIN).await;
    let (s, job) = t
        .json(
            "POST",
            "/v1/fine_tuning/jobs",
            "sk-acme",
            Some(serde_json::json!({"model": "m", "training_file": mine["id"]})),
        )
        .await;
    assert_eq!(s, 200, "{job}");
    let jid = job["id"].as_str().unwrap();
    let routes = [
        "/v1/files".to_string(),
        "/v1/fine_tuning/jobs".to_string(),
        format!("/v1/fine_tuning/jobs/{jid}/events"),
        format!("/v1/fine_tuning/jobs/{jid}/checkpoints"),
    ];
    for route in &routes {
        let mut bodies = Vec::new();
        for after in [theirs["id"].as_str().unwrap(), "file-doesnotexist"] {
            let (s, v) = t
                .json("GET", &format!("{route}?after={after}"), "sk-acme", None)
                .await;
            assert_eq!(s, 400, "{route} after={after}: {v}");
            assert_eq!(v["error"]["type"], "invalid_request_error");
            assert_eq!(v["error"]["param"], "after");
            let msg = v["error"]["message"].as_str().unwrap();
            assert!(msg.contains(after), "{msg}");
            bodies.push(msg.replace(after, "<id>"));
        }
        assert_eq!(bodies[0], bodies[1], "a foreign id reads as a missing one");
    }
    // A known cursor still pages.
    let (s, p) = t
        .json(
            "GET",
            &format!("/v1/files?after={}", mine["id"].as_str().unwrap()),
            "sk-acme",
            None,
        )
        .await;
    assert_eq!((s, p["data"].as_array().map(Vec::len)), (200, Some(0)));
}

#[tokio::test]
async fn a_file_past_its_expiry_is_gone_before_the_sweep_runs() {
    let t = app();
    let (_, live) = t.upload_file("sk-acme", "fine-tune", TRAIN).await;
    let now = crate::ids::now_unix();
    let expired = crate::store::FileRecord {
        id: "file-expired".into(),
        tenant: "acme".into(),
        bytes: 3,
        created_at: now - 7200,
        filename: "old.jsonl".into(),
        purpose: "fine-tune".into(),
        expires_at: Some(now - 1),
        blob_key: "file-expired".into(),
    };
    let store = t.state.store.clone();
    crate::store::run_blocking(&store, move |s| s.insert_file(&expired))
        .await
        .unwrap();
    let (s, _) = t
        .json("GET", "/v1/files/file-expired", "sk-acme", None)
        .await;
    assert_eq!(s, 404);
    let (_, list) = t.json("GET", "/v1/files", "sk-acme", None).await;
    let ids: Vec<_> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].clone())
        .collect();
    assert_eq!(ids, vec![live["id"].clone()]);
    let (s, v) = t
        .json(
            "POST",
            "/v1/fine_tuning/jobs",
            "sk-acme",
            Some(serde_json::json!({"model": "m", "training_file": "file-expired"})),
        )
        .await;
    assert!(s == 400 || s == 404, "{s} {v}");
    assert_eq!(v["error"]["param"], "training_file");
}
