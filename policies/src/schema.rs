//! The validated policy types. Every field has a value: a key left out of a file takes the
//! documented default (see `policies/README.md`), so nothing downstream handles `Option`s
//! for settings that have a default. These types are also the resolved per-job plan.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub use crate::schema_monitor::*;

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

/// Which layers LDIFS compares. A layer index is 0 for the embedding output and l ≥ 1 for the
/// output of decoder block l, so a model with L blocks has layers 0..=L. Which indices a set
/// stands for depends on L: see [`LayerSet::resolve`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerSet {
    /// Every n-th layer (0, n, 2n, …, up to L); `layers_every`.
    Every(u32),
    /// These layers; `layers`.
    List(Vec<u32>),
    /// n layers evenly spaced over the block outputs 1..=L, as the LDIFS authors' code picks
    /// them; `layers_count`. n = 1 is layer L; otherwise layer 1 + round(i·(L−1)/(n−1)) for
    /// i = 0, …, n−1 (halves rounded away from zero), so the first is 1 and the last is L.
    Count(u32),
}

impl LayerSet {
    /// The layer indices this set stands for in a model with `num_layers` decoder blocks:
    /// sorted, without duplicates, each in 0..=num_layers (0 = embedding output, l = output
    /// of block l).
    ///
    /// - `List`: the listed indices; an error names the first index above `num_layers`.
    /// - `Every(n)`: 0, n, 2n, … up to `num_layers`.
    /// - `Count(n)`: `[num_layers]` when n = 1, else 1 + round(i·(num_layers−1)/(n−1)) for
    ///   i in 0..n, rounding halves away from zero; an error when n > `num_layers`.
    ///
    /// An empty list and n = 0 (which policy validation never lets through) are errors too.
    pub fn resolve(&self, num_layers: usize) -> Result<Vec<usize>, String> {
        let mut out: Vec<usize> = match self {
            LayerSet::List(list) => {
                if list.is_empty() {
                    return Err("no layers listed".to_string());
                }
                let mut out = Vec::with_capacity(list.len());
                for &l in list {
                    let l = l as usize;
                    if l > num_layers {
                        return Err(format!(
                            "layer {l} does not exist: the model has {num_layers} blocks, so layers are 0..={num_layers}"
                        ));
                    }
                    out.push(l);
                }
                out
            }
            LayerSet::Every(0) => return Err("every n-th layer needs n >= 1, got 0".to_string()),
            LayerSet::Every(n) => (0..=num_layers).step_by(*n as usize).collect(),
            LayerSet::Count(0) => return Err("layer count must be >= 1, got 0".to_string()),
            LayerSet::Count(n) if *n as usize > num_layers => {
                return Err(format!(
                    "layer count {n} is more than the model's {num_layers} blocks"
                ))
            }
            LayerSet::Count(1) => vec![num_layers],
            LayerSet::Count(n) => {
                // round(i·(L−1)/(n−1)) with halves away from zero, in integers: for p, q ≥ 0,
                // round(p/q) = floor((2p + q) / 2q).
                let q = u128::from(*n - 1);
                let span = (num_layers - 1) as u128;
                (0..u128::from(*n))
                    .map(|i| 1 + ((2 * i * span + q) / (2 * q)) as usize)
                    .collect()
            }
        };
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }
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
        /// Persona vector file, safetensors or PyTorch `.pt` (relative to the policy directory).
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
    /// Global gradient-norm clipping (as `torch.nn.utils.clip_grad_norm_`): the gradients of
    /// all trained parameters are scaled so that their joint L2 norm is at most this; 0 = off.
    /// Plans recorded before this key existed read as the default, 1.0.
    #[serde(default = "crate::defaults::default_max_grad_norm")]
    pub max_grad_norm: f64,
    pub schedule: Schedule,
    pub warmup_steps: u32,
    pub batch_size: u32,
    pub gradient_accumulation_steps: u32,
    pub epochs: u32,
    pub max_length_tokens: u32,
    pub seed: u64,
    /// Shuffle the training examples afresh each epoch (seeded); false = file order.
    /// Plans recorded before this key existed read as true.
    #[serde(default = "crate::defaults::yes")]
    pub shuffle: bool,
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
