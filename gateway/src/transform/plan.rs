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
    /// Interleaving+ / ++ / on-policy: needs the engine (see [`super::selected`]).
    Scored(ScoredSpec),
}

/// An engine-backed interleaving of the policy.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredSpec {
    /// [`selector::Method::Plus`], [`selector::Method::PlusPlus`] or [`selector::Method::OnPolicy`].
    pub method: selector::Method,
    pub fraction: f64,
    pub pool: PathBuf,
    pub seed: u64,
    pub placement: selector::mix::Placement,
    /// ε of the gap score (plus, plusplus).
    pub gap_epsilon: f64,
    /// The refusal filter's keywords and window (plusplus; empty keywords otherwise).
    pub refusal_keywords: Vec<String>,
    pub refusal_window_words: usize,
    /// The reply quality filter (on_policy).
    pub quality: Option<policies::ReplyQuality>,
}

impl TransformPlan {
    /// Reads the plan JSON; plus, plusplus and on_policy become [`InterleaveSpec::Scored`].
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
    let parsed: policies::Interleave =
        serde_json::from_value(v.clone()).map_err(|e| invalid("interleave", e.to_string()))?;
    let scored = |method, mix: &policies::Mix, eps: f64| ScoredSpec {
        method,
        fraction: mix.fraction,
        pool: mix.pool.clone(),
        seed: mix.seed,
        placement: placement(mix.placement),
        gap_epsilon: eps,
        refusal_keywords: Vec::new(),
        refusal_window_words: selector::DEFAULT_WINDOW_WORDS,
        quality: None,
    };
    let (mix, spec) = match parsed {
        policies::Interleave::None => return Ok(InterleaveSpec::None),
        policies::Interleave::Random { mix } => (mix, None),
        policies::Interleave::Plus { mix, gap_epsilon } => {
            let spec = scored(selector::Method::Plus, &mix, gap_epsilon);
            (mix, Some(spec))
        }
        policies::Interleave::Plusplus {
            mix,
            gap_epsilon,
            refusal_keywords,
            refusal_window_words,
        } => {
            let mut spec = scored(selector::Method::PlusPlus, &mix, gap_epsilon);
            spec.refusal_keywords = refusal_keywords;
            spec.refusal_window_words = refusal_window_words as usize;
            (mix, Some(spec))
        }
        policies::Interleave::OnPolicy { mix, quality } => {
            let mut spec = scored(selector::Method::OnPolicy, &mix, 0.0);
            spec.quality = Some(quality);
            (mix, Some(spec))
        }
    };
    if !(mix.fraction > 0.0 && mix.fraction <= 1.0) {
        return Err(invalid(
            "interleave.fraction",
            format!("{} is not in (0, 1]", mix.fraction),
        ));
    }
    if let Some(spec) = spec {
        let bad_epsilon = !spec.gap_epsilon.is_finite() || spec.gap_epsilon <= 0.0;
        if spec.method != selector::Method::OnPolicy && bad_epsilon {
            return Err(invalid(
                "interleave.gap_epsilon",
                format!("{} is not > 0", spec.gap_epsilon),
            ));
        }
        return Ok(InterleaveSpec::Scored(spec));
    }
    Ok(InterleaveSpec::Random {
        fraction: mix.fraction,
        pool: mix.pool,
        seed: mix.seed,
        placement: placement(mix.placement),
    })
}

fn placement(p: policies::Placement) -> selector::mix::Placement {
    match p {
        policies::Placement::Even => selector::mix::Placement::Even,
        policies::Placement::Jittered => selector::mix::Placement::Jittered,
    }
}
