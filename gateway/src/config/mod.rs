//! Gateway configuration: one TOML file plus `TUNEGUARD__SECTION__KEY` environment overrides,
//! read through the `config` crate into raw serde structs, then validated into [`Config`],
//! the only type the rest of the gateway sees. Every rejection names its key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The shipped defaults (`conf/tuneguard.toml`), used as the base layer and when no file exists.
pub const EMBEDDED_DEFAULTS: &str = include_str!("../../../conf/tuneguard.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {source_name}: {message}")]
    Load {
        source_name: String,
        message: String,
    },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

pub(super) fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    /// Local files: the SQLite database (backend "sqlite"), blobs, job directories, demo key.
    pub data_dir: PathBuf,
    /// `[storage]`: which database holds the state.
    pub storage: StorageConfig,
    /// Lower-case hex sha256 digests of admin keys.
    pub admin_key_hashes: Vec<String>,
    pub tenants: Vec<TenantConfig>,
    pub policies: PoliciesConfig,
    pub upstream: Option<UpstreamConfig>,
    pub execution: ExecutionMode,
    pub screening: ScreeningConfig,
    pub limits: Limits,
    /// `[interleave]`: the score cache and engine settings of engine-backed Interleaving (its
    /// models and adapters are the `[[models]]` entries).
    pub interleave: InterleaveConfig,
    /// `[local]`: worker processes and leases.
    pub local: LocalConfig,
    /// `[[models]]`: the one registry of base models (screening tokenizer, Interleaving's base
    /// model and misaligned adapters, local training, chat completions).
    pub models: ModelRegistry,
    /// `[monitor]`: the judge of checkpoint answers.
    pub monitor: MonitorConfig,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub tls: Option<TlsPaths>,
    pub max_body_bytes: u64,
    pub shutdown_grace: Duration,
}

/// `[storage]` beyond `data_dir`.
///
/// ```toml
/// [storage]
/// backend = "postgres"                 # default "sqlite" (data_dir/tuneguard.db)
/// postgres_url_env = "TUNEGUARD_PG"    # names an environment variable holding the URL…
/// # postgres_url = "postgresql://tuneguard@db.internal/tuneguard"   # …or the URL itself
/// postgres_pool_size = 8               # connections per process
/// postgres_ca_file = "/etc/tuneguard/pg-ca.pem"  # TLS required, the server's certificate
///                                      # verified against it
///
/// blobs = "s3"                         # default "local" (data_dir/blobs)
/// s3_bucket = "tuneguard"
/// s3_prefix = "prod/"                  # default "": keys at the bucket's root
/// s3_endpoint = "http://127.0.0.1:9000"  # default: AWS for s3_region
/// s3_region = "eu-west-1"              # default: AWS_REGION / AWS_DEFAULT_REGION, else us-east-1
/// s3_allow_http = true                 # default false: only https endpoints
/// ```
/// S3 credentials come from the environment only (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), never from the file.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageConfig {
    pub backend: StorageBackend,
    pub blobs: BlobBackend,
    /// The most bytes `data_dir/adapters` may hold (`adapter_cache_mb`, default
    /// [`DEFAULT_ADAPTER_CACHE_MB`]).
    pub adapter_cache_bytes: u64,
    /// With remote blobs: the most bytes of cached copies `data_dir/blobs` may hold
    /// (`blob_cache_mb`, default [`DEFAULT_BLOB_CACHE_MB`]).
    pub blob_cache_bytes: u64,
}

/// `[storage] adapter_cache_mb` when unset.
pub const DEFAULT_ADAPTER_CACHE_MB: u64 = 4096;
/// `[storage] blob_cache_mb` when unset.
pub const DEFAULT_BLOB_CACHE_MB: u64 = 4096;

/// Where blobs (files, upload parts, datasets, manifests, adapters, job directories of remote
/// workers) live.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum BlobBackend {
    /// `data_dir/blobs` on this machine.
    #[default]
    Local,
    /// An S3-compatible object store shared by every process; `data_dir/blobs` caches it.
    S3(S3Config),
}

#[derive(Debug, Clone, PartialEq)]
pub struct S3Config {
    pub bucket: String,
    /// Prepended to every key; empty or ending in `/`.
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub allow_http: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StorageBackend {
    Sqlite,
    Postgres(PostgresConfig),
}

#[derive(Debug, Clone, PartialEq)]
pub struct PostgresConfig {
    pub url: PostgresUrl,
    /// Connections each process keeps at most.
    pub pool_size: usize,
    /// `postgres_ca_file`: the CA of the server's certificate (TLS: `store::postgres_tls`).
    pub ca_file: Option<std::path::PathBuf>,
}

/// Where the connection URL comes from. Read when the store opens, so a password kept in the
/// environment never sits in the config value; `Debug` never shows an inline URL.
#[derive(Clone, PartialEq)]
pub enum PostgresUrl {
    Inline(String),
    /// The name of the environment variable that holds the URL.
    Env(String),
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PostgresUrl::Inline(_) => f.write_str("Inline(<redacted>)"),
            PostgresUrl::Env(var) => f.debug_tuple("Env").field(var).finish(),
        }
    }
}

/// `postgres_pool_size` when not set.
pub const DEFAULT_POSTGRES_POOL_SIZE: usize = 8;

#[derive(Debug, Clone)]
pub struct TlsPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct TenantConfig {
    pub name: String,
    /// Lower-case hex sha256 digests of this tenant's API keys.
    pub api_key_hashes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct PoliciesConfig {
    pub dir: PathBuf,
    pub reload_interval: Duration,
}

#[derive(Clone)]
pub struct UpstreamConfig {
    pub base_url: String,
    pub api_key: String,
}

impl std::fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionMode {
    Upstream,
    Local,
}

#[derive(Debug, Clone)]
pub struct ScreeningConfig {
    pub min_examples: usize,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub upload_max_bytes: u64,
    pub upload_part_max_bytes: u64,
    pub upload_expiry_seconds: i64,
    pub idempotency_window_seconds: i64,
}

impl Config {
    /// Loads `path` (or, when `None`, `conf/tuneguard.toml` if present, else only the embedded
    /// defaults) over the embedded defaults, then applies `TUNEGUARD__…` environment overrides.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let env = std::env::vars().filter(|(k, _)| k.starts_with("TUNEGUARD__"));
        let file = match path {
            Some(p) => Some(read_file(p)?),
            None => {
                let default = Path::new("conf/tuneguard.toml");
                if default.is_file() {
                    Some(read_file(default)?)
                } else {
                    None
                }
            }
        };
        Self::from_sources(file.as_ref().map(|(n, t)| (n.as_str(), t.as_str())), env)
    }

    /// Pure form of [`Config::load`]: an optional (name, TOML text) and environment pairs.
    pub fn from_sources(
        file: Option<(&str, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        use config::{Environment, File, FileFormat};
        let env_map: config::Map<String, String> = env.into_iter().collect();
        let mut builder = config::Config::builder()
            .add_source(File::from_str(EMBEDDED_DEFAULTS, FileFormat::Toml));
        if let Some((_, text)) = file {
            builder = builder.add_source(File::from_str(text, FileFormat::Toml));
        }
        builder = builder.add_source(
            Environment::with_prefix("TUNEGUARD")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("auth.admin_key_hashes")
                .source(Some(env_map)),
        );
        let source_name = file.map(|(n, _)| n).unwrap_or("<embedded defaults>");
        let load_err = |e: config::ConfigError| ConfigError::Load {
            source_name: source_name.to_string(),
            message: e.to_string(),
        };
        let raw: raw::Raw = builder
            .build()
            .map_err(load_err)?
            .try_deserialize()
            .map_err(load_err)?;
        validate::validate(raw)
    }
}

fn read_file(path: &Path) -> Result<(String, String), ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Load {
        source_name: name.clone(),
        message: e.to_string(),
    })?;
    Ok((name, text))
}

mod interleave;
mod local;
mod monitor;
mod raw;
mod validate;

pub use interleave::InterleaveConfig;
pub use local::{LocalConfig, ModelEntry, ModelRegistry};
pub use monitor::{JudgeConfig, MonitorConfig};

#[cfg(test)]
mod tests;
