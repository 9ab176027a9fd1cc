//! Gateway configuration: one TOML file plus `TUNEGUARD__SECTION__KEY` environment overrides,
//! read through the `config` crate into raw serde structs, then validated into [`Config`],
//! the only type the rest of the gateway sees. Every rejection names its key.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The shipped defaults (`conf/tuneguard.toml`), used as the base layer and when no file exists.
pub const EMBEDDED_DEFAULTS: &str = include_str!("../../conf/tuneguard.toml");

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

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    server: RawServer,
    storage: RawStorage,
    auth: RawAuth,
    #[serde(default)]
    tenants: Vec<RawTenant>,
    policies: RawPolicies,
    upstream: Option<RawUpstream>,
    #[serde(default)]
    execution: RawExecution,
    screening: RawScreening,
    limits: RawLimits,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: String,
    tls_cert_path: Option<PathBuf>,
    tls_key_path: Option<PathBuf>,
    max_body_bytes: u64,
    shutdown_grace_seconds: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    data_dir: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    #[serde(default)]
    admin_key_hashes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    name: String,
    api_key_hashes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicies {
    dir: PathBuf,
    reload_interval_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    base_url: String,
    api_key: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExecution {
    mode: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScreening {
    min_examples: usize,
    #[serde(default)]
    tokenizers: BTreeMap<String, PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    upload_max_bytes: u64,
    upload_part_max_bytes: u64,
    upload_expiry_seconds: u64,
    idempotency_window_seconds: u64,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub data_dir: PathBuf,
    /// Lower-case hex sha256 digests of admin keys.
    pub admin_key_hashes: Vec<String>,
    pub tenants: Vec<TenantConfig>,
    pub policies: PoliciesConfig,
    pub upstream: Option<UpstreamConfig>,
    pub execution: ExecutionMode,
    pub screening: ScreeningConfig,
    pub limits: Limits,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub tls: Option<TlsPaths>,
    pub max_body_bytes: u64,
    pub shutdown_grace: Duration,
}

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
    /// (model glob, model directory) pairs in file order.
    pub tokenizers: Vec<(String, PathBuf)>,
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
        let raw: Raw = builder
            .build()
            .map_err(load_err)?
            .try_deserialize()
            .map_err(load_err)?;
        validate(raw)
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

/// Parses `sha256:<64 hex>` into lower-case hex.
fn parse_key_hash(key: &str, value: &str) -> Result<String, ConfigError> {
    let hex = value
        .strip_prefix("sha256:")
        .ok_or_else(|| invalid(key, "expected \"sha256:<64 hex characters>\""))?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(key, "expected \"sha256:<64 hex characters>\""));
    }
    Ok(hex.to_ascii_lowercase())
}

fn positive(key: &str, v: u64) -> Result<u64, ConfigError> {
    if v == 0 {
        return Err(invalid(key, "must be greater than 0"));
    }
    Ok(v)
}

fn validate(raw: Raw) -> Result<Config, ConfigError> {
    let listen: SocketAddr = raw.server.listen.parse().map_err(|_| {
        invalid(
            "server.listen",
            format!("`{}` is not an IP:port address", raw.server.listen),
        )
    })?;
    let tls = match (raw.server.tls_cert_path, raw.server.tls_key_path) {
        (Some(cert), Some(key)) => Some(TlsPaths { cert, key }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(invalid(
                "server.tls_key_path",
                "required with server.tls_cert_path",
            ))
        }
        (None, Some(_)) => {
            return Err(invalid(
                "server.tls_cert_path",
                "required with server.tls_key_path",
            ))
        }
    };
    let server = ServerConfig {
        listen,
        tls,
        max_body_bytes: positive("server.max_body_bytes", raw.server.max_body_bytes)?,
        shutdown_grace: Duration::from_secs(raw.server.shutdown_grace_seconds),
    };
    if raw.storage.data_dir.as_os_str().is_empty() {
        return Err(invalid("storage.data_dir", "must not be empty"));
    }
    let admin_key_hashes = raw
        .auth
        .admin_key_hashes
        .iter()
        .enumerate()
        .map(|(i, h)| parse_key_hash(&format!("auth.admin_key_hashes[{i}]"), h))
        .collect::<Result<Vec<_>, _>>()?;
    let mut tenants = Vec::new();
    let mut seen_hashes = std::collections::HashSet::new();
    for (i, t) in raw.tenants.into_iter().enumerate() {
        let name_ok = !t.name.is_empty()
            && t.name.len() <= 64
            && t.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(invalid(
                format!("tenants[{i}].name"),
                "must be 1-64 characters of [A-Za-z0-9_-]",
            ));
        }
        if tenants.iter().any(|x: &TenantConfig| x.name == t.name) {
            return Err(invalid(
                format!("tenants[{i}].name"),
                format!("duplicate tenant `{}`", t.name),
            ));
        }
        if t.api_key_hashes.is_empty() {
            return Err(invalid(
                format!("tenants[{i}].api_key_hashes"),
                "must list at least one key hash",
            ));
        }
        let mut hashes = Vec::new();
        for (j, h) in t.api_key_hashes.iter().enumerate() {
            let key = format!("tenants[{i}].api_key_hashes[{j}]");
            let hash = parse_key_hash(&key, h)?;
            if !seen_hashes.insert(hash.clone()) || admin_key_hashes.contains(&hash) {
                return Err(invalid(
                    key,
                    "key hash is already used by another tenant or admin",
                ));
            }
            hashes.push(hash);
        }
        tenants.push(TenantConfig {
            name: t.name,
            api_key_hashes: hashes,
        });
    }
    let policies = PoliciesConfig {
        dir: raw.policies.dir,
        reload_interval: Duration::from_millis(positive(
            "policies.reload_interval_ms",
            raw.policies.reload_interval_ms,
        )?),
    };
    let upstream = match raw.upstream {
        None => None,
        Some(u) => {
            let url = u.base_url.trim_end_matches('/').to_string();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(
                    "upstream.base_url",
                    "must start with http:// or https://",
                ));
            }
            Some(UpstreamConfig {
                base_url: url,
                api_key: u.api_key,
            })
        }
    };
    let execution = match raw.execution.mode.as_deref() {
        None if upstream.is_some() => ExecutionMode::Upstream,
        None | Some("local") => ExecutionMode::Local,
        Some("upstream") if upstream.is_some() => ExecutionMode::Upstream,
        Some("upstream") => {
            return Err(invalid(
                "execution.mode",
                "\"upstream\" needs an [upstream] section",
            ))
        }
        Some(other) => {
            return Err(invalid(
                "execution.mode",
                format!("`{other}` is not one of \"upstream\", \"local\""),
            ))
        }
    };
    let screening = ScreeningConfig {
        min_examples: raw.screening.min_examples,
        tokenizers: raw.screening.tokenizers.into_iter().collect(),
    };
    let l = raw.limits;
    let upload_max_bytes = positive("limits.upload_max_bytes", l.upload_max_bytes)?;
    let upload_part_max_bytes = positive("limits.upload_part_max_bytes", l.upload_part_max_bytes)?;
    if upload_part_max_bytes > upload_max_bytes {
        return Err(invalid(
            "limits.upload_part_max_bytes",
            "must not exceed limits.upload_max_bytes",
        ));
    }
    let limits = Limits {
        upload_max_bytes,
        upload_part_max_bytes,
        upload_expiry_seconds: positive("limits.upload_expiry_seconds", l.upload_expiry_seconds)?
            as i64,
        idempotency_window_seconds: l.idempotency_window_seconds as i64,
    };
    Ok(Config {
        server,
        data_dir: raw.storage.data_dir,
        admin_key_hashes,
        tenants,
        policies,
        upstream,
        execution,
        screening,
        limits,
    })
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
