use super::fake::{self, KEY};
use super::*;
use crate::jobs::seams::{Executor, Observation, RunState, StartInput};
use crate::store::{Backend, BlobStore, EventLevel, JobRecord, JobStatus, JobStep, Pipeline};
use serde_json::json;
use std::time::Duration;

fn job() -> JobRecord {
    JobRecord {
        revision: 0,
        id: "ftjob-gw1".into(),
        tenant: "acme".into(),
        created_at: 1,
        model: "gpt-test".into(),
        training_file: "file-gw".into(),
        validation_file: None,
        hyperparameters: json!({"batch_size": 4, "learning_rate_multiplier": "auto", "n_epochs": 2, "bogus": 1}),
        method: json!({"type": "supervised"}),
        suffix: Some("safe".into()),
        seed: 7,
        metadata: None,
        status: JobStatus::Queued,
        step: JobStep::Run,
        error: None,
        fine_tuned_model: None,
        finished_at: None,
        trained_tokens: None,
        result_files: vec![],
        estimated_finish: None,
        pipeline: Pipeline::default(),
    }
}

const DATASET: &str = "dataset-ftjob-gw1";

/// A blob store holding the job's transformed dataset.
struct Dataset {
    _dir: tempfile::TempDir,
    blobs: BlobStore,
    path: std::path::PathBuf,
}

async fn dataset() -> Dataset {
    let dir = tempfile::tempdir().unwrap();
    let blobs = BlobStore::open(dir.path()).unwrap();
    let mut w = blobs.create().await.unwrap();
    w.write(b"{\"messages\":[]}\n").await.unwrap();
    w.commit(DATASET).await.unwrap();
    let path = blobs.local_file(DATASET).await.unwrap();
    Dataset {
        _dir: dir,
        blobs,
        path,
    }
}

/// What the run step hands the executor for [`job`].
fn input() -> StartInput {
    StartInput {
        job: job(),
        plan: policies::PolicySet::embedded()
            .resolve(&policies::JobContext::default())
            .unwrap(),
        dataset_blob: DATASET.into(),
        backend: Backend::Upstream,
    }
}

fn executor(f: &fake::FakeUpstream, ds: &Dataset) -> UpstreamExecutor {
    UpstreamExecutor::new(&f.base_url, KEY, ds.blobs.clone())
        .unwrap()
        .with_retry_delay(Duration::ZERO)
}

#[tokio::test]
async fn start_uploads_creates_with_mapped_hyperparameters_and_is_idempotent() {
    let f = fake::spawn().await;
    let ds = dataset().await;
    let ex = executor(&f, &ds);
    let state = ex.start(input()).await.unwrap();
    assert_eq!(state["upstream"]["job_id"], "ftjob-up0");
    let (files, creates) = f.with(|s| (s.files.clone(), s.creates.clone()));
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].meta["purpose"], "fine-tune");
    assert_eq!(files[0].content, b"{\"messages\":[]}\n");
    let c = &creates[0];
    assert_eq!(c["training_file"], "file-up0");
    assert_eq!(
        c["method"]["supervised"]["hyperparameters"],
        json!({"batch_size": 4, "learning_rate_multiplier": "auto", "n_epochs": 2})
    );
    assert_eq!(
        (c["seed"].clone(), c["suffix"].clone()),
        (json!(7), json!("safe"))
    );
    assert_eq!(c["metadata"]["tuneguard_job_id"], "ftjob-gw1");
    // A retried start (crash before the state was saved) reuses the upstream job.
    let again = ex.start(input()).await.unwrap();
    assert_eq!(again["upstream"]["job_id"], "ftjob-up0");
    assert_eq!(f.with(|s| s.creates.len()), 1);
}

#[tokio::test]
async fn poll_mirrors_status_events_and_checkpoints_once() {
    let f = fake::spawn().await;
    let ds = dataset().await;
    let ex = executor(&f, &ds);
    let state = ex.start(input()).await.unwrap();
    for i in 0..150 {
        f.push_event("ftjob-up0", "info", &format!("step {i}"));
    }
    f.push_checkpoint("ftjob-up0", 10);
    f.set_job("ftjob-up0", json!({"status": "running"}));
    let (run, obs) = ex.poll(job(), state).await.unwrap();
    let RunState::Running { state } = run else {
        panic!("{run:?}")
    };
    let msgs: Vec<String> = obs
        .iter()
        .filter_map(|o| match o {
            Observation::Event { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect();
    // All 150 (two pages), oldest first.
    assert_eq!(msgs.len(), 150);
    assert_eq!(
        (msgs[0].as_str(), msgs[149].as_str()),
        ("step 0", "step 149")
    );
    assert!(obs.contains(&Observation::Checkpoint {
        fine_tuned_model_checkpoint: "ft:gpt-test:fake::ckpt-step-10".into(),
        step_number: 10,
        metrics: json!({"step": 10, "train_loss": 0.5, "train_mean_token_accuracy": 0.8}),
        artifact: None,
    }));
    // Nothing new: no event or checkpoint mirrored twice. (The job's hyperparameters are
    // in every answer, as OpenAI's are, and reported on every poll.)
    let mirrored = |obs: Vec<Observation>| -> Vec<Observation> {
        obs.into_iter()
            .filter(|o| !matches!(o, Observation::Hyperparameters(_)))
            .collect()
    };
    let (_, obs) = ex.poll(job(), state.clone()).await.unwrap();
    assert!(mirrored(obs).is_empty());
    f.push_event("ftjob-up0", "warn", "late");
    f.set_job("ftjob-up0", json!({"status": "succeeded", "fine_tuned_model": "ft:gpt-test:safe", "trained_tokens": 99}));
    let (run, obs) = ex.poll(job(), state).await.unwrap();
    let obs = mirrored(obs);
    assert_eq!(obs.len(), 1);
    assert!(
        matches!(&obs[0], Observation::Event { level: EventLevel::Warn, message, .. } if message == "late")
    );
    let RunState::Succeeded {
        fine_tuned_model,
        trained_tokens,
        ..
    } = run
    else {
        panic!("{run:?}")
    };
    assert_eq!(fine_tuned_model.as_deref(), Some("ft:gpt-test:safe"));
    assert_eq!(trained_tokens, Some(99));
}

#[tokio::test]
async fn failure_pause_resume_and_cancel_are_mirrored() {
    let f = fake::spawn().await;
    let ds = dataset().await;
    let ex = executor(&f, &ds);
    let state = ex.start(input()).await.unwrap();
    f.set_job("ftjob-up0", json!({"status": "failed", "error": {"code": "invalid_training_file", "message": "bad line 3", "param": "training_file"}}));
    let (run, _) = ex.poll(job(), state.clone()).await.unwrap();
    let RunState::Failed(fail) = run else {
        panic!("{run:?}")
    };
    assert_eq!(fail.code, "invalid_training_file");
    assert_eq!(fail.param.as_deref(), Some("training_file"));
    assert!(fail.message.contains("bad line 3"));
    f.set_job("ftjob-up0", json!({"status": "running", "error": null}));
    ex.pause(job(), state.clone()).await.unwrap();
    assert_eq!(f.with(|s| s.jobs[0].obj["status"].clone()), "paused");
    let (run, _) = ex.poll(job(), state.clone()).await.unwrap();
    assert!(matches!(run, RunState::Running { .. }), "{run:?}");
    ex.resume(job(), state.clone()).await.unwrap();
    assert_eq!(f.with(|s| s.jobs[0].obj["status"].clone()), "running");
    ex.cancel(job(), state.clone()).await.unwrap();
    let (run, _) = ex.poll(job(), state).await.unwrap();
    assert_eq!(run, RunState::Cancelled);
}

/// The runner and the API hold the executor as `dyn Executor` (wrapped in the metrics layer):
/// pause and resume through the trait must reach the provider, not the trait's no-op default.
#[tokio::test]
async fn pause_and_resume_through_the_executor_trait_reach_the_upstream() {
    let f = fake::spawn().await;
    let ds = dataset().await;
    let ex: std::sync::Arc<dyn Executor> =
        std::sync::Arc::new(crate::jobs::metered::MeteredExecutor {
            inner: std::sync::Arc::new(executor(&f, &ds)),
            metrics: std::sync::Arc::new(
                crate::metrics::Metrics::new(prometheus::Registry::new()).unwrap(),
            ),
        });
    let state = ex.start(input()).await.unwrap();
    f.set_job("ftjob-up0", json!({"status": "running"}));
    ex.pause(job(), state.clone()).await.unwrap();
    assert_eq!(f.with(|s| s.jobs[0].obj["status"].clone()), "paused");
    ex.resume(job(), state.clone()).await.unwrap();
    assert_eq!(f.with(|s| s.jobs[0].obj["status"].clone()), "running");
    // A job that never started upstream has nothing to pause.
    ex.pause(job(), json!({})).await.unwrap();
    assert_eq!(f.with(|s| s.jobs.len()), 1);
}

#[tokio::test]
async fn retryable_errors_are_retried_and_others_classified() {
    let f = fake::spawn().await;
    let ds = dataset().await;
    let ex = executor(&f, &ds);
    // Start: two 503s then success (three attempts).
    f.with(|s| s.knobs.fail_next = 2);
    let state = ex.start(input()).await.unwrap();
    // Poll during an outage: still running, nothing recorded, counter kept in the state.
    f.with(|s| s.knobs.fail_next = 1);
    let (run, obs) = ex.poll(job(), state).await.unwrap();
    let RunState::Running { state } = run else {
        panic!("{run:?}")
    };
    assert!(obs.is_empty());
    assert_eq!(state["errors_in_a_row"], 1);
    // A wrong key is an upstream auth failure, not retryable.
    let bad = UpstreamClient::new(&f.base_url, "sk-wrong").unwrap();
    let e = bad.upload_file(&ds.path, "x.jsonl").await.unwrap_err();
    assert_eq!(
        (e.side, e.retryable, e.code, e.status),
        (Side::Upstream, false, "upstream_auth_failed", Some(401))
    );
    assert!(e.message.contains("Incorrect API key provided"));
    assert!(!e.message.contains("sk-wrong"));
    // A missing job is the request's fault.
    let c = UpstreamClient::new(&f.base_url, KEY).unwrap();
    let r = UpstreamJobRef {
        job_id: "ftjob-nope".into(),
        training_file_id: "f".into(),
    };
    let e = c.poll(&r, &MirrorCursor::default()).await.unwrap_err();
    assert_eq!(
        (e.side, e.retryable, e.status),
        (Side::Downstream, false, Some(404))
    );
    // Nothing listening: unreachable, retryable.
    let dead = UpstreamClient::new("http://127.0.0.1:9/v1", KEY).unwrap();
    let e = dead.poll(&r, &MirrorCursor::default()).await.unwrap_err();
    assert_eq!(
        (e.side, e.retryable, e.code),
        (Side::Upstream, true, "upstream_unavailable")
    );
    // A missing dataset is internal.
    let e = c
        .upload_file(std::path::Path::new("/nonexistent/ds.jsonl"), "x")
        .await
        .unwrap_err();
    assert_eq!(e.side, Side::Internal);
}

#[tokio::test]
async fn start_retries_transient_failures_honouring_retry_after() {
    let f = fake::spawn().await;
    let ds = dataset().await;
    let ex = executor(&f, &ds);
    // Two 429s asking for 150 ms each, then success: the executor's own delay is zero, so
    // the elapsed time shows the provider's wait was honoured.
    f.with(|s| {
        s.knobs.fail_next = 2;
        s.knobs.fail_status = Some(429);
        s.knobs.fail_retry_after_ms = Some(150);
    });
    let t0 = std::time::Instant::now();
    let state = ex.start(input()).await.unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t0.elapsed()
    );
    assert!(state["upstream"]["job_id"].is_string(), "{state}");
    assert_eq!(f.with(|s| s.jobs.len()), 1);

    // A provider that stays down: bounded attempts, then a failure that says so.
    f.with(|s| {
        s.knobs.fail_next = 10;
        s.knobs.fail_status = None;
        s.knobs.fail_retry_after_ms = None;
    });
    let e = ex.start(input()).await.unwrap_err();
    assert_eq!(e.code, "upstream_unavailable");
    assert!(
        e.message.contains("gave up after 3 attempts"),
        "{}",
        e.message
    );
    assert_eq!(f.with(|s| s.knobs.fail_next), 7, "exactly three attempts");
    assert_eq!(f.with(|s| s.jobs.len()), 1);
}

#[tokio::test]
async fn start_fails_at_once_on_a_non_retryable_answer() {
    let f = fake::spawn().await;
    let ds = dataset().await;
    f.with(|s| {
        s.knobs.fail_next = 5;
        s.knobs.fail_status = Some(400);
    });
    let e = executor(&f, &ds).start(input()).await.unwrap_err();
    assert_eq!(e.code, "upstream_rejected");
    assert!(e.message.contains("400"), "{}", e.message);
    // One attempt: the earlier-job lookup (whose 400 only means "no filter support") and
    // the upload; no second attempt.
    assert_eq!(f.with(|s| s.knobs.fail_next), 3, "a 4xx is not retried");
    assert!(f.with(|s| s.jobs.is_empty()));
}

#[test]
fn retry_after_headers_are_parsed_and_bad_values_ignored() {
    use reqwest::header::{HeaderMap, HeaderValue};
    let h = |pairs: &[(&'static str, &'static str)]| {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_static(v));
        }
        error::retry_after(&m)
    };
    assert_eq!(h(&[("retry-after", "2")]), Some(Duration::from_secs(2)));
    assert_eq!(
        h(&[("retry-after-ms", "250"), ("retry-after", "9")]),
        Some(Duration::from_millis(250))
    );
    assert_eq!(h(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]), None);
    assert_eq!(h(&[("retry-after", "-1")]), None);
    assert_eq!(h(&[]), None);
}

#[tokio::test]
async fn a_job_routed_to_local_workers_is_never_forwarded() {
    let f = fake::spawn().await;
    let ds = dataset().await;
    let mut local = input();
    local.backend = Backend::Local;
    let e = executor(&f, &ds).start(local).await.unwrap_err();
    assert_eq!(e.code, "local_training_unavailable");
    assert_eq!(f.with(|s| (s.files.len(), s.creates.len())), (0, 0));
}

/// A client's pause or resume acknowledged by the gateway but lost on the way to the provider
/// is forwarded again: the runner's checks of paused jobs pause a job the provider still runs,
/// and polls of a running job resume one the provider keeps paused (after two polls, so a poll
/// racing a fresh pause does not undo it).
#[tokio::test]
async fn pauses_and_resumes_that_did_not_reach_the_provider_are_forwarded_again() {
    let f = fake::spawn().await;
    let ds = dataset().await;
    let ex = executor(&f, &ds);
    let state = ex.start(input()).await.unwrap();
    f.set_job("ftjob-up0", json!({"status": "running"}));
    let status = || f.with(|s| s.jobs[0].obj["status"].clone());
    // The gateway has the job paused; the provider never heard: paused now, not yet confirmed.
    assert!(!Executor::hold_paused(&ex, job(), state.clone())
        .await
        .unwrap());
    assert_eq!(status(), "paused");
    assert!(Executor::hold_paused(&ex, job(), state.clone())
        .await
        .unwrap());
    // A provider that ended the job has nothing left to pause.
    f.set_job(
        "ftjob-up0",
        json!({"status": "succeeded", "fine_tuned_model": "ft:x"}),
    );
    assert!(Executor::hold_paused(&ex, job(), state.clone())
        .await
        .unwrap());
    // Nothing started upstream: nothing owed.
    assert!(Executor::hold_paused(&ex, job(), json!({})).await.unwrap());
    // A failing provider is an error (the runner checks again sooner).
    f.set_job(
        "ftjob-up0",
        json!({"status": "running", "fine_tuned_model": null}),
    );
    f.with(|s| s.knobs.fail_next = 1);
    assert!(Executor::hold_paused(&ex, job(), state.clone())
        .await
        .is_err());

    // The gateway has the job running; the provider holds it paused.
    f.set_job("ftjob-up0", json!({"status": "paused"}));
    let (run, obs) = ex.poll(job(), state).await.unwrap();
    let RunState::Running { state } = run else {
        panic!("{run:?}")
    };
    assert_eq!(status(), "paused", "one poll may be racing a fresh pause");
    assert!(!obs.iter().any(
        |o| matches!(o, Observation::Event { message, .. } if message.contains("forwarded again"))
    ));
    let (run, obs) = ex.poll(job(), state).await.unwrap();
    let RunState::Running { state } = run else {
        panic!("{run:?}")
    };
    assert_eq!(status(), "running", "the second one resumes it");
    assert!(
        obs.iter()
            .any(|o| matches!(o, Observation::Event { message, .. }
        if message.contains("the resume was forwarded again"))),
        "{obs:?}"
    );
    assert_eq!(state["paused_polls"], 0);
}
