use super::*;
use crate::monitoring::record::Cost;
use monitor::Rule;

fn rec(step: u64, gap: f64, refusal: f64) -> StepRecord {
    let mut signals = CheckpointSignals::new(step);
    signals.alignment_probe_gap = Some(gap);
    signals.harmful_refusal_rate = Some(refusal);
    StepRecord {
        signals,
        cost: Cost {
            eval_seconds: 0.5,
            train_seconds: Some(10.0),
            ..Cost::default()
        },
        ..StepRecord::empty(step)
    }
}

fn settings(rules: Vec<Rule>) -> MonitorSettings {
    let mut s = MonitorSettings::from_policy(&policies::Monitor::default().with_rules(Vec::new()));
    s.rules = rules;
    s
}

fn gap_rule(above: f64, action: RuleAction) -> Rule {
    Rule {
        metric: Signal::AlignmentProbeGap,
        above: Some(above),
        below: None,
        onset: false,
        detector: Detector::Cusum,
        action,
    }
}

fn messages(m: &Mirrored) -> Vec<String> {
    m.observations
        .iter()
        .map(|o| match o {
            Observation::Event { message, .. } => message.clone(),
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn each_record_is_mirrored_once_and_a_pause_stops_there() {
    let records = [rec(0, 0.0, 0.5), rec(10, 0.4, 0.5), rec(20, 0.9, 0.5)];
    let s = settings(vec![gap_rule(0.3, RuleAction::Pause)]);
    let r = Registry::new();
    let metrics = MonitorMetrics::register(&r).unwrap();
    let mut cur = MonitorCursor::default();
    let m = mirror("ftjob-1", &records, &s, &mut cur, Some(&metrics));
    metrics.count(&m.counts);
    let msgs = messages(&m);
    assert_eq!(msgs.len(), 3, "{msgs:#?}");
    assert!(msgs[0].starts_with("Monitor, the base model (baseline): alignment probe gap 0"));
    assert!(
        msgs[1].contains("step 10: alignment probe gap 0.4 nats"),
        "{}",
        msgs[1]
    );
    assert!(msgs[1].contains("5.0% of the training time"), "{}", msgs[1]);
    assert_eq!(
        msgs[2],
        "Monitor rule 1 fired at step 10: alignment_probe_gap 0.4 > 0.3 → pause"
    );
    assert_eq!(
        cur.last,
        Some(10),
        "mirroring stops at the checkpoint that decided"
    );
    let p = cur.pending.clone().unwrap();
    assert_eq!((p.action, p.step), (RuleAction::Pause, 10));
    assert!(m.decision.is_none());
    // The data of the signal event carries the signals for the report.
    let Observation::Event { data, kind, .. } = &m.observations[1] else {
        panic!()
    };
    assert_eq!(kind.as_deref(), Some("message"));
    let d = data.as_ref().unwrap();
    assert_eq!(d["monitor"]["signals"]["alignment_probe_gap"], 0.4);
    assert_eq!(d["step"], 10);

    // The next poll (after the pause was taken and the client resumed) mirrors step 20: the
    // rule still fires but is no edge, so nothing is decided again.
    cur.pending = None;
    let m = mirror("ftjob-1", &records, &s, &mut cur, Some(&metrics));
    metrics.count(&m.counts);
    assert_eq!(messages(&m).len(), 1);
    assert_eq!(cur.last, Some(20));
    assert!(cur.pending.is_none());
    let m = mirror("ftjob-1", &records, &s, &mut cur, Some(&metrics));
    metrics.count(&m.counts);
    assert!(m.observations.is_empty(), "nothing is mirrored twice");

    let text = crate::metrics::render_registry(&r);
    assert!(
        text.contains("tuneguard_monitor_alignment_probe_gap_nats{job_id=\"ftjob-1\"} 0.9"),
        "{text}"
    );
    assert!(text.contains(
        "tuneguard_monitor_rule_firings_total{action=\"pause\",metric=\"alignment_probe_gap\"} 1"
    ));
    assert!(text.contains("tuneguard_monitor_evaluations_total{result=\"ok\"} 3"));
}

#[test]
fn a_rule_the_base_model_already_fires_is_recorded_then_acts_at_the_first_checkpoint() {
    let records = [rec(0, 0.0, 0.1), rec(10, 0.0, 0.1)];
    let rule = Rule {
        metric: Signal::HarmfulRefusalRate,
        above: None,
        below: Some(0.5),
        onset: false,
        detector: Detector::Cusum,
        action: RuleAction::Cancel,
    };
    let mut cur = MonitorCursor::default();
    let m = mirror("j", &records, &settings(vec![rule]), &mut cur, None);
    let msgs = messages(&m);
    assert!(
        msgs[1].ends_with("(the base model already fires it: not acted on)"),
        "{msgs:#?}"
    );
    assert_eq!(cur.pending.unwrap().action, RuleAction::Cancel);
}

#[test]
fn rollback_goes_to_the_last_checkpoint_under_every_rule_or_cancels() {
    let records = [rec(0, 0.0, 1.0), rec(10, 0.1, 1.0), rec(20, 0.5, 1.0)];
    let s = settings(vec![gap_rule(0.3, RuleAction::Rollback)]);
    let mut cur = MonitorCursor::default();
    let m = mirror("j", &records, &s, &mut cur, None);
    match m.decision {
        Some(Decision::Rollback { step, to, .. }) => assert_eq!((step, to), (20, 10)),
        other => panic!("{other:?}"),
    }
    // Fired at the first trained checkpoint: nothing safe to ship, so cancel.
    let records = [rec(0, 0.0, 1.0), rec(10, 0.5, 1.0)];
    let mut cur = MonitorCursor::default();
    let m = mirror("j", &records, &s, &mut cur, None);
    assert!(m.decision.is_none());
    let p = cur.pending.unwrap();
    assert_eq!(p.action, RuleAction::Cancel);
    assert!(
        p.reason.contains("nothing safe to roll back to"),
        "{}",
        p.reason
    );
}

#[test]
fn onset_rules_fire_with_their_onset_and_warn_counts_as_an_action() {
    let records: Vec<StepRecord> = (0..6).map(|i| rec(i * 10, 0.2 * i as f64, 1.0)).collect();
    let rule = Rule {
        metric: Signal::AlignmentProbeGap,
        above: None,
        below: None,
        onset: true,
        detector: Detector::Cusum,
        action: RuleAction::Warn,
    };
    let r = Registry::new();
    let metrics = MonitorMetrics::register(&r).unwrap();
    let mut cur = MonitorCursor::default();
    let m = mirror(
        "j",
        &records,
        &settings(vec![rule]),
        &mut cur,
        Some(&metrics),
    );
    metrics.count(&m.counts);
    let fired: Vec<String> = messages(&m)
        .into_iter()
        .filter(|t| t.starts_with("Monitor rule"))
        .collect();
    assert_eq!(fired.len(), 1, "{fired:#?}");
    assert!(
        fired[0].contains("(onset at step 10, detected at step"),
        "{}",
        fired[0]
    );
    assert!(cur.pending.is_none() && cur.last == Some(50));
    let text = crate::metrics::render_registry(&r);
    assert!(
        text.contains("tuneguard_monitor_actions_total{action=\"warn\"} 1"),
        "{text}"
    );
    assert!(text.contains("tuneguard_monitor_onset{job_id=\"j\",signal=\"alignment_probe_gap\"} 1"));
}

use prometheus::Registry;

#[test]
fn counters_move_only_once_the_mirrored_records_are_stored() {
    let records: Vec<StepRecord> = (0..2).map(|i| rec(i * 10, 0.2 * i as f64, 1.0)).collect();
    let r = Registry::new();
    let metrics = MonitorMetrics::register(&r).unwrap();
    let s = settings(vec![]);
    // A poll whose write is refused (a racing pause): its cursor is never stored and its
    // counts are never applied.
    let mut refused = MonitorCursor::default();
    let m = mirror("j", &records, &s, &mut refused, Some(&metrics));
    assert_eq!(m.counts.evaluations, ["ok", "ok"]);
    let text = crate::metrics::render_registry(&r);
    assert!(
        text.contains("tuneguard_monitor_evaluations_total{result=\"ok\"} 0"),
        "{text}"
    );
    // The next poll mirrors the same records from the stored cursor; stored, they count once.
    let mut cur = MonitorCursor::default();
    let m = mirror("j", &records, &s, &mut cur, Some(&metrics));
    metrics.count(&m.counts);
    let text = crate::metrics::render_registry(&r);
    assert!(
        text.contains("tuneguard_monitor_evaluations_total{result=\"ok\"} 2"),
        "{text}"
    );
}

#[test]
fn checkpoints_the_budgets_skipped_are_said_so_and_leave_the_gauges_at_the_last_measurement() {
    let mut skipped = StepRecord::empty(10);
    skipped.scope = Scope::Skipped;
    skipped.signals.loss = Some(1.25);
    skipped.cost.train_seconds = Some(30.0);
    let mut probes = StepRecord::empty(20);
    probes.scope = Scope::Probes;
    probes.signals.alignment_probe_gap = Some(0.2);
    probes.cost = Cost {
        eval_seconds: 0.5,
        probe_seconds: 0.5,
        train_seconds: Some(20.0),
        ..Cost::default()
    };
    let records = [rec(0, 0.0, 0.5), skipped, probes];
    let s = settings(vec![gap_rule(0.3, RuleAction::Pause)]);
    let r = Registry::new();
    let metrics = MonitorMetrics::register(&r).unwrap();
    let mut cur = MonitorCursor::default();
    let m = mirror("ftjob-2", &records, &s, &mut cur, Some(&metrics));
    let msgs = messages(&m);
    assert_eq!(
        msgs[1],
        "Monitor, step 10: not evaluated (the evaluation budgets wait for more training); training loss 1.25"
    );
    assert!(
        msgs[2].starts_with(
            "Monitor, step 20 (judge-free tier, within the budgets): alignment probe gap 0.2 nats"
        ),
        "{}",
        msgs[2]
    );
    let Observation::Event { data, .. } = &m.observations[1] else {
        panic!()
    };
    assert_eq!(data.as_ref().unwrap()["monitor"]["scope"], "skipped");
    let text = crate::metrics::render_registry(&r);
    // Step 20 measured no harmful refusals: the gauge keeps step 0's.
    assert!(
        text.contains("tuneguard_monitor_harmful_refusal_ratio{job_id=\"ftjob-2\"} 0.5"),
        "{text}"
    );
    assert!(text.contains("tuneguard_monitor_checkpoint_step{job_id=\"ftjob-2\"} 20"));
    // The job's evaluation time over its training time: (0.5 + 0 + 0.5) / (10 + 30 + 20).
    let share = 1.0 / 60.0;
    assert!(
        text.contains(&format!(
            "tuneguard_monitor_evaluation_ratio{{job_id=\"ftjob-2\"}} {share}"
        )),
        "{text}"
    );
}
