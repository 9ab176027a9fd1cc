use super::fake::{self, KEY};
use super::UpstreamProxy;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use futures::StreamExt;
use serde_json::{json, Value};

/// Serves a router whose fallback is the proxy; returns its base URL (`http://addr`).
async fn gateway(upstream_base: &str) -> String {
    let proxy = UpstreamProxy::new(upstream_base, KEY).unwrap();
    async fn fallback(State(p): State<UpstreamProxy>, req: Request) -> Response {
        p.forward(req).await
    }
    let app = Router::new().fallback(fallback).with_state(proxy);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn forwards_with_upstream_key_query_and_filtered_headers() {
    let f = fake::spawn().await;
    let gw = gateway(&f.base_url).await;
    let resp = reqwest::Client::new()
        .get(format!("{gw}/v1/models?limit=2"))
        .header("authorization", "Bearer sk-client")
        .header("openai-organization", "org-client")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "secret-hop")
        .header("x-custom", "kept")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-upstream"], "yes");
    // Hop-by-hop headers named in the upstream's Connection are not passed back.
    assert!(resp.headers().get("x-internal").is_none());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"][0]["id"], "gpt-4o-mini");
    let sent = f
        .received("GET", "/v1/models")
        .pop()
        .expect("the request reached the fake");
    assert_eq!(sent.query.get("limit").map(String::as_str), Some("2"));
    let h = sent.headers;
    assert_eq!(h["authorization"], format!("Bearer {KEY}"));
    assert_eq!(h["x-custom"], "kept");
    assert!(!h.contains_key("x-hop"));
    assert!(!h.contains_key("openai-organization"));
    assert!(!h.contains_key("transfer-encoding"));
    assert!(h.get("content-length").is_none_or(|v| v == "0"));
}

#[tokio::test]
async fn request_bodies_and_error_statuses_pass_through() {
    let f = fake::spawn().await;
    let gw = gateway(&f.base_url).await;
    let c = reqwest::Client::new();
    let big = vec![b'x'; 1 << 20];
    let resp = c
        .post(format!("{gw}/v1/echo"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.bytes().await.unwrap().len(), big.len());
    let resp = c.get(format!("{gw}/v1/models/nope")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["message"], "The model 'nope' does not exist");
}

#[tokio::test]
async fn sse_streams_without_buffering() {
    let f = fake::spawn().await;
    f.hold_streams();
    let gw = gateway(&f.base_url).await;
    let resp = reqwest::Client::new()
        .post(format!("{gw}/v1/chat/completions"))
        .json(&json!({"model": "gpt-test", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut stream = resp.bytes_stream();
    // The upstream holds the rest of the stream until released: the first chunk must
    // arrive through the proxy on its own.
    let first = stream.next().await.unwrap().unwrap();
    let first = String::from_utf8(first.to_vec()).unwrap();
    assert!(
        first.starts_with("data: {") && first.ends_with("\n\n"),
        "{first:?}"
    );
    assert!(first.contains("\"echo:\""), "{first:?}");
    f.release_streams();
    let mut rest = String::new();
    while let Some(chunk) = stream.next().await {
        rest.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    assert!(rest.contains("\" hi\""), "{rest:?}");
    assert!(!f.with(|s| s.stream_gate_timed_out));
    assert!(rest.ends_with("data: [DONE]\n\n"), "{rest:?}");
}

#[tokio::test]
async fn unreachable_upstream_is_502_in_openai_shape() {
    let gw = gateway("http://127.0.0.1:9/v1").await;
    let resp = reqwest::get(format!("{gw}/v1/models")).await.unwrap();
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_unavailable");
    assert_eq!(body["error"]["type"], "api_error");
    assert!(body["error"]["param"].is_null());
}

#[test]
fn target_maps_only_v1_paths() {
    let p = UpstreamProxy::new("http://up:1/v1/", KEY).unwrap();
    assert_eq!(
        p.target("/v1/models?x=1").as_deref(),
        Some("http://up:1/v1/models?x=1")
    );
    assert_eq!(p.target("/v1").as_deref(), Some("http://up:1/v1"));
    assert!(p.target("/v10/models").is_none());
    assert!(p.target("/healthz").is_none());
}

#[test]
fn look_alikes_of_gateway_routes_are_never_proxied() {
    let p = UpstreamProxy::new("http://up.example/v1", KEY).unwrap();
    for owned in [
        "/v1/files/",
        "/v1/files/file-x/content/",
        "/v1//uploads",
        "/v1/./fine_tuning/jobs",
        "/v1/models/../files",
        "/v1/fine%5Ftuning/jobs",
        "/v1/%66iles?purpose=fine-tune",
        "/v1/Files",
        "/v1/FINE_TUNING/checkpoints/ftckpt-1/permissions",
        "/v1\\uploads",
        "/v1/tuneguard/admin/policies/",
    ] {
        assert_eq!(p.target(owned), None, "{owned} must not be forwarded");
    }
    for passed in [
        "/v1/models",
        "/v1/chat/completions?x=1",
        "/v1/files-search",
        "/v1/models/ft:gpt-4o-mini:files",
    ] {
        assert!(p.target(passed).is_some(), "{passed} should be forwarded");
    }
    assert_eq!(
        p.target("/v1/models?after=files").as_deref(),
        Some("http://up.example/v1/models?after=files")
    );
}
