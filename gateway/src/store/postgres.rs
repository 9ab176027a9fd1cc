//! The PostgreSQL [`Store`], for several gateway replicas and workers sharing one database.
//!
//! **Client crate: the synchronous `postgres` crate** (rust-postgres), not sqlx. The `Store`
//! trait is blocking and every async caller already goes through [`run_blocking`], so a
//! blocking client fits the seam as it is: no second async runtime to thread through, no
//! `block_on` around an async pool, no query macros that want a live database (or an offline
//! cache) at build time, and the same one-statement-at-a-time code shape as the SQLite store,
//! so the two read side by side. Connections come from a small pool of our own
//! ([`super::postgres_pool`]).
//!
//! Semantics match [`super::SqliteStore`] exactly, with row locks where SQLite had its one
//! writer: a compare-and-set is one `UPDATE … WHERE status = … [AND step = …]` (PostgreSQL
//! re-checks the condition on the newest row version after waiting for a concurrent writer);
//! an idempotent create takes a transaction-scoped advisory lock per key first; a lease claim
//! locks its job row with `FOR UPDATE SKIP LOCKED` and re-reads the lease under a row lock.
//! Migrations: [`super::postgres_migrate`].

use super::codec::corrupt;
use super::postgres_pool::{Conn, Pool};
use super::*;
use ::postgres::{Config, GenericClient, Row};
use std::str::FromStr;

/// Runs a call that blocks on a `postgres` client. Each client drives its connection on a
/// small runtime of its own, which panics when entered from a thread that is running async
/// tasks: there (a store opened or used straight from async code on the multi-threaded
/// runtime) the call is moved off the worker with `block_in_place`. On a plain thread or
/// tokio's blocking pool ([`run_blocking`]) it just runs.
pub(super) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Where and how to connect.
#[derive(Clone)]
pub struct PgOptions {
    /// A `postgresql://` URL or a `key=value` connection string.
    pub url: String,
    pub pool_size: usize,
    /// The CA that signs the server's certificate (`[storage] postgres_ca_file`; see
    /// [`super::postgres_tls`] for when TLS is on).
    pub ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &"<redacted>")
            .field("pool_size", &self.pool_size)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

pub struct PgStore {
    /// Shared with the store's [`super::PgScoreCache`].
    pool: Arc<Pool>,
}

impl PgStore {
    /// Connects, applies missing migrations (under the advisory lock) and keeps the connection
    /// for the pool. A URL that does not parse is [`StoreError::Unavailable`] and never echoes
    /// the URL (it may hold the password).
    pub fn open(options: &PgOptions) -> StoreResult<PgStore> {
        let mut config = Config::from_str(&options.url)
            .map_err(|e| StoreError::Unavailable(format!("connection string: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("tuneguard");
        }
        let tls = super::postgres_tls::for_config(&mut config, options.ca_file.as_deref())?;
        let pool = Arc::new(Pool::new(config, tls, options.pool_size));
        let store = PgStore { pool };
        store.with(|c| super::postgres_migrate::migrate(c).map(|_| ()))?;
        Ok(store)
    }

    /// Runs `f` on a pooled connection (see [`blocking`]).
    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&mut Conn<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        blocking(|| {
            let mut conn = self.pool.get()?;
            f(&mut conn)
        })
    }
}

pub(super) const FILE_COLS: &str =
    "id, tenant, bytes, created_at, filename, purpose, expires_at, blob_key";

pub(super) fn file_row(r: &Row) -> StoreResult<FileRecord> {
    Ok(FileRecord {
        id: r.try_get(0)?,
        tenant: r.try_get(1)?,
        bytes: r.try_get::<_, i64>(2)? as u64,
        created_at: r.try_get(3)?,
        filename: r.try_get(4)?,
        purpose: r.try_get(5)?,
        expires_at: r.try_get(6)?,
        blob_key: r.try_get(7)?,
    })
}

pub(super) fn insert_file(c: &mut impl GenericClient, f: &FileRecord) -> StoreResult<()> {
    c.execute(
        &format!("INSERT INTO files ({FILE_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)"),
        &[
            &f.id,
            &f.tenant,
            &(f.bytes as i64),
            &f.created_at,
            &f.filename,
            &f.purpose,
            &f.expires_at,
            &f.blob_key,
        ],
    )?;
    Ok(())
}

/// Sequence number of the cursor `id` in `table` among the rows whose `scope` column is
/// `scope_value`: a foreign id is [`StoreError::UnknownCursor`] exactly like a missing one.
pub(super) fn cursor_seq(
    c: &mut impl GenericClient,
    table: &str,
    scope: &str,
    scope_value: &str,
    id: &str,
) -> StoreResult<i64> {
    let sql = format!("SELECT seq FROM {table} WHERE id = $1 AND {scope} = $2");
    match c.query_opt(&sql, &[&id, &scope_value])? {
        Some(r) => Ok(r.try_get(0)?),
        None => Err(StoreError::UnknownCursor(id.to_string())),
    }
}

/// A file past its `expires_at` is gone for clients at once (the database's clock, as SQLite's
/// `strftime('%s', 'now')`), not when the next sweep deletes its row and blob.
const UNEXPIRED: &str =
    "(expires_at IS NULL OR expires_at > floor(extract(epoch FROM now()))::bigint)";

impl PgStore {
    fn files_impl(&self, tenant: &str, q: &FileQuery) -> StoreResult<Page<FileRecord>> {
        self.with(|c| {
            let cursor = match &q.after {
                Some(a) => Some(cursor_seq(&mut **c, "files", "tenant", tenant, a)?),
                None => None,
            };
            let (cmp, dir) = match q.order {
                SortOrder::Asc => (">", "ASC"),
                SortOrder::Desc => ("<", "DESC"),
            };
            let bound = cursor.unwrap_or(match q.order {
                SortOrder::Asc => i64::MIN,
                SortOrder::Desc => i64::MAX,
            });
            let sql = format!(
                "SELECT {FILE_COLS} FROM files WHERE tenant = $1 AND seq {cmp} $2 \
                 AND ($3::text IS NULL OR purpose = $3) AND {UNEXPIRED} ORDER BY seq {dir} LIMIT $4"
            );
            let rows = c.query(
                &sql,
                &[&tenant, &bound, &q.purpose, &((q.limit + 1) as i64)],
            )?;
            let mut data = rows.iter().map(file_row).collect::<StoreResult<Vec<_>>>()?;
            let has_more = data.len() > q.limit;
            data.truncate(q.limit);
            Ok(Page { data, has_more })
        })
    }
}

impl Store for PgStore {
    fn insert_file(&self, f: &FileRecord) -> StoreResult<()> {
        self.with(|c| insert_file(&mut **c, f))
    }

    fn get_file(&self, tenant: &str, id: &str) -> StoreResult<Option<FileRecord>> {
        self.with(|c| {
            c.query_opt(
                &format!(
                    "SELECT {FILE_COLS} FROM files WHERE id = $1 AND tenant = $2 AND {UNEXPIRED}"
                ),
                &[&id, &tenant],
            )?
            .as_ref()
            .map(file_row)
            .transpose()
        })
    }

    fn list_files(&self, tenant: &str, q: &FileQuery) -> StoreResult<Page<FileRecord>> {
        self.files_impl(tenant, q)
    }

    fn delete_file(&self, tenant: &str, id: &str) -> StoreResult<Option<FileRecord>> {
        self.with(|c| {
            c.query_opt(
                &format!("DELETE FROM files WHERE id = $1 AND tenant = $2 RETURNING {FILE_COLS}"),
                &[&id, &tenant],
            )?
            .as_ref()
            .map(file_row)
            .transpose()
        })
    }

    fn delete_expired_files(&self, now: i64) -> StoreResult<Vec<FileRecord>> {
        self.with(|c| {
            let rows = c.query(
                &format!(
                    "WITH gone AS (DELETE FROM files WHERE expires_at IS NOT NULL AND expires_at <= $1 \
                     RETURNING seq, {FILE_COLS}) SELECT {FILE_COLS} FROM gone ORDER BY seq"
                ),
                &[&now],
            )?;
            rows.iter().map(file_row).collect()
        })
    }

    fn referenced_blob_keys(&self) -> StoreResult<Vec<String>> {
        self.with(|c| {
            let mut keys = Vec::new();
            for sql in [
                "SELECT blob_key FROM files ORDER BY seq",
                "SELECT blob_key FROM parts ORDER BY seq",
                "SELECT artifact FROM checkpoints WHERE artifact IS NOT NULL ORDER BY seq",
            ] {
                for r in c.query(sql, &[])? {
                    keys.push(r.try_get(0)?);
                }
            }
            for r in c.query("SELECT id, pipeline FROM jobs ORDER BY seq", &[])? {
                let id: String = r.try_get(0)?;
                let p: String = r.try_get(1)?;
                keys.extend(
                    PipelineBlobKeys::of(&p).map_err(|e| corrupt("jobs", "pipeline", &id, e))?,
                );
            }
            Ok(keys)
        })
    }

    fn insert_upload(&self, u: &UploadRecord) -> StoreResult<()> {
        self.insert_upload_impl(u)
    }
    fn get_upload(&self, tenant: &str, id: &str) -> StoreResult<Option<UploadRecord>> {
        self.get_upload_impl(tenant, id)
    }
    fn insert_part(&self, p: &PartRecord) -> StoreResult<()> {
        self.insert_part_impl(p)
    }
    fn list_parts(&self, upload_id: &str) -> StoreResult<Vec<PartRecord>> {
        self.list_parts_impl(upload_id)
    }
    fn finish_upload(
        &self,
        upload_id: &str,
        status: UploadStatus,
        file: Option<(&FileRecord, &[String])>,
    ) -> StoreResult<bool> {
        self.finish_upload_impl(upload_id, status, file)
    }
    fn expire_uploads(&self, now: i64) -> StoreResult<Vec<UploadRecord>> {
        self.expire_uploads_impl(now)
    }
    fn finished_uploads_with_parts(&self) -> StoreResult<Vec<String>> {
        self.finished_uploads_with_parts_impl()
    }
    fn delete_parts(&self, upload_id: &str) -> StoreResult<Vec<String>> {
        self.delete_parts_impl(upload_id)
    }

    fn create_job(
        &self,
        job: &JobRecord,
        event: &EventRecord,
        keys: &[IdempotencyKey],
    ) -> StoreResult<CreateOutcome> {
        self.create_job_impl(job, event, keys)
    }
    fn get_job(&self, tenant: &str, id: &str) -> StoreResult<Option<JobRecord>> {
        self.get_job_impl(Some(tenant), id)
    }
    fn get_job_any(&self, id: &str) -> StoreResult<Option<JobRecord>> {
        self.get_job_impl(None, id)
    }
    fn list_jobs(&self, tenant: &str, q: &JobQuery) -> StoreResult<Page<JobRecord>> {
        self.list_jobs_impl(tenant, q)
    }
    fn update_job_observed(
        &self,
        job: &JobRecord,
        expected: JobStatus,
        events: &[EventRecord],
        checkpoints: &[CheckpointRecord],
    ) -> StoreResult<bool> {
        self.update_job_impl(job, expected, events, checkpoints)
    }
    fn set_job_status(&self, c: &StatusChange, event: &EventRecord) -> StoreResult<bool> {
        self.set_job_status_impl(c, event)
    }
    fn count_jobs(&self) -> StoreResult<Vec<(JobStatus, u64)>> {
        self.with(|c| {
            let mut out = Vec::new();
            for r in c.query("SELECT status, COUNT(*) FROM jobs GROUP BY status", &[])? {
                let s: String = r.try_get(0)?;
                let n: i64 = r.try_get(1)?;
                let status =
                    JobStatus::parse(&s).ok_or_else(|| corrupt("jobs", "status", "<count>", &s))?;
                out.push((status, n.max(0) as u64));
            }
            Ok(out)
        })
    }
    fn active_jobs(&self) -> StoreResult<Vec<JobRecord>> {
        self.active_jobs_impl()
    }
    fn owed_cancels(&self) -> StoreResult<Vec<JobRecord>> {
        self.owed_cancels_impl()
    }
    fn lease_drive(&self, job_id: &str, holder: &str, now: i64, seconds: i64) -> StoreResult<bool> {
        self.with(|c| {
            let n = c.execute(
                "INSERT INTO runner_leases (job_id, holder, expires_at) VALUES ($1, $2, $4) \
                 ON CONFLICT (job_id) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at \
                 WHERE runner_leases.holder = EXCLUDED.holder OR runner_leases.expires_at <= $3",
                &[&job_id, &holder, &now, &now.saturating_add(seconds)],
            )?;
            Ok(n == 1)
        })
    }
    fn release_drive(&self, job_id: &str, holder: &str) -> StoreResult<()> {
        self.with(|c| {
            c.execute(
                "DELETE FROM runner_leases WHERE job_id = $1 AND holder = $2",
                &[&job_id, &holder],
            )?;
            Ok(())
        })
    }
    fn insert_event(&self, e: &EventRecord) -> StoreResult<()> {
        self.with(|c| super::postgres_jobs::insert_event(&mut **c, e))
    }
    fn list_events(
        &self,
        job_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<EventRecord>> {
        self.list_events_impl(job_id, after, limit)
    }
    fn list_checkpoints(
        &self,
        job_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<CheckpointRecord>> {
        self.list_checkpoints_impl(job_id, after, limit)
    }
    fn model_listed(&self, tenant: &str, model: &str) -> StoreResult<bool> {
        self.with(|c| {
            let row = c.query_one(
                "SELECT EXISTS(SELECT 1 FROM jobs WHERE fine_tuned_model = $2 AND tenant = $1 \
                     AND status = 'succeeded') \
                 OR EXISTS(SELECT 1 FROM checkpoints c JOIN jobs j ON j.id = c.job_id \
                     WHERE c.fine_tuned_model_checkpoint = $2 AND j.tenant = $1 \
                     AND NOT EXISTS(SELECT 1 FROM checkpoints r WHERE r.job_id = j.id \
                         AND r.fine_tuned_model_checkpoint = j.fine_tuned_model \
                         AND c.step_number > r.step_number))",
                &[&tenant, &model],
            )?;
            Ok(row.try_get(0)?)
        })
    }

    fn listed_models(&self, tenant: &str) -> StoreResult<std::collections::HashSet<String>> {
        self.with(|c| {
            let rows = c.query(
                "SELECT fine_tuned_model FROM jobs WHERE tenant = $1 AND status = 'succeeded' \
                     AND fine_tuned_model IS NOT NULL \
                 UNION SELECT c.fine_tuned_model_checkpoint FROM checkpoints c \
                     JOIN jobs j ON j.id = c.job_id WHERE j.tenant = $1 \
                     AND NOT EXISTS(SELECT 1 FROM checkpoints r WHERE r.job_id = j.id \
                         AND r.fine_tuned_model_checkpoint = j.fine_tuned_model \
                         AND c.step_number > r.step_number)",
                &[&tenant],
            )?;
            rows.iter()
                .map(|r| Ok(r.try_get::<_, String>(0)?))
                .collect()
        })
    }

    fn claim_local_job(
        &self,
        worker_id: &str,
        now: i64,
        lease_seconds: i64,
    ) -> StoreResult<Option<Claim>> {
        self.claim_local_job_impl(worker_id, now, lease_seconds)
    }
    fn heartbeat_lease(
        &self,
        job_id: &str,
        worker_id: &str,
        now: i64,
        lease_seconds: i64,
    ) -> StoreResult<bool> {
        self.heartbeat_lease_impl(job_id, worker_id, now, lease_seconds)
    }
    fn release_lease(&self, job_id: &str, worker_id: &str) -> StoreResult<()> {
        self.release_lease_impl(job_id, worker_id)
    }
    fn lease_of(&self, job_id: &str) -> StoreResult<Option<Lease>> {
        self.lease_of_impl(job_id)
    }
    fn local_queue(&self, now: i64) -> StoreResult<LocalQueue> {
        self.local_queue_impl(now)
    }

    fn save_policy_snapshot(&self, s: &PolicySnapshot) -> StoreResult<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO policy_snapshots (version_hash, created_at, body) VALUES ($1,$2,$3) \
                 ON CONFLICT (version_hash) DO NOTHING",
                &[&s.version_hash, &s.created_at, &s.body.to_string()],
            )?;
            Ok(())
        })
    }

    fn get_policy_snapshot(&self, version_hash: &str) -> StoreResult<Option<PolicySnapshot>> {
        self.with(|c| {
            let Some(r) = c.query_opt(
                "SELECT version_hash, created_at, body FROM policy_snapshots WHERE version_hash = $1",
                &[&version_hash],
            )?
            else {
                return Ok(None);
            };
            let v: String = r.try_get(0)?;
            let b: String = r.try_get(2)?;
            let body =
                serde_json::from_str(&b).map_err(|e| corrupt("policy_snapshots", "body", &v, e))?;
            Ok(Some(PolicySnapshot {
                version_hash: v,
                created_at: r.try_get(1)?,
                body,
            }))
        })
    }

    fn score_cache(&self) -> Option<Arc<dyn selector::ScoreCache>> {
        Some(Arc::new(super::PgScoreCache::new(Arc::clone(&self.pool))))
    }
}
