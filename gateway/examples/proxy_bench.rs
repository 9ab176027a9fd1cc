//! Added latency of the upstream proxy.
//!
//! `cargo run --release -p gateway --example proxy_bench -- [RATE_PER_S] [SECONDS]`
//! (defaults 1000 and 10). Starts, on loopback, a tiny OpenAI-style upstream
//! (`GET /v1/models`) and an axum server whose fallback is [`UpstreamProxy`], then drives
//! both at a fixed request rate, interleaved one to each per tick so both routes see the same
//! machine load (open loop: requests go out on schedule whether or not earlier ones
//! finished), over keep-alive connections, and prints p50/p99/max latency
//! (from the moment each request is sent; tokio's 1 ms timer makes the scheduled time too
//! coarse to measure from) for the direct and the proxied route and their difference.

use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use gateway::upstream::UpstreamProxy;
use std::time::{Duration, Instant};

const KEY: &str = "sk-bench";

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
async fn drive(urls: [&str; 2], rate: u64, secs: u64) -> anyhow::Result<[Vec<Duration>; 2]> {
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
            let (client, url) = (client.clone(), url.to_string());
            tasks.push((
                k,
                tokio::spawn(async move {
                    let sent = Instant::now();
                    let resp = client.get(&url).bearer_auth("sk-client").send().await?;
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let rate: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let secs: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10);
    let upstream = serve(Router::new().route("/v1/models", get(models))).await?;
    let proxy = UpstreamProxy::new(&format!("{upstream}/v1"), KEY)?;
    async fn fallback(State(p): State<UpstreamProxy>, req: Request) -> Response {
        p.forward(req).await
    }
    let gw = serve(Router::new().fallback(fallback).with_state(proxy)).await?;
    let urls = [format!("{upstream}/v1/models"), format!("{gw}/v1/models")];
    let urls = [urls[0].as_str(), urls[1].as_str()];
    drive(urls, rate, 1).await?; // warm up connections
    let [direct, proxied] = drive(urls, rate, secs).await?;
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
        "added by the proxy at {rate} req/s: p50 {:.0}us, p99 {:.0}us",
        us(pct(&proxied, 50.0)) - us(pct(&direct, 50.0)),
        us(pct(&proxied, 99.0)) - us(pct(&direct, 99.0))
    );
    Ok(())
}
