//! Opens the configured [`Store`] — `serve` and `worker` both come through here, so the two
//! always agree on where the state is.

use super::{PgStore, SqliteStore, Store, StoreError};
use crate::config::{Config, PostgresUrl, StorageBackend};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum OpenStoreError {
    #[error("SQLite store under {path} (config key `storage.data_dir`): {source}")]
    Sqlite { path: String, source: StoreError },
    /// Never shows the URL: it may carry the password.
    #[error("PostgreSQL store (config key `{key}`): {message}")]
    Postgres { key: &'static str, message: String },
}

/// The store `[storage] backend` names: SQLite at `data_dir/tuneguard.db` (the default), or
/// PostgreSQL at `postgres_url` / the URL in the environment variable `postgres_url_env`,
/// migrated to this binary's schema before anything else reads it.
pub fn open_store(config: &Config) -> Result<Arc<dyn Store>, OpenStoreError> {
    match &config.storage.backend {
        StorageBackend::Sqlite => {
            let store =
                SqliteStore::open(&config.data_dir).map_err(|source| OpenStoreError::Sqlite {
                    path: config.data_dir.display().to_string(),
                    source,
                })?;
            Ok(Arc::new(store))
        }
        StorageBackend::Postgres(pg) => {
            let (key, url) = match &pg.url {
                PostgresUrl::Inline(url) => ("storage.postgres_url", url.clone()),
                PostgresUrl::Env(var) => (
                    "storage.postgres_url_env",
                    std::env::var(var).map_err(|e| OpenStoreError::Postgres {
                        key: "storage.postgres_url_env",
                        message: format!("environment variable {var}: {e}"),
                    })?,
                ),
            };
            let options = super::postgres::PgOptions {
                url,
                pool_size: pg.pool_size,
                ca_file: pg.ca_file.clone(),
            };
            let store = PgStore::open(&options).map_err(|e| OpenStoreError::Postgres {
                key,
                message: e.to_string(),
            })?;
            Ok(Arc::new(store))
        }
    }
}
