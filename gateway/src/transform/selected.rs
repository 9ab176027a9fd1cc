//! Engine-backed Interleaving for the transform step (runs on the blocking pool):
//! - plus / plusplus: the policy's pool is scored under the aligned base model and the
//!   misaligned adapters of the job model's `[[models]]` entry (`path`, `adapters`) through
//!   [`selector::cli::run_select_with`], with the durable score cache
//!   (`interleave.score_cache`, default `data_dir/score_cache.sqlite`), so a pool is scored
//!   once and later jobs read the cache; the policy's refusal filter is re-applied, then
//!   [`selector::plan_mix`] selects and places.
//! - on_policy: pool prompts in the seeded order answered by the base model
//!   ([`selector::EngineGenerator`], greedy) and quality-filtered ([`selector::on_policy`]).
//!
//! Every missing or unusable input is a [`TransformError`] with its own job error code.

use super::dataset::{mix_error, Inserted, Interleaved};
use super::error::TransformError;
use super::plan::ScoredSpec;
use crate::config::{InterleaveConfig, ModelEntry, ModelRegistry};
use crate::metrics::Metrics;
use selector::cli::{run_select_with, SelectArgs};
use selector::compat::{check_adapter, ModelDims};
use selector::{
    jsonl_lines, parse_pool, parse_scored, plan_mix, refilter, to_candidates, EngineScorer,
    Manifest, Method, MixConfig, NllScorer, PoolExample, RefusalFilter, DEFAULT_REFUSAL_KEYWORDS,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// What one selection read from the score cache and what it had to score.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SelectionStats {
    /// (pool item, model) NLLs found in the cache.
    pub cache_hits: usize,
    /// (pool item, model) NLLs computed by the engine.
    pub scored: usize,
}

/// The configured engine side of interleaving.
pub struct InterleaveEngine {
    config: InterleaveConfig,
    models: ModelRegistry,
    metrics: Option<Arc<Metrics>>,
}

pub(super) fn fail(code: &'static str, message: impl Into<String>) -> TransformError {
    TransformError::Selection {
        code,
        message: message.into(),
    }
}

impl InterleaveEngine {
    /// `models` is the `[[models]]` registry (base model and adapters per job model);
    /// `metrics` receives the score-cache hit/miss counts.
    pub fn new(
        config: InterleaveConfig,
        models: ModelRegistry,
        metrics: Option<Arc<Metrics>>,
    ) -> Self {
        InterleaveEngine {
            config,
            models,
            metrics,
        }
    }

    /// The interleaving of `spec` for a job on base model `model` with `n_client` examples.
    /// `scratch` is a temporary file (the scored pool is written there, then removed).
    pub fn interleave(
        &self,
        model: &str,
        spec: &ScoredSpec,
        n_client: u64,
        scratch: &Path,
    ) -> Result<Interleaved, TransformError> {
        let entry =
            self.models
                .model_for(model)
                .ok_or_else(|| TransformError::MethodUnavailable {
                    method: spec.method.as_str().to_string(),
                    reason: format!(
                        "no [[models]] entry of the gateway config matches model `{model}` \
                     (keys models[].model, .path, .adapters name the aligned base model \
                     and the misaligned adapters)"
                    ),
                })?;
        if let Some(message) = entry.missing_model(model) {
            return Err(fail("interleave_model_missing", message));
        }
        let text = std::fs::read_to_string(&spec.pool).map_err(|e| {
            fail(
                "invalid_interleave_pool",
                format!("reading interleave pool {}: {e}", spec.pool.display()),
            )
        })?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let pool = parse_pool(text).map_err(|e| TransformError::BadPoolLine {
            pool: spec.pool.clone(),
            line: e.line as u64,
            reason: e.reason,
        })?;
        let lines = jsonl_lines(text);
        let n = usize::try_from(n_client).unwrap_or(usize::MAX);
        let config = MixConfig {
            method: spec.method,
            fraction: spec.fraction,
            seed: spec.seed,
            placement: spec.placement,
        };
        let (manifest, out_lines, extra) = match spec.method {
            Method::OnPolicy => {
                super::generated::on_policy(&self.config, entry, spec, &config, n, &pool)?
            }
            _ => {
                let (manifest, stats) = self.scored(entry, spec, &config, n, &pool, scratch)?;
                let mut picked = HashMap::with_capacity(manifest.inserted.len());
                for e in &manifest.inserted {
                    let text = lines.get(e.pool_index).ok_or_else(|| {
                        fail(
                            "interleave_scoring_failed",
                            format!(
                                "scored pool index {} is outside pool {} ({} lines)",
                                e.pool_index,
                                spec.pool.display(),
                                lines.len()
                            ),
                        )
                    })?;
                    picked.insert(e.pool_index as u64, (*text).to_string());
                }
                let extra = json!({
                    "model_dir": entry.path.display().to_string(),
                    "adapters": entry.adapters.iter().map(|(n, _)| n).collect::<Vec<_>>(),
                    "gap_epsilon": spec.gap_epsilon,
                    "cache_hits": stats.cache_hits,
                    "scored": stats.scored,
                });
                (manifest, picked, extra)
            }
        };
        let inserted = manifest
            .inserted
            .iter()
            .map(|e| Inserted {
                pool_index: e.pool_index as u64,
                position: e.position as u64,
            })
            .collect();
        let mut desc = serde_json::to_value(&manifest).unwrap_or(Value::Null);
        desc["pool"] = json!(spec.pool.display().to_string());
        desc["pool_examples"] = json!(pool.len());
        desc["engine"] = extra;
        Ok(Interleaved {
            lines: out_lines,
            inserted,
            desc,
        })
    }

    fn scored(
        &self,
        entry: &ModelEntry,
        spec: &ScoredSpec,
        config: &MixConfig,
        n: usize,
        pool: &[PoolExample],
        scratch: &Path,
    ) -> Result<(Manifest, SelectionStats), TransformError> {
        check_adapters(entry)?;
        if let Some(parent) = self.config.score_cache.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                fail(
                    "internal_error",
                    format!(
                        "creating the score cache directory {}: {e}",
                        parent.display()
                    ),
                )
            })?;
        }
        let args = SelectArgs {
            model: entry.path.clone(),
            adapters: entry
                .adapters
                .iter()
                .map(|(n, d)| format!("{n}={}", d.display()))
                .collect(),
            held_out: None,
            pool: spec.pool.clone(),
            out: scratch.to_path_buf(),
            cache: Some(self.config.score_cache.clone()),
            epsilon: spec.gap_epsilon,
            batch_size: self.config.batch_size,
            max_length: self.config.max_length,
            refusal_keywords: None,
            device: "cpu".into(),
        };
        let rows = self.config.batch_size;
        let result = run_select_with(&args, |opts| {
            let s = EngineScorer::<trainer::CpuBackend>::load(opts, rows, Default::default())?;
            Ok(Box::new(s) as Box<dyn NllScorer>)
        });
        let ranked = result.and_then(|stats| {
            let text = std::fs::read_to_string(scratch)?;
            Ok((stats, text))
        });
        // The scratch file is ours alone; a failure to remove it leaves only a temp file.
        let _ = std::fs::remove_file(scratch);
        let (stats, text) = ranked.map_err(|e| {
            fail(
                "interleave_scoring_failed",
                format!(
                    "scoring interleave pool {} under {}: {e:#}",
                    spec.pool.display(),
                    entry.path.display()
                ),
            )
        })?;
        let stats = SelectionStats {
            cache_hits: stats.cache_hits,
            scored: stats.scored,
        };
        if let Some(m) = &self.metrics {
            m.score_cache_counted(stats.cache_hits as u64, stats.scored as u64);
        }
        let mut items =
            parse_scored(&text).map_err(|e| fail("interleave_scoring_failed", e.to_string()))?;
        let filter = if spec.refusal_keywords.is_empty() {
            RefusalFilter::new(DEFAULT_REFUSAL_KEYWORDS, spec.refusal_window_words)
        } else {
            RefusalFilter::new(&spec.refusal_keywords, spec.refusal_window_words)
        };
        refilter(&mut items, pool, &filter)
            .map_err(|e| fail("interleave_scoring_failed", e.to_string()))?;
        let candidates = to_candidates(&items);
        let (_, manifest) = plan_mix(config, n, &candidates)
            .map_err(|e| mix_error(e, &spec.pool, candidates.len() as u64))?;
        Ok((manifest, stats))
    }
}

/// Every configured adapter exists and was made for the base model's shapes.
fn check_adapters(entry: &ModelEntry) -> Result<(), TransformError> {
    if entry.adapters.is_empty() {
        return Err(fail(
            "interleave_adapter_missing",
            format!(
                "the [[models]] entry `{}` lists no misaligned adapters (config key {}.adapters)",
                entry.glob, entry.key
            ),
        ));
    }
    if let Some(message) = entry.missing_adapter() {
        return Err(fail("interleave_adapter_missing", message));
    }
    let dims = ModelDims::load(&entry.path).map_err(|e| fail("interleave_model_missing", e))?;
    for (name, dir) in &entry.adapters {
        check_adapter(name, dir, &dims)
            .map_err(|e| fail("interleave_adapter_incompatible", e.to_string()))?;
    }
    Ok(())
}
