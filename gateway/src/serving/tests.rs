//! Chat completions from the trainer's tiny fixture model, in process.

use crate::jobs::Seams;
use crate::testutil::*;
use serde_json::json;

fn app_with_tiny() -> TestApp {
    let tiny = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../trainer/tests/fixtures/tiny_tied");
    let extra = format!(
        "[[models]]\nmodel = \"tiny-*\"\npath = {:?}\n",
        tiny.display().to_string()
    );
    app_with(&extra, Seams::builtin())
}

async fn scrape(t: &TestApp) -> String {
    let resp = t
        .send(
            axum::http::Request::get("/metrics")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    String::from_utf8(body_bytes(resp).await).unwrap()
}

fn series(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_served_completion_is_timed_and_its_tokens_counted() {
    let t = app_with_tiny();
    let before = scrape(&t).await;
    let count = "tuneguard_chat_completion_duration_seconds_count{model_kind=\"base\"}";
    assert_eq!(series(&before, count), 0.0);
    let (s, resp) = t
        .json(
            "POST",
            "/v1/chat/completions",
            "sk-acme",
            Some(json!({
                "model": "tiny-qwen",
                "messages": [{"role": "user", "content": "What is 3 plus 4?"}],
                "max_tokens": 4,
                "temperature": 0,
                "n": 2,
            })),
        )
        .await;
    assert_eq!(s, 200, "{resp}");
    let text = scrape(&t).await;
    assert_eq!(series(&text, count), 1.0, "{text}");
    assert!(
        series(
            &text,
            "tuneguard_chat_completion_duration_seconds_sum{model_kind=\"base\"}"
        ) > 0.0
    );
    assert_eq!(
        series(
            &text,
            "tuneguard_chat_completion_duration_seconds_count{model_kind=\"fine_tuned\"}"
        ),
        0.0
    );
    let usage = &resp["usage"];
    assert_eq!(
        series(
            &text,
            "tuneguard_chat_completion_tokens_total{kind=\"prompt\"}"
        ),
        usage["prompt_tokens"].as_f64().unwrap()
    );
    assert_eq!(
        series(
            &text,
            "tuneguard_chat_completion_tokens_total{kind=\"completion\"}"
        ),
        usage["completion_tokens"].as_f64().unwrap()
    );
    assert!(usage["completion_tokens"].as_u64().unwrap() > 0);
    // A request that fails is not a served completion.
    let (s, _) = t
        .json(
            "POST",
            "/v1/chat/completions",
            "sk-acme",
            Some(json!({"model": "nope", "messages": [{"role": "user", "content": "hi"}]})),
        )
        .await;
    assert_eq!(s, 404);
    assert_eq!(series(&scrape(&t).await, count), 1.0);
}
