use crate::testutil::*;
use axum::body::Body;
use axum::http::Request;
use serde_json::{json, Value};

async fn part(t: &TestApp, key: &str, upload: &str, data: &[u8]) -> (u16, Value) {
    let (ct, body) = multipart(&[("data", Some("blob"), data)]);
    let req = Request::post(format!("/v1/uploads/{upload}/parts"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", ct)
        .body(Body::from(body))
        .unwrap();
    let resp = t.send(req).await;
    (resp.status().as_u16(), body_json(resp).await)
}

async fn create(t: &TestApp, key: &str, bytes: usize) -> String {
    let (s, u) = t
        .json("POST", "/v1/uploads", key, Some(json!({"bytes": bytes, "filename": "big.jsonl", "mime_type": "text/jsonl", "purpose": "fine-tune"})))
        .await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["object"], "upload");
    assert_eq!(u["status"], "pending");
    assert!(u["expires_at"].as_i64().unwrap() > u["created_at"].as_i64().unwrap());
    u["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn parts_complete_in_part_ids_order_with_md5() {
    let t = app();
    let (a, b) = (b"first-".as_slice(), b"second".as_slice());
    let id = create(&t, "sk-acme", a.len() + b.len()).await;
    let (s, pa) = part(&t, "sk-acme", &id, a).await;
    assert_eq!(s, 200, "{pa}");
    assert_eq!(pa["object"], "upload.part");
    assert_eq!(pa["upload_id"], id.as_str());
    let (_, pb) = part(&t, "sk-acme", &id, b).await;
    // complete with b before a: the file is "second" + "first-"
    let expected = [b, a].concat();
    let md5 = "0f7c7cbd8a0b4f0b1c8e9b1b2a7b6c5d"; // wrong on purpose
    let (s, v) = t
        .json(
            "POST",
            &format!("/v1/uploads/{id}/complete"),
            "sk-acme",
            Some(json!({"part_ids": [pb["id"], pa["id"]], "md5": md5})),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["param"], "md5");
    let good_md5 = {
        use md5::{Digest, Md5};
        hex::encode(Md5::digest(&expected))
    };
    let (s, u) = t
        .json(
            "POST",
            &format!("/v1/uploads/{id}/complete"),
            "sk-acme",
            Some(json!({"part_ids": [pb["id"], pa["id"]], "md5": good_md5})),
        )
        .await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["status"], "completed");
    let fid = u["file"]["id"].as_str().unwrap();
    assert_eq!(u["file"]["bytes"], expected.len());
    let resp = t
        .send(
            Request::get(format!("/v1/files/{fid}/content"))
                .header("authorization", "Bearer sk-acme")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(body_bytes(resp).await, expected);
    // parts are gone, only the file blob remains
    assert_eq!(t.blob_names(), vec![fid.to_string()]);
    let (s, _) = t
        .json(
            "POST",
            &format!("/v1/uploads/{id}/complete"),
            "sk-acme",
            Some(json!({"part_ids": []})),
        )
        .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn upload_errors_and_isolation() {
    let t = app_with(
        "[limits]\nupload_part_max_bytes = 8\nupload_max_bytes = 100\n",
        crate::jobs::Seams::builtin(),
    );
    let (s, v) = t.json("POST", "/v1/uploads", "sk-acme", Some(json!({"bytes": 101, "filename": "x", "mime_type": "text/jsonl", "purpose": "fine-tune"}))).await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["param"], "bytes");
    let id = create(&t, "sk-acme", 12).await;
    let (s, _) = part(&t, "sk-acme", &id, b"123456789").await;
    assert_eq!(s, 413);
    let (s, p1) = part(&t, "sk-acme", &id, b"12345678").await;
    assert_eq!(s, 200);
    // wrong total
    let (s, v) = t
        .json(
            "POST",
            &format!("/v1/uploads/{id}/complete"),
            "sk-acme",
            Some(json!({"part_ids": [p1["id"]]})),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["param"], "part_ids");
    // another tenant: 404 everywhere
    let (s, _) = part(&t, "sk-beta", &id, b"1234").await;
    assert_eq!(s, 404);
    for path in ["complete", "cancel"] {
        let (s, v) = t
            .json(
                "POST",
                &format!("/v1/uploads/{id}/{path}"),
                "sk-beta",
                Some(json!({"part_ids": [p1["id"]]})),
            )
            .await;
        assert_eq!(s, 404);
        assert_eq!(
            v["error"]["message"],
            format!("No such Upload object: {id}")
        );
    }
    let (s, u) = t
        .json("POST", &format!("/v1/uploads/{id}/cancel"), "sk-acme", None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(u["status"], "cancelled");
    assert!(t.blob_names().is_empty());
    // a retried cancel answers with the cancelled upload
    let (s, again) = t
        .json("POST", &format!("/v1/uploads/{id}/cancel"), "sk-acme", None)
        .await;
    assert_eq!((s, again["status"].as_str()), (200, Some("cancelled")));
    let (s, _) = part(&t, "sk-acme", &id, b"1234").await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn a_retried_part_does_not_block_the_rest_and_storage_is_bounded() {
    let t = app_with(
        "[limits]\nupload_part_max_bytes = 8\nupload_max_bytes = 100\n",
        crate::jobs::Seams::builtin(),
    );
    let small = create(&t, "sk-acme", 6).await;
    let (s, v) = part(&t, "sk-acme", &small, b"1234567").await;
    assert_eq!(s, 413, "a part larger than the whole upload: {v}");
    assert_eq!(v["error"]["param"], "data");

    let data = br#"{"a":1}
{"b":2}
"#; // 16 bytes
    let id = create(&t, "sk-acme", data.len()).await;
    let (_, lost) = part(&t, "sk-acme", &id, &data[..8]).await; // its reply never arrived
    let (s, first) = part(&t, "sk-acme", &id, &data[..8]).await;
    assert_eq!(s, 200);
    let (s, second) = part(&t, "sk-acme", &id, &data[8..]).await;
    assert_eq!(
        s, 200,
        "the last part fits although a retried part is stored"
    );
    // 24 of the 32 bytes (twice the upload) are stored; 9 more would pass the ceiling.
    let (s, v) = part(&t, "sk-acme", &id, b"12345678").await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = part(&t, "sk-acme", &id, b"1").await;
    assert_eq!(s, 413, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("twice"),
        "{v}"
    );
    let (s, u) = t
        .json(
            "POST",
            &format!("/v1/uploads/{id}/complete"),
            "sk-acme",
            Some(json!({"part_ids": [first["id"], second["id"]]})),
        )
        .await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["status"], "completed");
    assert_ne!(lost["id"], first["id"]);
    // A retried complete (same parts) answers with the same file; other parts are refused.
    let url = format!("/v1/uploads/{id}/complete");
    let complete = |ids: Value| t.json("POST", &url, "sk-acme", Some(json!({ "part_ids": ids })));
    let (s, again) = complete(json!([first["id"], second["id"]])).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["file"]["id"], u["file"]["id"]);
    assert_eq!(again["status"], "completed");
    let (s, v) = complete(json!([lost["id"], second["id"]])).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("already completed"));
    let files: Vec<_> = t.blob_names();
    assert_eq!(files.len(), 1, "one file blob, parts freed: {files:?}");
    let fid = u["file"]["id"].as_str().unwrap();
    let resp = t
        .send(
            Request::get(format!("/v1/files/{fid}/content"))
                .header("authorization", "Bearer sk-acme")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&bytes[..], &data[..]);
}

#[tokio::test]
async fn a_body_that_is_not_multipart_gets_an_openai_error() {
    let t = app();
    let id = create(&t, "sk-acme", 4).await;
    for uri in ["/v1/files".to_string(), format!("/v1/uploads/{id}/parts")] {
        let req = Request::post(&uri)
            .header("authorization", "Bearer sk-acme")
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap();
        let resp = t.send(req).await;
        assert_eq!(resp.status(), 400, "{uri}");
        assert_eq!(resp.headers()["x-should-retry"], "false");
        let v = body_json(resp).await;
        assert_eq!(v["error"]["type"], "invalid_request_error", "{uri}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("multipart/form-data"), "{msg}");
    }
}

#[tokio::test]
async fn expired_uploads_refuse_parts_and_are_swept() {
    let t = app();
    let id = create(&t, "sk-acme", 4).await;
    let (s, _) = part(&t, "sk-acme", &id, b"12").await;
    assert_eq!(s, 200);
    // the clock moves past the expiry: the store expires it
    let store = t.state.store.clone();
    let n = crate::store::run_blocking(&store, |s| s.expire_uploads(crate::ids::now_unix() + 7200))
        .await
        .unwrap();
    assert_eq!(n.len(), 1);
    let (s, v) = part(&t, "sk-acme", &id, b"34").await;
    assert_eq!(s, 400, "{v}");
    // the store marked it expired; the next expiry pass frees its parts
    assert_eq!(t.blob_names().len(), 1);
    crate::sweep::startup(&t.state).await.unwrap();
    assert!(
        t.blob_names().is_empty(),
        "parts of a finished upload are freed at start"
    );
}

/// A JSONL purpose refuses a non-JSONL mime_type at create (400 naming it); other purposes
/// and JSONL spellings (with parameters, any case) are accepted.
#[tokio::test]
async fn create_checks_the_mime_type_of_jsonl_purposes() {
    let t = app();
    let create = |mime: &'static str, purpose: &'static str| {
        t.json(
            "POST",
            "/v1/uploads",
            "sk-acme",
            Some(json!({"bytes": 10, "filename": "a", "mime_type": mime, "purpose": purpose})),
        )
    };
    for (mime, purpose) in [("text/csv", "fine-tune"), ("application/pdf", "batch")] {
        let (s, v) = create(mime, purpose).await;
        assert_eq!(s, 400, "{mime} {purpose}: {v}");
        assert_eq!(v["error"]["param"], "mime_type");
        assert!(v["error"]["message"].as_str().unwrap().contains(mime));
    }
    for (mime, purpose) in [
        ("application/jsonl", "fine-tune"),
        ("Text/JSONL; charset=utf-8", "fine-tune"),
        ("application/x-ndjson", "batch"),
        ("text/csv", "user_data"),
    ] {
        let (s, v) = create(mime, purpose).await;
        assert_eq!(s, 200, "{mime} {purpose}: {v}");
    }
}

#[tokio::test]
async fn expires_after_is_checked_and_given_to_the_completed_file() {
    let t = app();
    let base = json!({"bytes": 4, "filename": "e.jsonl", "mime_type": "text/jsonl", "purpose": "fine-tune"});
    for (bad, param) in [
        (
            json!({"anchor": "last_active_at", "seconds": 7200}),
            "expires_after.anchor",
        ),
        (
            json!({"anchor": "created_at", "seconds": 59}),
            "expires_after.seconds",
        ),
        (json!({"anchor": "created_at"}), "expires_after.seconds"),
        (json!(7200), "expires_after"),
    ] {
        let mut b = base.clone();
        b["expires_after"] = bad;
        let (s, v) = t.json("POST", "/v1/uploads", "sk-acme", Some(b)).await;
        assert_eq!((s, v["error"]["param"].as_str()), (400, Some(param)), "{v}");
    }
    let mut b = base.clone();
    b["expires_after"] = json!({"anchor": "created_at", "seconds": 7200});
    let (s, u) = t.json("POST", "/v1/uploads", "sk-acme", Some(b)).await;
    assert_eq!(s, 200, "{u}");
    let id = u["id"].as_str().unwrap();
    let (_, p) = part(&t, "sk-acme", id, b"abcd").await;
    let (s, done) = t
        .json(
            "POST",
            &format!("/v1/uploads/{id}/complete"),
            "sk-acme",
            Some(json!({"part_ids": [p["id"]]})),
        )
        .await;
    assert_eq!(s, 200, "{done}");
    let file = &done["file"];
    assert_eq!(
        file["expires_at"].as_i64(),
        Some(file["created_at"].as_i64().unwrap() + 7200)
    );
}
