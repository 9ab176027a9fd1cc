//! `[interleave]`: what the engine-backed Interleaving methods (plus, plusplus, on_policy) need
//! beyond the policy and the job model's `[[models]]` entry (its `path` is the aligned base
//! model, its `adapters` the misaligned references) — the durable score cache and the engine's
//! batch settings.
//!
//! The score cache: with `[storage] backend = "postgres"` and `score_cache` not set, the
//! store's database (table `score_cache`), shared by every replica on it; otherwise the SQLite
//! file `score_cache` names (default `<storage.data_dir>/score_cache.sqlite`). A `score_cache`
//! set explicitly is always that file, on either backend.
//!
//! ```toml
//! [interleave]
//! score_cache = "./data/score_cache.sqlite"   # default: see above
//! batch_size = 16          # sequences per engine forward pass
//! max_length = 2048        # tokens per scored sequence (longer ones are truncated)
//! max_new_tokens = 256     # on_policy reply length
//! ```
//!
//! The former `[[interleave.models]]` is refused with a message naming `[[models]]`.

use super::{invalid, ConfigError};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInterleave {
    score_cache: Option<PathBuf>,
    batch_size: Option<usize>,
    max_length: Option<usize>,
    max_new_tokens: Option<usize>,
    /// Removed (now `[[models]]`): refused with a message naming it.
    models: Option<serde::de::IgnoredAny>,
}

/// Validated `[interleave]`.
#[derive(Debug, Clone)]
pub struct InterleaveConfig {
    /// The durable score cache's SQLite file: `interleave.score_cache`, or
    /// `<data_dir>/score_cache.sqlite`.
    pub score_cache: PathBuf,
    /// Whether `interleave.score_cache` was set. When not, a store that has a shared score
    /// cache (PostgreSQL, `Store::score_cache`) is used instead of the file.
    pub score_cache_explicit: bool,
    pub batch_size: usize,
    pub max_length: usize,
    pub max_new_tokens: usize,
}

fn positive(key: &str, v: Option<usize>, default: usize) -> Result<usize, ConfigError> {
    match v {
        Some(0) => Err(invalid(key, "must be greater than 0")),
        Some(v) => Ok(v),
        None => Ok(default),
    }
}

pub(super) fn validate(
    raw: RawInterleave,
    data_dir: &Path,
) -> Result<InterleaveConfig, ConfigError> {
    if raw.models.is_some() {
        return Err(invalid(
            "interleave.models",
            "was removed: Interleaving's aligned base model and misaligned adapters are the job \
             model's [[models]] entry; move each [[interleave.models]] to a [[models]] entry \
             (keys models[].model, models[].path — formerly dir —, models[].adapters)",
        ));
    }
    Ok(InterleaveConfig {
        score_cache_explicit: raw.score_cache.is_some(),
        score_cache: raw
            .score_cache
            .unwrap_or_else(|| data_dir.join("score_cache.sqlite")),
        batch_size: positive("interleave.batch_size", raw.batch_size, 16)?,
        max_length: positive("interleave.max_length", raw.max_length, 2048)?,
        max_new_tokens: positive("interleave.max_new_tokens", raw.max_new_tokens, 256)?,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(extra: &str) -> Result<Config, crate::config::ConfigError> {
        let text = format!("[storage]\ndata_dir = \"/srv/tg\"\n{extra}");
        Config::from_sources(Some(("t.toml", &text)), Vec::new())
    }

    #[test]
    fn defaults() {
        let c = load("").unwrap().interleave;
        assert_eq!(
            c.score_cache,
            std::path::Path::new("/srv/tg/score_cache.sqlite")
        );
        assert!(!c.score_cache_explicit);
        assert_eq!(
            (c.batch_size, c.max_length, c.max_new_tokens),
            (16, 2048, 256)
        );
        let c = load("[interleave]\nbatch_size = 2\n").unwrap().interleave;
        assert_eq!(c.batch_size, 2);
        let c = load("[interleave]\nscore_cache = \"/c/s.sqlite\"\n")
            .unwrap()
            .interleave;
        assert_eq!(c.score_cache, std::path::Path::new("/c/s.sqlite"));
        assert!(c.score_cache_explicit);
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = load("[interleave]\nbatch_size = 0\n").unwrap_err();
        assert!(e.to_string().contains("interleave.batch_size"), "{e}");
        let e = load("[interleave]\nbogus = 1\n").unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn the_old_interleave_models_key_is_refused_naming_models() {
        let e = load(
            "[[interleave.models]]\nmodel = \"Qwen/*\"\ndir = \"/m/q\"\nadapters = { a = \"/a\" }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("`interleave.models`") && e.contains("[[models]]"),
            "{e}"
        );
    }
}
