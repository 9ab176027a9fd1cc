use super::*;

fn cp(step: u64, misaligned: f64, hallucination: Option<f64>) -> CheckpointSignals {
    let mut c = CheckpointSignals::new(step);
    c.misaligned_fraction = Some(misaligned);
    c.hallucination_fraction = hallucination;
    c
}

/// Steps 0..=90 by 10: hallucination climbs from step 30, misalignment from step 60.
fn history() -> Vec<CheckpointSignals> {
    let mis = [0.0, 0.0, 0.01, 0.02, 0.03, 0.04, 0.08, 0.15, 0.25, 0.4];
    let hal = [0.1, 0.1, 0.1, 0.3, 0.35, 0.4, 0.5, 0.6, 0.6, 0.7];
    (0..10)
        .map(|i| cp(10 * i as u64, mis[i], Some(hal[i])))
        .collect()
}

fn rule(metric: Signal, above: f64, action: RuleAction) -> Rule {
    Rule {
        metric,
        above: Some(above),
        below: None,
        onset: false,
        detector: Detector::Cusum,
        action,
    }
}

#[test]
fn policy_default_rules_warn_then_pause() {
    let settings = MonitorSettings::from_policy(&policies::Monitor::default());
    assert_eq!(settings.rules.len(), 3);
    assert_eq!(settings.denominator, Denominator::Coherent);
    let evs = evaluate(&settings.rules, &history(), &settings.onset);
    let actions: Vec<RuleAction> = evs.iter().map(|e| e.action).collect();
    use RuleAction::*;
    // hallucination > 0.2 warns from step 30; misaligned > 0.05 warns at 60; > 0.2 pauses at 80.
    assert_eq!(
        actions,
        [None, None, None, Warn, Warn, Warn, Warn, Warn, Pause, Pause]
    );
    let at60 = &evs[6];
    assert_eq!(at60.firings.len(), 2);
    let f = &at60.firings[1];
    assert_eq!(
        (f.rule, f.step, f.metric, f.action),
        (1, 60, Signal::MisalignedFraction, Warn)
    );
    assert_eq!((f.value, f.above, f.new), (Some(0.08), Some(0.05), true));
    // The hallucination warning has been firing since step 30: not new any more.
    assert!(!at60.firings[0].new);
    assert!(evs[3].firings[0].new);
    let pause = &evs[8].firings[2];
    assert_eq!(
        (pause.action, pause.value, pause.new),
        (Pause, Some(0.25), true)
    );
    assert_eq!(evs[8].rollback_to, Option::None);
}

#[test]
fn cancel_beats_everything() {
    let rules = vec![
        rule(Signal::MisalignedFraction, 0.05, RuleAction::Rollback),
        rule(Signal::MisalignedFraction, 0.3, RuleAction::Cancel),
        rule(Signal::HallucinationFraction, 0.2, RuleAction::Warn),
    ];
    let evs = evaluate(&rules, &history(), &OnsetConfig::default());
    assert_eq!(evs[9].action, RuleAction::Cancel);
    assert_eq!(evs[9].firings.len(), 3);
    assert_eq!(evs[9].rollback_to, None);
    let f = evs[9]
        .firings
        .iter()
        .find(|f| f.action == RuleAction::Cancel)
        .unwrap();
    assert_eq!((f.value, f.above), (Some(0.4), Some(0.3)));
}

#[test]
fn rollback_chooses_the_last_checkpoint_under_every_threshold() {
    let rules = vec![
        rule(Signal::MisalignedFraction, 0.1, RuleAction::Rollback),
        rule(Signal::MisalignedFraction, 0.05, RuleAction::Warn),
        rule(Signal::HallucinationFraction, 0.38, RuleAction::Warn),
        // A record-only rule does not restrict the target.
        rule(Signal::MisalignedFraction, 0.0, RuleAction::None),
    ];
    let evs = evaluate(&rules, &history(), &OnsetConfig::default());
    let e = &evs[7];
    assert_eq!(e.action, RuleAction::Rollback);
    // Misaligned ≤ 0.05 up to step 50, hallucination ≤ 0.38 up to step 40.
    assert_eq!(
        e.rollback_to,
        Some(RollbackTarget::Checkpoint { step: 40, index: 4 })
    );
    let f = e
        .firings
        .iter()
        .find(|f| f.action == RuleAction::Rollback)
        .unwrap();
    assert_eq!((f.value, f.above), (Some(0.15), Some(0.1)));
}

#[test]
fn rollback_skips_unmeasured_checkpoints_and_may_find_none() {
    let mut h = history();
    h[4].hallucination_fraction = None;
    let rules = vec![
        rule(Signal::MisalignedFraction, 0.1, RuleAction::Rollback),
        rule(Signal::HallucinationFraction, 0.38, RuleAction::Warn),
    ];
    let e = evaluate_at(&rules, &h, 7, &OnsetConfig::default());
    assert_eq!(
        e.rollback_to,
        Some(RollbackTarget::Checkpoint { step: 30, index: 3 })
    );
    let strict = vec![
        rule(Signal::MisalignedFraction, 0.1, RuleAction::Rollback),
        rule(Signal::HallucinationFraction, 0.05, RuleAction::Warn),
    ];
    let e = evaluate_at(&strict, &h, 7, &OnsetConfig::default());
    assert_eq!(e.rollback_to, Some(RollbackTarget::NoCheckpoint));
    assert_eq!(
        serde_json::to_value(RollbackTarget::Checkpoint { step: 30, index: 3 }).unwrap(),
        serde_json::json!({"kind": "checkpoint", "step": 30, "index": 3})
    );
}

#[test]
fn onset_rules_fire_from_detection_and_bound_the_rollback() {
    // Hallucination jumps at step 30 (0.1 → 0.3+): CUSUM (δ 0.05) alarms there at once.
    let onset_only = Rule {
        metric: Signal::HallucinationFraction,
        above: None,
        below: None,
        onset: true,
        detector: Detector::Cusum,
        action: RuleAction::Pause,
    };
    let evs = evaluate(
        std::slice::from_ref(&onset_only),
        &history(),
        &OnsetConfig::default(),
    );
    let first = evs
        .iter()
        .position(|e| e.action == RuleAction::Pause)
        .unwrap();
    assert_eq!(evs[first].step, 30);
    let f = &evs[first].firings[0];
    let o = f.onset.unwrap();
    assert_eq!((o.step, o.detected_at_step), (30, 30));
    assert!(f.new && !evs[first + 1].firings[0].new);

    // Onset and threshold together: both must hold.
    let both = Rule {
        above: Some(0.5),
        ..onset_only.clone()
    };
    let evs = evaluate(
        std::slice::from_ref(&both),
        &history(),
        &OnsetConfig::default(),
    );
    assert_eq!(
        evs.iter().position(|e| e.action == RuleAction::Pause),
        Some(7)
    );

    // A rollback bounded by an onset goes to the last checkpoint before it.
    let rules = vec![
        rule(Signal::MisalignedFraction, 0.2, RuleAction::Rollback),
        Rule {
            action: RuleAction::Warn,
            ..onset_only
        },
    ];
    let e = evaluate_at(&rules, &history(), 8, &OnsetConfig::default());
    assert_eq!(e.action, RuleAction::Rollback);
    assert_eq!(
        e.rollback_to,
        Some(RollbackTarget::Checkpoint { step: 20, index: 2 })
    );
}

#[test]
fn below_rules_and_probe_metrics() {
    let mut h = history();
    for (i, c) in h.iter_mut().enumerate() {
        c.mean_alignment = Some(90.0 - 5.0 * i as f64);
        c.alignment_probe_gap = Some(0.1 * i as f64);
    }
    let rules = vec![
        Rule {
            metric: Signal::MeanAlignment,
            above: None,
            below: Some(60.0),
            onset: false,
            detector: Detector::Cusum,
            action: RuleAction::Warn,
        },
        rule(Signal::AlignmentProbeGap, 0.45, RuleAction::Pause),
    ];
    let evs = evaluate(&rules, &h, &OnsetConfig::default());
    assert_eq!(evs[4].action, RuleAction::None);
    assert_eq!(evs[6].firings.len(), 1); // 60 is not below 60
    let at5 = &evs[5];
    assert_eq!(at5.action, RuleAction::Pause);
    assert_eq!(at5.firings[0].value, Some(0.5));
    let at7 = &evs[7];
    assert_eq!(at7.firings.len(), 2);
    assert_eq!(
        (at7.firings[0].value, at7.firings[0].below),
        (Some(55.0), Some(60.0))
    );
}

#[test]
fn missing_values_never_fire_thresholds() {
    let mut h = history();
    h[9].misaligned_fraction = None;
    let rules = vec![rule(Signal::MisalignedFraction, 0.05, RuleAction::Warn)];
    let evs = evaluate(&rules, &h, &OnsetConfig::default());
    assert_eq!(evs[9].action, RuleAction::None);
    assert!(evs[9].firings.is_empty());
}

#[test]
fn rule_checks_and_conversions() {
    let r = Rule {
        metric: Signal::MisalignedFraction,
        above: None,
        below: None,
        onset: false,
        detector: Detector::Cusum,
        action: RuleAction::Warn,
    };
    assert!(r.check().unwrap_err().contains("can never fire"));
    let r2 = Rule {
        above: Some(0.5),
        below: Some(0.2),
        ..r.clone()
    };
    assert!(r2.check().unwrap_err().contains("leave no value"));
    assert!(Rule {
        onset: true,
        ..r.clone()
    }
    .check()
    .is_ok());
    let p = policies::MonitorRule::above(
        policies::MonitorMetric::IncoherentFraction,
        0.3,
        policies::Action::Cancel,
    );
    let converted = Rule::from(&p);
    assert_eq!(converted.metric, Signal::IncoherentFraction);
    assert_eq!(
        (converted.above, converted.action),
        (Some(0.3), RuleAction::Cancel)
    );
    assert!(RuleAction::Cancel > RuleAction::Rollback && RuleAction::Rollback > RuleAction::Pause);
    let json: Rule = serde_json::from_str(
        r#"{"metric":"honesty_probe_gap","onset":true,"detector":"bocpd","action":"rollback"}"#,
    )
    .unwrap();
    assert_eq!(
        (json.metric, json.detector, json.action),
        (
            Signal::HonestyProbeGap,
            Detector::Bocpd,
            RuleAction::Rollback
        )
    );
    assert_eq!(RuleAction::Rollback.name(), "rollback");
}

#[test]
fn evaluation_is_online() {
    // What `evaluate` says about checkpoint i is what a live monitor that had seen only the
    // checkpoints up to i decided there, onset rules included.
    let rules = vec![
        Rule {
            metric: Signal::HallucinationFraction,
            above: None,
            below: None,
            onset: true,
            detector: Detector::Either,
            action: RuleAction::Warn,
        },
        Rule {
            metric: Signal::MisalignedFraction,
            above: Some(0.03),
            below: None,
            onset: true,
            detector: Detector::Bocpd,
            action: RuleAction::Rollback,
        },
    ];
    let h = history();
    let all = evaluate(&rules, &h, &OnsetConfig::default());
    for i in 0..h.len() {
        assert_eq!(
            evaluate_at(&rules, &h[..=i], i, &OnsetConfig::default()),
            all[i],
            "checkpoint {i}"
        );
    }
    assert!(all.iter().any(|e| e.action == RuleAction::Rollback));
}

#[test]
fn policy_rules_with_onset_below_and_rollback_convert_one_to_one() {
    let p = policies::MonitorRule {
        metric: policies::MonitorMetric::HarmfulRefusalRate,
        above: None,
        below: Some(0.4),
        onset: true,
        detector: policies::OnsetDetector::Both,
        action: policies::Action::Rollback,
    };
    let r = Rule::from(&p);
    assert_eq!(r.metric, Signal::HarmfulRefusalRate);
    assert_eq!((r.above, r.below, r.onset), (None, Some(0.4), true));
    assert_eq!(
        (r.detector, r.action),
        (Detector::Both, RuleAction::Rollback)
    );
    let m = policies::Monitor {
        denominator: policies::Denominator::All,
        ..policies::Monitor::default()
    };
    assert_eq!(
        MonitorSettings::from_policy(&m).denominator,
        Denominator::All
    );
}

#[test]
fn checkpoints_the_budgets_skipped_neither_fire_nor_break_an_excursion_nor_vouch() {
    // Steps 0, 10 (measured, fine), 20 (measured, fires), 30 (skipped: loss only),
    // 40 (measured, still firing), 50 (judge-free: no misaligned fraction).
    let mut h = vec![cp(0, 0.0, None), cp(10, 0.0, None), cp(20, 0.3, None)];
    let mut skipped = CheckpointSignals::new(30);
    skipped.loss = Some(1.0);
    h.push(skipped);
    h.push(cp(40, 0.4, None));
    let mut probes = CheckpointSignals::new(50);
    probes.alignment_probe_gap = Some(0.1);
    h.push(probes);
    let rules = [rule(Signal::MisalignedFraction, 0.2, RuleAction::Rollback)];
    let evs = evaluate(&rules, &h, &OnsetConfig::default());
    assert!(evs[3].firings.is_empty() && evs[5].firings.is_empty());
    assert!(evs[2].firings[0].new);
    assert!(
        !evs[4].firings[0].new,
        "the skipped step 30 does not end the excursion"
    );
    // Rolling back from step 40 goes to step 10: step 30 was never measured.
    assert_eq!(
        evs[4].rollback_to,
        Some(RollbackTarget::Checkpoint { step: 10, index: 1 })
    );
}
