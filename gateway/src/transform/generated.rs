//! On-policy Interleaving for the transform step: the pool prompts of the seeded order
//! answered by the aligned base model (greedy, so deterministic) through
//! [`selector::EngineGenerator`], quality-filtered by [`selector::on_policy`].

use super::error::TransformError;
use super::plan::ScoredSpec;
use super::selected::fail;
use crate::config::{InterleaveConfig, ModelEntry};
use selector::{
    mix_count, on_policy as select_on_policy, plan_with_picks, EngineGenerator, Manifest,
    MixConfig, OnPolicyError, PoolExample, QualityFilter, RepetitionRule,
};
use serde_json::{json, Value};
use std::collections::HashMap;

/// The manifest, the regenerated lines by pool index and the engine facts for the manifest.
pub(super) fn on_policy(
    settings: &InterleaveConfig,
    entry: &ModelEntry,
    spec: &ScoredSpec,
    config: &MixConfig,
    n: usize,
    pool: &[PoolExample],
) -> Result<(Manifest, HashMap<u64, String>, Value), TransformError> {
    let count = mix_count(config.fraction, n).map_err(|e| TransformError::InvalidPlan {
        field: "interleave.fraction".into(),
        reason: e.to_string(),
    })?;
    let engine = trainer::Engine::<trainer::CpuBackend>::load(&entry.path, Default::default())
        .map_err(|e| {
            fail(
                "interleave_model_missing",
                format!("loading base model {}: {e}", entry.path.display()),
            )
        })?;
    let options = trainer::GenerateOptions {
        max_new_tokens: settings.max_new_tokens,
        sampling: trainer::Sampling::Greedy,
        stop_tokens: engine.weights.config.eos_token_ids.clone(),
    };
    let mut generator = EngineGenerator::new(&engine, options);
    let quality = match &spec.quality {
        Some(q) => QualityFilter {
            reject_unfinished: q.reject_unfinished,
            min_words: q.min_reply_words as usize,
            template_markers: q.template_markers.clone(),
            repetition: RepetitionRule {
                ngram: q.repetition_ngram as usize,
                min_distinct_ratio: q.repetition_min_distinct_ratio,
            },
        },
        None => QualityFilter::default(),
    };
    let outcome = select_on_policy(
        pool,
        count,
        config.seed,
        &quality,
        &mut generator,
        settings.batch_size,
    )
    .map_err(|e| match e {
        OnPolicyError::TooFewPassed { .. } => fail(
            "interleave_pool_too_small",
            format!("interleave pool {}: {e}", spec.pool.display()),
        ),
        other => fail(
            "interleave_generation_failed",
            format!(
                "on-policy generation under {}: {other}",
                entry.path.display()
            ),
        ),
    })?;
    let (_, manifest) = plan_with_picks(config, n, &outcome.picks);
    let lines = outcome
        .picks
        .iter()
        .zip(&outcome.examples)
        .map(|(p, ex)| (p.pool_index as u64, ex.to_json_line()))
        .collect();
    let extra = json!({
        "model_dir": entry.path.display().to_string(),
        "generated": outcome.generated,
        "rejected": outcome.rejected,
    });
    Ok((manifest, lines, extra))
}
