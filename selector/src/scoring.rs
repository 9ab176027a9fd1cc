//! Scoring a pool: cache look-up, engine calls for what is missing, gap scores.
//!
//! The engine is reached through [`NllScorer`], one call per batch of (example, model)
//! requests, so base + K adapters of the same examples go through one batched forward pass.
//! Everything scored is written to the cache batch by batch, so an interrupted run keeps its
//! progress.

use crate::cache::{CacheError, CacheKey, CachedNll, ScoreCache, BASE_MODEL};
use crate::pool::PoolExample;
use crate::refusal::RefusalFilter;
use crate::score::{gap_score, ExampleNlls, ScoreError};
use crate::scored::ScoredItem;
use std::collections::{BTreeMap, HashSet};
use thiserror::Error;

/// A model that scores: the base (adapter `None`) or a named adapter with its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterSpec {
    pub name: String,
    pub fingerprint: String,
}

/// What a pool is scored with.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoringSetup {
    /// Base weights + scoring settings fingerprint.
    pub base_fingerprint: String,
    /// The K misaligned adapters of the mean.
    pub adapters: Vec<AdapterSpec>,
    /// Optional held-out adapter (reported, not in the mean).
    pub held_out: Option<AdapterSpec>,
    /// ε of the gap score.
    pub epsilon: f64,
}

/// One request to the engine: score `example`'s reply under `adapter` (`None` = base).
#[derive(Debug, Clone, Copy)]
pub struct NllRequest<'a> {
    pub example: &'a PoolExample,
    pub adapter: Option<&'a str>,
}

/// The engine seam.
pub trait NllScorer {
    /// Answer-only mean NLLs, one per request, in request order. A request whose reply has no
    /// answer token left (e.g. truncated away) is reported as `tokens: 0` (its `nll` ignored).
    fn score_batch(
        &mut self,
        requests: &[NllRequest<'_>],
    ) -> Result<Vec<CachedNll>, Box<dyn std::error::Error + Send + Sync>>;
}

/// Progress after each engine batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub scored: usize,
    pub to_score: usize,
}

/// The outcome of [`score_pool`].
#[derive(Debug, Clone, PartialEq)]
pub struct PoolScores {
    /// Scored items, in pool order.
    pub items: Vec<ScoredItem>,
    pub stats: ScoringStats,
    /// Pool indexes left out because no answer token survived tokenization / truncation
    /// (the engine reported 0 answer tokens for the base model).
    pub no_answer_tokens: Vec<usize>,
}

/// Counts for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScoringStats {
    pub examples: usize,
    /// (example, model) pairs found in the cache.
    pub cache_hits: usize,
    /// (example, model) pairs scored by the engine.
    pub scored: usize,
    /// Answer tokens over the scored pairs.
    pub tokens_scored: u64,
    pub engine_batches: usize,
}

#[derive(Debug, Error)]
pub enum ScoringError {
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("engine failed on a batch of {batch} requests: {source}")]
    Engine {
        batch: usize,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("engine returned {got} results for {expected} requests")]
    EngineCount { expected: usize, got: usize },
    #[error("pool item {index}: {source}")]
    Score { index: usize, source: ScoreError },
    #[error("batch size must be at least 1")]
    BatchSize,
}

fn model_fps(setup: &ScoringSetup) -> Vec<(Option<&str>, &str)> {
    let mut v = vec![(None, BASE_MODEL)];
    for a in setup.adapters.iter().chain(setup.held_out.iter()) {
        v.push((Some(a.name.as_str()), a.fingerprint.as_str()));
    }
    v
}

/// Scores `pool` (indexes are positions in the slice), reusing and filling `cache`.
/// Items whose base NLL has 0 answer tokens are left out and listed in
/// [`PoolScores::no_answer_tokens`].
pub fn score_pool(
    pool: &[PoolExample],
    setup: &ScoringSetup,
    refusal: &RefusalFilter,
    cache: &dyn ScoreCache,
    scorer: &mut dyn NllScorer,
    batch_size: usize,
    progress: &mut dyn FnMut(Progress),
) -> Result<PoolScores, ScoringError> {
    if batch_size == 0 {
        return Err(ScoringError::BatchSize);
    }
    let models = model_fps(setup);
    let hashes: Vec<String> = pool.iter().map(PoolExample::content_hash).collect();
    let key = |i: usize, fp: &str| CacheKey {
        base: setup.base_fingerprint.clone(),
        model: fp.to_string(),
        content: hashes[i].clone(),
    };
    let all_keys: Vec<CacheKey> = (0..pool.len())
        .flat_map(|i| models.iter().map(move |(_, fp)| (i, *fp)))
        .map(|(i, fp)| key(i, fp))
        .collect();
    let mut known = cache.get_many(&all_keys)?;
    let mut stats = ScoringStats {
        examples: pool.len(),
        ..Default::default()
    };

    // Missing pairs, example-major so an example's base + adapters share a batch; duplicate
    // pool items are scored once.
    let mut queued = HashSet::new();
    let mut missing: Vec<(usize, Option<&str>, CacheKey)> = Vec::new();
    for i in 0..pool.len() {
        for (adapter, fp) in &models {
            let k = key(i, fp);
            if known.contains_key(&k) {
                stats.cache_hits += 1;
            } else if queued.insert(k.clone()) {
                missing.push((i, *adapter, k));
            } else {
                stats.cache_hits += 1; // duplicate of a pair queued above
            }
        }
    }
    let to_score = missing.len();
    progress(Progress {
        scored: 0,
        to_score,
    });
    for chunk in missing.chunks(batch_size) {
        let reqs: Vec<NllRequest<'_>> = chunk
            .iter()
            .map(|(i, adapter, _)| NllRequest {
                example: &pool[*i],
                adapter: *adapter,
            })
            .collect();
        let got = scorer
            .score_batch(&reqs)
            .map_err(|source| ScoringError::Engine {
                batch: reqs.len(),
                source,
            })?;
        if got.len() != reqs.len() {
            return Err(ScoringError::EngineCount {
                expected: reqs.len(),
                got: got.len(),
            });
        }
        let entries: Vec<(CacheKey, CachedNll)> = chunk
            .iter()
            .zip(got)
            .map(|((_, _, k), v)| (k.clone(), v))
            .collect();
        cache.put_many(&entries)?;
        stats.engine_batches += 1;
        stats.scored += entries.len();
        stats.tokens_scored += entries
            .iter()
            .map(|(_, v)| u64::from(v.tokens))
            .sum::<u64>();
        known.extend(entries);
        progress(Progress {
            scored: stats.scored,
            to_score,
        });
    }

    let mut items = Vec::with_capacity(pool.len());
    let mut no_answer_tokens = Vec::new();
    for (i, ex) in pool.iter().enumerate() {
        let get = |fp: &str| known.get(&key(i, fp)).copied();
        // Every key is either from the cache or just scored; a gap is an engine/cache bug.
        let lookup = |fp: &str| {
            get(fp).ok_or_else(|| {
                ScoringError::Cache(CacheError {
                    location: "scoring".into(),
                    message: format!("no NLL for pool item {i} under model `{fp}` after scoring"),
                })
            })
        };
        let base = lookup(BASE_MODEL)?;
        if base.tokens == 0 {
            no_answer_tokens.push(i);
            continue;
        }
        let mut adapter_nlls = BTreeMap::new();
        let mut adapters = Vec::with_capacity(setup.adapters.len());
        for a in &setup.adapters {
            let v = lookup(&a.fingerprint)?;
            adapters.push(v.nll);
            adapter_nlls.insert(a.name.clone(), v.nll);
        }
        let held_out_nll = match &setup.held_out {
            Some(h) => Some(lookup(&h.fingerprint)?.nll),
            None => None,
        };
        let nlls = ExampleNlls {
            base: base.nll,
            adapters,
            held_out: held_out_nll,
        };
        let g = gap_score(&nlls, setup.epsilon)
            .map_err(|source| ScoringError::Score { index: i, source })?;
        items.push(ScoredItem {
            index: i,
            base_nll: base.nll,
            adapter_nlls,
            held_out_adapter: setup.held_out.as_ref().map(|h| h.name.clone()),
            held_out_nll,
            score: g.score,
            held_out_score: g.held_out,
            is_refusal: refusal.is_refusal(ex.reply()),
            answer_tokens: base.tokens,
        });
    }
    Ok(PoolScores {
        items,
        stats,
        no_answer_tokens,
    })
}

/// A closure as a scorer (tests, fakes, and engines that score one request at a time).
pub struct FnScorer<F>(pub F);

impl<F> NllScorer for FnScorer<F>
where
    F: FnMut(&PoolExample, Option<&str>) -> CachedNll,
{
    fn score_batch(
        &mut self,
        requests: &[NllRequest<'_>],
    ) -> Result<Vec<CachedNll>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(requests
            .iter()
            .map(|r| (self.0)(r.example, r.adapter))
            .collect())
    }
}

#[cfg(test)]
#[path = "scoring_tests.rs"]
mod tests;
