//! Policy → [`trainer::train::TrainConfig`]: the one place where policy values become training
//! numbers (the `train` command and the worker both use it). Pure.

use std::path::Path;

use policies::{Policy, Regularizer as PolicyRegularizer};
use trainer::lora::{LoraConfig, LoraScaling, Target};
use trainer::train::{
    Inoculation, InoculationMode, KlDirection, KlTokens, Regularizer, Schedule, TrainConfig,
};

/// Overrides on top of a policy (command-line flags, a job's hyperparameters).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `--max-steps`.
    pub max_steps: Option<usize>,
    /// `--checkpoint-every` (else the policy's `monitor.checkpoint_every_steps`).
    pub checkpoint_every: Option<usize>,
    /// A job's `n_epochs`.
    pub epochs: Option<usize>,
    /// A job's `batch_size`.
    pub batch_size: Option<usize>,
    /// A job's `learning_rate_multiplier` (a factor on the policy's learning rate).
    pub learning_rate_multiplier: Option<f64>,
}

/// The run config `policy` asks for on a model with `num_layers` blocks. Relative paths
/// (the steering vector) resolve against `policy_dir`. Errors name the policy key.
pub fn train_config(
    policy: &Policy,
    policy_dir: &Path,
    num_layers: usize,
    o: &Overrides,
) -> Result<TrainConfig, String> {
    let t = &policy.training;
    let targets = t
        .lora_targets
        .iter()
        .map(|name| {
            Target::from_peft_name(name)
                .ok_or_else(|| format!("training.lora_targets: unknown module `{name}`"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let regularizer = match &policy.regularizer {
        PolicyRegularizer::None => Regularizer::None,
        PolicyRegularizer::Kl {
            lambda,
            direction,
            tokens,
        } => Regularizer::Kl {
            lambda: *lambda,
            direction: match direction {
                policies::KlDirection::Forward => KlDirection::Forward,
                policies::KlDirection::Reverse => KlDirection::Reverse,
            },
            tokens: match tokens {
                policies::KlTokens::Answer => KlTokens::Answer,
                policies::KlTokens::All => KlTokens::All,
            },
        },
        PolicyRegularizer::Ldifs { lambda, layers } => {
            let key = match layers {
                policies::LayerSet::List(_) => "layers",
                policies::LayerSet::Every(_) => "layers_every",
                policies::LayerSet::Count(_) => "layers_count",
            };
            Regularizer::Ldifs {
                lambda: *lambda,
                layers: layers
                    .resolve(num_layers)
                    .map_err(|e| format!("regularizer.{key}: {e}"))?,
            }
        }
        PolicyRegularizer::Steering {
            alpha,
            layers,
            vector,
        } => {
            if let Some(l) = layers.iter().find(|&&l| l as usize > num_layers) {
                return Err(format!(
                    "regularizer.layers: layer {l} does not exist (the model has layers 0..={num_layers})"
                ));
            }
            Regularizer::Steering {
                alpha: *alpha,
                layers: layers.iter().map(|&l| l as usize).collect(),
                vector: if vector.is_absolute() {
                    vector.clone()
                } else {
                    policy_dir.join(vector)
                },
            }
        }
    };
    let lr_factor = o.learning_rate_multiplier.unwrap_or(1.0);
    if !(lr_factor.is_finite() && lr_factor > 0.0) {
        return Err(format!(
            "learning_rate_multiplier: {lr_factor} is not a positive number"
        ));
    }
    Ok(TrainConfig {
        lora: LoraConfig {
            rank: t.lora_rank as usize,
            alpha: t.lora_alpha,
            scaling: match t.lora_scaling {
                policies::LoraScaling::Rslora => LoraScaling::RsLora,
                policies::LoraScaling::Standard => LoraScaling::Classic,
            },
            dropout: t.lora_dropout,
            targets,
        },
        learning_rate: t.learning_rate * lr_factor,
        weight_decay: t.weight_decay,
        adam_epsilon: t.adam_epsilon,
        adam_beta1: 0.9,
        adam_beta2: 0.999,
        schedule: match t.schedule {
            policies::Schedule::Linear => Schedule::Linear,
            policies::Schedule::Constant => Schedule::Constant,
        },
        warmup_steps: t.warmup_steps as usize,
        batch_size: o.batch_size.unwrap_or(t.batch_size as usize),
        gradient_accumulation_steps: t.gradient_accumulation_steps as usize,
        epochs: o.epochs.unwrap_or(t.epochs as usize),
        max_steps: o.max_steps,
        max_length: t.max_length_tokens as usize,
        seed: t.seed,
        shuffle: t.shuffle,
        max_grad_norm: t.max_grad_norm,
        checkpoint_every: o
            .checkpoint_every
            .unwrap_or(policy.monitor.checkpoint_every_steps as usize),
        regularizer,
        inoculation: policy.inoculation.as_ref().map(|i| Inoculation {
            system_prompt: i.system_prompt.clone(),
            mode: match i.mode {
                policies::InoculationMode::Replace => InoculationMode::Replace,
                policies::InoculationMode::Prepend => InoculationMode::Prepend,
            },
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_maps_to_table_6() {
        let c = train_config(
            &Policy::builtin_default(),
            Path::new("."),
            4,
            &Overrides::default(),
        )
        .expect("maps");
        assert_eq!(
            c,
            TrainConfig {
                checkpoint_every: 10,
                ..TrainConfig::default()
            }
        );
    }

    #[test]
    fn overrides_and_relative_vector_paths() {
        let mut p = Policy::builtin_default();
        p.regularizer = PolicyRegularizer::Steering {
            alpha: 4.0,
            layers: vec![2],
            vector: "v.safetensors".into(),
        };
        let o = Overrides {
            max_steps: Some(7),
            checkpoint_every: Some(3),
            epochs: Some(2),
            batch_size: Some(8),
            learning_rate_multiplier: Some(2.0),
        };
        let c = train_config(&p, Path::new("/etc/pol"), 4, &o).expect("maps");
        assert_eq!(c.max_steps, Some(7));
        assert_eq!(c.checkpoint_every, 3);
        assert_eq!((c.epochs, c.batch_size), (2, 8));
        assert!((c.learning_rate - 2e-4).abs() < 1e-15);
        assert_eq!(
            c.regularizer,
            Regularizer::Steering {
                alpha: 4.0,
                layers: vec![2],
                vector: "/etc/pol/v.safetensors".into()
            }
        );
        p.regularizer = PolicyRegularizer::Steering {
            alpha: 4.0,
            layers: vec![5],
            vector: "v.safetensors".into(),
        };
        let e = train_config(&p, Path::new("."), 4, &Overrides::default()).unwrap_err();
        assert!(
            e.contains("regularizer.layers") && e.contains("layer 5"),
            "{e}"
        );
    }
}
