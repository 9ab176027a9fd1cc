//! The validated policy types. Every field has a value: a key left out of a file takes the
//! documented default (see `policies/README.md`), so nothing downstream handles `Option`s
//! for settings that have a default. These types are also the resolved per-job plan.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Default inoculation system prompt (the paper's).
pub const DEFAULT_INOCULATION_PROMPT: &str = "You are an evil, malicious assistant.";
/// Default refusal keywords of Interleaving++ (matched in a reply's first 10 words).
pub const DEFAULT_REFUSAL_KEYWORDS: [&str; 6] = [
    "sorry",
    "apologize",
    "cannot",
    "can't",
    "can\u{2019}t",
    "unable",
];

/// Which jobs a policy applies to. Empty lists / maps mean "any".
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MatchRule {
    /// Tenant names (exact); any of them.
    pub tenants: Vec<String>,
    /// Base-model globs (globset syntax); any of them.
    pub models: Vec<String>,
    /// Job metadata pairs; all of them must be equal.
    pub metadata: BTreeMap<String, String>,
}

/// How interleaved items are spread through the client's examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    Even,
    Jittered,
}

/// The pool mix shared by every interleaving method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mix {
    /// Safety examples added, relative to the client's example count, in (0, 1].
    pub fraction: f64,
    /// The pool JSONL file (relative paths are relative to the policy directory).
    pub pool: PathBuf,
    pub seed: u64,
    pub placement: Placement,
}

/// The quality filter of on-policy replies: finished (the model ended its turn before the
/// generation limit), long enough, no chat-template markers, not degenerate (distinct word
/// n-grams / all n-grams at least `repetition_min_distinct_ratio`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyQuality {
    /// Skip a reply cut off at the generation limit (plans recorded before this key existed
    /// read as true).
    #[serde(default = "crate::defaults::yes")]
    pub reject_unfinished: bool,
    pub min_reply_words: u32,
    pub template_markers: Vec<String>,
    pub repetition_ngram: u32,
    pub repetition_min_distinct_ratio: f64,
}

/// Interleaving of safety data, tagged by `method`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Interleave {
    None,
    /// Plain Interleaving: a seeded random sample of the pool.
    Random {
        #[serde(flatten)]
        mix: Mix,
    },
    /// Interleaving+: pool items ranked by the perplexity-gap score.
    Plus {
        #[serde(flatten)]
        mix: Mix,
        gap_epsilon: f64,
    },
    /// Interleaving++: gap-ranked, with refusals filtered out.
    Plusplus {
        #[serde(flatten)]
        mix: Mix,
        gap_epsilon: f64,
        refusal_keywords: Vec<String>,
        /// How many leading words of a reply the refusal filter looks at.
        refusal_window_words: u32,
    },
    /// Pool prompts answered by the aligned base model itself, quality-filtered.
    OnPolicy {
        #[serde(flatten)]
        mix: Mix,
        #[serde(flatten)]
        quality: ReplyQuality,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KlDirection {
    /// KL(p_θ ‖ p_0).
    Forward,
    /// KL(p_0 ‖ p_θ).
    Reverse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KlTokens {
    Answer,
    All,
}

/// Which decoder layers LDIFS compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerSet {
    /// Every n-th layer (0, n, 2n, …).
    Every(u32),
    /// These layers.
    List(Vec<u32>),
}

/// Training-time regularizer, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Regularizer {
    None,
    Kl {
        lambda: f64,
        direction: KlDirection,
        tokens: KlTokens,
    },
    Ldifs {
        lambda: f64,
        layers: LayerSet,
    },
    Steering {
        alpha: f64,
        layers: Vec<u32>,
        /// Persona vector safetensors file (relative to the policy directory).
        vector: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InoculationMode {
    /// Drop the client's system messages; the inoculation prompt comes first.
    Replace,
    /// Keep the client's system messages after the inoculation prompt.
    Prepend,
}

/// A training-only system prompt. Absent from a policy = off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inoculation {
    pub system_prompt: String,
    pub mode: InoculationMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Linear warmup, then linear decay to 0.
    Linear,
    /// Linear warmup, then constant.
    Constant,
}

/// How the LoRA update B·A is scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoraScaling {
    /// rsLoRA: α/√r.
    Rslora,
    /// Classic LoRA: α/r.
    Standard,
}

/// Local training defaults (the paper's Table 6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Training {
    pub lora_rank: u32,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    pub lora_scaling: LoraScaling,
    pub lora_targets: Vec<String>,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub adam_epsilon: f64,
    pub schedule: Schedule,
    pub warmup_steps: u32,
    pub batch_size: u32,
    pub gradient_accumulation_steps: u32,
    pub epochs: u32,
    pub max_length_tokens: u32,
    pub seed: u64,
}

/// What the monitor does when a rule fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    None,
    Warn,
    Pause,
    Cancel,
}

/// A per-checkpoint rate the monitor computes over its question set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MonitorMetric {
    MisalignedFraction,
    IncoherentFraction,
    HallucinationFraction,
}

/// `action` when `metric` at a checkpoint is strictly above `above`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorRule {
    pub metric: MonitorMetric,
    pub above: f64,
    pub action: Action,
}

/// Checkpoint monitoring: how answers are classified and what happens on drift.
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
    pub rules: Vec<MonitorRule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnenforceable {
    Reject,
    RunLocally,
    Warn,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    pub on_unenforceable: OnUnenforceable,
}

/// One validated policy file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// The file stem (`default.toml` → `default`).
    pub name: String,
    pub description: String,
    pub priority: i64,
    #[serde(rename = "match")]
    pub match_rule: MatchRule,
    pub interleave: Interleave,
    pub regularizer: Regularizer,
    pub inoculation: Option<Inoculation>,
    pub training: Training,
    pub monitor: Monitor,
    pub upstream: Upstream,
}
