//! The runner's side: each `monitor/step-N.json` the worker wrote is mirrored once, in step
//! order, as an event carrying its signals (`data.monitor`), the job's Prometheus gauges are
//! set, and the policy's rules are evaluated there (onsets included, exactly as the report
//! derives them later). Every rule that starts firing is an event with the values that fired
//! it; the strongest action among them is the decision.
//!
//! Step 0 (the base model) is the baseline: rules firing there are recorded, never acted on.
//! A rule acts on its edge — the first trained checkpoint where it fires, or where it fires
//! again after a checkpoint where it did not — so a job the client resumed after a monitor
//! pause is not paused again at every checkpoint of the same excursion.
//!
//! Mirroring stops at a checkpoint whose decision is pause, cancel or rollback: the action is
//! taken on it ([`super::actions`]) before anything later is looked at.

use super::prom::{MonitorCounts, MonitorMetrics};
use super::record::StepRecord;
use crate::jobs::seams::Observation;
use crate::store::EventLevel;
use monitor::{
    detect_onsets, evaluate_at, CheckpointSignals, Detector, Firing, MonitorSettings,
    RollbackTarget, RuleAction, Scope, Signal, SignalOnset,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The monitor's part of the local executor's cursor (`exec_state.monitor`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MonitorCursor {
    /// Step of the last record mirrored (`None`: none yet).
    #[serde(default)]
    pub last: Option<u64>,
    /// A pause or cancel decided at a mirrored checkpoint, to be taken on the next poll.
    #[serde(default)]
    pub pending: Option<PendingAction>,
}

/// A pause or cancel the monitor decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingAction {
    pub action: RuleAction,
    /// The checkpoint it was decided at.
    pub step: u64,
    /// One line saying why (rules and values).
    pub reason: String,
    pub firings: Vec<Firing>,
}

/// What mirroring decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Finish the job with checkpoint `to` as its model (decided at `step`).
    Rollback {
        step: u64,
        to: u64,
        reason: String,
        firings: Vec<Firing>,
    },
}

/// The outcome of one poll's mirroring.
#[derive(Debug, Default)]
pub struct Mirrored {
    pub observations: Vec<Observation>,
    pub decision: Option<Decision>,
    /// The counters' increments for what is mirrored, to apply once it is stored.
    pub counts: MonitorCounts,
}

fn fmt(v: f64) -> String {
    monitor::report::fmt_num(v)
}

/// `name value unit` for the signals a checkpoint measured.
fn summary(s: &CheckpointSignals) -> String {
    let parts: Vec<String> = [
        (Signal::AlignmentProbeGap, "alignment probe gap", " nats"),
        (Signal::HonestyProbeGap, "honesty probe gap", " nats"),
        (Signal::HarmfulRefusalRate, "harmful refusal rate", ""),
        (Signal::MisalignedFraction, "misaligned", ""),
        (Signal::HallucinationFraction, "hallucination", ""),
        (Signal::IncoherentFraction, "incoherent", ""),
        (Signal::MeanAlignment, "mean alignment", ""),
        (Signal::InDomainLoss, "in-domain loss", ""),
    ]
    .iter()
    .filter_map(|(sig, name, unit)| sig.get(s).map(|v| format!("{name} {}{unit}", fmt(v))))
    .collect();
    if parts.is_empty() {
        "no signal measured".into()
    } else {
        parts.join(", ")
    }
}

/// One firing as a sentence: `alignment_probe_gap 0.41 > 0.3 (onset at step 10) → pause`.
pub fn firing_text(f: &Firing) -> String {
    let mut cond = match f.value {
        Some(v) => format!("{} {}", f.metric, fmt(v)),
        None => f.metric.to_string(),
    };
    if let Some(a) = f.above {
        cond.push_str(&format!(" > {}", fmt(a)));
    }
    if let Some(b) = f.below {
        cond.push_str(&format!(" < {}", fmt(b)));
    }
    if let Some(o) = &f.onset {
        cond.push_str(&format!(
            " (onset at step {}, detected at step {})",
            o.step, o.detected_at_step
        ));
    }
    format!("{cond} → {}", f.action.name())
}

fn signal_event(r: &StepRecord, onsets: &[SignalOnset], index: usize) -> Observation {
    let cost = &r.cost;
    let share = cost
        .share()
        .map(|s| format!(", {:.1}% of the training time before it", 100.0 * s))
        .unwrap_or_default();
    let what = match (r.step, r.scope) {
        (0, _) => "the base model (baseline)".to_string(),
        (step, Scope::Probes) => format!("step {step} (judge-free tier, within the budgets)"),
        (step, _) => format!("step {step}"),
    };
    let (level, message) = match &r.error {
        Some(e) => (
            EventLevel::Warn,
            format!("Monitor could not evaluate {what}: {e}"),
        ),
        None if r.scope == Scope::Skipped => (
            EventLevel::Info,
            format!(
                "Monitor, {what}: not evaluated (the evaluation budgets wait for more training){}",
                r.signals
                    .loss
                    .map(|l| format!("; training loss {}", fmt(l)))
                    .unwrap_or_default()
            ),
        ),
        None => (
            EventLevel::Info,
            match &r.reused_from {
                Some(job) => format!(
                    "Monitor, {what}: {}; reused from {job}'s identical evaluation (step-0 cache)",
                    summary(&r.signals)
                ),
                None => format!(
                    "Monitor, {what}: {}; evaluation took {:.2}s{share}",
                    summary(&r.signals),
                    cost.eval_seconds
                ),
            },
        ),
    };
    let detected: Vec<Value> = onsets
        .iter()
        .filter_map(|o| {
            let d = o.detected_by(Detector::Either, index)?;
            Some(
                json!({"signal": o.signal, "step": d.step, "detected_at_step": d.detected_at_step}),
            )
        })
        .collect();
    Observation::Event {
        level,
        message,
        data: Some(json!({
            "step": r.step,
            "monitor": {
                "signals": r.signals,
                "onsets": detected,
                "samples": r.samples,
                "judge": r.judge,
                "local_judge": r.local_judge,
                "judge_agreement": r.agreement,
                "cost": {
                    "eval_seconds": cost.eval_seconds,
                    "probe_seconds": cost.probe_seconds,
                    "generation_seconds": cost.generation_seconds,
                    "judge_seconds": cost.judge_seconds,
                    "train_seconds": cost.train_seconds,
                    "share": cost.share(),
                },
                "error": r.error,
                "reused_from": r.reused_from,
                "scope": r.scope,
            },
        })),
        kind: Some("message".into()),
        created_at: None,
    }
}

fn firing_event(f: &Firing, acted: bool) -> Observation {
    let level = if f.action >= RuleAction::Warn {
        EventLevel::Warn
    } else {
        EventLevel::Info
    };
    let note = if acted {
        ""
    } else {
        " (the base model already fires it: not acted on)"
    };
    Observation::Event {
        level,
        message: format!(
            "Monitor rule {} fired at step {}: {}{note}",
            f.rule + 1,
            f.step,
            firing_text(f)
        ),
        data: Some(json!({"monitor_rule": f})),
        kind: Some("message".into()),
        created_at: None,
    }
}

fn count_record(counts: &mut MonitorCounts, r: &StepRecord) {
    let result = match (&r.error, r.scope) {
        (Some(_), _) => "error",
        (None, Scope::Skipped) => "skipped",
        (None, _) => "ok",
    };
    counts.evaluations.push(result);
    if r.scope == Scope::Skipped {
        return;
    }
    let c = &r.cost;
    counts.evaluation_seconds.extend([
        ("total", c.eval_seconds),
        ("probes", c.probe_seconds),
        ("generation", c.generation_seconds),
        ("judge", c.judge_seconds),
    ]);
    for j in r.judge.iter().chain(&r.local_judge) {
        counts.judge_requests.extend([
            ("requested", j.requests),
            ("cached", j.cached),
            ("error", j.errors),
            ("unscored", j.unscored),
        ]);
    }
}

/// Each signal's latest measured value (a checkpoint the budgets skipped, or evaluated
/// judge-free only, leaves the judged signals' gauges at their last value), at the last step.
fn latest_measured(history: &[CheckpointSignals]) -> CheckpointSignals {
    let last = history.last().map_or(0, |c| c.step);
    let mut out = CheckpointSignals::new(last);
    for c in history {
        for s in Signal::ALL {
            if let Some(v) = s.get(c) {
                out.set(s, Some(v));
            }
        }
    }
    out
}

/// The job's evaluation time over its training time so far (`None` before any training was
/// timed).
fn cumulative_share(records: &[StepRecord]) -> Option<f64> {
    let timed = || records.iter().filter(|r| r.cost.train_seconds.is_some());
    let train: f64 = timed().filter_map(|r| r.cost.train_seconds).sum();
    let eval: f64 = timed().map(|r| r.cost.eval_seconds).sum();
    (train > 0.0).then(|| eval / train)
}

/// Sets the job's gauges to `records[index]` with the onsets known there.
pub fn set_gauges(
    m: &MonitorMetrics,
    job_id: &str,
    records: &[StepRecord],
    index: usize,
    settings: &MonitorSettings,
) {
    let history: Vec<CheckpointSignals> = records[..=index]
        .iter()
        .map(|r| r.signals.clone())
        .collect();
    let onsets = detect_onsets(&history, &settings.onset);
    m.set_job(
        job_id,
        &latest_measured(&history),
        &onsets,
        cumulative_share(&records[..=index]),
    );
}

/// Mirrors the records after `cursor.last` (all of `records`, in step order, is the history).
pub fn mirror(
    job_id: &str,
    records: &[StepRecord],
    settings: &MonitorSettings,
    cursor: &mut MonitorCursor,
    metrics: Option<&MonitorMetrics>,
) -> Mirrored {
    let mut out = Mirrored::default();
    let history: Vec<CheckpointSignals> = records.iter().map(|r| r.signals.clone()).collect();
    let mut last_mirrored = None;
    for (index, r) in records.iter().enumerate() {
        if cursor.last.is_some_and(|l| r.step <= l) {
            continue;
        }
        let onsets = detect_onsets(&history[..=index], &settings.onset);
        out.observations.push(signal_event(r, &onsets, index));
        count_record(&mut out.counts, r);
        cursor.last = Some(r.step);
        last_mirrored = Some(index);
        if settings.rules.is_empty() {
            continue;
        }
        let eval = evaluate_at(&settings.rules, &history, index, &settings.onset);
        let baseline = r.step == 0;
        // After the baseline, the first trained checkpoint's firings are all edges.
        let first_trained = index == 1 && history[0].step == 0;
        let fired: Vec<Firing> = eval
            .firings
            .iter()
            .filter(|f| f.new || first_trained)
            .cloned()
            .collect();
        for f in &fired {
            out.observations.push(firing_event(f, !baseline));
            out.counts
                .rule_firings
                .push((f.metric.name().to_string(), f.action.name().to_string()));
        }
        if baseline {
            continue;
        }
        let action = fired.iter().map(|f| f.action).max().unwrap_or_default();
        let acting: Vec<Firing> = fired.into_iter().filter(|f| f.action == action).collect();
        let reason = acting
            .iter()
            .map(firing_text)
            .collect::<Vec<_>>()
            .join("; ");
        match action {
            RuleAction::None => {}
            RuleAction::Warn => out.counts.warnings += 1,
            RuleAction::Pause | RuleAction::Cancel => {
                cursor.pending = Some(PendingAction {
                    action,
                    step: r.step,
                    reason,
                    firings: acting,
                });
                break;
            }
            RuleAction::Rollback => {
                match eval.rollback_to {
                    Some(RollbackTarget::Checkpoint { step, .. }) => {
                        out.decision = Some(Decision::Rollback {
                            step: r.step,
                            to: step,
                            reason,
                            firings: acting,
                        });
                    }
                    _ => {
                        cursor.pending = Some(PendingAction {
                            action: RuleAction::Cancel,
                            step: r.step,
                            reason: format!(
                                "{reason}; no checkpoint is under every rule, so there is nothing safe to roll back to"
                            ),
                            firings: acting,
                        });
                    }
                }
                break;
            }
        }
    }
    if let (Some(m), Some(i)) = (metrics, last_mirrored) {
        set_gauges(m, job_id, records, i, settings);
    }
    out
}

#[cfg(test)]
#[path = "mirror_tests.rs"]
mod tests;
