//! The part of a resolved plan the transform step applies, read from the plan JSON the
//! planner records (`policies::Plan::to_json`): `interleave` and `inoculation`.

use super::error::TransformError;
pub use policies::{Inoculation, InoculationMode};
use serde_json::Value;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq)]
pub struct TransformPlan {
    pub inoculation: Option<Inoculation>,
    pub interleave: InterleaveSpec,
}

/// The interleaving this step can apply itself.
#[derive(Debug, Clone, PartialEq)]
pub enum InterleaveSpec {
    None,
    /// Plain Interleaving: a seeded random sample of the pool.
    Random {
        fraction: f64,
        /// Used as given: the planner resolves paths relative to the policy directory.
        pool: PathBuf,
        seed: u64,
        placement: selector::mix::Placement,
    },
}

impl TransformPlan {
    /// Reads the plan JSON. Methods other than `none` and `random` (plus, plusplus,
    /// on_policy) are [`TransformError::MethodUnavailable`] until the selector is wired in.
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
    let inoc: Inoculation =
        serde_json::from_value(v.clone()).map_err(|e| invalid("inoculation", e.to_string()))?;
    if inoc.system_prompt.trim().is_empty() {
        return Err(invalid("inoculation.system_prompt", "is empty"));
    }
    Ok(Some(inoc))
}

fn interleave(v: Option<&Value>) -> Result<InterleaveSpec, TransformError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(InterleaveSpec::None);
    };
    let method = v.get("method").and_then(Value::as_str).unwrap_or("");
    if matches!(method, "plus" | "plusplus" | "on_policy") {
        return Err(TransformError::MethodUnavailable {
            method: method.to_string(),
        });
    }
    let parsed: policies::Interleave =
        serde_json::from_value(v.clone()).map_err(|e| invalid("interleave", e.to_string()))?;
    let mix = match parsed {
        policies::Interleave::Random { mix } => mix,
        _ => return Ok(InterleaveSpec::None),
    };
    if !(mix.fraction > 0.0 && mix.fraction <= 1.0) {
        return Err(invalid(
            "interleave.fraction",
            format!("{} is not in (0, 1]", mix.fraction),
        ));
    }
    Ok(InterleaveSpec::Random {
        fraction: mix.fraction,
        pool: mix.pool,
        seed: mix.seed,
        placement: match mix.placement {
            policies::Placement::Even => selector::mix::Placement::Even,
            policies::Placement::Jittered => selector::mix::Placement::Jittered,
        },
    })
}
