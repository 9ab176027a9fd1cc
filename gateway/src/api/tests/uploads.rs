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
    // more bytes than the upload was created with are refused
    let (s, _) = part(&t, "sk-acme", &id, b"12345").await;
    assert_eq!(s, 413);
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
    let (s, _) = part(&t, "sk-acme", &id, b"1234").await;
    assert_eq!(s, 400);
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
