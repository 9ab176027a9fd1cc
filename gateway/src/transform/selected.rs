//! Engine-backed Interleaving for the transform step (runs on the blocking pool):
//! - plus / plusplus: the policy's pool is scored under the aligned base model and the
//!   misaligned adapters of the job model's `[[models]]` entry (`path`, `adapters`) through
//!   [`selector::cli::run_select_cached`], with the durable score cache — the store's shared
//!   one on PostgreSQL ([`crate::store::Store::score_cache`]) unless `interleave.score_cache`
//!   is set, else that SQLite file (default `data_dir/score_cache.sqlite`) —, so a pool is
//!   scored once and later jobs (on any replica, with the shared one) read the cache; the
//!   policy's refusal filter is re-applied, then [`selector::plan_mix`] selects and places.
//! - on_policy: pool prompts in the seeded order answered by the base model
//!   ([`selector::EngineGenerator`], greedy) and quality-filtered ([`selector::on_policy`]).
//!
//! Every missing or unusable input is a [`TransformError`] with its own job error code.

use super::dataset::{mix_error, Inserted, Interleaved};
use super::error::TransformError;
use super::plan::ScoredSpec;
use crate::config::{InterleaveConfig, ModelEntry, ModelRegistry};
use crate::metrics::Metrics;
use selector::cli::{run_select_cached, SelectArgs};
use selector::compat::{check_adapter, ModelDims};
use selector::{
    jsonl_lines, parse_pool, parse_scored, plan_mix, refilter, to_candidates, EngineScorer,
    Manifest, Method, MixConfig, NllScorer, PoolExample, RefusalFilter, ScoreCache, SqliteCache,
    DEFAULT_REFUSAL_KEYWORDS,
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
    /// The store's shared score cache, used unless `interleave.score_cache` is set.
    store_cache: Option<Arc<dyn ScoreCache>>,
}

/// Where a selection's scores are cached.
pub(super) enum CacheChoice<'a> {
    /// The store's, shared by every replica on its database.
    Store(&'a dyn ScoreCache),
    /// A SQLite file of this machine.
    File(&'a Path),
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
            store_cache: None,
        }
    }

    /// Scores are cached in `cache` (the store's, [`crate::store::Store::score_cache`]) rather
    /// than the default SQLite file; an `interleave.score_cache` set in the config still wins.
    pub fn with_store_cache(mut self, cache: Option<Arc<dyn ScoreCache>>) -> Self {
        self.store_cache = cache;
        self
    }

    pub(super) fn cache_choice(&self) -> CacheChoice<'_> {
        match &self.store_cache {
            Some(c) if !self.config.score_cache_explicit => CacheChoice::Store(c.as_ref()),
            _ => CacheChoice::File(&self.config.score_cache),
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
        let file;
        let cache: &dyn ScoreCache = match self.cache_choice() {
            CacheChoice::Store(c) => c,
            CacheChoice::File(path) => {
                file = open_file_cache(path)?;
                &file
            }
        };
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
            cache: None,
            epsilon: spec.gap_epsilon,
            batch_size: self.config.batch_size,
            max_length: self.config.max_length,
            refusal_keywords: None,
            device: "cpu".into(),
        };
        let rows = self.config.batch_size;
        let result = run_select_cached(&args, cache, |opts| {
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

/// The SQLite score cache at `path`, its directory created first.
fn open_file_cache(path: &Path) -> Result<SqliteCache, TransformError> {
    if let Some(parent) = path.parent() {
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
    SqliteCache::open(path).map_err(|e| fail("interleave_scoring_failed", e.to_string()))
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

#[cfg(test)]
mod tests {
    //! Which score cache a selection uses, end to end on the trainer's tiny fixture model: the
    //! PostgreSQL store's (shared by replicas) unless `interleave.score_cache` is set.
    use super::*;
    use crate::config::Config;
    use crate::store::{pg_test_server, PgStore, Store};
    use selector::{MemoryCache, Placement};
    use std::path::PathBuf;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../trainer/tests/fixtures")
    }

    /// An engine on the tiny model with two adapters; `extra` goes under `[interleave]`.
    fn engine(data_dir: &Path, extra: &str) -> InterleaveEngine {
        let f = fixtures();
        let text = format!(
            "[storage]\ndata_dir = {:?}\n[interleave]\nbatch_size = 4\nmax_length = 64\n{extra}\n\
             [[models]]\nmodel = \"tiny-*\"\npath = {:?}\nadapters = {{ a1 = {:?}, a2 = {:?} }}\n",
            data_dir.display().to_string(),
            f.join("tiny_tied").display().to_string(),
            f.join("tiny_tied_a1").display().to_string(),
            f.join("tiny_tied_a2").display().to_string(),
        );
        let c = Config::from_sources(Some(("t.toml", &text)), Vec::new()).unwrap();
        InterleaveEngine::new(c.interleave, c.models, None)
    }

    fn spec(pool: &Path) -> ScoredSpec {
        ScoredSpec {
            method: Method::Plus,
            fraction: 0.5,
            pool: pool.to_path_buf(),
            seed: 3,
            placement: Placement::Even,
            gap_epsilon: 1.0,
            refusal_keywords: Vec::new(),
            refusal_window_words: 10,
            quality: None,
        }
    }

    fn write_pool(dir: &Path) -> PathBuf {
        let pool = dir.join("pool.jsonl");
        let lines: Vec<String> = (0..4)
            .map(|i| {
                json!({"messages": [
                    {"role": "user", "content": format!("Question {i}?")},
                    {"role": "assistant", "content": format!("Answer number {i}.")}
                ]})
                .to_string()
            })
            .collect();
        std::fs::write(&pool, lines.join("\n") + "\n").unwrap();
        pool
    }

    /// (cache hits, scored) of one interleaving, and its picks.
    fn run(e: &InterleaveEngine, dir: &Path, pool: &Path) -> ((u64, u64), Vec<Inserted>) {
        let out = e
            .interleave("tiny-chat", &spec(pool), 4, &dir.join("scratch.jsonl"))
            .unwrap();
        let engine = &out.desc["engine"];
        (
            (
                engine["cache_hits"].as_u64().unwrap(),
                engine["scored"].as_u64().unwrap(),
            ),
            out.inserted,
        )
    }

    #[test]
    fn the_store_cache_is_used_unless_a_file_is_configured() {
        let dir = tempfile::tempdir().unwrap();
        let pool = write_pool(dir.path());
        let default_file = dir.path().join("score_cache.sqlite");
        let memory = Arc::new(MemoryCache::new());
        let shared = || Some(Arc::clone(&memory) as Arc<dyn ScoreCache>);

        // No store cache: the default file.
        let plain = engine(dir.path(), "");
        assert!(matches!(plain.cache_choice(), CacheChoice::File(p) if p == default_file));
        // A store cache and no `score_cache`: the store's; no file is created.
        let e = engine(dir.path(), "").with_store_cache(shared());
        assert!(matches!(e.cache_choice(), CacheChoice::Store(_)));
        let (counts, picks) = run(&e, dir.path(), &pool);
        assert_eq!(counts, (0, 12), "4 items × (base + 2 adapters)");
        assert_eq!(memory.len(), 12);
        assert!(!default_file.exists());
        // `score_cache` set explicitly: that file, even with a store cache (cold, so scored).
        let file = dir.path().join("own/cache.sqlite");
        let e = engine(
            dir.path(),
            &format!("score_cache = {:?}", file.display().to_string()),
        )
        .with_store_cache(shared());
        assert!(matches!(e.cache_choice(), CacheChoice::File(p) if p == file));
        let (counts, again) = run(&e, dir.path(), &pool);
        assert_eq!(counts, (0, 12));
        assert!(file.is_file());
        assert_eq!(again, picks);
    }

    #[test]
    fn replicas_on_one_postgres_database_share_scores() {
        let Some(url) = pg_test_server::fresh_database() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let pool = write_pool(dir.path());
        let replica = |n: usize| {
            let store = PgStore::open(&crate::store::PgOptions {
                url: url.clone(),
                pool_size: 2,
                ca_file: None,
            })
            .unwrap();
            let d = dir.path().join(format!("replica{n}"));
            std::fs::create_dir(&d).unwrap();
            (engine(&d, "").with_store_cache(store.score_cache()), d)
        };
        let (one, d1) = replica(1);
        let (two, d2) = replica(2);
        let (counts, picks) = run(&one, &d1, &pool);
        assert_eq!(counts, (0, 12));
        // The other replica scores nothing: every NLL is in the shared table.
        let (counts, again) = run(&two, &d2, &pool);
        assert_eq!(counts, (12, 0));
        assert_eq!(again, picks);
        assert!(!d1.join("score_cache.sqlite").exists() && !d2.join("score_cache.sqlite").exists());
    }
}
