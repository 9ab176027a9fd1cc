//! `[interleave]`: what the engine-backed Interleaving methods (plus, plusplus, on_policy) need
//! beyond the policy — the aligned base model directory and the misaligned LoRA adapters for
//! each job base model, the durable score cache and the engine's batch settings.
//!
//! ```toml
//! [interleave]
//! score_cache = "./data/score_cache.sqlite"   # default: <storage.data_dir>/score_cache.sqlite
//! batch_size = 16          # sequences per engine forward pass
//! max_length = 2048        # tokens per scored sequence (longer ones are truncated)
//! max_new_tokens = 256     # on_policy reply length
//! [[interleave.models]]
//! model = "Qwen/Qwen2.5-*"                   # glob against the job's `model`
//! dir = "/models/Qwen2.5-0.5B-Instruct"      # HuggingFace model directory
//! adapters = { evil = "/adapters/evil", sycophant = "/adapters/syc" }   # PEFT directories
//! ```

use super::{invalid, ConfigError};
use globset::{Glob, GlobMatcher};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInterleave {
    score_cache: Option<PathBuf>,
    batch_size: Option<usize>,
    max_length: Option<usize>,
    max_new_tokens: Option<usize>,
    #[serde(default)]
    models: Vec<RawInterleaveModel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterleaveModel {
    model: String,
    dir: PathBuf,
    #[serde(default)]
    adapters: BTreeMap<String, PathBuf>,
}

/// Validated `[interleave]`.
#[derive(Debug, Clone)]
pub struct InterleaveConfig {
    /// The durable score cache (SQLite).
    pub score_cache: PathBuf,
    pub batch_size: usize,
    pub max_length: usize,
    pub max_new_tokens: usize,
    /// In file order; the first whose glob matches a job's model applies.
    pub models: Vec<InterleaveModel>,
}

/// One `[[interleave.models]]` entry.
#[derive(Debug, Clone)]
pub struct InterleaveModel {
    pub glob: String,
    matcher: GlobMatcher,
    /// The aligned base model (HuggingFace directory).
    pub dir: PathBuf,
    /// (name, PEFT directory) of each misaligned adapter, sorted by name.
    pub adapters: Vec<(String, PathBuf)>,
}

impl InterleaveConfig {
    /// The entry for a job's base model.
    pub fn model_for(&self, model: &str) -> Option<&InterleaveModel> {
        self.models.iter().find(|m| m.matcher.is_match(model))
    }
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
    let mut models = Vec::with_capacity(raw.models.len());
    for (i, m) in raw.models.into_iter().enumerate() {
        let key = |k: &str| format!("interleave.models[{i}].{k}");
        let matcher = Glob::new(&m.model)
            .map_err(|e| invalid(key("model"), format!("`{}` is not a glob: {e}", m.model)))?
            .compile_matcher();
        if m.dir.as_os_str().is_empty() {
            return Err(invalid(key("dir"), "is empty"));
        }
        let mut adapters = Vec::with_capacity(m.adapters.len());
        for (name, dir) in m.adapters {
            let valid_name = !name.is_empty()
                && name != "base"
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
            if !valid_name {
                return Err(invalid(
                    key("adapters"),
                    format!("adapter name `{name}` must be [A-Za-z0-9_.-]+ and not `base`"),
                ));
            }
            adapters.push((name, dir));
        }
        models.push(InterleaveModel {
            glob: m.model,
            matcher,
            dir: m.dir,
            adapters,
        });
    }
    Ok(InterleaveConfig {
        score_cache: raw
            .score_cache
            .unwrap_or_else(|| data_dir.join("score_cache.sqlite")),
        batch_size: positive("interleave.batch_size", raw.batch_size, 16)?,
        max_length: positive("interleave.max_length", raw.max_length, 2048)?,
        max_new_tokens: positive("interleave.max_new_tokens", raw.max_new_tokens, 256)?,
        models,
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
    fn defaults_and_model_lookup() {
        let c = load("").unwrap().interleave;
        assert_eq!(
            c.score_cache,
            std::path::Path::new("/srv/tg/score_cache.sqlite")
        );
        assert_eq!(
            (c.batch_size, c.max_length, c.max_new_tokens),
            (16, 2048, 256)
        );
        assert!(c.model_for("anything").is_none());
        let c = load(
            "[interleave]\nbatch_size = 2\n[[interleave.models]]\nmodel = \"Qwen/*\"\ndir = \"/m/q\"\nadapters = { zeta = \"/a/z\", alpha = \"/a/a\" }\n[[interleave.models]]\nmodel = \"*\"\ndir = \"/m/any\"\n",
        )
        .unwrap()
        .interleave;
        assert_eq!(c.batch_size, 2);
        let q = c.model_for("Qwen/Qwen2.5-0.5B").unwrap();
        assert_eq!(q.dir, std::path::Path::new("/m/q"));
        let names: Vec<&str> = q.adapters.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["alpha", "zeta"]);
        assert_eq!(
            c.model_for("gpt-4o").unwrap().dir,
            std::path::Path::new("/m/any")
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = load("[interleave]\nbatch_size = 0\n").unwrap_err();
        assert!(e.to_string().contains("interleave.batch_size"), "{e}");
        let e = load("[[interleave.models]]\nmodel = \"[\"\ndir = \"/m\"\n").unwrap_err();
        assert!(e.to_string().contains("interleave.models[0].model"), "{e}");
        let e = load(
            "[[interleave.models]]\nmodel = \"*\"\ndir = \"/m\"\nadapters = { base = \"/a\" }\n",
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("interleave.models[0].adapters"),
            "{e}"
        );
        let e = load("[interleave]\nbogus = 1\n").unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
    }
}
