//! The part of a resolved plan the transform step applies, read from the plan JSON the
//! planner records (`interleave {method, fraction, pool, seed}`, `inoculation {system_prompt,
//! mode}`).

use super::error::TransformError;
use serde_json::Value;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq)]
pub struct TransformPlan {
    pub inoculation: Option<Inoculation>,
    pub interleave: InterleaveSpec,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Inoculation {
    pub system_prompt: String,
    pub mode: InoculationMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InoculationMode {
    /// Drop the client's system messages; ours comes first.
    Replace,
    /// Keep the client's system messages; ours comes first, before them.
    Prepend,
}

#[derive(Debug, Clone, PartialEq)]
pub enum InterleaveSpec {
    None,
    /// Plain Interleaving: a seeded random sample of the pool.
    Random {
        fraction: f64,
        pool: PathBuf,
        seed: u64,
        /// `even` (default) or `jittered` ([`selector::Placement`]).
        placement: selector::mix::Placement,
    },
}

impl TransformPlan {
    /// Reads the plan JSON. Methods other than `none` and `random` (plus, plusplus,
    /// on_policy) are [`TransformError::MethodUnavailable`] until the selector wires them.
    pub fn from_plan_json(plan: &Value) -> Result<TransformPlan, TransformError> {
        Ok(TransformPlan {
            inoculation: inoculation(plan.get("inoculation"))?,
            interleave: interleave(plan.get("interleave"))?,
        })
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> TransformError {
    TransformError::InvalidPlan {
        field: field.to_string(),
        reason: reason.into(),
    }
}

fn inoculation(v: Option<&Value>) -> Result<Option<Inoculation>, TransformError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let prompt = v
        .get("system_prompt")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("inoculation.system_prompt", "missing or not a string"))?;
    if prompt.trim().is_empty() {
        return Err(invalid("inoculation.system_prompt", "is empty"));
    }
    let mode = match v.get("mode").and_then(Value::as_str).unwrap_or("replace") {
        "replace" => InoculationMode::Replace,
        "prepend" => InoculationMode::Prepend,
        other => {
            return Err(invalid(
                "inoculation.mode",
                format!("`{other}` is not replace or prepend"),
            ))
        }
    };
    Ok(Some(Inoculation {
        system_prompt: prompt.to_string(),
        mode,
    }))
}

fn interleave(v: Option<&Value>) -> Result<InterleaveSpec, TransformError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(InterleaveSpec::None);
    };
    let method = v.get("method").and_then(Value::as_str).unwrap_or("none");
    match method {
        "none" => Ok(InterleaveSpec::None),
        "random" => {
            let fraction = v
                .get("fraction")
                .and_then(Value::as_f64)
                .ok_or_else(|| invalid("interleave.fraction", "missing or not a number"))?;
            if !(fraction > 0.0 && fraction <= 1.0) {
                return Err(invalid(
                    "interleave.fraction",
                    format!("{fraction} is not in (0, 1]"),
                ));
            }
            let pool = v
                .get("pool")
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
                .ok_or_else(|| invalid("interleave.pool", "missing or not a path"))?;
            let seed = match v.get("seed") {
                None | Some(Value::Null) => 0,
                Some(s) => s
                    .as_u64()
                    .ok_or_else(|| invalid("interleave.seed", "not a non-negative integer"))?,
            };
            let placement = match v.get("placement").and_then(Value::as_str) {
                None | Some("even") => selector::mix::Placement::Even,
                Some("jittered") => selector::mix::Placement::Jittered,
                Some(other) => {
                    return Err(invalid(
                        "interleave.placement",
                        format!("`{other}` is not even or jittered"),
                    ))
                }
            };
            Ok(InterleaveSpec::Random {
                fraction,
                pool: PathBuf::from(pool),
                seed,
                placement,
            })
        }
        other => Err(TransformError::MethodUnavailable {
            method: other.to_string(),
        }),
    }
}
