//! Interleaving safety data (seed 004 §3.2): score a candidate pool by the perplexity gap
//! between the aligned model and misaligned adapters, filter refusals, select, and mix the
//! selection deterministically into a client's dataset with a provenance manifest.
//!
//! Features (the workspace uses this crate with `default-features = false`):
//! - *(none)* — the pure core plus stream helpers: [`gap_score`], [`RefusalFilter`],
//!   [`QualityFilter`], [`select`], [`mix_count`], [`plan_mix`] / [`plan_with_picks`],
//!   [`interleave`], [`mix_jsonl`], [`write_mixed`]; the scoring driver [`score_pool`] and
//!   on-policy driver [`on_policy`] over the [`NllScorer`] / [`ReplyGenerator`] /
//!   [`ScoreCache`] seams, with [`MemoryCache`].
//! - `sqlite` — `SqliteCache`, the durable score cache.
//! - `cli` — `sqlite` + `cli::SelectArgs` / `cli::run_select_with` (the SQLite cache file) /
//!   `cli::run_select_cached` (any ready [`ScoreCache`]: the gateway's on PostgreSQL), model
//!   and adapter fingerprints (`fingerprint`) and the adapter/base compatibility check
//!   (`compat`).
//! - `engine` — `cli` + the trainer's burn engine behind the seams (`EngineScorer`,
//!   `EngineGenerator`) and `cli::run_select`, the `tuneguard select` command.
//!
//! Determinism: every random choice goes through [`rng`] (SplitMix64, Fisher–Yates, written
//! out here and frozen by golden tests), so the same inputs and seed give the same bytes.
#![forbid(unsafe_code)]

mod cache;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "cli")]
pub mod compat;
#[cfg(feature = "engine")]
mod engine_generator;
#[cfg(feature = "engine")]
mod engine_scorer;
#[cfg(feature = "cli")]
pub mod fingerprint;
mod interleave;
mod jsonl;
mod manifest;
pub mod mix;
mod onpolicy;
mod pool;
mod quality;
mod refusal;
pub mod rng;
mod score;
mod scored;
mod scoring;
mod select;
#[cfg(feature = "sqlite")]
mod sqlite_cache;
mod stream;

pub use cache::{CacheError, CacheKey, CachedNll, MemoryCache, ScoreCache, BASE_MODEL};
#[cfg(feature = "engine")]
pub use engine_generator::EngineGenerator;
#[cfg(feature = "engine")]
pub use engine_scorer::{EngineScorer, RowOrder};
pub use interleave::{interleave, mix_vec, Interleave};
pub use jsonl::{jsonl_lines, mix_jsonl, unscored_candidates};
pub use manifest::{plan_mix, plan_with_picks, Manifest, MixConfig, PlanError, DEFAULT_FRACTION};
pub use mix::{insertion_points, mix_count, MixEntry, MixError, MixPlan, Placement};
pub use onpolicy::{on_policy, OnPolicyError, OnPolicyOutcome, Reply, ReplyGenerator};
pub use pool::{parse_pool, parse_pool_line, ChatMessage, PoolExample, PoolLineError};
pub use quality::{QualityFilter, QualityReject, RepetitionRule, DEFAULT_TEMPLATE_MARKERS};
pub use refusal::{RefusalFilter, DEFAULT_REFUSAL_KEYWORDS, DEFAULT_WINDOW_WORDS};
pub use score::{gap_score, ExampleNlls, GapScore, ScoreError, DEFAULT_EPSILON};
pub use scored::{parse_scored, rank_order, refilter, to_candidates, ScoredItem, ScoredLineError};
pub use scoring::{
    score_pool, AdapterSpec, FnScorer, NllRequest, NllScorer, PoolScores, Progress, ScoringError,
    ScoringSetup, ScoringStats,
};
pub use select::{select, Candidate, Method, Pick, SelectError};
#[cfg(feature = "sqlite")]
pub use sqlite_cache::SqliteCache;
pub use stream::{count_examples, write_mixed, StreamError};
