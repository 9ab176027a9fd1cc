//! The upload routes over the real router and store (a temporary data folder): any bytes as a
//! multipart body of `POST /v1/files`, and as a part of an upload. Bad input is a 4xx in
//! OpenAI's error shape — never a panic, never a 5xx.
//!
//! Shared by the fuzz target (`fuzz/fuzz_targets/`) and the seed replay that `cargo test`
//! runs (`gateway/tests/fuzz_seeds.rs`), so the target cannot rot.
use axum::body::Body;
use axum::http::Request;
use std::sync::OnceLock;
use tower::ServiceExt;

struct App {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    _dir: tempfile::TempDir,
}

static APP: OnceLock<App> = OnceLock::new();
const KEY: &str = "sk-fuzz";

fn app() -> &'static App {
    APP.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let hash = gateway::auth::hash_key(KEY);
        let text = format!(
            "[storage]\ndata_dir = {:?}\n[auth]\nadmin_key_hashes = []\n\
             [[tenants]]\nname = \"fuzz\"\napi_key_hashes = [\"sha256:{hash}\"]\n",
            dir.path().display().to_string()
        );
        let config = gateway::config::Config::from_sources(Some(("fuzz.toml", &text)), Vec::new())
            .expect("config");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let state = rt.block_on(async {
            gateway::serve::build_state_with(config, gateway::jobs::Seams::builtin())
                .expect("state")
        });
        state.set_ready(true);
        App {
            router: gateway::api::app(state),
            rt,
            _dir: dir,
        }
    })
}

fn send(app: &App, req: Request<Body>) -> (u16, Vec<u8>) {
    app.rt.block_on(async {
        let resp = app.router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        (status, body.to_vec())
    })
}

fn expect_no_5xx(what: &str, (status, body): (u16, Vec<u8>)) -> serde_json::Value {
    assert!(
        status < 500,
        "{what}: {status} {}",
        String::from_utf8_lossy(&body)
    );
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if status >= 400 {
        assert!(
            v["error"]["message"].is_string(),
            "{what}: {status} without OpenAI's error shape"
        );
    }
    v
}

/// Panics when the input shows a bug; anything else is fine.
pub fn check(data: &[u8]) {
    let app = app();
    let auth = format!("Bearer {KEY}");
    let req = Request::post("/v1/files")
        .header("authorization", &auth)
        .header("content-type", "multipart/form-data; boundary=XfuzzX")
        .body(Body::from(data.to_vec()))
        .expect("request");
    expect_no_5xx("POST /v1/files", send(app, req));

    let created = Request::post("/v1/uploads")
        .header("authorization", &auth)
        .header("content-type", "application/json")
        .body(Body::from(
            r#"{"purpose":"fine-tune","filename":"f.jsonl","bytes":1048576,"mime_type":"text/jsonl"}"#,
        ))
        .expect("request");
    let upload = expect_no_5xx("POST /v1/uploads", send(app, created));
    let Some(id) = upload["id"].as_str() else {
        return;
    };
    let part = Request::post(format!("/v1/uploads/{id}/parts"))
        .header("authorization", &auth)
        .header("content-type", "multipart/form-data; boundary=XfuzzX")
        .body(Body::from(data.to_vec()))
        .expect("request");
    expect_no_5xx("POST /v1/uploads/{id}/parts", send(app, part));
    let cancel = Request::post(format!("/v1/uploads/{id}/cancel"))
        .header("authorization", &auth)
        .body(Body::empty())
        .expect("request");
    expect_no_5xx("POST /v1/uploads/{id}/cancel", send(app, cancel));
}
