//! The runner driving a local job through the real [`LocalExecutor`], with this test playing
//! the worker: it holds the lease and writes the job directory as `tuneguard worker` does
//! (`resolved.json`, `run/metrics.jsonl` line by line, `outcome.json` last).

use super::*;
use crate::jobs::{Runner, Seams};
use crate::testutil::*;
use std::io::Write;
use std::time::Duration;

fn tiny_model() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../trainer/tests/fixtures/tiny_tied")
        .display()
        .to_string()
}

fn local_app() -> TestApp {
    let extra = format!(
        "[local]\nworkers = 2\n[[models]]\nmodel = \"tiny-*\"\npath = {:?}\n",
        tiny_model()
    );
    let mut t = app_with(&extra, Seams::builtin());
    let exec = LocalExecutor::new(
        t.state.config.data_dir.clone(),
        t.state.config.models.clone(),
        Arc::clone(&t.state.store),
        t.state.blobs.clone(),
    )
    .with_metrics(Arc::clone(&t.state.metrics));
    t.state.seams.executor = Arc::new(exec);
    t
}

/// Starts a runner (as `serve` does); cancel the token to stop it, as a gateway stopping.
fn start_runner(state: &crate::state::AppState) -> tokio_util::sync::CancellationToken {
    let stop = tokio_util::sync::CancellationToken::new();
    let runner = Runner::new(
        state.store.clone(),
        state.blobs.clone(),
        state.seams.clone(),
        state.metrics.clone(),
        state.runner.clone(),
        Duration::from_millis(10),
    );
    tokio::spawn(runner.run(stop.clone()));
    stop
}

async fn job(t: &TestApp, id: &str) -> Value {
    let (s, j) = t
        .json(
            "GET",
            &format!("/v1/fine_tuning/jobs/{id}"),
            "sk-acme",
            None,
        )
        .await;
    assert_eq!(s, 200, "{j}");
    j
}

async fn wait_job(t: &TestApp, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..1000 {
        let j = job(t, id).await;
        if pred(&j) {
            return j;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("job {id}: {what} never happened: {}", job(t, id).await);
}

/// The poll cursor's last mirrored step.
async fn mirrored_step(t: &TestApp, id: &str) -> u64 {
    let id = id.to_string();
    let j = run_blocking(&t.state.store, move |s| s.get_job_any(&id))
        .await
        .unwrap()
        .unwrap();
    j.pipeline
        .exec_state
        .as_ref()
        .and_then(|s| s.get("step"))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

async fn wait_mirrored(t: &TestApp, id: &str, step: u64) {
    for _ in 0..1000 {
        if mirrored_step(t, id).await >= step {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("step {step} of {id} never mirrored");
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

/// The value of one series (name with its labels, as exposed), 0 when absent.
fn series(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

const TOTAL: usize = 6;

fn tokens(step: usize) -> u64 {
    30 + step as u64
}

fn line(step: usize) -> String {
    format!(
        "{}\n",
        json!({
            "step": step, "total_steps": TOTAL, "epoch": 0, "lr": 0.01, "loss": 2.0 / step as f64,
            "ce": 1.0, "kl": 0.0, "ldifs": 0.0, "grad_norm": 0.5, "tokens": tokens(step),
            "answer_tokens": 10, "mean_token_accuracy": 0.5, "tokens_per_second": 100.0,
        })
    )
}

struct FakeWorker {
    run: PathBuf,
    dir: PathBuf,
}

impl FakeWorker {
    fn new(t: &TestApp, id: &str) -> FakeWorker {
        let dir = layout::job_dir(&t.state.config.data_dir, id);
        let run = layout::run_dir(&dir);
        std::fs::create_dir_all(&run).unwrap();
        let resolved = Resolved {
            n_epochs: 3,
            batch_size: 2,
            learning_rate_multiplier: 1.0,
            total_steps: TOTAL,
        };
        layout::write_json_atomic(&dir.join("resolved.json"), &resolved).unwrap();
        FakeWorker { run, dir }
    }

    fn append(&self, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.run.join("metrics.jsonl"))
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn succeed(&self) {
        layout::write_json_atomic(
            &self.dir.join("outcome.json"),
            &Outcome::Succeeded { steps: TOTAL },
        )
        .unwrap();
    }
}

async fn claim(t: &TestApp, worker: &str, id: &str) {
    let w = worker.to_string();
    let claimed = run_blocking(&t.state.store, move |s| {
        s.claim_local_job(&w, crate::ids::now_unix(), 60)
    })
    .await
    .unwrap()
    .expect("a claimable job");
    assert_eq!(claimed.job.id, id);
}

async fn create_local_job(t: &TestApp) -> String {
    let (_, f) = t.upload_file("sk-acme", "fine-tune", TRAIN).await;
    let (s, j) = t
        .json(
            "POST",
            "/v1/fine_tuning/jobs",
            "sk-acme",
            Some(json!({"model": "tiny-qwen", "training_file": f["id"]})),
        )
        .await;
    assert_eq!(s, 200, "{j}");
    j["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_running_job_estimates_its_finish_and_each_step_is_counted_once() {
    let t = local_app();
    let mut stop = start_runner(&t.state);
    let id = create_local_job(&t).await;
    let running = wait_job(&t, &id, "running", |j| j["status"] == "running").await;
    let created = running["created_at"].as_i64().unwrap();
    assert!(running["estimated_finish"].is_null(), "no worker yet");
    let text = scrape(&t).await;
    assert_eq!(series(&text, "tuneguard_local_queue_depth"), 1.0);
    assert_eq!(
        series(&text, "tuneguard_local_workers{state=\"idle\"}"),
        2.0
    );

    claim(&t, "w1", &id).await;
    let text = scrape(&t).await;
    assert_eq!(series(&text, "tuneguard_local_queue_depth"), 0.0);
    assert_eq!(
        series(&text, "tuneguard_local_workers{state=\"busy\"}"),
        1.0
    );
    assert_eq!(
        series(&text, "tuneguard_local_workers{state=\"idle\"}"),
        1.0
    );
    let worker = FakeWorker::new(&t, &id);
    worker.append(&line(1));
    wait_mirrored(&t, &id, 1).await;
    assert!(
        job(&t, &id).await["estimated_finish"].is_null(),
        "one observation measures no pace"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    worker.append(&(line(2) + &line(3)));
    let j = wait_job(&t, &id, "an estimate", |j| j["estimated_finish"].is_i64()).await;
    let eta = j["estimated_finish"].as_i64().unwrap();
    assert!(
        eta > created,
        "estimated_finish {eta} after created_at {created}"
    );
    assert!(eta >= crate::ids::now_unix() - 1, "not in the past: {eta}");
    assert!(
        eta <= crate::ids::now_unix() + 60,
        "3 steps left at well under a second a step: {eta}"
    );

    // A line still being written is not mirrored until its newline.
    let l4 = line(4);
    let (head, rest) = l4.split_at(l4.len() / 2);
    worker.append(head);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(mirrored_step(&t, &id).await, 3);
    let text = scrape(&t).await;
    assert_eq!(series(&text, "tuneguard_local_optimizer_steps_total"), 3.0);

    // The gateway restarts: the cursor in the store, not this process, says what is counted.
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let exec = LocalExecutor::new(
        t.state.config.data_dir.clone(),
        t.state.config.models.clone(),
        Arc::clone(&t.state.store),
        t.state.blobs.clone(),
    )
    .with_metrics(Arc::clone(&t.state.metrics));
    let mut restarted = t.state.clone();
    restarted.seams.executor = Arc::new(exec);
    stop = start_runner(&restarted);
    worker.append(rest);
    for s in 5..=TOTAL {
        worker.append(&line(s));
    }
    wait_mirrored(&t, &id, TOTAL as u64).await;
    worker.succeed();
    let done = wait_job(&t, &id, "success", |j| j["status"] == "succeeded").await;
    assert!(done["estimated_finish"].is_null(), "{done}");
    let trained: u64 = (1..=TOTAL).map(tokens).sum();
    assert_eq!(done["trained_tokens"].as_u64(), Some(trained));

    let text = scrape(&t).await;
    assert_eq!(
        series(&text, "tuneguard_local_optimizer_steps_total"),
        TOTAL as f64
    );
    assert_eq!(
        series(&text, "tuneguard_local_trained_tokens_total"),
        trained as f64
    );
    assert_eq!(
        series(&text, "tuneguard_local_step_duration_seconds_count"),
        TOTAL as f64
    );
    let seconds: f64 = (1..=TOTAL).map(|s| tokens(s) as f64 / 100.0).sum();
    assert!((series(&text, "tuneguard_local_step_duration_seconds_sum") - seconds).abs() < 1e-9);
    assert_eq!(
        series(&text, "tuneguard_local_queue_wait_seconds_count"),
        1.0
    );
    // The result CSV has every step once.
    let file = done["result_files"][0].as_str().unwrap().to_string();
    let resp = t
        .send(
            axum::http::Request::get(format!("/v1/files/{file}/content"))
                .header("authorization", "Bearer sk-acme")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    let csv = String::from_utf8(body_bytes(resp).await).unwrap();
    let steps: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(steps, ["1", "2", "3", "4", "5", "6"]);
    stop.cancel();
}

#[tokio::test]
async fn pause_clears_the_estimate_and_a_resumed_session_measures_afresh() {
    let t = local_app();
    let stop = start_runner(&t.state);
    let id = create_local_job(&t).await;
    wait_job(&t, &id, "running", |j| j["status"] == "running").await;
    claim(&t, "w1", &id).await;
    let worker = FakeWorker::new(&t, &id);
    worker.append(&line(1));
    wait_mirrored(&t, &id, 1).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    worker.append(&line(2));
    wait_job(&t, &id, "an estimate", |j| j["estimated_finish"].is_i64()).await;

    let (s, paused) = t
        .json(
            "POST",
            &format!("/v1/fine_tuning/jobs/{id}/pause"),
            "sk-acme",
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(paused["status"], "paused");
    assert!(paused["estimated_finish"].is_null(), "{paused}");
    // The worker checkpoints and lets go of the job.
    let wid = id.clone();
    run_blocking(&t.state.store, move |s| s.release_lease(&wid, "w1"))
        .await
        .unwrap();
    let (_, resumed) = t
        .json(
            "POST",
            &format!("/v1/fine_tuning/jobs/{id}/resume"),
            "sk-acme",
            None,
        )
        .await;
    assert_eq!(resumed["status"], "running");
    // No worker session yet: nothing to estimate from (the old pace is not reused).
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(job(&t, &id).await["estimated_finish"].is_null());
    // Another worker resumes: the first steps it trains start a new measurement.
    claim(&t, "w2", &id).await;
    worker.append(&line(3));
    wait_mirrored(&t, &id, 3).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        job(&t, &id).await["estimated_finish"].is_null(),
        "one step of the new session measures no pace"
    );
    worker.append(&line(4));
    let j = wait_job(&t, &id, "an estimate", |j| j["estimated_finish"].is_i64()).await;
    assert!(j["estimated_finish"].as_i64().unwrap() > j["created_at"].as_i64().unwrap());
    stop.cancel();
}
