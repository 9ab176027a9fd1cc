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
