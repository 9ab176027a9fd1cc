//! The typed run configuration of a training session. The trainer knows no policy files: the
//! binary's `train` command and the gateway's worker turn a policy (and a job's
//! hyperparameters) into this value.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::lora::LoraConfig;

/// Learning-rate schedule after warmup (HF's `get_linear_schedule_with_warmup` /
/// `get_constant_schedule_with_warmup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Linear warmup from 0, then linear decay to 0 at the last step.
    Linear,
    /// Linear warmup from 0, then constant.
    Constant,
}

impl Schedule {
    /// λ(k) for 0-based optimizer step `k` of `total` with `warmup` warmup steps:
    /// k / max(1, W) while k < W, then max(0, (N − k) / max(1, N − W)) (linear) or 1.
    pub fn factor(self, k: usize, warmup: usize, total: usize) -> f64 {
        if k < warmup {
            return k as f64 / warmup.max(1) as f64;
        }
        match self {
            Schedule::Constant => 1.0,
            Schedule::Linear => {
                let rest = total.saturating_sub(k) as f64;
                (rest / total.saturating_sub(warmup).max(1) as f64).max(0.0)
            }
        }
    }
}

/// KL direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KlDirection {
    /// KL(p_θ ‖ p_0).
    Forward,
    /// KL(p_0 ‖ p_θ).
    Reverse,
}

/// Positions the KL term covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KlTokens {
    /// Positions that predict answer tokens (normalised by the window's answer tokens).
    Answer,
    /// Every position that predicts a real next token (normalised by their count).
    All,
}

/// The training-time regularizer. Layer indices: 0 = embedding output, l = output of block l.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Regularizer {
    /// Plain cross-entropy.
    None,
    /// λ · Σ KL / n_KL toward the base model (adapters off).
    Kl {
        /// λ.
        lambda: f64,
        /// Direction.
        direction: KlDirection,
        /// Positions.
        tokens: KlTokens,
    },
    /// λ · mean over the window's examples of ‖φ_θ − φ_0‖².
    Ldifs {
        /// λ.
        lambda: f64,
        /// Resolved layer indices (ascending).
        layers: Vec<usize>,
    },
    /// Preventive steering: h_l ← h_l + α·v_l in the training forward only.
    Steering {
        /// α.
        alpha: f64,
        /// Steered layer indices.
        layers: Vec<usize>,
        /// A file holding one `[L+1, hidden]` tensor (row l for layer l): safetensors, or a
        /// PyTorch `.pt` as persona_vectors' `torch.save` writes it (see `steering.rs`).
        vector: PathBuf,
    },
}

/// How the inoculation prompt is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InoculationMode {
    /// Drop the example's system messages; the prompt comes first.
    Replace,
    /// Keep them after the prompt.
    Prepend,
}

/// A training-only system prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inoculation {
    /// The prompt.
    pub system_prompt: String,
    /// Placement.
    pub mode: InoculationMode,
}

/// Everything that decides a run's numbers. Stored in every checkpoint; a resume with a
/// different config is refused, naming the field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Adapter shape (ignored when starting from an existing adapter: its own config wins).
    pub lora: LoraConfig,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Adam ε.
    pub adam_epsilon: f64,
    /// Adam β1.
    pub adam_beta1: f64,
    /// Adam β2.
    pub adam_beta2: f64,
    /// Schedule after warmup.
    pub schedule: Schedule,
    /// Warmup optimizer steps.
    pub warmup_steps: usize,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub gradient_accumulation_steps: usize,
    /// Passes over the data (ignored when `max_steps` is set).
    pub epochs: usize,
    /// Most optimizer steps (`None` = epochs × steps per epoch); also the schedule's length.
    pub max_steps: Option<usize>,
    /// Examples longer than this are cut from the right (keeping the first tokens).
    pub max_length: usize,
    /// Seeds the adapter init, the per-epoch shuffle and the dropout masks.
    pub seed: u64,
    /// Seeded shuffle of the examples per epoch.
    pub shuffle: bool,
    /// Global gradient-norm clip (0 = off), as `torch.nn.utils.clip_grad_norm_`.
    pub max_grad_norm: f64,
    /// Checkpoint every N optimizer steps (0 = only at the end or on pause).
    pub checkpoint_every: usize,
    /// The regularizer.
    pub regularizer: Regularizer,
    /// Training-only system prompt.
    pub inoculation: Option<Inoculation>,
}

impl Default for TrainConfig {
    /// The paper's Table 6 (the policies crate's documented defaults).
    fn default() -> Self {
        Self {
            lora: LoraConfig::default(),
            learning_rate: 1e-4,
            weight_decay: 0.01,
            adam_epsilon: 1e-8,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            schedule: Schedule::Linear,
            warmup_steps: 5,
            batch_size: 4,
            gradient_accumulation_steps: 4,
            epochs: 1,
            max_steps: None,
            max_length: 2048,
            seed: 0,
            shuffle: true,
            max_grad_norm: 1.0,
            checkpoint_every: 10,
            regularizer: Regularizer::None,
            inoculation: None,
        }
    }
}

impl TrainConfig {
    /// Checks ranges a policy file may not have checked (the CLI and the worker build this
    /// value from several sources), naming the field.
    pub fn validate(&self, num_layers: usize) -> Result<()> {
        let bad = |field: &str, why: String| Err(EngineError::Invalid(format!("{field}: {why}")));
        if !(self.learning_rate.is_finite() && self.learning_rate >= 0.0) {
            return bad(
                "learning_rate",
                format!("{} is not ≥ 0", self.learning_rate),
            );
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight_decay", format!("{} is not ≥ 0", self.weight_decay));
        }
        if !(self.adam_epsilon.is_finite() && self.adam_epsilon > 0.0) {
            return bad("adam_epsilon", format!("{} is not > 0", self.adam_epsilon));
        }
        for (f, b) in [
            ("adam_beta1", self.adam_beta1),
            ("adam_beta2", self.adam_beta2),
        ] {
            if !(0.0..1.0).contains(&b) {
                return bad(f, format!("{b} is not in [0, 1)"));
            }
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be ≥ 1".into());
        }
        if self.gradient_accumulation_steps == 0 {
            return bad("gradient_accumulation_steps", "must be ≥ 1".into());
        }
        if self.max_steps.is_none() && self.epochs == 0 {
            return bad("epochs", "must be ≥ 1".into());
        }
        if self.max_steps == Some(0) {
            return bad("max_steps", "must be ≥ 1".into());
        }
        if self.max_length < 2 {
            return bad("max_length", "must be ≥ 2".into());
        }
        if !(self.max_grad_norm.is_finite() && self.max_grad_norm >= 0.0) {
            return bad(
                "max_grad_norm",
                format!("{} is not ≥ 0", self.max_grad_norm),
            );
        }
        let layers_ok = |field: &str, layers: &[usize]| {
            if layers.is_empty() {
                return bad(field, "no layer given".into());
            }
            match layers.iter().find(|&&l| l > num_layers) {
                Some(l) => bad(
                    field,
                    format!("layer {l} does not exist (the model has layers 0..={num_layers})"),
                ),
                None => Ok(()),
            }
        };
        match &self.regularizer {
            Regularizer::None => Ok(()),
            Regularizer::Kl { lambda, .. } if !(lambda.is_finite() && *lambda >= 0.0) => {
                bad("regularizer.lambda", format!("{lambda} is not ≥ 0"))
            }
            Regularizer::Kl { .. } => Ok(()),
            Regularizer::Ldifs { lambda, .. } if !(lambda.is_finite() && *lambda >= 0.0) => {
                bad("regularizer.lambda", format!("{lambda} is not ≥ 0"))
            }
            Regularizer::Ldifs { layers, .. } => layers_ok("regularizer.layers", layers),
            Regularizer::Steering { alpha, .. } if !alpha.is_finite() => {
                bad("regularizer.alpha", format!("{alpha} is not finite"))
            }
            Regularizer::Steering { layers, .. } => layers_ok("regularizer.layers", layers),
        }
    }

    /// Optimizer steps per epoch for `examples` training examples (ceil, as HF's Trainer).
    pub fn steps_per_epoch(&self, examples: usize) -> usize {
        examples
            .div_ceil(self.batch_size * self.gradient_accumulation_steps)
            .max(1)
    }

    /// Total optimizer steps of the run.
    pub fn total_steps(&self, examples: usize) -> usize {
        self.max_steps
            .unwrap_or(self.epochs * self.steps_per_epoch(examples))
    }

    /// The first field whose value differs from `other`'s (for refusing a mismatched resume).
    pub fn first_difference(&self, other: &TrainConfig) -> Option<String> {
        let a = serde_json::to_value(self).ok()?;
        let b = serde_json::to_value(other).ok()?;
        let (serde_json::Value::Object(a), serde_json::Value::Object(b)) = (a, b) else {
            return None;
        };
        a.iter().find(|(k, v)| b.get(*k) != Some(v)).map(|(k, v)| {
            format!(
                "{k} (checkpoint: {}, now: {v})",
                b.get(k).cloned().unwrap_or_default()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_match_hf() {
        // get_linear_schedule_with_warmup(W=2, N=6): 0, .5, 1, .75, .5, .25
        let f: Vec<f64> = (0..6).map(|k| Schedule::Linear.factor(k, 2, 6)).collect();
        assert_eq!(f, vec![0.0, 0.5, 1.0, 0.75, 0.5, 0.25]);
        let c: Vec<f64> = (0..4).map(|k| Schedule::Constant.factor(k, 1, 4)).collect();
        assert_eq!(c, vec![0.0, 1.0, 1.0, 1.0]);
        // No warmup: the first step runs at the full rate.
        assert_eq!(Schedule::Linear.factor(0, 0, 4), 1.0);
        // Warmup longer than the run never divides by zero.
        assert_eq!(Schedule::Linear.factor(3, 5, 3), 0.6);
    }

    #[test]
    fn steps_are_ceil_of_windows() {
        let c = TrainConfig {
            batch_size: 2,
            gradient_accumulation_steps: 2,
            epochs: 3,
            ..TrainConfig::default()
        };
        assert_eq!(c.steps_per_epoch(12), 3);
        assert_eq!(c.steps_per_epoch(13), 4);
        assert_eq!(c.total_steps(13), 12);
        let m = TrainConfig {
            max_steps: Some(5),
            ..c
        };
        assert_eq!(m.total_steps(13), 5);
    }

    #[test]
    fn validation_names_the_field() {
        let c = TrainConfig {
            regularizer: Regularizer::Ldifs {
                lambda: 1.0,
                layers: vec![1, 9],
            },
            ..TrainConfig::default()
        };
        let e = c.validate(2).unwrap_err().to_string();
        assert!(
            e.contains("regularizer.layers") && e.contains("layer 9"),
            "{e}"
        );
        let c = TrainConfig {
            max_grad_norm: -1.0,
            ..TrainConfig::default()
        };
        assert!(c
            .validate(2)
            .unwrap_err()
            .to_string()
            .contains("max_grad_norm"));
    }
}
