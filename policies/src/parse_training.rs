//! The `[training]` section (and the number helpers `[monitor]` shares).

use crate::defaults::LORA_TARGETS;
use crate::reader::{Result, Section};
use crate::schema::*;

pub(crate) fn in_range(
    s: &mut Section,
    key: &'static str,
    default: f64,
    ok: impl Fn(f64) -> bool,
    range: &str,
) -> Result<f64> {
    let v = s.f64(key)?.unwrap_or(default);
    if ok(v) {
        Ok(v)
    } else {
        Err(s.err(key, format!("must be in {range}, got {v}")))
    }
}

pub(crate) fn at_least_one(s: &mut Section, key: &'static str, default: u32) -> Result<u32> {
    match s.u32(key)?.unwrap_or(default) {
        0 => Err(s.err(key, "must be >= 1, got 0")),
        n => Ok(n),
    }
}

pub(crate) fn training(mut s: Section) -> Result<Training> {
    let d = Training::default();
    let lora_rank = at_least_one(&mut s, "lora_rank", d.lora_rank)?;
    let lora_alpha = in_range(&mut s, "lora_alpha", d.lora_alpha, |v| v > 0.0, "(0, inf)")?;
    let lora_dropout = in_range(
        &mut s,
        "lora_dropout",
        d.lora_dropout,
        |v| (0.0..1.0).contains(&v),
        "[0, 1)",
    )?;
    let lora_scaling = s
        .choice(
            "lora_scaling",
            &[
                ("rslora", LoraScaling::Rslora),
                ("standard", LoraScaling::Standard),
            ],
        )?
        .unwrap_or(d.lora_scaling);
    let lora_targets = match s.strings("lora_targets")? {
        None => d.lora_targets,
        Some(t) if t.is_empty() => {
            return Err(s.err("lora_targets", "must list at least one module"))
        }
        Some(t) => {
            if let Some((i, bad)) = t
                .iter()
                .enumerate()
                .find(|(_, m)| !LORA_TARGETS.contains(&m.as_str()))
            {
                return Err(s.err(
                    &format!("lora_targets[{i}]"),
                    format!("must be one of {}, got \"{bad}\"", LORA_TARGETS.join(", ")),
                ));
            }
            t
        }
    };
    let learning_rate = in_range(
        &mut s,
        "learning_rate",
        d.learning_rate,
        |v| v > 0.0 && v <= 1.0,
        "(0, 1]",
    )?;
    let weight_decay = in_range(
        &mut s,
        "weight_decay",
        d.weight_decay,
        |v| (0.0..=1.0).contains(&v),
        "[0, 1]",
    )?;
    let adam_epsilon = in_range(
        &mut s,
        "adam_epsilon",
        d.adam_epsilon,
        |v| v > 0.0 && v < 1.0,
        "(0, 1)",
    )?;
    let max_grad_norm = in_range(
        &mut s,
        "max_grad_norm",
        d.max_grad_norm,
        |v| v >= 0.0,
        "[0, inf)",
    )?;
    let schedule = s
        .choice(
            "schedule",
            &[
                ("linear", Schedule::Linear),
                ("constant", Schedule::Constant),
            ],
        )?
        .unwrap_or(d.schedule);
    let warmup_steps = s.u32("warmup_steps")?.unwrap_or(d.warmup_steps);
    let batch_size = at_least_one(&mut s, "batch_size", d.batch_size)?;
    let gradient_accumulation_steps = at_least_one(
        &mut s,
        "gradient_accumulation_steps",
        d.gradient_accumulation_steps,
    )?;
    let epochs = at_least_one(&mut s, "epochs", d.epochs)?;
    let max_length_tokens = at_least_one(&mut s, "max_length_tokens", d.max_length_tokens)?;
    let seed = s.u64("seed")?.unwrap_or(d.seed);
    let shuffle = s.bool("shuffle")?.unwrap_or(d.shuffle);
    s.finish()?;
    Ok(Training {
        lora_rank,
        lora_alpha,
        lora_dropout,
        lora_scaling,
        lora_targets,
        learning_rate,
        weight_decay,
        adam_epsilon,
        max_grad_norm,
        schedule,
        warmup_steps,
        batch_size,
        gradient_accumulation_steps,
        epochs,
        max_length_tokens,
        seed,
        shuffle,
    })
}
