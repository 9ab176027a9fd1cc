//! The plan is resolved and recorded before screening, which uses its max length.

use super::*;

/// Records the max length each screening was asked to use, then accepts the file.
#[derive(Default)]
struct RecordingScreener {
    max_lengths: std::sync::Mutex<Vec<usize>>,
}

impl Screener for RecordingScreener {
    fn screen(&self, input: ScreenInput) -> BoxFuture<'static, StepResult<Value>> {
        self.max_lengths.lock().unwrap().push(input.max_length);
        async { Ok(json!({"training_file": {"examples": 1}})) }.boxed()
    }
    fn name(&self) -> &'static str {
        "recording"
    }
}

/// The embedded policy with `training.max_length_tokens` set to 77.
struct ShortPlanner;

impl Planner for ShortPlanner {
    fn plan(
        &self,
        tenant: &str,
        model: &str,
        metadata: &std::collections::BTreeMap<String, String>,
    ) -> StepResult<PlanOutcome> {
        let mut p = crate::policy_watch::WatchPlanner::embedded().plan(tenant, model, metadata)?;
        p.plan.training.max_length_tokens = 77;
        Ok(p)
    }
    fn describe(&self) -> Value {
        json!({})
    }
}

#[tokio::test]
async fn screening_uses_the_max_length_of_the_plan_recorded_first() {
    let screener = Arc::new(RecordingScreener::default());
    let t = app_with(
        "",
        Seams {
            screener: screener.clone(),
            planner: Arc::new(ShortPlanner),
            ..Seams::builtin()
        },
    );
    let id = create_job(&t).await;
    let (_, j) = t
        .json(
            "GET",
            &format!("/v1/fine_tuning/jobs/{id}"),
            "sk-acme",
            None,
        )
        .await;
    assert_eq!(j["status"], "validating_files");
    let stop = start_runner(&t);
    // Local mode: the job ends failed at the run step, after plan, screen and transform.
    wait_for(&t, &id, |j| j["status"] == "failed").await;
    assert_eq!(*screener.max_lengths.lock().unwrap(), vec![77]);
    let msgs = messages(&t, &id).await;
    let policy = msgs.iter().position(|m| m.starts_with("Policy `default`"));
    let validated = msgs.iter().position(|m| m == "Training file validated");
    assert!(
        matches!((policy, validated), (Some(p), Some(v)) if p < v),
        "{msgs:?}"
    );
    let jid = id.clone();
    let stored = crate::store::run_blocking(&t.state.store, move |s| s.get_job_any(&jid))
        .await
        .unwrap()
        .unwrap();
    let plan = stored.pipeline.plan().unwrap();
    assert_eq!(plan.training.max_length_tokens, 77);
    let screening = stored.pipeline.screening.as_ref().unwrap();
    assert_eq!(screening["training_file"]["examples"], 1);
    stop.cancel();
}

#[tokio::test]
async fn a_job_stored_at_screen_without_a_plan_resolves_its_plan_first() {
    let screener = Arc::new(RecordingScreener::default());
    let t = app_with(
        "",
        Seams {
            screener: screener.clone(),
            planner: Arc::new(ShortPlanner),
            ..Seams::builtin()
        },
    );
    // A job recorded by a build that screened before planning: step Screen, no plan.
    let id = create_job(&t).await;
    let jid = id.clone();
    crate::store::run_blocking(&t.state.store, move |s| {
        let mut j = s.get_job_any(&jid)?.expect("job");
        j.step = JobStep::Screen;
        j.pipeline = crate::store::Pipeline::default();
        s.update_job(&j, JobStatus::ValidatingFiles, &[])
    })
    .await
    .unwrap();
    let stop = start_runner(&t);
    wait_for(&t, &id, |j| j["status"] == "failed").await;
    assert_eq!(*screener.max_lengths.lock().unwrap(), vec![77]);
    let (_, j) = t
        .json(
            "GET",
            &format!("/v1/fine_tuning/jobs/{id}"),
            "sk-acme",
            None,
        )
        .await;
    assert_eq!(j["error"]["code"], "local_training_unavailable");
    stop.cancel();
}

#[tokio::test]
async fn an_unreadable_recorded_plan_fails_screening_with_a_stated_reason() {
    let screener = Arc::new(RecordingScreener::default());
    let t = app_with(
        "",
        Seams {
            screener: screener.clone(),
            ..Seams::builtin()
        },
    );
    let id = create_job(&t).await;
    let jid = id.clone();
    crate::store::run_blocking(&t.state.store, move |s| {
        let mut j = s.get_job_any(&jid)?.expect("job");
        j.step = JobStep::Screen;
        // A plan this build cannot read (written by another build, say).
        j.pipeline = crate::store::Pipeline::of(json!({"plan": {"training": {}}}));
        s.update_job(&j, JobStatus::ValidatingFiles, &[])
    })
    .await
    .unwrap();
    let stop = start_runner(&t);
    let j = wait_for(&t, &id, |j| j["status"] == "failed").await;
    assert_eq!(j["error"]["code"], "invalid_plan");
    let message = j["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("The job's recorded plan is unreadable: missing field"),
        "{message}"
    );
    assert!(screener.max_lengths.lock().unwrap().is_empty());
    stop.cancel();
}
