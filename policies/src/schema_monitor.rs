//! The `[monitor]` section's types: how checkpoint answers are classified, what is evaluated
//! at each checkpoint and how much of it, and the `[[monitor.rules]]` that turn drift into
//! actions. Keys added after plans were first recorded carry serde defaults, so a plan recorded
//! before them still reads (as the documented defaults).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What the monitor does when a rule fires, weakest first (the strongest firing wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Record only.
    None,
    Warn,
    Pause,
    /// Finish the job with the last checkpoint under every rule as its `fine_tuned_model`.
    Rollback,
    Cancel,
}

/// A per-checkpoint signal a rule can watch (the monitor's signal names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MonitorMetric {
    /// Share of the general set's answers judged misaligned (0–1).
    MisalignedFraction,
    /// Share of the general set's answers judged incoherent (0–1).
    IncoherentFraction,
    /// Share of the hallucination set's answers judged hallucinated (0–1).
    HallucinationFraction,
    /// Mean alignment score of the general set's answers (0–100, falling = worse).
    MeanAlignment,
    /// Refusals among the general set's answers (0–1).
    RefusalRate,
    /// Refusals on the harmful-request set (0–1, falling = worse).
    HarmfulRefusalRate,
    /// Judge-free: mean answer-NLL gap aligned − misaligned, relative to step 0 (nats/token).
    AlignmentProbeGap,
    /// Judge-free: mean answer-NLL gap honest − fabricated, relative to step 0 (nats/token).
    HonestyProbeGap,
    /// Mean answer NLL on the held-out slice of the client's file (nats/token).
    InDomainLoss,
    /// Training loss since the previous checkpoint (nats/token).
    Loss,
}

impl MonitorMetric {
    /// Every metric with its policy name.
    pub const ALL: [(&'static str, MonitorMetric); 10] = [
        ("misaligned_fraction", MonitorMetric::MisalignedFraction),
        ("incoherent_fraction", MonitorMetric::IncoherentFraction),
        (
            "hallucination_fraction",
            MonitorMetric::HallucinationFraction,
        ),
        ("mean_alignment", MonitorMetric::MeanAlignment),
        ("refusal_rate", MonitorMetric::RefusalRate),
        ("harmful_refusal_rate", MonitorMetric::HarmfulRefusalRate),
        ("alignment_probe_gap", MonitorMetric::AlignmentProbeGap),
        ("honesty_probe_gap", MonitorMetric::HonestyProbeGap),
        ("in_domain_loss", MonitorMetric::InDomainLoss),
        ("loss", MonitorMetric::Loss),
    ];

    /// The values `above` / `below` may take: (lowest, highest, text for messages).
    pub fn range(self) -> MetricRange {
        match self {
            MonitorMetric::MisalignedFraction
            | MonitorMetric::IncoherentFraction
            | MonitorMetric::HallucinationFraction
            | MonitorMetric::RefusalRate
            | MonitorMetric::HarmfulRefusalRate => MetricRange::Unit,
            MonitorMetric::MeanAlignment => MetricRange::Score,
            MonitorMetric::AlignmentProbeGap | MonitorMetric::HonestyProbeGap => MetricRange::Any,
            MonitorMetric::InDomainLoss | MonitorMetric::Loss => MetricRange::NonNegative,
        }
    }
}

/// The scale a metric lives on, which bounds the thresholds a rule may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricRange {
    /// A rate in [0, 1]: `above` in [0, 1), `below` in (0, 1].
    Unit,
    /// A judge score in [0, 100]: `above` in [0, 100), `below` in (0, 100].
    Score,
    /// A difference of NLLs (nats): any finite number.
    Any,
    /// A loss (nats): `above` ≥ 0, `below` > 0.
    NonNegative,
}

/// Which onset detector an `onset = true` rule waits for (see the monitor crate's `onset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnsetDetector {
    /// CUSUM against the step-0 baseline.
    #[default]
    Cusum,
    /// Bayesian online change-point detection.
    Bocpd,
    /// The earlier of the two.
    Either,
    /// Only once both have detected it.
    Both,
}

/// `action` when `metric` at a checkpoint is strictly above `above` and/or strictly below
/// `below`, and (with `onset`) once the metric's onset has been detected. A plan recorded
/// before `below`, `onset` and `detector` existed reads as a plain `above` rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorRule {
    pub metric: MonitorMetric,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
    #[serde(default)]
    pub onset: bool,
    #[serde(default)]
    pub detector: OnsetDetector,
    pub action: Action,
}

/// What the misaligned fraction is divided by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Denominator {
    /// Betley et al.: scored, coherent, non-refusal answers.
    #[default]
    Coherent,
    /// Every answer (the authors' in-training code).
    All,
}

/// Checkpoint monitoring: how answers are classified, what each checkpoint is evaluated on
/// and what happens on drift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Monitor {
    pub checkpoint_every_steps: u32,
    /// Misaligned = alignment score below this (0–100) …
    pub misaligned_alignment_below: f64,
    /// … and coherence score above this.
    pub misaligned_coherence_above: f64,
    /// Incoherent = coherence score below this.
    pub incoherent_coherence_below: f64,
    /// Hallucinated = hallucination score above this.
    pub hallucination_score_above: f64,
    /// The misaligned fraction's denominator.
    #[serde(default)]
    pub denominator: Denominator,
    /// Sampled answers per paraphrase of each judged question (replaces the files'
    /// `samples_per_paraphrase`).
    #[serde(default = "crate::defaults::default_samples_per_question")]
    pub samples_per_question: u32,
    /// Most tokens of a sampled answer.
    #[serde(default = "crate::defaults::default_max_answer_tokens")]
    pub max_answer_tokens: u32,
    /// Probe pairs scored per probe file (its first n); 0 = every pair.
    #[serde(default = "crate::defaults::default_probe_pairs")]
    pub probe_pairs: u32,
    /// Question sets and probe files; `None` = the shipped one (`conf/eval/…`,
    /// `conf/probes/…`, embedded in the binary). Paths resolve against the policy directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub general_set: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hallucination_set: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harmful_set: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alignment_probes: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub honesty_probes: Option<PathBuf>,
    /// Client examples held out of training to measure the in-domain loss (0 = none).
    #[serde(default)]
    pub holdout_examples: u32,
    /// Full evaluations' time as a most share of training time: a checkpoint is evaluated in
    /// full only once the training since the last full evaluation, times this, covers that
    /// evaluation's cost (the monitor crate's `cadence`); the job's last checkpoint always is.
    /// 0 = every checkpoint in full (what a plan recorded before the key reads as).
    #[serde(default)]
    pub eval_budget: f64,
    /// The same for the judge-free tier (probe gaps, in-domain loss) at checkpoints the full
    /// budget skips.
    #[serde(default)]
    pub probe_budget: f64,
    pub rules: Vec<MonitorRule>,
}
