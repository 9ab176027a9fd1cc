use crate::testutil::*;
use axum::body::Body;
use axum::http::Request;
use serde_json::json;

#[tokio::test]
async fn health_ready_metrics_and_request_ids() {
    let t = app();
    for path in ["/healthz", "/readyz", "/metrics"] {
        let resp = t
            .send(Request::get(path).body(Body::empty()).unwrap())
            .await;
        assert_eq!(resp.status(), 200, "{path}");
        assert!(resp.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .starts_with("req_"));
    }
    t.state.set_ready(false);
    let resp = t
        .send(Request::get("/readyz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(resp.status(), 503);
    let (s, _) = t.json("GET", "/v1/files", "sk-acme", None).await;
    assert_eq!(s, 200);
    let resp = t
        .send(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    let text = String::from_utf8(body_bytes(resp).await).unwrap();
    assert!(
        text.contains(
            "tuneguard_http_requests_total{method=\"GET\",route=\"/v1/files\",status=\"200\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("tuneguard_jobs{status=\"running\"} 0"),
        "{text}"
    );
}

#[tokio::test]
async fn unknown_route_is_openai_404_without_upstream() {
    let t = app();
    let (s, v) = t.json("GET", "/v1/embeddings", "sk-acme", None).await;
    assert_eq!(s, 404);
    assert_eq!(v["error"]["message"], "Invalid URL (GET /v1/embeddings)");
    // Local models are listed without an upstream (none configured here).
    let (s, v) = t.json("GET", "/v1/models", "sk-acme", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["object"], "list");
    let (s, v) = t.json("PUT", "/v1/files", "sk-acme", None).await;
    assert_eq!(s, 405);
    assert_eq!(v["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn undecodable_paths_and_queries_get_openai_errors() {
    let t = app();
    for uri in [
        "/v1/files/%FF",
        "/v1/fine_tuning/jobs/%C3%28/events",
        "/v1/fine_tuning/jobs?after=%FF",
    ] {
        let (s, v) = t.json("GET", uri, "sk-acme", None).await;
        assert_eq!(s, 400, "{uri}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{uri}: {v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty(), "{uri}");
    }
}

#[tokio::test]
async fn auth_failures_are_401_in_openai_shape() {
    let t = app();
    let resp = t
        .send(Request::get("/v1/files").body(Body::empty()).unwrap())
        .await;
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["x-should-retry"], "false");
    let v = body_json(resp).await;
    assert_eq!(v["error"]["code"], "invalid_api_key");
    let (s, v) = t
        .json("GET", "/v1/fine_tuning/jobs", "sk-wrong-key-123", None)
        .await;
    assert_eq!(s, 401);
    assert_eq!(v["error"]["type"], "authentication_error");
    assert!(!v.to_string().contains("sk-wrong-key-123"));
}

#[tokio::test]
async fn admin_routes_need_admin_key() {
    let t = app();
    let (s, _) = t
        .json("GET", "/v1/tuneguard/admin/policies", "sk-acme", None)
        .await;
    assert_eq!(s, 403);
    let (s, _) = t
        .json(
            "GET",
            "/v1/tuneguard/admin/policies",
            "nope-nope-nope",
            None,
        )
        .await;
    assert_eq!(s, 401);
    let (s, v) = t
        .json("GET", "/v1/tuneguard/admin/policies", "sk-admin", None)
        .await;
    assert_eq!(s, 200);
    assert!(v.get("policies").is_some());
    let (s, _) = t
        .json(
            "GET",
            "/v1/tuneguard/admin/jobs/ftjob-x/dataset",
            "sk-acme",
            None,
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = t
        .json(
            "GET",
            "/v1/tuneguard/admin/jobs/ftjob-x/dataset",
            "sk-admin",
            None,
        )
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn plan_explains_for_tenant_and_admin() {
    let t = app();
    let (s, v) = t
        .json(
            "POST",
            "/v1/tuneguard/plan",
            "sk-acme",
            Some(json!({"model": "m"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["tenant"], "acme");
    assert_eq!(v["policy"], "default");
    let (s, _) = t
        .json(
            "POST",
            "/v1/tuneguard/plan",
            "sk-acme",
            Some(json!({"model": "m", "tenant": "beta"})),
        )
        .await;
    assert_eq!(s, 403);
    let (s, v) = t
        .json(
            "POST",
            "/v1/tuneguard/plan",
            "sk-admin",
            Some(json!({"model": "m", "tenant": "beta"})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["tenant"], "beta");
    let (s, v) = t
        .json(
            "POST",
            "/v1/tuneguard/plan",
            "sk-admin",
            Some(json!({"model": "m"})),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["param"], "tenant");
}

#[tokio::test]
async fn bad_json_is_400() {
    let t = app();
    let req = Request::post("/v1/fine_tuning/jobs")
        .header("authorization", "Bearer sk-acme")
        .header("content-type", "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    let resp = t.send(req).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        body_json(resp).await["error"]["type"],
        "invalid_request_error"
    );
}

#[tokio::test]
async fn unknown_v1_routes_are_proxied_when_upstream_is_configured() {
    use axum::routing::get;
    let upstream = axum::Router::new().route(
        "/v1/models",
        get(|headers: axum::http::HeaderMap| async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            (
                [("x-request-id", "req_from_upstream")],
                axum::Json(json!({"object": "list", "data": [], "auth": auth})),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, upstream).await });
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!("[upstream]\nbase_url = \"http://{addr}/v1\"\napi_key = \"sk-upstream\"\n"),
    );
    assert_eq!(cfg.execution, crate::config::ExecutionMode::Upstream);
    let state = crate::serve::build(cfg).unwrap().state;
    let t = TestApp { state, dir };
    let resp = t
        .send(
            Request::get("/v1/models")
                .header("authorization", "Bearer sk-acme")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let own = resp.headers()["x-request-id"].to_str().unwrap();
    assert!(
        own.starts_with("req_") && own != "req_from_upstream",
        "{own}"
    );
    assert_eq!(
        resp.headers()["x-upstream-request-id"],
        "req_from_upstream",
        "the upstream's id is kept under its own name"
    );
    let (s, v) = t.json("GET", "/v1/models", "sk-acme", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["auth"], "Bearer sk-upstream",
        "the client's key is replaced by the upstream key"
    );
    let (s, _) = t.json("GET", "/v1/models", "sk-not-a-tenant", None).await;
    assert_eq!(
        s, 401,
        "anonymous requests are never relayed with the upstream key"
    );
    let text = t.state.metrics.render();
    assert!(
        text.contains("tuneguard_proxied_requests_total 2"),
        "{text}"
    );
}

/// A job of `tenant` as the upstream executor leaves it: `status`, the provider's final model
/// when the gateway serves one, its mirrored checkpoints.
fn upstream_job(
    t: &TestApp,
    id: &str,
    tenant: &str,
    status: crate::store::JobStatus,
    fine_tuned_model: Option<&str>,
    checkpoints: &[&str],
) {
    use crate::store::*;
    let mut job = job_record(id, tenant, status);
    job.fine_tuned_model = fine_tuned_model.map(String::from);
    t.state
        .store
        .create_job(&job, &event_record(id, "created"), &[])
        .unwrap();
    let ckpts: Vec<CheckpointRecord> = checkpoints
        .iter()
        .enumerate()
        .map(|(i, name)| CheckpointRecord {
            id: format!("ftckpt-{id}-{i}"),
            job_id: id.into(),
            created_at: 1,
            fine_tuned_model_checkpoint: name.to_string(),
            step_number: i as i64 + 1,
            metrics: json!({"step": i + 1}),
            artifact: None,
        })
        .collect();
    assert!(t
        .state
        .store
        .update_job_observed(&job, status, &[], &ckpts)
        .unwrap());
}

/// Every tenant's upstream models live under the gateway's one provider key: through the
/// proxy a tenant reaches only the `ft:` models the gateway lists to it — not another
/// tenant's, not the provider's final model of a job the monitor rolled back or cancelled.
#[tokio::test]
async fn the_proxy_serves_a_tenant_only_the_fine_tuned_models_listed_to_it() {
    use crate::store::JobStatus;
    use axum::routing::{get, post};
    const OWN: &str = "ft:gpt-4o-mini:org::own1";
    const OWN_CKPT: &str = "ft:gpt-4o-mini:org::own1:ckpt-step-1";
    const ROLLED_BACK_FINAL: &str = "ft:gpt-4o-mini:org::rb1";
    const ROLLED_BACK_TO: &str = "ft:gpt-4o-mini:org::rb1:ckpt-step-1";
    const CANCELLED_FINAL: &str = "ft:gpt-4o-mini:org::cx1";
    const OTHERS: &str = "ft:gpt-4o-mini:org::beta1";
    let every = [
        "gpt-4o-mini",
        OWN,
        OWN_CKPT,
        ROLLED_BACK_FINAL,
        ROLLED_BACK_TO,
        CANCELLED_FINAL,
        OTHERS,
        "ft:gpt-4o-mini:org::made-elsewhere",
    ];
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let a1 = asked.clone();
    let upstream = axum::Router::new()
        .route(
            "/v1/models",
            get(move || async move {
                let data: Vec<_> = every
                    .iter()
                    .map(|id| json!({"id": id, "object": "model", "created": 1, "owned_by": "org"}))
                    .collect();
                axum::Json(json!({"object": "list", "data": data}))
            }),
        )
        .route(
            "/v1/models/{model}",
            get(
                |axum::extract::Path(m): axum::extract::Path<String>| async move {
                    axum::Json(json!({"id": m, "object": "model"}))
                },
            ),
        )
        .route(
            "/v1/chat/completions",
            post(move |body: axum::body::Bytes| async move {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                a1.lock()
                    .unwrap()
                    .push(v["model"].as_str().unwrap().to_string());
                axum::Json(json!({"object": "chat.completion", "model": v["model"], "n": v["n"]}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, upstream).await });
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!("[upstream]\nbase_url = \"http://{addr}/v1\"\napi_key = \"sk-upstream\"\n"),
    );
    let state = crate::serve::build(cfg).unwrap().state;
    let t = TestApp { state, dir };
    upstream_job(
        &t,
        "ftjob-own",
        "acme",
        JobStatus::Succeeded,
        Some(OWN),
        &[OWN_CKPT],
    );
    // A rollback: the gateway's job succeeded with a checkpoint; the provider's job went on to
    // its own final model, which the gateway never lists.
    upstream_job(
        &t,
        "ftjob-rb",
        "acme",
        JobStatus::Succeeded,
        Some(ROLLED_BACK_TO),
        &[ROLLED_BACK_TO],
    );
    upstream_job(&t, "ftjob-cx", "acme", JobStatus::Cancelled, None, &[]);
    upstream_job(
        &t,
        "ftjob-beta",
        "beta",
        JobStatus::Succeeded,
        Some(OTHERS),
        &[],
    );

    let chat = |model: &str| json!({"model": model, "n": 2, "messages": [{"role": "user", "content": "hi"}]});
    for model in ["gpt-4o-mini", OWN, OWN_CKPT, ROLLED_BACK_TO] {
        let (s, v) = t
            .json("POST", "/v1/chat/completions", "sk-acme", Some(chat(model)))
            .await;
        assert_eq!(
            (s, v["model"].as_str(), v["n"].as_i64()),
            (200, Some(model), Some(2)),
            "{v}"
        );
    }
    for model in [
        ROLLED_BACK_FINAL,
        CANCELLED_FINAL,
        OTHERS,
        "ft:gpt-4o-mini:org::made-elsewhere",
    ] {
        let (s, v) = t
            .json("POST", "/v1/chat/completions", "sk-acme", Some(chat(model)))
            .await;
        assert_eq!(s, 404, "{model}: {v}");
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["param"], "model");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(model),
            "{v}"
        );
    }
    let (s, _) = t
        .json(
            "POST",
            "/v1/chat/completions",
            "sk-beta",
            Some(chat(OTHERS)),
        )
        .await;
    assert_eq!(s, 200, "the owner reaches it");
    assert_eq!(
        asked.lock().unwrap().clone(),
        ["gpt-4o-mini", OWN, OWN_CKPT, ROLLED_BACK_TO, OTHERS],
        "a refused request never reaches the provider"
    );

    let (s, v) = t.json("GET", "/v1/models", "sk-acme", None).await;
    assert_eq!(s, 200, "{v}");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["gpt-4o-mini", OWN, OWN_CKPT, ROLLED_BACK_TO]);
    let (_, v) = t.json("GET", "/v1/models", "sk-beta", None).await;
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["gpt-4o-mini", OTHERS]);

    // By path, percent-encoded or dot-segmented as the HTTP client would normalise it.
    let (s, v) = t
        .json("GET", &format!("/v1/models/{OWN}"), "sk-acme", None)
        .await;
    assert_eq!((s, v["id"].as_str()), (200, Some(OWN)));
    for path in [
        format!("/v1/models/{OTHERS}"),
        "/v1/models/ft%3Agpt-4o-mini%3Aorg%3A%3Abeta1".to_string(),
        format!("/v1/files/../models/{ROLLED_BACK_FINAL}"),
    ] {
        let (s, v) = t.json("GET", &path, "sk-acme", None).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (404, Some("model_not_found")),
            "{path}: {v}"
        );
    }
    let (s, v) = t
        .json("DELETE", &format!("/v1/models/{OTHERS}"), "sk-acme", None)
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("model_not_found")),
        "{v}"
    );

    // Every other way of naming a model is read too, or the request is refused unread.
    let raw = |method: &str, path: &str, headers: &[(&str, &str)], body: Vec<u8>| {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", "Bearer sk-acme");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::from(body)).unwrap()
    };
    let json_body = |model: &str| chat(model).to_string().into_bytes();
    let (form_type, form) = multipart(&[
        ("model", None, OTHERS.as_bytes()),
        ("file", Some("a.wav"), b"RIFF"),
    ]);
    let refused: Vec<(&str, Request<Body>, u16)> = vec![
        (
            "JSON without a content type",
            raw("POST", "/v1/chat/completions", &[], json_body(OTHERS)),
            404,
        ),
        (
            "JSON as a vendor type",
            raw(
                "POST",
                "/v1/chat/completions",
                &[("content-type", "application/vnd.x+json")],
                json_body(OTHERS),
            ),
            404,
        ),
        (
            "a name padded with spaces",
            raw(
                "POST",
                "/v1/chat/completions",
                &[],
                json_body(&format!(" {OTHERS}")),
            ),
            404,
        ),
        (
            "a nested model",
            raw(
                "POST",
                "/v1/evals/e1/runs",
                &[],
                json!({"data_source": {"type": "completions", "model": OTHERS}})
                    .to_string()
                    .into_bytes(),
            ),
            404,
        ),
        (
            "a query parameter",
            raw("GET", &format!("/v1/things?model={OTHERS}"), &[], vec![]),
            404,
        ),
        (
            "a multipart field",
            raw(
                "POST",
                "/v1/audio/transcriptions",
                &[("content-type", form_type.as_str())],
                form.clone(),
            ),
            404,
        ),
        (
            "a form field",
            raw(
                "POST",
                "/v1/completions",
                &[("content-type", "application/x-www-form-urlencoded")],
                format!("model={OTHERS}&prompt=hi").into_bytes(),
            ),
            404,
        ),
        (
            "JSON a stricter parser refuses",
            raw(
                "POST",
                "/v1/chat/completions",
                &[("content-type", "application/json")],
                format!("{{\"model\": \"{OTHERS}\", \"temperature\": NaN}}").into_bytes(),
            ),
            400,
        ),
        (
            "JSON behind a byte-order mark",
            raw(
                "POST",
                "/v1/chat/completions",
                &[],
                [&b"\xef\xbb\xbf"[..], &json_body(OTHERS)].concat(),
            ),
            400,
        ),
        (
            "a name in a body of another kind",
            raw(
                "POST",
                "/v1/chat/completions",
                &[("content-type", "text/plain")],
                format!("model: {}", OTHERS.to_uppercase()).into_bytes(),
            ),
            400,
        ),
        (
            "an encoded body",
            raw(
                "POST",
                "/v1/chat/completions",
                &[("content-encoding", "gzip")],
                vec![0x1f, 0x8b, 0, 1],
            ),
            415,
        ),
    ];
    for (what, req, want) in refused {
        let resp = t.send(req).await;
        let status = resp.status().as_u16();
        let v = body_json(resp).await;
        assert_eq!(status, want, "{what}: {v}");
        assert!(v["error"]["message"].is_string(), "{what}: {v}");
    }
    assert_eq!(
        asked.lock().unwrap().len(),
        5,
        "no refused request reached the provider"
    );
    // The tenant's own model without a content type: read, checked, and forwarded as read.
    let resp = t
        .send(raw("POST", "/v1/chat/completions", &[], json_body(OWN)))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(body_json(resp).await["model"], OWN);
}
