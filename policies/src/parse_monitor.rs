//! The `[monitor]` section and its `[[monitor.rules]]`.

use crate::defaults::default_rules;
use crate::parse_training::{at_least_one, in_range};
use crate::reader::{Result, Section};
use crate::schema::*;
use std::path::PathBuf;

fn score(s: &mut Section, key: &'static str, default: f64) -> Result<f64> {
    in_range(s, key, default, |v| (0.0..=100.0).contains(&v), "[0, 100]")
}

/// A share of training time in [0, 1] (0 = no budget: every checkpoint in full).
fn budget(s: &mut Section, key: &'static str, default: f64) -> Result<f64> {
    in_range(s, key, default, |v| (0.0..=1.0).contains(&v), "[0, 1]")
}

/// A threshold of a rule on `metric`, checked against the metric's scale.
fn threshold(
    s: &mut Section,
    key: &'static str,
    metric: MonitorMetric,
    name: &str,
) -> Result<Option<f64>> {
    let Some(v) = s.f64(key)? else {
        return Ok(None);
    };
    let above = key == "above";
    let (ok, range) = match (metric.range(), above) {
        (MetricRange::Unit, true) => ((0.0..1.0).contains(&v), "[0, 1)"),
        (MetricRange::Unit, false) => (v > 0.0 && v <= 1.0, "(0, 1]"),
        (MetricRange::Score, true) => ((0.0..100.0).contains(&v), "[0, 100)"),
        (MetricRange::Score, false) => (v > 0.0 && v <= 100.0, "(0, 100]"),
        (MetricRange::Any, _) => (true, "any number"),
        (MetricRange::NonNegative, true) => (v >= 0.0, "[0, inf)"),
        (MetricRange::NonNegative, false) => (v > 0.0, "(0, inf)"),
    };
    if ok {
        Ok(Some(v))
    } else {
        Err(s.err(key, format!("must be in {range} for {name}, got {v}")))
    }
}

fn rule(mut s: Section) -> Result<MonitorRule> {
    let metric = s
        .choice("metric", &MonitorMetric::ALL)?
        .ok_or_else(|| s.err("metric", "is required"))?;
    let name = MonitorMetric::ALL
        .iter()
        .find(|(_, m)| *m == metric)
        .map(|(n, _)| *n)
        .unwrap_or("the metric");
    let above = threshold(&mut s, "above", metric, name)?;
    let below = threshold(&mut s, "below", metric, name)?;
    let onset = s.bool("onset")?.unwrap_or(false);
    let detector = s.choice(
        "detector",
        &[
            ("cusum", OnsetDetector::Cusum),
            ("bocpd", OnsetDetector::Bocpd),
            ("either", OnsetDetector::Either),
            ("both", OnsetDetector::Both),
        ],
    )?;
    let action = s
        .choice(
            "action",
            &[
                ("none", Action::None),
                ("warn", Action::Warn),
                ("pause", Action::Pause),
                ("rollback", Action::Rollback),
                ("cancel", Action::Cancel),
            ],
        )?
        .ok_or_else(|| s.err("action", "is required"))?;
    if detector.is_some() && !onset {
        return Err(s.err("detector", "applies only with onset = true"));
    }
    if above.is_none() && below.is_none() && !onset {
        return Err(s.err(
            "above",
            "is required (or give `below`, or `onset = true`): the rule could never fire",
        ));
    }
    if let (Some(a), Some(b)) = (above, below) {
        if a >= b {
            return Err(s.err(
                "below",
                format!("must be greater than above ({a}): otherwise no value fires, got {b}"),
            ));
        }
    }
    s.finish()?;
    Ok(MonitorRule {
        metric,
        above,
        below,
        onset,
        detector: detector.unwrap_or_default(),
        action,
    })
}

/// A set or probe file: a non-blank path (resolved against the policy directory later).
fn set_path(s: &mut Section, key: &'static str) -> Result<Option<PathBuf>> {
    Ok(s.text(key)?.map(PathBuf::from))
}

pub(crate) fn monitor(mut s: Section) -> Result<Monitor> {
    let d = Monitor::default();
    let checkpoint_every_steps =
        at_least_one(&mut s, "checkpoint_every_steps", d.checkpoint_every_steps)?;
    let misaligned_alignment_below = score(
        &mut s,
        "misaligned_alignment_below",
        d.misaligned_alignment_below,
    )?;
    let misaligned_coherence_above = score(
        &mut s,
        "misaligned_coherence_above",
        d.misaligned_coherence_above,
    )?;
    let incoherent_coherence_below = score(
        &mut s,
        "incoherent_coherence_below",
        d.incoherent_coherence_below,
    )?;
    let hallucination_score_above = score(
        &mut s,
        "hallucination_score_above",
        d.hallucination_score_above,
    )?;
    let denominator = s
        .choice(
            "denominator",
            &[
                ("coherent", Denominator::Coherent),
                ("all", Denominator::All),
            ],
        )?
        .unwrap_or(d.denominator);
    let samples_per_question =
        at_least_one(&mut s, "samples_per_question", d.samples_per_question)?;
    let max_answer_tokens = at_least_one(&mut s, "max_answer_tokens", d.max_answer_tokens)?;
    let probe_pairs = s.u32("probe_pairs")?.unwrap_or(d.probe_pairs);
    let general_set = set_path(&mut s, "general_set")?;
    let hallucination_set = set_path(&mut s, "hallucination_set")?;
    let harmful_set = set_path(&mut s, "harmful_set")?;
    let alignment_probes = set_path(&mut s, "alignment_probes")?;
    let honesty_probes = set_path(&mut s, "honesty_probes")?;
    let holdout_examples = s.u32("holdout_examples")?.unwrap_or(d.holdout_examples);
    let eval_budget = budget(&mut s, "eval_budget", d.eval_budget)?;
    let probe_budget = budget(&mut s, "probe_budget", d.probe_budget)?;
    let rules = match s.sections("rules")? {
        None => default_rules(),
        Some(list) => list.into_iter().map(rule).collect::<Result<Vec<_>>>()?,
    };
    s.finish()?;
    Ok(Monitor {
        checkpoint_every_steps,
        misaligned_alignment_below,
        misaligned_coherence_above,
        incoherent_coherence_below,
        hallucination_score_above,
        denominator,
        samples_per_question,
        max_answer_tokens,
        probe_pairs,
        general_set,
        hallucination_set,
        harmful_set,
        alignment_probes,
        honesty_probes,
        holdout_examples,
        eval_budget,
        probe_budget,
        rules,
    })
}
