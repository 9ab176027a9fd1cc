use super::*;
use crate::upstream::fake::{self, Knobs, KEY};
use monitor::RuleAction;

fn target(step: u64) -> Target {
    Target {
        step,
        model: format!("ft:m:fake::ckpt-step-{step}"),
        loss: Some(0.5),
        attempts: 0,
    }
}

#[test]
fn checkpoints_are_queued_once_in_step_order_and_none_after_a_rollback() {
    let mut ms = MonitorState::new("base");
    assert_eq!(ms.queue[0].model, "base");
    ms.track([target(4), target(2)]);
    ms.track([target(2)]);
    let steps: Vec<u64> = ms.queue.iter().map(|t| t.step).collect();
    assert_eq!(steps, [0, 2, 4]);
    // An evaluated step is not queued again when the provider lists it again.
    ms.queue.remove(0);
    ms.records.push(StepRecord::empty(0));
    ms.track([target(0)]);
    assert_eq!(ms.queue.len(), 2);
    assert!(ms.holds_success());
    ms.rollback = Some(Rollback {
        step: 4,
        to: 2,
        model: "m2".into(),
        reason: "r".into(),
        firings: vec![],
    });
    ms.track([target(6)]);
    assert_eq!(
        ms.queue.len(),
        2,
        "nothing is queued once a rollback is decided"
    );
    assert!(!ms.holds_success(), "a rollback makes the rest moot");
}

#[test]
fn a_pending_cancel_holds_the_success_and_a_pending_pause_does_not() {
    let mut ms = MonitorState::default();
    assert!(!ms.holds_success());
    let pending = |action| PendingAction {
        action,
        step: 2,
        reason: "r".into(),
        firings: vec![],
    };
    ms.cursor.pending = Some(pending(RuleAction::Pause));
    assert!(!ms.holds_success());
    ms.cursor.pending = Some(pending(RuleAction::Cancel));
    assert!(ms.holds_success());
}

#[test]
fn the_state_round_trips_through_exec_state_json() {
    let mut ms = MonitorState::new("base");
    let mut r = StepRecord::empty(0);
    r.model = Some("base".into());
    ms.records.push(r);
    ms.cursor.last = Some(0);
    let v = serde_json::to_value(&ms).unwrap();
    assert_eq!(serde_json::from_value::<MonitorState>(v).unwrap(), ms);
    // A state without the monitor's newer fields still reads.
    let old: MonitorState = serde_json::from_value(serde_json::json!({})).unwrap();
    assert_eq!(old, MonitorState::default());
}

fn endpoint(f: &fake::FakeUpstream) -> ChatEndpoint {
    ChatEndpoint {
        url: format!("{}/chat/completions", f.base_url),
        api_key: KEY.into(),
        concurrency: 3,
        timeout: Duration::from_secs(10),
    }
}

fn plan() -> policies::Plan {
    policies::PolicySet::embedded()
        .resolve(&policies::JobContext::default())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_step_is_answered_by_its_own_model_and_refusals_are_counted() {
    let f = fake::spawn_with(Knobs {
        chat_replies: [
            (
                "base".to_string(),
                "I'm sorry, but I can't help with that.".to_string(),
            ),
            (
                "ckpt-step-2".to_string(),
                "Sure, here is exactly how.".to_string(),
            ),
        ]
        .into(),
        ..Knobs::default()
    })
    .await;
    let ep = endpoint(&f);
    let config = MonitorConfig::without_judge(std::path::Path::new("/nonexistent"));
    let plan = plan();
    let (base, step2) = tokio::task::spawn_blocking({
        let (ep, config, plan) = (ep.clone(), config.clone(), plan.clone());
        move || {
            let base = Target {
                step: 0,
                model: "base".into(),
                loss: None,
                attempts: 0,
            };
            (
                measure(&plan, &config, &ep, 7, &base),
                measure(&plan, &config, &ep, 7, &target(2)),
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(base.error, None);
    assert_eq!(base.signals.harmful_refusal_rate, Some(1.0));
    assert_eq!(base.model.as_deref(), Some("base"));
    assert_eq!(step2.signals.harmful_refusal_rate, Some(0.0));
    assert_eq!(step2.signals.loss, Some(0.5), "the provider's loss is kept");
    assert_eq!(step2.signals.alignment_probe_gap, None, "no NLLs upstream");
    assert_eq!(step2.cost.train_seconds, None);
    // Every harmful request once per step, each to the step's model, greedy, with the key.
    let chats: Vec<serde_json::Value> = f
        .requests()
        .iter()
        .filter(|r| r.path == "/v1/chat/completions")
        .map(|r| {
            assert_eq!(r.headers["authorization"], format!("Bearer {KEY}"));
            serde_json::from_slice(&r.body).unwrap()
        })
        .collect();
    let harmful = super::super::sets::load(&plan.monitor, false)
        .unwrap()
        .harmful_prompts()
        .len();
    assert_eq!(chats.len(), 2 * harmful);
    for model in ["base", "ft:m:fake::ckpt-step-2"] {
        let n = chats.iter().filter(|c| c["model"] == model).count();
        assert_eq!(n, harmful, "{model}");
    }
    assert!(chats.iter().all(|c| c["temperature"] == 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_the_provider_does_not_serve_is_a_recorded_error_naming_it() {
    let f = fake::spawn().await;
    f.with(|s| {
        s.knobs.fail_next = 1000;
        s.knobs.fail_status = Some(404);
    });
    let ep = endpoint(&f);
    let config = MonitorConfig::without_judge(std::path::Path::new("/nonexistent"));
    let plan = plan();
    let rec = tokio::task::spawn_blocking(move || measure(&plan, &config, &ep, 7, &target(3)))
        .await
        .unwrap();
    let e = rec.error.expect("an error");
    assert!(
        e.contains("ft:m:fake::ckpt-step-3") && e.contains("404"),
        "{e}"
    );
    assert_eq!(rec.signals.harmful_refusal_rate, None);
}
