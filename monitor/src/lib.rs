//! The checkpoint monitor's pure core (seed 001; issue 10): evaluation-set readers, judge-score
//! aggregation, classification of judged answers against the policy's thresholds, judge-free
//! probe gaps, onset detection (CUSUM and BOCPD), rule evaluation into actions, and the per-job
//! report as JSON and as a self-contained HTML page with inline SVG plots.
//!
//! No I/O beyond reading the evaluation files, no HTTP, no engine: the judge, the answer source
//! and the NLL probe are reached through seams ([`Judge`], [`AnswerSource`], [`NllProbe`]),
//! implemented by the gateway and the trainer.
//!
//! Modules, in the order a checkpoint flows through them:
//! - [`evalsets`] — Betley et al.'s question YAML (and our sets in the same format), the probe
//!   JSONL files, judge-prompt templates.
//! - [`judge`] — the [`Judge`] seam, `top_logprobs` → score, the teacher-forced exact
//!   expectation, multi-judge agreement.
//! - [`signals`] — per-answer classification, per-checkpoint rates, probe gaps,
//!   [`CheckpointSignals`].
//! - [`onset`] — CUSUM against the step-0 baseline, BOCPD, onset steps and the hallucination
//!   lead.
//! - [`rules`] — `[[monitor.rules]]` over the signal history into actions (warn, pause,
//!   cancel, rollback).
//! - [`report`] — the per-job report.
//! - [`shipped`] — the shipped evaluation sets, embedded.
//! - [`cadence`] — which checkpoints are evaluated, and how much, under the cost budgets.
//! - [`measure`] — one checkpoint end to end over the seams ([`AnswerSource`], [`Judge`],
//!   [`NllProbe`]) into [`CheckpointSignals`].
#![forbid(unsafe_code)]

pub mod cadence;
pub mod evalsets;
pub mod judge;
pub mod measure;
pub mod onset;
pub mod report;
pub mod rules;
pub mod shipped;
pub mod signals;

pub use cadence::{Budget, Ledger, Past, Scope};
pub use evalsets::{
    parse_probes, parse_question_set, read_probes, read_question_set, render_prompt, EvalSetError,
    Fields, ProbeKind, ProbePair, Question, QuestionSet, SampleRequest,
};
pub use judge::{
    agreement, combine_scores, score_from_top_logprobs, teacher_forced_expectation, Agreement,
    Judge, JudgeError, TopLogprob, MIN_NUMERIC_MASS,
};
pub use measure::{
    measure_checkpoint, AnswerSource, EvalPlan, JudgeAgreement, JudgedSample, Measurement,
    NllProbe, ProbeBaseline, SeamError,
};
pub use onset::{
    detect_onset, detect_onsets, lead, BocpdParams, CusumParams, Detector, Lead, Onset,
    OnsetConfig, SignalOnset,
};
pub use report::{worst_checkpoint, PolicySummary, Report, ReportInput, SampleAnswer};
pub use rules::{
    evaluate, evaluate_at, rollback_target, Evaluation, Firing, MonitorSettings, RollbackTarget,
    Rule, RuleAction,
};
pub use signals::{
    classify, general_signals, hallucination_signals, probe_gap, probe_margin, refusal_rate,
    CheckpointSignals, Classification, Denominator, Direction, GeneralSignals,
    HallucinationSignals, JudgedAnswer, ProbeError, ProbeNll, Signal, Thresholds,
};
