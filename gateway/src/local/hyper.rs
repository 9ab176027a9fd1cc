//! A local job's run config: its recorded plan (the policy) with the job's hyperparameters
//! on top. Pure.
//!
//! OpenAI's hyperparameters map as: `n_epochs` → epochs; `learning_rate_multiplier` × the
//! policy's learning rate; `batch_size` is OpenAI's effective batch = micro-batch ×
//! accumulation: the policy's micro-batch stays (or shrinks to the batch when the batch is
//! smaller) and the accumulation becomes round(batch / micro-batch), at least 1, so the
//! effective batch is the nearest multiple of the micro-batch (rounding halves up). The job's
//! `seed` (OpenAI's: given by the client, else drawn at creation) is the training seed, as on
//! OpenAI: the same seed and parameters reproduce the job; the policy's `[training] seed`
//! applies to `tuneguard train` only.

use crate::training::plan::{train_config, Overrides};
use serde_json::Value;
use std::path::Path;
use trainer::train::TrainConfig;

/// A number from the job's hyperparameters (`None` for "auto" or absent).
fn number(hp: &Value, key: &str) -> Option<f64> {
    hp.get(key).and_then(Value::as_f64)
}

/// The policy a recorded plan stands for.
pub fn policy_of(plan: &policies::Plan) -> policies::Policy {
    policies::Policy {
        name: plan.policy.clone(),
        description: String::new(),
        priority: 0,
        match_rule: Default::default(),
        interleave: plan.interleave.clone(),
        regularizer: plan.regularizer.clone(),
        inoculation: plan.inoculation.clone(),
        training: plan.training.clone(),
        monitor: plan.monitor.clone(),
        upstream: plan.upstream.clone(),
    }
}

/// The run config of a job on a model with `num_layers` blocks. Errors name the
/// hyperparameter or policy key.
pub fn job_config(
    plan: &policies::Plan,
    hyperparameters: &Value,
    seed: i64,
    num_layers: usize,
) -> Result<TrainConfig, String> {
    let policy = policy_of(plan);
    let epochs = number(hyperparameters, "n_epochs")
        .map(|v| {
            if v >= 1.0 && v.fract() == 0.0 {
                Ok(v as usize)
            } else {
                Err(format!(
                    "hyperparameters.n_epochs: {v} is not a whole number ≥ 1"
                ))
            }
        })
        .transpose()?;
    let lr = number(hyperparameters, "learning_rate_multiplier");
    let mut config = train_config(
        &policy,
        Path::new("."),
        num_layers,
        &Overrides {
            epochs,
            learning_rate_multiplier: lr,
            ..Overrides::default()
        },
    )?;
    config.seed = u64::try_from(seed).map_err(|_| format!("seed: {seed} is negative"))?;
    // The job's dataset is the transformed one: the pipeline's transform step already applied
    // the plan's inoculation prompt, so the trainer must not apply it a second time.
    config.inoculation = None;
    if let Some(b) = number(hyperparameters, "batch_size") {
        if !(b >= 1.0 && b.fract() == 0.0) {
            return Err(format!(
                "hyperparameters.batch_size: {b} is not a whole number ≥ 1"
            ));
        }
        let b = b as usize;
        if b <= config.batch_size {
            config.batch_size = b;
            config.gradient_accumulation_steps = 1;
        } else {
            config.gradient_accumulation_steps =
                ((b + config.batch_size / 2) / config.batch_size).max(1);
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan() -> policies::Plan {
        let p = policies::Policy::builtin_default();
        policies::Plan {
            policy: p.name,
            version: "v".into(),
            interleave: p.interleave,
            regularizer: p.regularizer,
            inoculation: p.inoculation,
            training: p.training,
            monitor: p.monitor,
            upstream: p.upstream,
        }
    }

    #[test]
    fn hyperparameters_override_the_policy() {
        let c = job_config(
            &plan(),
            &json!({"n_epochs": 3, "batch_size": "auto", "learning_rate_multiplier": 2.0}),
            42,
            2,
        )
        .unwrap();
        assert_eq!(c.epochs, 3);
        assert_eq!(c.seed, 42, "the job's seed trains");
        assert!((c.learning_rate - 2e-4).abs() < 1e-15);
        assert_eq!((c.batch_size, c.gradient_accumulation_steps), (4, 4));
        let c = job_config(&plan(), &json!({"batch_size": 10}), 0, 2).unwrap();
        assert_eq!(
            (c.batch_size, c.gradient_accumulation_steps),
            (4, 3),
            "10 rounds to 12"
        );
        let c = job_config(&plan(), &json!({"batch_size": 2}), 0, 2).unwrap();
        assert_eq!((c.batch_size, c.gradient_accumulation_steps), (2, 1));
        let mut p = plan();
        p.inoculation = Some(policies::Inoculation {
            system_prompt: "x".into(),
            mode: policies::InoculationMode::Prepend,
        });
        assert_eq!(
            job_config(&p, &json!({}), 0, 2).unwrap().inoculation,
            None,
            "applied upstream of training"
        );
        let e = job_config(&plan(), &json!({"n_epochs": 0.5}), 0, 2).unwrap_err();
        assert!(e.contains("n_epochs"), "{e}");
    }
}
