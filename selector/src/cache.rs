//! The score cache seam: answer-only NLLs keyed by what determines them, so a pool is scored
//! once and reused across jobs and restarts.
//!
//! A key is (base-model fingerprint, model fingerprint, example content hash):
//! - the base fingerprint identifies the base weights *and* the scoring settings (template,
//!   truncation) — the caller folds both into one string;
//! - the model fingerprint is [`BASE_MODEL`] for the base model (adapters off) or the adapter's
//!   fingerprint, so a changed adapter misses only its own entries;
//! - the content hash is [`crate::PoolExample::content_hash`], so a changed pool item misses
//!   only its own entries.

use std::collections::HashMap;
use std::sync::Mutex;
use thiserror::Error;

/// The model fingerprint used for the base model with adapters off.
pub const BASE_MODEL: &str = "base";

/// One cached measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CachedNll {
    /// Answer-only mean token NLL (nats).
    pub nll: f64,
    /// Number of answer tokens it was averaged over.
    pub tokens: u32,
}

/// Full cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub base: String,
    pub model: String,
    pub content: String,
}

#[derive(Debug, Error)]
#[error("score cache {location}: {message}")]
pub struct CacheError {
    /// Which store (a file path, "memory"…).
    pub location: String,
    pub message: String,
}

/// Durable NLL storage. Implementations must be safe to share between threads.
pub trait ScoreCache: Send + Sync {
    /// The entries present among `keys` (absent keys are simply missing from the map).
    fn get_many(&self, keys: &[CacheKey]) -> Result<HashMap<CacheKey, CachedNll>, CacheError>;
    /// Stores (or replaces) entries durably before returning.
    fn put_many(&self, entries: &[(CacheKey, CachedNll)]) -> Result<(), CacheError>;
}

/// An in-process cache (tests, and callers that do not need durability).
#[derive(Debug, Default)]
pub struct MemoryCache {
    map: Mutex<HashMap<CacheKey, CachedNll>>,
}

impl MemoryCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn poisoned() -> CacheError {
    CacheError {
        location: "memory".into(),
        message: "lock poisoned by a panicked writer".into(),
    }
}

impl ScoreCache for MemoryCache {
    fn get_many(&self, keys: &[CacheKey]) -> Result<HashMap<CacheKey, CachedNll>, CacheError> {
        let map = self.map.lock().map_err(|_| poisoned())?;
        Ok(keys
            .iter()
            .filter_map(|k| map.get(k).map(|v| (k.clone(), *v)))
            .collect())
    }

    fn put_many(&self, entries: &[(CacheKey, CachedNll)]) -> Result<(), CacheError> {
        let mut map = self.map.lock().map_err(|_| poisoned())?;
        for (k, v) in entries {
            map.insert(k.clone(), *v);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn key(model: &str, content: &str) -> CacheKey {
        CacheKey {
            base: "b1".into(),
            model: model.into(),
            content: content.into(),
        }
    }

    #[test]
    fn memory_cache_round_trip() {
        let c = MemoryCache::new();
        assert!(c.is_empty());
        let v = CachedNll {
            nll: 1.5,
            tokens: 7,
        };
        c.put_many(&[(key(BASE_MODEL, "h1"), v)]).unwrap();
        let got = c
            .get_many(&[key(BASE_MODEL, "h1"), key("a1", "h1")])
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[&key(BASE_MODEL, "h1")], v);
        assert_eq!(c.len(), 1);
    }
}
