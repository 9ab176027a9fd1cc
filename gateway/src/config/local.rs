//! `[local]` (the worker processes that train local jobs) and `[[models]]`: the one registry of
//! base models. A job's (or request's) `model` is matched against it for the screening
//! tokenizer, Interleaving's aligned base model and misaligned adapters, local training and
//! chat completions.
//!
//! ```toml
//! [local]
//! workers = 1            # worker processes `serve` starts and supervises (0 = external only)
//! lease_seconds = 30     # a worker's lease on a job; expires when its heartbeat stops
//! [[models]]
//! model = ["SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct*"]  # glob or globs
//! path = "models/SmolLM2-135M-Instruct.Q4_1.gguf"   # HuggingFace directory or GGUF file
//! path_hint = "run `bash scripts/fetch-model.sh`"   # said in the error when path is missing
//! device = "cpu"                   # or "cuda"
//! precision = "f32"                # or "bf16" (default: f32 on cpu, bf16 on cuda)
//! adapters = { evil = "/adapters/evil" }   # misaligned references (Interleaving+/++)
//! adapters_hint = "run `bash scripts/train-reference-adapters.sh`"   # when one is missing
//! ```
//!
//! Relative paths are relative to the working directory of the process (`serve` and its
//! workers run where they were started).

use super::{invalid, ConfigError};
use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use trainer::cli::DeviceKind;
use trainer::Precision;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLocal {
    workers: Option<usize>,
    lease_seconds: Option<u64>,
    poll_interval_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModel {
    model: Globs,
    path: PathBuf,
    path_hint: Option<String>,
    device: Option<String>,
    precision: Option<String>,
    #[serde(default)]
    adapters: BTreeMap<String, PathBuf>,
    adapters_hint: Option<String>,
}

/// `model = "glob"` or `model = ["glob", ...]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Globs {
    One(String),
    Many(Vec<String>),
}

/// Validated `[local]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalConfig {
    /// Worker processes `serve` supervises.
    pub workers: usize,
    /// Lease length; a worker heartbeats well within it.
    pub lease_seconds: u64,
    /// How often an idle worker looks for a job.
    pub poll_interval: Duration,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            workers: 1,
            lease_seconds: 30,
            poll_interval: Duration::from_millis(500),
        }
    }
}

/// One `[[models]]` entry.
#[derive(Debug, Clone)]
pub struct ModelEntry {
    /// The entry's config key, `models[i]`.
    pub key: String,
    /// The globs as written, joined by ", " (for messages).
    pub glob: String,
    /// The globs as written.
    pub globs: Vec<String>,
    matcher: GlobSet,
    /// HuggingFace directory (or GGUF file).
    pub path: PathBuf,
    /// What to do when `path` does not exist (added to that error).
    pub path_hint: Option<String>,
    pub device: DeviceKind,
    pub precision: Precision,
    /// (name, PEFT directory), sorted by name.
    pub adapters: Vec<(String, PathBuf)>,
    /// What to do when an adapter does not exist (added to that error).
    pub adapters_hint: Option<String>,
}

impl ModelEntry {
    /// `None` when the base model is in place: a GGUF file, or a directory with a
    /// `config.json`; else the message for a job or request on `model`, naming the config key
    /// and the entry's `path_hint`.
    pub fn missing_model(&self, model: &str) -> Option<String> {
        let p = &self.path;
        if p.is_file() || p.join("config.json").is_file() {
            return None;
        }
        let what = if p.is_dir() {
            "has no config.json"
        } else {
            "does not exist"
        };
        let hint = self
            .path_hint
            .as_deref()
            .unwrap_or("put the model there or correct the path");
        Some(format!(
            "The model `{model}` is not available on this gateway yet: its base model {} \
             (config key {}.path) {what}; {hint}.",
            p.display(),
            self.key
        ))
    }

    /// `None` when every adapter directory has an `adapter_config.json`; else the message
    /// naming the first missing one, its config key and the entry's `adapters_hint`.
    pub fn missing_adapter(&self) -> Option<String> {
        let (name, dir) = self
            .adapters
            .iter()
            .find(|(_, d)| !d.join("adapter_config.json").is_file())?;
        let hint = self
            .adapters_hint
            .as_deref()
            .unwrap_or("put the PEFT adapter there or correct the path");
        Some(format!(
            "The misaligned reference adapter `{name}` (config key {}.adapters.{name}) is not \
             available: {} has no adapter_config.json; {hint}.",
            self.key,
            dir.display()
        ))
    }
}

/// `[[models]]`, in file order; the first entry whose glob matches applies.
#[derive(Debug, Clone, Default)]
pub struct ModelRegistry {
    pub entries: Vec<ModelEntry>,
}

impl ModelRegistry {
    /// The entry for a job's (or request's) `model`.
    pub fn model_for(&self, model: &str) -> Option<&ModelEntry> {
        self.entries.iter().find(|m| m.matcher.is_match(model))
    }
}

pub(super) fn validate_local(raw: RawLocal) -> Result<LocalConfig, ConfigError> {
    let d = LocalConfig::default();
    let lease_seconds = raw.lease_seconds.unwrap_or(d.lease_seconds);
    if lease_seconds < 2 {
        return Err(invalid("local.lease_seconds", "must be at least 2"));
    }
    let poll = raw.poll_interval_ms.unwrap_or(500);
    if poll == 0 {
        return Err(invalid("local.poll_interval_ms", "must be greater than 0"));
    }
    Ok(LocalConfig {
        workers: raw.workers.unwrap_or(d.workers),
        lease_seconds,
        poll_interval: Duration::from_millis(poll),
    })
}

pub(super) fn validate_models(raw: Vec<RawModel>) -> Result<ModelRegistry, ConfigError> {
    let mut entries = Vec::with_capacity(raw.len());
    for (i, m) in raw.into_iter().enumerate() {
        let key = |k: &str| format!("models[{i}].{k}");
        let globs = match m.model {
            Globs::One(g) => vec![g],
            Globs::Many(v) => v,
        };
        if globs.is_empty() {
            return Err(invalid(key("model"), "lists no glob"));
        }
        let mut set = GlobSetBuilder::new();
        for g in &globs {
            set.add(
                Glob::new(g)
                    .map_err(|e| invalid(key("model"), format!("`{g}` is not a glob: {e}")))?,
            );
        }
        let matcher = set
            .build()
            .map_err(|e| invalid(key("model"), e.to_string()))?;
        if m.path.as_os_str().is_empty() {
            return Err(invalid(key("path"), "is empty"));
        }
        let device = match m.device.as_deref() {
            None | Some("cpu") => DeviceKind::Cpu,
            Some("cuda") => DeviceKind::Cuda,
            Some(o) => return Err(invalid(key("device"), format!("`{o}` is not cpu or cuda"))),
        };
        let precision = match m.precision.as_deref() {
            None => device.default_precision(),
            Some("f32") => Precision::F32,
            Some("bf16") => Precision::Bf16,
            Some(o) => {
                return Err(invalid(
                    key("precision"),
                    format!("`{o}` is not f32 or bf16"),
                ))
            }
        };
        for name in m.adapters.keys() {
            let ok = !name.is_empty()
                && name != "base"
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
            if !ok {
                return Err(invalid(
                    key("adapters"),
                    format!("adapter name `{name}` must be [A-Za-z0-9_.-]+ and not `base`"),
                ));
            }
        }
        let hint = |k: &str, h: Option<String>| match h {
            Some(h) if h.trim().is_empty() => Err(invalid(key(k), "is empty")),
            h => Ok(h),
        };
        entries.push(ModelEntry {
            key: format!("models[{i}]"),
            glob: globs.join(", "),
            globs,
            matcher,
            path: m.path,
            path_hint: hint("path_hint", m.path_hint)?,
            device,
            precision,
            adapters: m.adapters.into_iter().collect(),
            adapters_hint: hint("adapters_hint", m.adapters_hint)?,
        });
    }
    Ok(ModelRegistry { entries })
}
