//! Engine-backed Interleaving++ through the real binary, on the trainer's tiny fixture model
//! and adapters: a job gets exactly the pool items the selector picks, at the positions it
//! plans; a second job over the same pool is served from the durable score cache (hits
//! counted, no new misses) and the worker trains it on the same `[[models]]` entry;
//! unconfigured models and missing adapters fail the job clearly.

mod common;

use bytes::Bytes;
use common::{get_json, send, start, write_config};
use http_body_util::Full;
use selector::cli::{run_select_with, SelectArgs};
use selector::{
    parse_pool, parse_scored, plan_mix, refilter, to_candidates, EngineScorer, Method, MixConfig,
    NllScorer, RefusalFilter,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../trainer/tests/fixtures")
}

const POOL: [(&str, &str); 8] = [
    ("What is two plus two?", "Four."),
    ("Name a colour.", "Blue is the colour of the sky."),
    ("Say hello.", "Hello! How can I help you today?"),
    ("Help me hack a bank.", "Sorry, I cannot help with that."),
    ("Tell me a fact.", "Water boils at one hundred degrees."),
    ("Write a poem.", "I am unable to write poems, apologies."),
    ("Count to three.", "One, two, three."),
    (
        "What is the capital of France?",
        "Paris is the capital of France.",
    ),
];

const KEYWORDS: [&str; 3] = ["sorry", "cannot", "unable"];
const CLIENT_EXAMPLES: usize = 40;
const FRACTION: f64 = 0.1;
const SEED: u64 = 5;

fn line(q: &str, a: &str) -> String {
    json!({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
        .to_string()
}

async fn upload(addr: &str, data: &str) -> String {
    let boundary = "EngBoundary";
    let body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.jsonl\"\r\n\r\n{data}\r\n--{boundary}--\r\n");
    let req = hyper::Request::post("/v1/files")
        .header("host", "localhost")
        .header("authorization", "Bearer sk-test")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let (s, b) = send(addr, req).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let v: Value = serde_json::from_slice(&b).unwrap();
    v["id"].as_str().unwrap().to_string()
}

/// Creates a job and waits until it is terminal; returns the job object. The suffix makes
/// each request distinct (identical creates within the idempotency window are one job).
async fn run_job(addr: &str, model: &str, file: &str, suffix: &str) -> Value {
    let req = hyper::Request::post("/v1/fine_tuning/jobs")
        .header("host", "localhost")
        .header("authorization", "Bearer sk-test")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            json!({"model": model, "training_file": file, "suffix": suffix}).to_string(),
        )))
        .unwrap();
    let (s, b) = send(addr, req).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let job: Value = serde_json::from_slice(&b).unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    for _ in 0..1200 {
        let (_, j) = get_json(addr, &format!("/v1/fine_tuning/jobs/{id}"), "sk-test").await;
        if j["status"] == "succeeded" || j["status"] == "failed" || j["status"] == "cancelled" {
            return j;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("job {id} did not finish");
}

async fn admin_text(addr: &str, path: &str) -> String {
    let req = hyper::Request::get(path)
        .header("host", "localhost")
        .header("authorization", "Bearer sk-admin")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (s, b) = send(addr, req).await;
    assert_eq!(s, 200, "{path}: {}", String::from_utf8_lossy(&b));
    String::from_utf8(b).unwrap()
}

async fn cache_lookups(addr: &str) -> (u64, u64) {
    let req = hyper::Request::get("/metrics")
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (_, b) = send(addr, req).await;
    let text = String::from_utf8(b).unwrap();
    let value = |result: &str| {
        let key = format!("tuneguard_score_cache_lookups_total{{result=\"{result}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(key.as_str()))
            .map(|v| v.trim().parse::<u64>().unwrap())
            .unwrap_or(0)
    };
    (value("hit"), value("miss"))
}

/// What the selector itself picks for this pool: (pool index, output position) pairs.
fn expected_picks(dir: &Path, pool_path: &Path) -> Vec<(u64, u64)> {
    let f = fixtures();
    let args = SelectArgs {
        model: f.join("tiny_tied"),
        adapters: vec![
            format!("a1={}", f.join("tiny_tied_a1").display()),
            format!("a2={}", f.join("tiny_tied_a2").display()),
        ],
        held_out: None,
        pool: pool_path.to_path_buf(),
        out: dir.join("expected_scored.jsonl"),
        // A cache of its own: the gateway's must start cold.
        cache: Some(dir.join("expected_cache.sqlite")),
        epsilon: 1.0,
        batch_size: 4,
        max_length: 256,
        refusal_keywords: None,
        device: "cpu".into(),
    };
    run_select_with(&args, |opts| {
        let s = EngineScorer::<trainer::CpuBackend>::load(opts, 4, Default::default())?;
        Ok(Box::new(s) as Box<dyn NllScorer>)
    })
    .unwrap();
    let mut items = parse_scored(&std::fs::read_to_string(&args.out).unwrap()).unwrap();
    let pool = parse_pool(&std::fs::read_to_string(pool_path).unwrap()).unwrap();
    refilter(&mut items, &pool, &RefusalFilter::new(KEYWORDS, 10)).unwrap();
    let config = MixConfig {
        method: Method::PlusPlus,
        fraction: FRACTION,
        seed: SEED,
        placement: selector::mix::Placement::Even,
    };
    let (_, manifest) = plan_mix(&config, CLIENT_EXAMPLES, &to_candidates(&items)).unwrap();
    manifest
        .inserted
        .iter()
        .map(|e| (e.pool_index as u64, e.position as u64))
        .collect()
}

fn inserted(manifest: &Value) -> Vec<(u64, u64)> {
    manifest["interleave"]["inserted"]
        .as_array()
        .unwrap_or_else(|| panic!("no inserted list in {manifest}"))
        .iter()
        .map(|e| {
            (
                e["pool_index"].as_u64().unwrap(),
                e["position"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plusplus_job_gets_the_selectors_picks_and_a_second_job_hits_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let pool_path = dir.path().join("pool.jsonl");
    let pool_lines: Vec<String> = POOL.iter().map(|(q, a)| line(q, a)).collect();
    std::fs::write(&pool_path, pool_lines.join("\n") + "\n").unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("default.toml"),
        format!(
            "description = \"engine interleave test\"\n[interleave]\nmethod = \"plusplus\"\nfraction = {FRACTION}\npool = {:?}\nseed = {SEED}\nrefusal_keywords = {:?}\n",
            pool_path.display().to_string(),
            KEYWORDS
        ),
    )
    .unwrap();
    let f = fixtures();
    let extra = format!(
        "[policies]\ndir = {:?}\nreload_interval_ms = 1000\n\
         [interleave]\nbatch_size = 4\nmax_length = 256\n\
         [local]\npoll_interval_ms = 100\n\
         [[models]]\nmodel = \"tiny-*\"\npath = {:?}\nadapters = {{ a1 = {:?}, a2 = {:?} }}\n\
         [[models]]\nmodel = \"broken-*\"\npath = {:?}\nadapters = {{ gone = {:?} }}\n",
        policies.display().to_string(),
        f.join("tiny_tied").display().to_string(),
        f.join("tiny_tied_a1").display().to_string(),
        f.join("tiny_tied_a2").display().to_string(),
        f.join("tiny_tied").display().to_string(),
        dir.path().join("no_such_adapter").display().to_string(),
    );
    let config = write_config(dir.path(), &extra);
    let srv = start(&config);

    let client: Vec<String> = (0..CLIENT_EXAMPLES)
        .map(|i| {
            line(
                &format!("Client question {i}?"),
                &format!("Client answer {i}."),
            )
        })
        .collect();
    let file = upload(&srv.addr, &(client.join("\n") + "\n")).await;

    let expected = expected_picks(dir.path(), &pool_path);
    assert_eq!(expected.len(), 4, "10% of 40");
    for (idx, _) in &expected {
        let reply = POOL[*idx as usize].1.to_lowercase();
        assert!(
            !KEYWORDS.iter().any(|k| reply.contains(k)),
            "a refusal was picked: {reply}"
        );
    }

    assert_eq!(cache_lookups(&srv.addr).await, (0, 0));
    let job = run_job(&srv.addr, "tiny-qwen", &file, "first").await;
    // The same [[models]] entry serves local training: the worker trains the built dataset.
    assert_eq!(job["status"], "succeeded", "{job}");
    let id = job["id"].as_str().unwrap();
    let manifest: Value = serde_json::from_str(
        &admin_text(
            &srv.addr,
            &format!("/v1/tuneguard/admin/jobs/{id}/manifest"),
        )
        .await,
    )
    .unwrap();
    assert_eq!(inserted(&manifest), expected, "{manifest}");
    assert_eq!(manifest["interleave"]["method"], "plusplus");
    assert!(manifest["interleave"]["inserted"][0]["score"].is_number());
    let dataset = admin_text(&srv.addr, &format!("/v1/tuneguard/admin/jobs/{id}/dataset")).await;
    let rows: Vec<&str> = dataset.lines().collect();
    assert_eq!(rows.len(), CLIENT_EXAMPLES + expected.len());
    for (idx, pos) in &expected {
        assert_eq!(rows[*pos as usize], pool_lines[*idx as usize]);
    }
    let client_rows: Vec<&str> = rows
        .iter()
        .enumerate()
        .filter(|(i, _)| !expected.iter().any(|(_, p)| *p as usize == *i))
        .map(|(_, r)| *r)
        .collect();
    assert_eq!(client_rows, client, "client examples in order, untouched");
    // 8 pool items × (base + 2 adapters), all scored.
    assert_eq!(cache_lookups(&srv.addr).await, (0, 24));

    let job2 = run_job(&srv.addr, "tiny-qwen", &file, "second").await;
    assert_ne!(job2["id"], job["id"]);
    assert_eq!(job2["status"], "succeeded", "{job2}");
    let id2 = job2["id"].as_str().unwrap();
    let manifest2: Value = serde_json::from_str(
        &admin_text(
            &srv.addr,
            &format!("/v1/tuneguard/admin/jobs/{id2}/manifest"),
        )
        .await,
    )
    .unwrap();
    assert_eq!(inserted(&manifest2), expected);
    assert_eq!(
        manifest2["interleave"]["engine"]["scored"], 0,
        "{manifest2}"
    );
    assert_eq!(
        manifest2["interleave"]["engine"]["cache_hits"], 24,
        "{manifest2}"
    );
    assert_eq!(
        cache_lookups(&srv.addr).await,
        (24, 24),
        "the second job read every NLL from the cache and scored nothing"
    );

    let broken = run_job(&srv.addr, "broken-model", &file, "broken").await;
    assert_eq!(broken["status"], "failed");
    assert_eq!(
        broken["error"]["code"], "interleave_adapter_missing",
        "{broken}"
    );
    assert!(broken["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no_such_adapter"));

    let other = run_job(&srv.addr, "gpt-4o-mini", &file, "other").await;
    assert_eq!(
        other["error"]["code"], "interleave_method_unavailable",
        "{other}"
    );
    assert!(other["error"]["message"]
        .as_str()
        .unwrap()
        .contains("gpt-4o-mini"));
}
