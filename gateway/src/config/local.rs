//! `[local]` (the worker processes that train local jobs) and `[[models]]` (the registry of
//! base models local training uses).
//!
//! ```toml
//! [local]
//! workers = 1            # worker processes `serve` starts and supervises (0 = external only)
//! lease_seconds = 30     # a worker's lease on a job; expires when its heartbeat stops
//! [[models]]
//! model = "tiny-*"                 # glob against the job's `model`
//! path = "/models/tiny-qwen2"      # HuggingFace directory
//! device = "cpu"                   # or "cuda"
//! precision = "f32"                # or "bf16" (default: f32 on cpu, bf16 on cuda)
//! adapters = { evil = "/adapters/evil" }   # misaligned references (Interleaving+/++)
//! ```

use super::{invalid, ConfigError};
use globset::{Glob, GlobMatcher};
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
    model: String,
    path: PathBuf,
    device: Option<String>,
    precision: Option<String>,
    #[serde(default)]
    adapters: BTreeMap<String, PathBuf>,
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
    /// The glob as written.
    pub glob: String,
    matcher: GlobMatcher,
    /// HuggingFace directory (or GGUF file).
    pub path: PathBuf,
    pub device: DeviceKind,
    pub precision: Precision,
    /// (name, PEFT directory), sorted by name.
    pub adapters: Vec<(String, PathBuf)>,
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
        let matcher = Glob::new(&m.model)
            .map_err(|e| invalid(key("model"), format!("`{}` is not a glob: {e}", m.model)))?
            .compile_matcher();
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
        entries.push(ModelEntry {
            glob: m.model,
            matcher,
            path: m.path,
            device,
            precision,
            adapters: m.adapters.into_iter().collect(),
        });
    }
    Ok(ModelRegistry { entries })
}
