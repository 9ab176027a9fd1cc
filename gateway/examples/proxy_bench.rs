//! Added latency of the upstream proxy.
//!
//! `cargo run --release -p gateway --example proxy_bench -- [RATE_PER_S] [SECONDS] [MODE]`
//! (defaults 1000, 10, `proxy`). Starts, on loopback, a tiny OpenAI-style upstream and the
//! thing measured, then drives the upstream directly and through it at a fixed request rate,
//! interleaved one to each per tick so both routes see the same machine load (open loop:
//! requests go out on schedule whether or not earlier ones finished), over keep-alive
//! connections, and prints p50/p99/max latency (from the moment each request is sent; tokio's
//! 1 ms timer makes the scheduled time too coarse to measure from) for the direct and the
//! proxied route and their difference. MODE:
//! - `proxy`: `GET /v1/models` through an axum server whose fallback is the bare
//!   [`UpstreamProxy`];
//! - `gateway-base`: `POST /v1/chat/completions` naming a base model through the whole
//!   gateway as `tuneguard serve` builds it in upstream mode (SQLite store in a temp folder):
//!   key check, request id, metrics, the model check (the JSON body read whole and parsed);
//! - `gateway-ft`: the same naming the `ft:` model of one of the tenant's succeeded jobs, so
//!   each request also asks the store whether the tenant may use it.

use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use gateway::upstream::UpstreamProxy;
use std::time::{Duration, Instant};

const KEY: &str = "sk-bench";
/// The tenant's key in the gateway modes.
const CLIENT_KEY: &str = "sk-client";
const FT_MODEL: &str = "ft:gpt-test:bench::job1";

async fn chat(Json(body): Json<serde_json::Value>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": body["model"],
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "Hello.", "refusal": null}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
    }))
}

/// What one request of the run is: a GET, or a POST of a JSON body.
#[derive(Clone)]
enum Call {
    Get,
    Post(serde_json::Value),
}

async fn models() -> Json<serde_json::Value> {
    Json(
        serde_json::json!({"object": "list", "data": [{"id": "gpt-test", "object": "model", "created": 1, "owned_by": "bench"}]}),
    )
}

async fn serve(app: Router) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}"))
}

/// Sends `rate` requests per second for `secs` seconds to each of `urls` (one to each per
/// tick, so both routes see the same machine load); returns sorted latencies per URL.
async fn drive(
    urls: [&str; 2],
    call: &Call,
    rate: u64,
    secs: u64,
) -> anyhow::Result<[Vec<Duration>; 2]> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let total = rate * secs;
    let period = Duration::from_nanos(1_000_000_000 / rate);
    let start = Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::with_capacity(2 * total as usize);
    for i in 0..total {
        let due = start + period * i as u32;
        tokio::time::sleep_until(due.into()).await;
        for (k, url) in urls.iter().enumerate() {
            let (client, url, call) = (client.clone(), url.to_string(), call.clone());
            tasks.push((
                k,
                tokio::spawn(async move {
                    let req = match call {
                        Call::Get => client.get(&url),
                        Call::Post(body) => client.post(&url).json(&body),
                    };
                    let sent = Instant::now();
                    let resp = req.bearer_auth(CLIENT_KEY).send().await?;
                    anyhow::ensure!(resp.status().is_success(), "{url}: {}", resp.status());
                    resp.bytes().await?;
                    anyhow::Ok(sent.elapsed())
                }),
            ));
        }
    }
    let mut out = [
        Vec::with_capacity(total as usize),
        Vec::with_capacity(total as usize),
    ];
    for (k, t) in tasks {
        out[k].push(t.await??);
    }
    out.iter_mut().for_each(|v| v.sort());
    Ok(out)
}

fn pct(v: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

/// The whole gateway in upstream mode over `upstream`, on loopback, with one tenant (key
/// [`CLIENT_KEY`]) whose succeeded job made [`FT_MODEL`]. Returns its base URL.
async fn whole_gateway(upstream: &str, dir: &std::path::Path) -> anyhow::Result<String> {
    use gateway::store::*;
    let text = format!(
        "[storage]\ndata_dir = {:?}\n[upstream]\nbase_url = \"{upstream}/v1\"\napi_key = \"{KEY}\"\n\
         [[tenants]]\nname = \"bench\"\napi_key_hashes = [\"sha256:{}\"]\n",
        dir.display().to_string(),
        gateway::auth::hash_key(CLIENT_KEY),
    );
    let config = gateway::config::Config::from_sources(Some(("bench.toml", &text)), Vec::new())?;
    let built = gateway::serve::build(config)?;
    let job = JobRecord {
        revision: 0,
        id: "ftjob-bench".into(),
        tenant: "bench".into(),
        created_at: 1,
        model: "gpt-test".into(),
        training_file: "file-bench".into(),
        validation_file: None,
        hyperparameters: serde_json::json!({}),
        method: serde_json::json!({"type": "supervised"}),
        suffix: None,
        seed: 1,
        metadata: None,
        status: JobStatus::Succeeded,
        step: JobStep::Run,
        error: None,
        fine_tuned_model: Some(FT_MODEL.into()),
        finished_at: Some(2),
        trained_tokens: None,
        result_files: vec![],
        estimated_finish: None,
        pipeline: Pipeline::default(),
    };
    let event = EventRecord {
        id: "ev-bench".into(),
        job_id: job.id.clone(),
        created_at: 1,
        level: EventLevel::Info,
        message: "made for the bench".into(),
        kind: "message".into(),
        data: None,
    };
    built.state.store.create_job(&job, &event, &[])?;
    built.state.set_ready(true);
    serve(gateway::api::app(built.state)).await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let rate: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let secs: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10);
    let mode = args.next().unwrap_or_else(|| "proxy".into());
    let upstream = serve(
        Router::new()
            .route("/v1/models", get(models))
            .route("/v1/chat/completions", post(chat)),
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let chat_call = |model: &str| {
        Call::Post(serde_json::json!({
            "model": model,
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": 8
        }))
    };
    let (gw, call, path) = match mode.as_str() {
        "proxy" => {
            let proxy = UpstreamProxy::new(&format!("{upstream}/v1"), KEY)?;
            async fn fallback(State(p): State<UpstreamProxy>, req: Request) -> Response {
                p.forward(req).await
            }
            let gw = serve(Router::new().fallback(fallback).with_state(proxy)).await?;
            (gw, Call::Get, "/v1/models")
        }
        "gateway-base" => (
            whole_gateway(&upstream, dir.path()).await?,
            chat_call("gpt-test"),
            "/v1/chat/completions",
        ),
        "gateway-ft" => (
            whole_gateway(&upstream, dir.path()).await?,
            chat_call(FT_MODEL),
            "/v1/chat/completions",
        ),
        other => anyhow::bail!("unknown mode `{other}` (proxy, gateway-base, gateway-ft)"),
    };
    let urls = [format!("{upstream}{path}"), format!("{gw}{path}")];
    let urls = [urls[0].as_str(), urls[1].as_str()];
    drive(urls, &call, rate, 1).await?; // warm up connections
    let [direct, proxied] = drive(urls, &call, rate, secs).await?;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    for (name, v) in [("direct ", &direct), ("proxied", &proxied)] {
        println!(
            "{name}: n={} p50={:.0}us p99={:.0}us max={:.0}us",
            v.len(),
            us(pct(v, 50.0)),
            us(pct(v, 99.0)),
            us(pct(v, 100.0))
        );
    }
    println!(
        "added by the {mode} at {rate} req/s: p50 {:.0}us, p99 {:.0}us",
        us(pct(&proxied, 50.0)) - us(pct(&direct, 50.0)),
        us(pct(&proxied, 99.0)) - us(pct(&direct, 99.0))
    );
    Ok(())
}
