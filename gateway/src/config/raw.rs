//! The configuration file as written: serde structs that reject unknown keys. Only
//! [`super::validate`] reads them.

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    pub(super) server: RawServer,
    pub(super) storage: RawStorage,
    pub(super) auth: RawAuth,
    #[serde(default)]
    pub(super) tenants: Vec<RawTenant>,
    pub(super) policies: RawPolicies,
    pub(super) upstream: Option<RawUpstream>,
    #[serde(default)]
    pub(super) execution: RawExecution,
    pub(super) screening: RawScreening,
    pub(super) limits: RawLimits,
    #[serde(default)]
    pub(super) interleave: super::interleave::RawInterleave,
    #[serde(default)]
    pub(super) local: super::local::RawLocal,
    #[serde(default)]
    pub(super) models: Vec<super::local::RawModel>,
    #[serde(default)]
    pub(super) monitor: super::monitor::RawMonitor,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: String,
    pub(super) tls_cert_path: Option<PathBuf>,
    pub(super) tls_key_path: Option<PathBuf>,
    pub(super) max_body_bytes: u64,
    pub(super) shutdown_grace_seconds: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorage {
    pub(super) data_dir: PathBuf,
    /// "sqlite" (default) or "postgres".
    pub(super) backend: Option<String>,
    pub(super) postgres_url: Option<String>,
    pub(super) postgres_url_env: Option<String>,
    pub(super) postgres_pool_size: Option<u64>,
    pub(super) postgres_ca_file: Option<std::path::PathBuf>,
    /// "local" (default: data_dir/blobs) or "s3".
    pub(super) blobs: Option<String>,
    pub(super) s3_bucket: Option<String>,
    pub(super) s3_prefix: Option<String>,
    pub(super) s3_endpoint: Option<String>,
    pub(super) s3_region: Option<String>,
    pub(super) s3_allow_http: Option<bool>,
    /// The most megabytes `data_dir/adapters` (unpacked adapters served from their stored
    /// artifacts) may hold; least recently used first out.
    pub(super) adapter_cache_mb: Option<u64>,
    /// With remote blobs, the most megabytes of cached copies in `data_dir/blobs`; least
    /// recently used first out.
    pub(super) blob_cache_mb: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    #[serde(default)]
    pub(super) admin_key_hashes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTenant {
    pub(super) name: String,
    pub(super) api_key_hashes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicies {
    pub(super) dir: PathBuf,
    pub(super) reload_interval_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    pub(super) base_url: String,
    pub(super) api_key: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExecution {
    pub(super) mode: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScreening {
    pub(super) min_examples: usize,
    /// Removed (the tokenizer is the `[[models]]` entry's): refused with a message naming it.
    pub(super) tokenizers: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) upload_max_bytes: u64,
    pub(super) upload_part_max_bytes: u64,
    pub(super) upload_expiry_seconds: u64,
    pub(super) idempotency_window_seconds: u64,
}
