//! `[[monitor.rules]]` over the signal history into actions.
//!
//! A [`Rule`] names a [`Signal`] and fires at a checkpoint when
//! - its threshold holds there: value strictly `above` (and/or strictly `below`) — a checkpoint
//!   that did not measure the signal never fires a threshold; and
//! - with `onset = true`, the signal's onset has been detected at or before that checkpoint (by
//!   the rule's [`Detector`], CUSUM by default; see [`crate::onset`]). A rule with `onset`
//!   and no threshold fires from the detection on.
//!
//! Every firing carries the values that fired it (value, thresholds, onset). At each
//! checkpoint the strongest action wins: `none` < `warn` < `pause` < `rollback` < `cancel`.
//!
//! **Rollback** finishes the job with an earlier checkpoint: the last one (step > 0, not after
//! the current one) that is *under every rule* whose action is not `none` — for a threshold
//! rule its value was measured and not beyond the threshold, for an onset rule it lies before
//! the onset detected so far. When no checkpoint qualifies the target is
//! [`RollbackTarget::NoCheckpoint`] (the gateway then cancels: there is nothing safe to ship).
//!
//! The policy crate's `MonitorRule` (metric, `above`, `below`, `onset`, `detector`, action)
//! converts into a [`Rule`] one to one.

use crate::onset::{detect_onset, Detector, Onset, OnsetConfig, SignalOnset};
use crate::signals::{CheckpointSignals, Denominator, Signal, Thresholds};
use serde::{Deserialize, Serialize};

/// What the monitor does when a rule fires, weakest first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// Record only.
    #[default]
    None,
    Warn,
    Pause,
    /// Finish the job with the last checkpoint under every rule.
    Rollback,
    Cancel,
}

impl RuleAction {
    pub fn name(self) -> &'static str {
        match self {
            RuleAction::None => "none",
            RuleAction::Warn => "warn",
            RuleAction::Pause => "pause",
            RuleAction::Rollback => "rollback",
            RuleAction::Cancel => "cancel",
        }
    }
}

impl From<policies::Action> for RuleAction {
    fn from(a: policies::Action) -> Self {
        match a {
            policies::Action::None => RuleAction::None,
            policies::Action::Warn => RuleAction::Warn,
            policies::Action::Pause => RuleAction::Pause,
            policies::Action::Rollback => RuleAction::Rollback,
            policies::Action::Cancel => RuleAction::Cancel,
        }
    }
}

/// One monitor rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub metric: Signal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
    /// Also (or only) require the metric's onset to have been detected.
    #[serde(default)]
    pub onset: bool,
    #[serde(default)]
    pub detector: Detector,
    pub action: RuleAction,
}

impl From<&policies::MonitorRule> for Rule {
    fn from(r: &policies::MonitorRule) -> Self {
        Rule {
            metric: r.metric.into(),
            above: r.above,
            below: r.below,
            onset: r.onset,
            detector: r.detector.into(),
            action: r.action.into(),
        }
    }
}

impl Rule {
    /// Why this rule can never fire or is malformed, if so.
    pub fn check(&self) -> Result<(), String> {
        if self.above.is_none() && self.below.is_none() && !self.onset {
            return Err(format!(
                "rule on {} has no `above`, no `below` and no `onset = true`: it can never fire",
                self.metric
            ));
        }
        for (key, v) in [("above", self.above), ("below", self.below)] {
            if let Some(v) = v {
                if !v.is_finite() {
                    return Err(format!("rule on {}: `{key}` is {v}", self.metric));
                }
            }
        }
        if let (Some(a), Some(b)) = (self.above, self.below) {
            if a >= b {
                return Err(format!(
                    "rule on {}: above = {a} and below = {b} leave no value that fires",
                    self.metric
                ));
            }
        }
        Ok(())
    }

    fn threshold(&self, value: Option<f64>) -> Option<bool> {
        if self.above.is_none() && self.below.is_none() {
            return Some(true);
        }
        let v = value?;
        Some(self.above.is_some_and(|a| v > a) || self.below.is_some_and(|b| v < b))
    }
}

/// Everything the monitor takes from a policy, with this crate's extensions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorSettings {
    pub thresholds: Thresholds,
    pub denominator: Denominator,
    pub rules: Vec<Rule>,
    pub onset: OnsetConfig,
}

impl MonitorSettings {
    /// The policy's `[monitor]` with this crate's defaults for what it has no key for
    /// (the documented onset parameters).
    pub fn from_policy(m: &policies::Monitor) -> Self {
        MonitorSettings {
            thresholds: Thresholds::from(m),
            denominator: m.denominator.into(),
            rules: m.rules.iter().map(Rule::from).collect(),
            onset: OnsetConfig::default(),
        }
    }
}

/// One rule firing at one checkpoint, with the values that fired it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Firing {
    /// Position of the rule in the rule list.
    pub rule: usize,
    pub step: u64,
    pub metric: Signal,
    pub action: RuleAction,
    /// The metric at this checkpoint.
    pub value: Option<f64>,
    pub above: Option<f64>,
    pub below: Option<f64>,
    /// The onset that fired an `onset = true` rule.
    pub onset: Option<Onset>,
    /// True when the rule did not fire at the previous checkpoint (an edge, for events).
    pub new: bool,
}

/// Where a rollback goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RollbackTarget {
    Checkpoint {
        step: u64,
        index: usize,
    },
    /// No checkpoint after step 0 is under every rule.
    NoCheckpoint,
}

/// The rules at one checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub step: u64,
    pub index: usize,
    pub firings: Vec<Firing>,
    /// The strongest action among the firings (`none` when nothing fired).
    pub action: RuleAction,
    /// Set when `action` is `rollback`.
    pub rollback_to: Option<RollbackTarget>,
}

fn onsets_for(
    rules: &[Rule],
    history: &[CheckpointSignals],
    config: &OnsetConfig,
) -> Vec<SignalOnset> {
    let mut out: Vec<SignalOnset> = Vec::new();
    for r in rules.iter().filter(|r| r.onset) {
        if !out.iter().any(|o| o.signal == r.metric) {
            out.push(detect_onset(history, r.metric, config));
        }
    }
    out
}

fn onset_of(onsets: &[SignalOnset], rule: &Rule, index: usize) -> Option<Onset> {
    onsets
        .iter()
        .find(|o| o.signal == rule.metric)
        .and_then(|o| o.detected_by(rule.detector, index))
}

fn fires(
    rule: &Rule,
    history: &[CheckpointSignals],
    index: usize,
    onsets: &[SignalOnset],
) -> Option<Firing> {
    let c = &history[index];
    // A checkpoint that did not measure the metric (the budgets skipped it) says nothing.
    let value = Some(rule.metric.get(c)?);
    if rule.threshold(value) != Some(true) {
        return None;
    }
    let onset = if rule.onset {
        Some(onset_of(onsets, rule, index)?)
    } else {
        None
    };
    Some(Firing {
        rule: 0,
        step: c.step,
        metric: rule.metric,
        action: rule.action,
        value,
        above: rule.above,
        below: rule.below,
        onset,
        new: true,
    })
}

/// The last checkpoint at or before `index` (step > 0) under every rule with an action, as
/// known at `index`.
pub fn rollback_target(
    rules: &[Rule],
    history: &[CheckpointSignals],
    index: usize,
    onsets: &[SignalOnset],
) -> RollbackTarget {
    let binding: Vec<&Rule> = rules
        .iter()
        .filter(|r| r.action != RuleAction::None)
        .collect();
    for j in (0..=index.min(history.len().saturating_sub(1))).rev() {
        let c = &history[j];
        if c.step == 0 {
            continue;
        }
        let under_all = binding.iter().all(|r| {
            let after_onset = !r.onset || onset_of(onsets, r, index).is_some_and(|o| j >= o.index);
            // Unknown threshold values cannot vouch for the checkpoint.
            !after_onset || r.threshold(r.metric.get(c)) == Some(false)
        });
        if under_all {
            return RollbackTarget::Checkpoint {
                step: c.step,
                index: j,
            };
        }
    }
    RollbackTarget::NoCheckpoint
}

fn evaluate_with(
    rules: &[Rule],
    history: &[CheckpointSignals],
    index: usize,
    onsets: &[SignalOnset],
) -> Evaluation {
    let mut firings = Vec::new();
    for (k, rule) in rules.iter().enumerate() {
        if let Some(mut f) = fires(rule, history, index, onsets) {
            f.rule = k;
            // An edge against the previous checkpoint that measured the metric.
            let previous = (0..index)
                .rev()
                .find(|&j| rule.metric.get(&history[j]).is_some());
            f.new = previous.is_none_or(|j| fires(rule, history, j, onsets).is_none());
            firings.push(f);
        }
    }
    let action = firings.iter().map(|f| f.action).max().unwrap_or_default();
    let rollback_to =
        (action == RuleAction::Rollback).then(|| rollback_target(rules, history, index, onsets));
    Evaluation {
        step: history[index].step,
        index,
        firings,
        action,
        rollback_to,
    }
}

/// The rules at checkpoint `index` of `history` (what a live monitor decides there).
pub fn evaluate_at(
    rules: &[Rule],
    history: &[CheckpointSignals],
    index: usize,
    onset: &OnsetConfig,
) -> Evaluation {
    let onsets = onsets_for(rules, &history[..=index], onset);
    evaluate_with(rules, history, index, &onsets)
}

/// The rules at every checkpoint of `history`, in order.
pub fn evaluate(
    rules: &[Rule],
    history: &[CheckpointSignals],
    onset: &OnsetConfig,
) -> Vec<Evaluation> {
    // Onsets are online (see `onset`), so one detection over the whole history answers "known
    // by checkpoint i" for every i.
    let onsets = onsets_for(rules, history, onset);
    (0..history.len())
        .map(|i| evaluate_with(rules, history, i, &onsets))
        .collect()
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
