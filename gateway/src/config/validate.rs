//! Raw configuration → [`Config`]: every check, each rejection naming its key.

use super::raw::Raw;
use super::*;

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

pub(super) fn validate(raw: Raw) -> Result<Config, ConfigError> {
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
    let storage = validate_storage(&raw.storage)?;
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
    if raw.screening.tokenizers.is_some() {
        return Err(invalid(
            "screening.tokenizers",
            "was removed: screening counts tokens with the tokenizer of the job model's \
             [[models]] entry; move each \"glob\" = \"path\" pair to a [[models]] entry \
             (keys models[].model, models[].path)",
        ));
    }
    let screening = ScreeningConfig {
        min_examples: raw.screening.min_examples,
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
    let interleave = super::interleave::validate(raw.interleave, &raw.storage.data_dir)?;
    let local = super::local::validate_local(raw.local)?;
    let models = super::local::validate_models(raw.models)?;
    let monitor = super::monitor::validate(raw.monitor, &raw.storage.data_dir)?;
    if let Some(m) = &monitor.local_judge {
        if models.model_for(m).is_none() {
            return Err(invalid(
                "monitor.local_judge_model",
                format!("`{m}` matches no [[models]] entry"),
            ));
        }
    }
    Ok(Config {
        server,
        data_dir: raw.storage.data_dir,
        storage,
        admin_key_hashes,
        tenants,
        policies,
        upstream,
        execution,
        screening,
        limits,
        interleave,
        local,
        models,
        monitor,
    })
}

/// `[storage] backend` and its PostgreSQL keys. The URL is parsed here when inline (a typo is a
/// start-up error naming the key, never echoing the URL); one in the environment is read and
/// parsed when the store opens.
fn validate_storage(raw: &super::raw::RawStorage) -> Result<StorageConfig, ConfigError> {
    let pg_keys_set = raw.postgres_url.is_some()
        || raw.postgres_url_env.is_some()
        || raw.postgres_pool_size.is_some()
        || raw.postgres_ca_file.is_some();
    let backend = match raw.backend.as_deref() {
        None | Some("sqlite") => {
            if pg_keys_set {
                let key = if raw.postgres_url.is_some() {
                    "storage.postgres_url"
                } else if raw.postgres_url_env.is_some() {
                    "storage.postgres_url_env"
                } else if raw.postgres_pool_size.is_some() {
                    "storage.postgres_pool_size"
                } else {
                    "storage.postgres_ca_file"
                };
                return Err(invalid(
                    key,
                    "only applies with storage.backend = \"postgres\"",
                ));
            }
            StorageBackend::Sqlite
        }
        Some("postgres") => {
            let url = match (&raw.postgres_url, &raw.postgres_url_env) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        "storage.postgres_url",
                        "set either storage.postgres_url or storage.postgres_url_env, not both",
                    ))
                }
                (None, None) => {
                    return Err(invalid(
                        "storage.postgres_url",
                        "storage.backend = \"postgres\" needs storage.postgres_url or \
                         storage.postgres_url_env",
                    ))
                }
                (Some(url), None) => {
                    if url.parse::<::postgres::Config>().is_err() {
                        return Err(invalid(
                            "storage.postgres_url",
                            "not a PostgreSQL connection URL (postgresql://user@host:port/db) \
                             or key=value connection string",
                        ));
                    }
                    PostgresUrl::Inline(url.clone())
                }
                (None, Some(var)) => {
                    if var.is_empty() || var.contains('=') || var.contains('\0') {
                        return Err(invalid(
                            "storage.postgres_url_env",
                            "must name an environment variable",
                        ));
                    }
                    PostgresUrl::Env(var.clone())
                }
            };
            let pool_size = match raw.postgres_pool_size {
                None => DEFAULT_POSTGRES_POOL_SIZE,
                Some(0) => {
                    return Err(invalid(
                        "storage.postgres_pool_size",
                        "must be greater than 0",
                    ))
                }
                Some(n) if n > 1000 => {
                    return Err(invalid(
                        "storage.postgres_pool_size",
                        "must be at most 1000",
                    ))
                }
                Some(n) => n as usize,
            };
            if let Some(ca) = &raw.postgres_ca_file {
                if !ca.is_file() {
                    return Err(invalid(
                        "storage.postgres_ca_file",
                        format!("{} is not a readable file", ca.display()),
                    ));
                }
            }
            StorageBackend::Postgres(PostgresConfig {
                url,
                pool_size,
                ca_file: raw.postgres_ca_file.clone(),
            })
        }
        Some(other) => {
            return Err(invalid(
                "storage.backend",
                format!("`{other}` is not one of \"sqlite\", \"postgres\""),
            ))
        }
    };
    let adapter_cache_mb = raw
        .adapter_cache_mb
        .unwrap_or(super::DEFAULT_ADAPTER_CACHE_MB);
    if adapter_cache_mb == 0 {
        return Err(invalid(
            "storage.adapter_cache_mb",
            "must be at least 1 (one adapter is unpacked to serve it)",
        ));
    }
    let blob_cache_mb = raw.blob_cache_mb.unwrap_or(super::DEFAULT_BLOB_CACHE_MB);
    Ok(StorageConfig {
        backend,
        blobs: validate_blobs(raw)?,
        adapter_cache_bytes: adapter_cache_mb.saturating_mul(1024 * 1024),
        blob_cache_bytes: blob_cache_mb.saturating_mul(1024 * 1024),
    })
}

/// `[storage] blobs` and its S3 keys.
fn validate_blobs(raw: &super::raw::RawStorage) -> Result<BlobBackend, ConfigError> {
    let s3_key_set = [
        ("storage.s3_bucket", raw.s3_bucket.is_some()),
        ("storage.s3_prefix", raw.s3_prefix.is_some()),
        ("storage.s3_endpoint", raw.s3_endpoint.is_some()),
        ("storage.s3_region", raw.s3_region.is_some()),
        ("storage.s3_allow_http", raw.s3_allow_http.is_some()),
    ]
    .into_iter()
    .find(|(_, set)| *set)
    .map(|(k, _)| k);
    match raw.blobs.as_deref() {
        None | Some("local") => match s3_key_set {
            Some(key) => Err(invalid(key, "only applies with storage.blobs = \"s3\"")),
            None => Ok(BlobBackend::Local),
        },
        Some("s3") => {
            let bucket = raw.s3_bucket.clone().unwrap_or_default();
            // S3's bucket naming rules: 3–63 of [a-z0-9.-], starting and ending alphanumeric.
            let ok = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-'
                })
                && bucket
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphanumeric())
                && bucket
                    .bytes()
                    .last()
                    .is_some_and(|b| b.is_ascii_alphanumeric());
            if raw.s3_bucket.is_none() {
                return Err(invalid(
                    "storage.s3_bucket",
                    "storage.blobs = \"s3\" needs a bucket",
                ));
            }
            if !ok {
                return Err(invalid(
                    "storage.s3_bucket",
                    "not an S3 bucket name (3-63 characters: a-z, 0-9, '.', '-')",
                ));
            }
            let prefix = raw.s3_prefix.clone().unwrap_or_default();
            if prefix.starts_with('/')
                || (!prefix.is_empty() && !prefix.ends_with('/'))
                || prefix.contains("//")
            {
                return Err(invalid(
                    "storage.s3_prefix",
                    "must be empty or a path ending in '/' (e.g. \"prod/\"), not starting with '/'",
                ));
            }
            let allow_http = raw.s3_allow_http.unwrap_or(false);
            if let Some(e) = &raw.s3_endpoint {
                let http = e.starts_with("http://");
                if !http && !e.starts_with("https://") {
                    return Err(invalid(
                        "storage.s3_endpoint",
                        "must be an http:// or https:// URL",
                    ));
                }
                if http && !allow_http {
                    return Err(invalid(
                        "storage.s3_endpoint",
                        "is plain http: set storage.s3_allow_http = true to allow it",
                    ));
                }
            }
            Ok(BlobBackend::S3(S3Config {
                bucket,
                prefix,
                endpoint: raw.s3_endpoint.clone(),
                region: raw.s3_region.clone(),
                allow_http,
            }))
        }
        Some(other) => Err(invalid(
            "storage.blobs",
            format!("`{other}` is not one of \"local\", \"s3\""),
        )),
    }
}
