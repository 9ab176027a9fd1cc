//! Versioned PostgreSQL migrations: `schema_migrations` records each applied version; every
//! missing one runs in its own transaction, all under a session advisory lock, so replicas
//! that start together migrate once and the others wait, then find nothing to do.

use super::{StoreError, StoreResult};
use ::postgres::Client;

/// Migrations in order; version N is `POSTGRES_MIGRATIONS[N - 1]`. Never edit a shipped one:
/// add a new file.
const POSTGRES_MIGRATIONS: &[&str] = &[
    include_str!("postgres_schema_v1.sql"),
    include_str!("postgres_schema_v2.sql"),
    include_str!("postgres_schema_v3.sql"),
    include_str!("postgres_schema_v4.sql"),
    include_str!("postgres_schema_v5.sql"),
];

/// The advisory lock key every tuneguard process migrates under ("tuneguar" as ASCII).
const MIGRATION_LOCK: i64 = 0x7475_6e65_6775_6172;

/// Applies the missing migrations; returns the schema version afterwards.
pub(super) fn migrate(client: &mut Client) -> StoreResult<i64> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
    let outcome = apply(client, POSTGRES_MIGRATIONS);
    // The lock is the session's: released here, or by the server when the connection ends.
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    let version = outcome?;
    unlocked?;
    Ok(version)
}

/// Applies the missing ones among `migrations` (all of them but in tests, which stop early to
/// stand for an older binary's database).
fn apply(client: &mut Client, migrations: &[&str]) -> StoreResult<i64> {
    client.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
           version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )?;
    let current: i64 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )?
        .try_get(0)?;
    let known = migrations.len() as i64;
    if current > known {
        // A newer binary migrated this database; migrations only add, so this one may still
        // work, but say so.
        tracing::warn!(
            database_version = current,
            binary_version = known,
            "the PostgreSQL schema is newer than this binary knows"
        );
    }
    for (i, sql) in migrations.iter().enumerate().skip(current.max(0) as usize) {
        let version = (i + 1) as i64;
        let mut tx = client.transaction()?;
        tx.batch_execute(sql)
            .map_err(|e| StoreError::Task(format!("postgres migration v{version} failed: {e}")))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) \
             VALUES ($1, floor(extract(epoch FROM now()))::bigint)",
            &[&version],
        )?;
        tx.commit()?;
        tracing::info!(version, "postgres schema migrated");
    }
    Ok(current.max(known))
}

#[cfg(test)]
mod tests {
    use super::super::pg_test_server::fresh_database;
    use super::super::postgres::PgOptions;
    use super::super::{PgStore, Store};
    use super::*;
    use selector::{CacheKey, CachedNll};

    #[test]
    fn a_v2_database_migrates_to_the_newest_keeping_its_rows() {
        let Some(url) = fresh_database() else { return };
        {
            // What a v2 binary left: its migrations, a file and a counter.
            let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
            assert_eq!(apply(&mut client, &POSTGRES_MIGRATIONS[..2]).unwrap(), 2);
            client
                .batch_execute(
                    "INSERT INTO files (id, tenant, bytes, created_at, filename, purpose, \
                     expires_at, blob_key) VALUES ('file-1', 'acme', 3, 10, 'a.jsonl', \
                     'fine-tune', NULL, 'blob-1');
                     INSERT INTO counters (name, value) VALUES ('lease_takeovers', 2);",
                )
                .unwrap();
            let has_table: bool = client
                .query_one("SELECT to_regclass('score_cache') IS NOT NULL", &[])
                .unwrap()
                .get(0);
            assert!(!has_table);
        }
        let store = PgStore::open(&PgOptions {
            url: url.clone(),
            pool_size: 2,
            ca_file: None,
        })
        .unwrap();
        let f = store.get_file("acme", "file-1").unwrap().unwrap();
        assert_eq!((f.bytes, f.blob_key.as_str()), (3, "blob-1"));
        let key = CacheKey {
            base: "b".into(),
            model: "base".into(),
            content: "h".into(),
        };
        let v = CachedNll {
            nll: 0.5,
            tokens: 2,
        };
        let cache = store.score_cache().unwrap();
        cache.put_many(&[(key.clone(), v)]).unwrap();
        assert_eq!(cache.get_many(std::slice::from_ref(&key)).unwrap()[&key], v);
        let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
        let versions: Vec<i64> = client
            .query(
                "SELECT version FROM schema_migrations ORDER BY version",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(versions, [1, 2, 3, 4, 5]);
        let takeovers: i64 = client
            .query_one(
                "SELECT value FROM counters WHERE name = 'lease_takeovers'",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(takeovers, 2);
        // Opening again finds nothing to do.
        assert_eq!(migrate(&mut client).unwrap(), 5);
    }
}
