//! The part of a job's plan the transform step applies: `interleave` and `inoculation`,
//! reshaped for the dataset transform.

pub use policies::{Inoculation, InoculationMode, Plan};
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
    /// The transform part of a job's plan; plus, plusplus and on_policy become
    /// [`InterleaveSpec::Scored`]. The policy parser validated the plan (a fraction in
    /// (0, 1], a positive ε, a non-empty inoculation prompt), so this only reshapes it.
    pub fn from_plan(plan: &Plan) -> TransformPlan {
        TransformPlan {
            inoculation: plan.inoculation.clone(),
            interleave: interleave(&plan.interleave),
        }
    }
}

fn interleave(parsed: &policies::Interleave) -> InterleaveSpec {
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
    let spec = match parsed {
        policies::Interleave::None => return InterleaveSpec::None,
        policies::Interleave::Random { mix } => {
            return InterleaveSpec::Random {
                fraction: mix.fraction,
                pool: mix.pool.clone(),
                seed: mix.seed,
                placement: placement(mix.placement),
            }
        }
        policies::Interleave::Plus { mix, gap_epsilon } => {
            scored(selector::Method::Plus, mix, *gap_epsilon)
        }
        policies::Interleave::Plusplus {
            mix,
            gap_epsilon,
            refusal_keywords,
            refusal_window_words,
        } => {
            let mut spec = scored(selector::Method::PlusPlus, mix, *gap_epsilon);
            spec.refusal_keywords = refusal_keywords.clone();
            spec.refusal_window_words = *refusal_window_words as usize;
            spec
        }
        policies::Interleave::OnPolicy { mix, quality } => {
            let mut spec = scored(selector::Method::OnPolicy, mix, 0.0);
            spec.quality = Some(quality.clone());
            spec
        }
    };
    InterleaveSpec::Scored(spec)
}

fn placement(p: policies::Placement) -> selector::mix::Placement {
    match p {
        policies::Placement::Even => selector::mix::Placement::Even,
        policies::Placement::Jittered => selector::mix::Placement::Jittered,
    }
}
