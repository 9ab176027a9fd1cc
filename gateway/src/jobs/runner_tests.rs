use super::*;
use crate::jobs::seams::*;
use crate::jobs::Seams;
use crate::store::{EventLevel, JobRecord, JobStatus, JobStep};
use crate::testutil::*;
use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How long a test waits for anything before it fails.
const PATIENCE: Duration = Duration::from_secs(10);

/// Counts the backend cancels an executor received and wakes a test waiting for them.
#[derive(Default)]
struct Cancels {
    count: AtomicUsize,
    notify: Notify,
}

impl Cancels {
    fn record(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_one();
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Waits until `n` cancels have arrived (a cancel between the check and the wait leaves
    /// a permit in the `Notify`, so none is missed).
    async fn wait_for(&self, n: usize) {
        let waited = tokio::time::timeout(PATIENCE, async {
            while self.count() < n {
                self.notify.notified().await;
            }
        })
        .await;
        assert!(waited.is_ok(), "{} of {n} backend cancels", self.count());
    }
}

/// Runs one poll then succeeds; counts cancels.
struct FakeExecutor {
    polls_before_success: i64,
    cancels: Arc<Cancels>,
}

impl Executor for FakeExecutor {
    fn start(&self, input: StartInput) -> BoxFuture<'static, StepResult<Value>> {
        async move {
            // The transform step's blob key, handed over typed with the decoded plan.
            assert_eq!(input.dataset_blob, format!("dataset-{}", input.job.id));
            assert_eq!(Ok(&input.plan), input.job.pipeline.plan());
            Ok(json!({"polls": 0}))
        }
        .boxed()
    }
    fn poll(
        &self,
        _job: JobRecord,
        state: Value,
    ) -> BoxFuture<'static, StepResult<(RunState, Vec<Observation>)>> {
        let limit = self.polls_before_success;
        async move {
            let n = state["polls"].as_i64().unwrap_or(0) + 1;
            if n <= limit {
                let obs = vec![
                    Observation::Event {
                        level: EventLevel::Info,
                        message: format!("Step {n}/2"),
                        data: Some(json!({"step": n, "train_loss": 1.0})),
                        kind: None,
                        created_at: None,
                    },
                    Observation::Checkpoint {
                        fine_tuned_model_checkpoint: format!("ft:m:ckpt-step-{n}"),
                        step_number: n,
                        metrics: json!({"step": n}),
                        artifact: Some(format!("ckpt-art-{n}")),
                    },
                ];
                Ok((
                    RunState::Running {
                        state: json!({"polls": n}),
                    },
                    obs,
                ))
            } else {
                Ok((
                    RunState::Succeeded {
                        fine_tuned_model: Some("ft:m:acme".into()),
                        trained_tokens: Some(42),
                        state: json!({"polls": n}),
                        artifact: Some("final-art".into()),
                    },
                    vec![],
                ))
            }
        }
        .boxed()
    }
    fn cancel(&self, _job: JobRecord, _s: Value) -> BoxFuture<'static, StepResult<()>> {
        self.cancels.record();
        async { Ok(()) }.boxed()
    }
}

/// A [`FakeExecutor`] whose first poll is raced by a client's pause: the job is paused in
/// the store after the backend answered and before the runner writes what it observed.
struct PauseRacingExecutor {
    inner: FakeExecutor,
    /// The app's store, set once the app exists.
    store: Arc<std::sync::OnceLock<Arc<dyn crate::store::Store>>>,
    raced: std::sync::atomic::AtomicBool,
}

impl Executor for PauseRacingExecutor {
    fn start(&self, input: StartInput) -> BoxFuture<'static, StepResult<Value>> {
        self.inner.start(input)
    }
    fn poll(
        &self,
        job: JobRecord,
        state: Value,
    ) -> BoxFuture<'static, StepResult<(RunState, Vec<Observation>)>> {
        if !self.raced.swap(true, Ordering::SeqCst) {
            let pause = crate::store::StatusChange {
                job_id: job.id.clone(),
                expected: job.status,
                expected_step: job.step,
                status: JobStatus::Paused,
                step: job.step,
                finished_at: None,
            };
            let ev = crate::store::EventRecord {
                id: "ftevent-race".into(),
                job_id: job.id.clone(),
                created_at: 0,
                level: EventLevel::Info,
                message: "Job paused".into(),
                kind: "message".into(),
                data: None,
            };
            let store = self.store.get().expect("store set before the job starts");
            assert!(store.set_job_status(&pause, &ev).unwrap());
        }
        self.inner.poll(job, state)
    }
    fn cancel(&self, job: JobRecord, s: Value) -> BoxFuture<'static, StepResult<()>> {
        self.inner.cancel(job, s)
    }
}

struct RejectingScreener;

impl Screener for RejectingScreener {
    fn screen(&self, _input: ScreenInput) -> BoxFuture<'static, StepResult<Value>> {
        async {
            Err(StepFailure::new(
                "invalid_training_file",
                "Invalid file format. Example 1 is not a JSON object (line 1).",
            )
            .param("training_file")
            .reason("not_json_object"))
        }
        .boxed()
    }
    fn name(&self) -> &'static str {
        "rejecting"
    }
}

fn seams(executor: Arc<dyn Executor>) -> Seams {
    Seams {
        executor,
        ..Seams::builtin()
    }
}

fn start_runner(t: &TestApp) -> tokio_util::sync::CancellationToken {
    start_runner_task(t).0
}

/// Starts a runner; returns its stop token and its task.
fn start_runner_task(
    t: &TestApp,
) -> (
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let stop = tokio_util::sync::CancellationToken::new();
    let runner = Runner::new(
        t.state.store.clone(),
        t.state.blobs.clone(),
        t.state.seams.clone(),
        t.state.metrics.clone(),
        t.state.runner.clone(),
        std::time::Duration::from_millis(10),
    );
    let task = tokio::spawn(runner.run(stop.clone()));
    (stop, task)
}

async fn create_job(t: &TestApp) -> String {
    let (_, f) = t.upload_file("sk-acme", "fine-tune", TRAIN).await;
    let (s, j) = t
        .json(
            "POST",
            "/v1/fine_tuning/jobs",
            "sk-acme",
            Some(json!({"model": "m", "training_file": f["id"]})),
        )
        .await;
    assert_eq!(s, 200, "{j}");
    j["id"].as_str().unwrap().to_string()
}

/// Polls the job through the API until `pred` holds. Polling, with a deadline, because a
/// job's status is a store row the runner writes: nothing announces the change.
async fn wait_for(t: &TestApp, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        let (_, j) = t
            .json(
                "GET",
                &format!("/v1/fine_tuning/jobs/{id}"),
                "sk-acme",
                None,
            )
            .await;
        if pred(&j) {
            return j;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("job {id} never reached the expected state");
}

#[tokio::test]
async fn job_runs_every_step_to_success_with_mirrored_checkpoints() {
    let cancels = Arc::default();
    let t = app_with(
        "",
        seams(Arc::new(FakeExecutor {
            polls_before_success: 2,
            cancels,
        })),
    );
    let stop = start_runner(&t);
    let id = create_job(&t).await;
    let j = wait_for(&t, &id, |j| j["status"] == "succeeded").await;
    assert_eq!(j["fine_tuned_model"], "ft:m:acme");
    assert_eq!(j["trained_tokens"], 42);
    assert!(j["finished_at"].is_i64());
    let (_, ck) = t
        .json(
            "GET",
            &format!("/v1/fine_tuning/jobs/{id}/checkpoints"),
            "sk-acme",
            None,
        )
        .await;
    let steps: Vec<_> = ck["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["step_number"].as_i64().unwrap())
        .collect();
    assert_eq!(steps, vec![2, 1]);
    assert_eq!(ck["data"][0]["fine_tuning_job_id"], id.as_str());
    // Each checkpoint's artifact and the final one are recorded (not shown to the client).
    assert!(ck["data"][0].get("artifact").is_none(), "{ck}");
    let jid = id.clone();
    let (stored, ckpts) = crate::store::run_blocking(&t.state.store, move |s| {
        Ok((
            s.get_job_any(&jid)?.unwrap(),
            s.list_checkpoints(&jid, None, 10)?.data,
        ))
    })
    .await
    .unwrap();
    assert_eq!(stored.pipeline.adapter_blob.as_deref(), Some("final-art"));
    let arts: Vec<_> = ckpts.iter().map(|c| c.artifact.as_deref()).collect();
    assert_eq!(arts, [Some("ckpt-art-2"), Some("ckpt-art-1")]);
    let (_, ev) = t
        .json(
            "GET",
            &format!("/v1/fine_tuning/jobs/{id}/events?limit=100"),
            "sk-acme",
            None,
        )
        .await;
    let msgs: Vec<String> = ev["data"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect();
    let policy = msgs
        .iter()
        .position(|m| m.starts_with("Policy `default`"))
        .expect("policy event");
    let validated = msgs
        .iter()
        .position(|m| m == "Training file validated")
        .expect("screening event");
    let queued = msgs
        .iter()
        .position(|m| m.contains("queued"))
        .expect("queued event");
    assert!(policy < validated, "the plan is resolved before screening");
    let started = msgs
        .iter()
        .position(|m| m == "Fine-tuning job started")
        .expect("start event");
    assert!(policy < queued && queued < started);
    assert_eq!(msgs.last().unwrap(), "The job has successfully completed");
    let metrics_event = ev["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["message"] == "Step 1/2")
        .unwrap();
    assert_eq!(metrics_event["type"], "metrics");
    // the operator can read the dataset and manifest
    let (s, _) = t
        .json(
            "GET",
            &format!("/v1/tuneguard/admin/jobs/{id}/manifest"),
            "sk-admin",
            None,
        )
        .await;
    assert_eq!(s, 200);
    let resp = t
        .send(
            axum::http::Request::get(format!("/v1/tuneguard/admin/jobs/{id}/dataset"))
                .header("authorization", "Bearer sk-admin")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(body_bytes(resp).await, TRAIN);
    stop.cancel();
}

#[tokio::test]
async fn bad_file_fails_job_in_validation_with_param() {
    let t = app_with(
        "",
        Seams {
            screener: Arc::new(RejectingScreener),
            ..Seams::builtin()
        },
    );
    let stop = start_runner(&t);
    let id = create_job(&t).await;
    let j = wait_for(&t, &id, |j| j["status"] == "failed").await;
    assert_eq!(j["error"]["param"], "training_file");
    assert_eq!(j["error"]["code"], "invalid_training_file");
    assert!(j["error"]["message"].as_str().unwrap().contains("line 1"));
    assert!(t
        .state
        .metrics
        .render()
        .contains("tuneguard_screening_rejections_total{reason=\"not_json_object\"} 1"));
    stop.cancel();
}

#[tokio::test]
async fn local_mode_fails_with_stated_code() {
    let t = app();
    let stop = start_runner(&t);
    let id = create_job(&t).await;
    let j = wait_for(&t, &id, |j| j["status"] == "failed").await;
    assert_eq!(j["error"]["code"], "local_training_unavailable");
    stop.cancel();
}

#[tokio::test]
async fn cancel_while_running_stops_the_job_and_the_backend() {
    let cancels = Arc::new(Cancels::default());
    let t = app_with(
        "",
        seams(Arc::new(FakeExecutor {
            polls_before_success: i64::MAX,
            cancels: cancels.clone(),
        })),
    );
    let stop = start_runner(&t);
    let id = create_job(&t).await;
    wait_for(&t, &id, |j| j["status"] == "running").await;
    let (s, j) = t
        .json(
            "POST",
            &format!("/v1/fine_tuning/jobs/{id}/cancel"),
            "sk-acme",
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(j["status"], "cancelled");
    cancels.wait_for(1).await;
    // A witness instead of a sleep: a job created after the cancel reaching `running` means
    // the runner has made passes since, any of which could have overwritten the cancel.
    let witness = create_job(&t).await;
    wait_for(&t, &witness, |j| j["status"] == "running").await;
    assert_eq!(cancels.count(), 1);
    let (_, j) = t
        .json(
            "GET",
            &format!("/v1/fine_tuning/jobs/{id}"),
            "sk-acme",
            None,
        )
        .await;
    assert_eq!(
        j["status"], "cancelled",
        "the runner never overwrites a cancel"
    );
    stop.cancel();
}

#[tokio::test]
async fn restart_resumes_from_the_last_durable_step() {
    let cancels = Arc::default();
    let t = app_with(
        "",
        seams(Arc::new(FakeExecutor {
            polls_before_success: 0,
            cancels,
        })),
    );
    // No runner yet: the job sits at its first step. Simulate a crash after the plan and
    // screen steps: the job's durable step is Transform.
    let id = create_job(&t).await;
    let store = t.state.store.clone();
    let jid = id.clone();
    crate::store::run_blocking(&store, move |s| {
        let mut j = s.get_job_any(&jid)?.expect("job");
        j.step = JobStep::Transform;
        let plan = policies::PolicySet::embedded().resolve(&policies::JobContext::default());
        j.pipeline.plan = Some(plan.unwrap().into());
        s.update_job(&j, JobStatus::ValidatingFiles, &[])
    })
    .await
    .unwrap();
    let mut w = t.state.blobs.create().await.unwrap();
    w.write(b"partial").await.unwrap();
    std::mem::forget(w); // a temp blob left by the crash: no destructor runs
    let report = crate::sweep::startup(&t.state).await.unwrap();
    assert_eq!(report.jobs_resumed, 1);
    assert_eq!(report.blobs_removed, 1);
    let stop = start_runner(&t);
    wait_for(&t, &id, |j| j["status"] == "succeeded").await;
    let (_, ev) = t
        .json(
            "GET",
            &format!("/v1/fine_tuning/jobs/{id}/events?limit=100"),
            "sk-acme",
            None,
        )
        .await;
    let msgs: Vec<_> = ev["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect();
    assert!(msgs
        .iter()
        .any(|m| m == "Gateway restarted; job resumes from its last durable step (transform)"));
    assert!(
        !msgs.iter().any(|m| m == "Training file validated"),
        "screening is not re-run"
    );
    stop.cancel();
}

#[tokio::test]
async fn paused_jobs_wait_and_resume() {
    let cancels = Arc::default();
    let t = app_with(
        "",
        seams(Arc::new(FakeExecutor {
            polls_before_success: 0,
            cancels,
        })),
    );
    let id = create_job(&t).await;
    let (s, _) = t
        .json(
            "POST",
            &format!("/v1/fine_tuning/jobs/{id}/pause"),
            "sk-acme",
            None,
        )
        .await;
    assert_eq!(s, 200);
    let stop = start_runner(&t);
    // A witness instead of a sleep: a job created after the runner started that has
    // finished means the runner has passed over the paused one.
    let witness = create_job(&t).await;
    wait_for(&t, &witness, |j| j["status"] == "succeeded").await;
    let (_, j) = t
        .json(
            "GET",
            &format!("/v1/fine_tuning/jobs/{id}"),
            "sk-acme",
            None,
        )
        .await;
    assert_eq!(j["status"], "paused");
    t.json(
        "POST",
        &format!("/v1/fine_tuning/jobs/{id}/resume"),
        "sk-acme",
        None,
    )
    .await;
    wait_for(&t, &id, |j| j["status"] == "succeeded").await;
    stop.cancel();
}

/// Start blocks until released; counts cancels.
struct SlowStart {
    release: Arc<tokio::sync::Notify>,
    started: Arc<tokio::sync::Notify>,
    cancels: Arc<Cancels>,
}

impl Executor for SlowStart {
    fn start(&self, _input: StartInput) -> BoxFuture<'static, StepResult<Value>> {
        let (release, started) = (self.release.clone(), self.started.clone());
        async move {
            started.notify_one();
            release.notified().await;
            Ok(json!({"upstream": "ftjob-up"}))
        }
        .boxed()
    }
    fn poll(
        &self,
        _job: JobRecord,
        state: Value,
    ) -> BoxFuture<'static, StepResult<(RunState, Vec<Observation>)>> {
        async move { Ok((RunState::Running { state }, vec![])) }.boxed()
    }
    fn cancel(&self, _job: JobRecord, state: Value) -> BoxFuture<'static, StepResult<()>> {
        assert_eq!(state["upstream"], "ftjob-up");
        self.cancels.record();
        async { Ok(()) }.boxed()
    }
}

#[tokio::test]
async fn cancel_racing_a_backend_start_cancels_the_backend_job() {
    let exec = SlowStart {
        release: Arc::new(tokio::sync::Notify::new()),
        started: Arc::new(tokio::sync::Notify::new()),
        cancels: Arc::default(),
    };
    let (release, started, cancels) = (
        exec.release.clone(),
        exec.started.clone(),
        exec.cancels.clone(),
    );
    let t = app_with("", seams(Arc::new(exec)));
    let stop = start_runner(&t);
    let id = create_job(&t).await;
    started.notified().await;
    let (s, _) = t
        .json(
            "POST",
            &format!("/v1/fine_tuning/jobs/{id}/cancel"),
            "sk-acme",
            None,
        )
        .await;
    assert_eq!(s, 200);
    release.notify_one();
    cancels.wait_for(1).await;
    assert_eq!(cancels.count(), 1);
    let (_, j) = t
        .json(
            "GET",
            &format!("/v1/fine_tuning/jobs/{id}"),
            "sk-acme",
            None,
        )
        .await;
    assert_eq!(j["status"], "cancelled");
    stop.cancel();
}

#[path = "runner_tests_plan.rs"]
mod plan;

/// The job's event messages, oldest first.
async fn messages(t: &TestApp, id: &str) -> Vec<String> {
    let (_, ev) = t
        .json(
            "GET",
            &format!("/v1/fine_tuning/jobs/{id}/events?limit=100"),
            "sk-acme",
            None,
        )
        .await;
    ev["data"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}

/// The job's checkpoint step numbers, newest first.
async fn checkpoint_steps(t: &TestApp, id: &str) -> Vec<i64> {
    let (_, ck) = t
        .json(
            "GET",
            &format!("/v1/fine_tuning/jobs/{id}/checkpoints"),
            "sk-acme",
            None,
        )
        .await;
    ck["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["step_number"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn a_pause_racing_a_poll_mirrors_each_checkpoint_once() {
    let store = Arc::new(std::sync::OnceLock::new());
    let exec = PauseRacingExecutor {
        inner: FakeExecutor {
            polls_before_success: 2,
            cancels: Arc::default(),
        },
        store: store.clone(),
        raced: false.into(),
    };
    let t = app_with("", seams(Arc::new(exec)));
    assert!(store.set(t.state.store.clone()).is_ok());
    let stop = start_runner(&t);
    let id = create_job(&t).await;
    wait_for(&t, &id, |j| j["status"] == "paused").await;
    let (s, _) = t
        .json(
            "POST",
            &format!("/v1/fine_tuning/jobs/{id}/resume"),
            "sk-acme",
            None,
        )
        .await;
    assert_eq!(s, 200);
    wait_for(&t, &id, |j| j["status"] == "succeeded").await;
    assert_eq!(
        checkpoint_steps(&t, &id).await,
        vec![2, 1],
        "the raced poll's checkpoint was stored twice"
    );
    let step_events = messages(&t, &id)
        .await
        .into_iter()
        .filter(|m| m == "Step 1/2")
        .count();
    assert_eq!(step_events, 1);
    stop.cancel();
}

#[test]
fn an_interleave_that_inserts_nothing_is_warned_about() {
    use crate::jobs::steps::interleave_warning;
    let manifest = |method: &str, inserted: Value| {
        json!({"client_examples": 12, "output_examples": 12, "inoculation": null,
               "interleave": {"method": method, "fraction": 0.01, "inserted": inserted}})
    };
    let w = interleave_warning(&manifest("random", json!([]))).expect("a warning");
    assert!(
        w.contains("`random`") && w.contains("12 training examples") && w.contains("at least 50"),
        "{w}"
    );
    assert_eq!(
        interleave_warning(&manifest(
            "random",
            json!([{"pool_index": 0, "position": 3}])
        )),
        None
    );
    assert_eq!(
        interleave_warning(&json!({"interleave": {"method": "none", "inserted": []}})),
        None
    );
}

#[test]
fn resolved_hyperparameters_replace_only_autos() {
    use crate::jobs::run_step::resolve_hyperparameters;
    let mut hp = json!({"batch_size": "auto", "learning_rate_multiplier": "auto", "n_epochs": 2});
    let mut method = json!({"type": "supervised", "supervised": {"hyperparameters": hp.clone()}});
    resolve_hyperparameters(
        &mut hp,
        &mut method,
        &json!({"batch_size": 8, "learning_rate_multiplier": "auto", "n_epochs": 3, "extra": 1}),
    );
    let want = json!({"batch_size": 8, "learning_rate_multiplier": "auto", "n_epochs": 2});
    assert_eq!(hp, want);
    assert_eq!(method["supervised"]["hyperparameters"], want);
    // Not an object: nothing changes.
    resolve_hyperparameters(&mut hp, &mut method, &json!("auto"));
    assert_eq!(hp, want);
}

/// A [`FakeExecutor`] whose backend cancel fails its first `failures` times with `code`.
struct FlakyCancel {
    inner: FakeExecutor,
    failures: AtomicUsize,
    code: &'static str,
}

impl Executor for FlakyCancel {
    fn start(&self, input: StartInput) -> BoxFuture<'static, StepResult<Value>> {
        self.inner.start(input)
    }
    fn poll(
        &self,
        job: JobRecord,
        state: Value,
    ) -> BoxFuture<'static, StepResult<(RunState, Vec<Observation>)>> {
        self.inner.poll(job, state)
    }
    fn cancel(&self, _job: JobRecord, _s: Value) -> BoxFuture<'static, StepResult<()>> {
        let fail = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        self.inner.cancels.record();
        let code = self.code;
        async move {
            if fail {
                Err(StepFailure::new(
                    code,
                    "The upstream provider answered 503 to the job cancellation: overloaded",
                ))
            } else {
                Ok(())
            }
        }
        .boxed()
    }
}

/// Runs a job on a [`FlakyCancel`] backend, cancels it once running, and returns the app,
/// the job id and the backend's cancel counter, with the runner going.
async fn cancelled_on_flaky_backend(
    failures: usize,
    code: &'static str,
) -> (
    TestApp,
    String,
    Arc<Cancels>,
    tokio_util::sync::CancellationToken,
) {
    let cancels = Arc::new(Cancels::default());
    let t = app_with(
        "",
        seams(Arc::new(FlakyCancel {
            inner: FakeExecutor {
                polls_before_success: i64::MAX,
                cancels: cancels.clone(),
            },
            failures: AtomicUsize::new(failures),
            code,
        })),
    );
    let stop = start_runner(&t);
    let id = create_job(&t).await;
    wait_for(&t, &id, |j| j["status"] == "running").await;
    let (s, j) = t
        .json(
            "POST",
            &format!("/v1/fine_tuning/jobs/{id}/cancel"),
            "sk-acme",
            None,
        )
        .await;
    assert_eq!((s, j["status"].as_str()), (200, Some("cancelled")));
    (t, id, cancels, stop)
}

/// Waits until the stored job's step is `done` (its owed cancel settled).
async fn settled(t: &TestApp, id: &str) -> JobRecord {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let job = t.state.store.get_job_any(id).unwrap().unwrap();
        if job.step == JobStep::Done {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "the cancel of {id} never settled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_cancel_the_backend_cannot_take_yet_is_retried_until_it_does() {
    let (t, id, cancels, stop) = cancelled_on_flaky_backend(2, "upstream_unavailable").await;
    // Acknowledged at once, owed until the backend takes it.
    cancels.wait_for(3).await;
    let job = settled(&t, &id).await;
    assert_eq!(job.status, JobStatus::Cancelled);
    let msgs = messages(&t, &id).await;
    assert_eq!(
        msgs.iter()
            .filter(|m| *m == "The cancellation was delivered to the execution backend.")
            .count(),
        1,
        "{msgs:?}"
    );
    let witness = create_job(&t).await;
    wait_for(&t, &witness, |j| j["status"] == "running").await;
    assert_eq!(cancels.count(), 3, "settled: never forwarded again");
    stop.cancel();
}

#[tokio::test]
async fn a_cancel_the_backend_refuses_for_good_is_not_retried() {
    let (t, id, cancels, stop) = cancelled_on_flaky_backend(1, "upstream_rejected").await;
    let job = settled(&t, &id).await;
    assert_eq!(job.status, JobStatus::Cancelled);
    let (_, ev) = t
        .json(
            "GET",
            &format!("/v1/fine_tuning/jobs/{id}/events?limit=1"),
            "sk-acme",
            None,
        )
        .await;
    assert_eq!(ev["data"][0]["level"], "warn");
    let msg = ev["data"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("could not be forwarded") && msg.contains("upstream_rejected"),
        "{msg}"
    );
    let witness = create_job(&t).await;
    wait_for(&t, &witness, |j| j["status"] == "running").await;
    assert_eq!(cancels.count(), 1);
    stop.cancel();
}

/// A gateway that stops between acknowledging a cancel and forwarding it forwards it after
/// its restart: the owed cancel is in the store, not in memory.
#[tokio::test]
async fn an_owed_cancel_survives_a_restart() {
    let cancels = Arc::new(Cancels::default());
    let t = app_with(
        "",
        seams(Arc::new(FakeExecutor {
            polls_before_success: i64::MAX,
            cancels: cancels.clone(),
        })),
    );
    let (stop, runner) = start_runner_task(&t);
    let id = create_job(&t).await;
    wait_for(&t, &id, |j| j["status"] == "running").await;
    stop.cancel();
    runner.await.unwrap();
    // The runner is gone (as in a crash after the acknowledgement).
    let (s, _) = t
        .json(
            "POST",
            &format!("/v1/fine_tuning/jobs/{id}/cancel"),
            "sk-acme",
            None,
        )
        .await;
    assert_eq!(s, 200);
    let stored = t.state.store.get_job_any(&id).unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.step),
        (JobStatus::Cancelled, JobStep::Cancel)
    );
    let stop = start_runner(&t);
    cancels.wait_for(1).await;
    settled(&t, &id).await;
    stop.cancel();
}

/// A [`FakeExecutor`] that counts the polls it answers.
struct CountingPolls {
    inner: FakeExecutor,
    polls: Arc<AtomicUsize>,
}

impl Executor for CountingPolls {
    fn start(&self, input: StartInput) -> BoxFuture<'static, StepResult<Value>> {
        self.inner.start(input)
    }
    fn poll(
        &self,
        job: JobRecord,
        state: Value,
    ) -> BoxFuture<'static, StepResult<(RunState, Vec<Observation>)>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        self.inner.poll(job, state)
    }
    fn cancel(&self, job: JobRecord, s: Value) -> BoxFuture<'static, StepResult<()>> {
        self.inner.cancel(job, s)
    }
}

/// Two replicas' runners over one store: the job is driven by one of them only (no poll of
/// the backend, no checkpoint evaluation, is repeated by the other).
#[tokio::test]
async fn one_of_two_replicas_drives_a_job() {
    let polls = [Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0))];
    let exec = |i: usize| {
        Arc::new(CountingPolls {
            inner: FakeExecutor {
                polls_before_success: 6,
                cancels: Arc::default(),
            },
            polls: polls[i].clone(),
        })
    };
    let t = app_with("", seams(exec(0)));
    let runner = |seams: Seams, holder: &str| {
        Runner::new(
            t.state.store.clone(),
            t.state.blobs.clone(),
            seams,
            t.state.metrics.clone(),
            t.state.runner.clone(),
            Duration::from_millis(10),
        )
        .with_holder(holder.to_string())
    };
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(runner(t.state.seams.clone(), "replica-a").run(stop.clone()));
    tokio::spawn(runner(seams(exec(1)), "replica-b").run(stop.clone()));
    let id = create_job(&t).await;
    let done = wait_for(&t, &id, |j| j["status"] == "succeeded").await;
    assert_eq!(done["fine_tuned_model"], "ft:m:acme");
    let (a, b) = (
        polls[0].load(Ordering::SeqCst),
        polls[1].load(Ordering::SeqCst),
    );
    assert!(
        a + b >= 7 && (a == 0 || b == 0),
        "polls: replica-a {a}, replica-b {b}"
    );
    assert_eq!(checkpoint_steps(&t, &id).await, [6, 5, 4, 3, 2, 1]);
    stop.cancel();
}

/// A [`FakeExecutor`] whose backend, asked to hold a paused job, first finds it still running
/// (a client's pause that never reached it) and pauses it, then confirms it held.
struct HoldingExecutor {
    inner: FakeExecutor,
    holds: Arc<Cancels>,
}

impl Executor for HoldingExecutor {
    fn start(&self, input: StartInput) -> BoxFuture<'static, StepResult<Value>> {
        self.inner.start(input)
    }
    fn poll(
        &self,
        job: JobRecord,
        state: Value,
    ) -> BoxFuture<'static, StepResult<(RunState, Vec<Observation>)>> {
        self.inner.poll(job, state)
    }
    fn cancel(&self, job: JobRecord, state: Value) -> BoxFuture<'static, StepResult<()>> {
        self.inner.cancel(job, state)
    }
    fn hold_paused(&self, _job: JobRecord, state: Value) -> BoxFuture<'static, StepResult<bool>> {
        assert!(state["polls"].is_i64(), "the backend's state: {state}");
        let first = self.holds.count() == 0;
        self.holds.record();
        async move { Ok(!first) }.boxed()
    }
}

#[tokio::test]
async fn the_runner_keeps_asking_the_backend_to_hold_a_paused_job() {
    let holds = Arc::new(Cancels::default());
    let t = app_with(
        "",
        seams(Arc::new(HoldingExecutor {
            inner: FakeExecutor {
                polls_before_success: i64::MAX,
                cancels: Arc::default(),
            },
            holds: holds.clone(),
        })),
    );
    let stop = start_runner(&t);
    let id = create_job(&t).await;
    wait_for(&t, &id, |j| j["status"] == "running").await;
    let (s, _) = t
        .json(
            "POST",
            &format!("/v1/fine_tuning/jobs/{id}/pause"),
            "sk-acme",
            None,
        )
        .await;
    assert_eq!(s, 200);
    // Checked again after the backend had to pause it, and again after it confirmed.
    holds.wait_for(3).await;
    t.json(
        "POST",
        &format!("/v1/fine_tuning/jobs/{id}/resume"),
        "sk-acme",
        None,
    )
    .await;
    wait_for(&t, &id, |j| j["status"] == "running").await;
    stop.cancel();
}
