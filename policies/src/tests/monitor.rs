//! `[monitor]`: the evaluation keys, rule metrics with per-metric ranges, onset rules,
//! rollback, set paths resolved against the policy directory, and plans recorded before the
//! keys existed.

use super::{err, one};
use crate::*;
use std::path::{Path, PathBuf};

#[test]
fn evaluation_keys_have_small_defaults_and_can_be_set() {
    let d = one("").unwrap().monitor;
    assert_eq!(d.denominator, Denominator::Coherent);
    assert_eq!(
        (d.samples_per_question, d.max_answer_tokens, d.probe_pairs),
        (1, 128, 8)
    );
    assert_eq!(d.holdout_examples, 0);
    assert_eq!((d.eval_budget, d.probe_budget), (0.15, 0.02));
    assert!(d.general_set.is_none() && d.honesty_probes.is_none());
    let m = one(
        "[monitor]\ndenominator = \"all\"\nsamples_per_question = 3\nmax_answer_tokens = 64\n\
         probe_pairs = 0\nholdout_examples = 8\ngeneral_set = \"eval/mine.yaml\"\n\
         eval_budget = 0\nprobe_budget = 0.5\n",
    )
    .unwrap()
    .monitor;
    assert_eq!((m.eval_budget, m.probe_budget), (0.0, 0.5));
    assert_eq!(m.denominator, Denominator::All);
    assert_eq!(
        (
            m.samples_per_question,
            m.max_answer_tokens,
            m.probe_pairs,
            m.holdout_examples
        ),
        (3, 64, 0, 8)
    );
    assert_eq!(m.general_set, Some(PathBuf::from("eval/mine.yaml")));
}

#[test]
fn evaluation_key_errors_name_the_key() {
    assert_eq!(
        err("[monitor]\ndenominator = \"some\"\n"),
        r#"policies/strict.toml: key "monitor.denominator": must be one of coherent, all, got "some""#
    );
    assert_eq!(
        err("[monitor]\nsamples_per_question = 0\n"),
        r#"policies/strict.toml: key "monitor.samples_per_question": must be >= 1, got 0"#
    );
    assert_eq!(
        err("[monitor]\neval_budget = 1.5\n"),
        r#"policies/strict.toml: key "monitor.eval_budget": must be in [0, 1], got 1.5"#
    );
    assert_eq!(
        err("[monitor]\nprobe_budget = -0.1\n"),
        r#"policies/strict.toml: key "monitor.probe_budget": must be in [0, 1], got -0.1"#
    );
    assert_eq!(
        err("[monitor]\nhonesty_probes = \" \"\n"),
        r#"policies/strict.toml: key "monitor.honesty_probes": must not be empty"#
    );
}

#[test]
fn rules_take_every_signal_with_its_own_range() {
    let p = one(
        "[[monitor.rules]]\nmetric = \"alignment_probe_gap\"\nabove = 0.3\naction = \"rollback\"\n\
         [[monitor.rules]]\nmetric = \"mean_alignment\"\nbelow = 60\naction = \"pause\"\n\
         [[monitor.rules]]\nmetric = \"honesty_probe_gap\"\nonset = true\ndetector = \"either\"\naction = \"warn\"\n\
         [[monitor.rules]]\nmetric = \"harmful_refusal_rate\"\nbelow = 0.5\nonset = true\naction = \"cancel\"\n",
    )
    .unwrap();
    let r = &p.monitor.rules;
    assert_eq!(r[0].metric, MonitorMetric::AlignmentProbeGap);
    assert_eq!((r[0].above, r[0].action), (Some(0.3), Action::Rollback));
    assert_eq!((r[1].below, r[1].above), (Some(60.0), None));
    assert!(r[2].onset && r[2].detector == OnsetDetector::Either && r[2].above.is_none());
    assert_eq!(r[3].detector, OnsetDetector::Cusum);
    assert!(Action::Rollback > Action::Pause && Action::Cancel > Action::Rollback);

    let rule = |body: &str| err(&format!("[[monitor.rules]]\n{body}\n"));
    assert_eq!(
        rule("metric = \"mean_alignment\"\nabove = 120\naction = \"warn\""),
        r#"policies/strict.toml: key "monitor.rules[0].above": must be in [0, 100) for mean_alignment, got 120"#
    );
    assert_eq!(
        rule("metric = \"refusal_rate\"\nbelow = 0\naction = \"warn\""),
        r#"policies/strict.toml: key "monitor.rules[0].below": must be in (0, 1] for refusal_rate, got 0"#
    );
    assert_eq!(
        rule("metric = \"in_domain_loss\"\nabove = -1\naction = \"warn\""),
        r#"policies/strict.toml: key "monitor.rules[0].above": must be in [0, inf) for in_domain_loss, got -1"#
    );
    assert_eq!(
        rule("metric = \"misaligned_fraction\"\nabove = 0.5\nbelow = 0.2\naction = \"warn\""),
        r#"policies/strict.toml: key "monitor.rules[0].below": must be greater than above (0.5): otherwise no value fires, got 0.2"#
    );
    assert_eq!(
        rule("metric = \"misaligned_fraction\"\nabove = 0.5\ndetector = \"bocpd\"\naction = \"warn\""),
        r#"policies/strict.toml: key "monitor.rules[0].detector": applies only with onset = true"#
    );
    assert_eq!(
        rule("metric = \"probe\"\nabove = 0.5\naction = \"warn\""),
        r#"policies/strict.toml: key "monitor.rules[0].metric": must be one of misaligned_fraction, incoherent_fraction, hallucination_fraction, mean_alignment, refusal_rate, harmful_refusal_rate, alignment_probe_gap, honesty_probe_gap, in_domain_loss, loss, got "probe""#
    );
    // A probe gap may be negative (the model moved toward the good answers).
    assert!(one(
        "[[monitor.rules]]\nmetric = \"alignment_probe_gap\"\nbelow = -2\naction = \"none\"\n"
    )
    .is_ok());
}

#[test]
fn set_paths_resolve_against_the_policy_directory() {
    let s = PolicySet::from_texts(
        Path::new("/etc/tg"),
        &[(
            "default.toml",
            "[monitor]\nalignment_probes = \"probes/mine.jsonl\"\nharmful_set = \"/abs/harm.yaml\"\n",
        )],
    )
    .unwrap();
    let m = s.resolve(&JobContext::default()).unwrap().monitor;
    assert_eq!(
        m.alignment_probes,
        Some(PathBuf::from("/etc/tg/probes/mine.jsonl"))
    );
    assert_eq!(m.harmful_set, Some(PathBuf::from("/abs/harm.yaml")));
    assert_eq!(m.general_set, None, "unset = the shipped set");
}

#[test]
fn a_plan_recorded_before_the_monitor_keys_still_reads() {
    let old = serde_json::json!({
        "checkpoint_every_steps": 10,
        "misaligned_alignment_below": 30.0,
        "misaligned_coherence_above": 50.0,
        "incoherent_coherence_below": 50.0,
        "hallucination_score_above": 50.0,
        "rules": [{"metric": "misaligned_fraction", "above": 0.2, "action": "pause"}]
    });
    let m: Monitor = serde_json::from_value(old).unwrap();
    // A job recorded before the budgets keeps evaluating every checkpoint, as it did.
    assert_eq!(
        m,
        Monitor {
            eval_budget: 0.0,
            probe_budget: 0.0,
            ..Monitor::default().with_rules(vec![MonitorRule::above(
                MonitorMetric::MisalignedFraction,
                0.2,
                Action::Pause
            )])
        }
    );
    // And a new plan round-trips.
    let p =
        one("[[monitor.rules]]\nmetric = \"loss\"\nonset = true\naction = \"rollback\"\n").unwrap();
    let back: Monitor = serde_json::from_value(serde_json::to_value(&p.monitor).unwrap()).unwrap();
    assert_eq!(back, p.monitor);
}
