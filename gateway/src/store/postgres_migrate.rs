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
];

/// The advisory lock key every tuneguard process migrates under ("tuneguar" as ASCII).
const MIGRATION_LOCK: i64 = 0x7475_6e65_6775_6172;

/// Applies the missing migrations; returns the schema version afterwards.
pub(super) fn migrate(client: &mut Client) -> StoreResult<i64> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
    let outcome = apply(client);
    // The lock is the session's: released here, or by the server when the connection ends.
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    let version = outcome?;
    unlocked?;
    Ok(version)
}

fn apply(client: &mut Client) -> StoreResult<i64> {
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
    let known = POSTGRES_MIGRATIONS.len() as i64;
    if current > known {
        // A newer binary migrated this database; migrations only add, so this one may still
        // work, but say so.
        tracing::warn!(
            database_version = current,
            binary_version = known,
            "the PostgreSQL schema is newer than this binary knows"
        );
    }
    for (i, sql) in POSTGRES_MIGRATIONS
        .iter()
        .enumerate()
        .skip(current.max(0) as usize)
    {
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
