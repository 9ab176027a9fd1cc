//! The embedded SQLite [`Store`]: WAL journal, `synchronous=FULL` (an acknowledged object
//! survives power loss, not only `kill -9`; write volume is small), schema migrations keyed
//! on `PRAGMA user_version`. One connection behind a mutex; callers run on the blocking pool.

use super::*;
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// Migrations in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("schema_v1.sql"),
    include_str!("schema_v2.sql"),
    include_str!("schema_v3.sql"),
    include_str!("schema_v4.sql"),
    include_str!("schema_v5.sql"),
    include_str!("schema_v6.sql"),
];

pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating if needed) `data_dir/tuneguard.db` and migrates it.
    pub fn open(data_dir: &Path) -> StoreResult<SqliteStore> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Io {
            path: data_dir.display().to_string(),
            source,
        })?;
        let conn = Connection::open(data_dir.join("tuneguard.db"))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&conn)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    pub(super) fn conn(&self) -> StoreResult<MutexGuard<'_, Connection>> {
        self.conn
            .lock()
            .map_err(|_| StoreError::Task("sqlite connection mutex poisoned".into()))
    }
}

fn migrate(conn: &Connection) -> StoreResult<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        let tx =
            rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

pub(super) use super::codec::corrupt;

pub(super) const FILE_COLS: &str =
    "id, tenant, bytes, created_at, filename, purpose, expires_at, blob_key";

fn file_row(r: &Row<'_>) -> rusqlite::Result<FileRecord> {
    Ok(FileRecord {
        id: r.get(0)?,
        tenant: r.get(1)?,
        bytes: r.get::<_, i64>(2)? as u64,
        created_at: r.get(3)?,
        filename: r.get(4)?,
        purpose: r.get(5)?,
        expires_at: r.get(6)?,
        blob_key: r.get(7)?,
    })
}

/// Sequence number of the cursor `id` in `table` among the rows whose `scope` column is
/// `scope_value` (the tenant, or the job): the list's own objects only, so a foreign id is
/// [`StoreError::UnknownCursor`] exactly like a missing one (the API answers 400 naming `after`).
pub(super) fn cursor_seq(
    conn: &Connection,
    table: &str,
    scope: &str,
    scope_value: &str,
    id: &str,
) -> StoreResult<i64> {
    let sql = format!("SELECT seq FROM {table} WHERE id = ?1 AND {scope} = ?2");
    conn.query_row(&sql, [id, scope_value], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::UnknownCursor(id.to_string()))
}

impl SqliteStore {
    pub(super) fn files_impl(&self, tenant: &str, q: &FileQuery) -> StoreResult<Page<FileRecord>> {
        let conn = self.conn()?;
        let cursor = match &q.after {
            Some(a) => Some(cursor_seq(&conn, "files", "tenant", tenant, a)?),
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
            "SELECT {FILE_COLS} FROM files WHERE tenant = ?1 AND seq {cmp} ?2 \
             AND (?3 IS NULL OR purpose = ?3) AND {UNEXPIRED} ORDER BY seq {dir} LIMIT ?4"
        );
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(
            params![tenant, bound, q.purpose, (q.limit + 1) as i64],
            file_row,
        )?;
        let mut data = rows.collect::<Result<Vec<_>, _>>()?;
        let has_more = data.len() > q.limit;
        data.truncate(q.limit);
        Ok(Page { data, has_more })
    }
}

/// A file past its `expires_at` is gone for clients at once, not when the next sweep deletes
/// its row and blob.
const UNEXPIRED: &str =
    "(expires_at IS NULL OR expires_at > CAST(strftime('%s', 'now') AS INTEGER))";

impl Store for SqliteStore {
    fn insert_file(&self, f: &FileRecord) -> StoreResult<()> {
        self.conn()?.execute(
            &format!("INSERT INTO files ({FILE_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)"),
            params![
                f.id,
                f.tenant,
                f.bytes as i64,
                f.created_at,
                f.filename,
                f.purpose,
                f.expires_at,
                f.blob_key
            ],
        )?;
        Ok(())
    }

    fn get_file(&self, tenant: &str, id: &str) -> StoreResult<Option<FileRecord>> {
        Ok(self
            .conn()?
            .query_row(
                &format!(
                    "SELECT {FILE_COLS} FROM files WHERE id = ?1 AND tenant = ?2 AND {UNEXPIRED}"
                ),
                [id, tenant],
                file_row,
            )
            .optional()?)
    }

    fn list_files(&self, tenant: &str, q: &FileQuery) -> StoreResult<Page<FileRecord>> {
        self.files_impl(tenant, q)
    }

    fn delete_file(&self, tenant: &str, id: &str) -> StoreResult<Option<FileRecord>> {
        let conn = self.conn()?;
        let tx =
            rusqlite::Transaction::new_unchecked(&conn, rusqlite::TransactionBehavior::Immediate)?;
        let found = tx
            .query_row(
                &format!("SELECT {FILE_COLS} FROM files WHERE id = ?1 AND tenant = ?2"),
                [id, tenant],
                file_row,
            )
            .optional()?;
        if found.is_some() {
            tx.execute("DELETE FROM files WHERE id = ?1", [id])?;
        }
        tx.commit()?;
        Ok(found)
    }

    fn delete_expired_files(&self, now: i64) -> StoreResult<Vec<FileRecord>> {
        let conn = self.conn()?;
        let tx =
            rusqlite::Transaction::new_unchecked(&conn, rusqlite::TransactionBehavior::Immediate)?;
        let expired = {
            let mut stmt = tx.prepare(&format!(
                "SELECT {FILE_COLS} FROM files WHERE expires_at IS NOT NULL AND expires_at <= ?1"
            ))?;
            let rows = stmt.query_map([now], file_row)?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        tx.execute(
            "DELETE FROM files WHERE expires_at IS NOT NULL AND expires_at <= ?1",
            [now],
        )?;
        tx.commit()?;
        Ok(expired)
    }

    fn referenced_blob_keys(&self) -> StoreResult<Vec<String>> {
        let conn = self.conn()?;
        let mut keys = Vec::new();
        for sql in [
            "SELECT blob_key FROM files",
            "SELECT blob_key FROM parts",
            "SELECT artifact FROM checkpoints WHERE artifact IS NOT NULL",
        ] {
            let mut stmt = conn.prepare(sql)?;
            for k in stmt.query_map([], |r| r.get::<_, String>(0))? {
                keys.push(k?);
            }
        }
        let mut stmt = conn.prepare("SELECT id, pipeline FROM jobs")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
            let (id, p) = row?;
            keys.extend(PipelineBlobKeys::of(&p).map_err(|e| corrupt("jobs", "pipeline", &id, e))?);
        }
        Ok(keys)
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
        let conn = self.conn()?;
        let tx =
            rusqlite::Transaction::new_unchecked(&conn, rusqlite::TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE jobs SET status = ?2, step = ?3, finished_at = COALESCE(?4, finished_at), \
             estimated_finish = NULL, revision = revision + 1 WHERE id = ?1 AND status = ?5 AND step = ?6",
            params![
                c.job_id,
                c.status.as_str(),
                c.step.as_str(),
                c.finished_at,
                c.expected.as_str(),
                c.expected_step.as_str()
            ],
        )?;
        if changed == 1 {
            super::sqlite_jobs::insert_event(&tx, event)?;
        }
        tx.commit()?;
        Ok(changed == 1)
    }

    fn count_jobs(&self) -> StoreResult<Vec<(JobStatus, u64)>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare("SELECT status, COUNT(*) FROM jobs GROUP BY status")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (s, n) = row?;
            let status =
                JobStatus::parse(&s).ok_or_else(|| corrupt("jobs", "status", "<count>", &s))?;
            out.push((status, n.max(0) as u64));
        }
        Ok(out)
    }

    fn active_jobs(&self) -> StoreResult<Vec<JobRecord>> {
        self.active_jobs_impl()
    }
    fn owed_cancels(&self) -> StoreResult<Vec<JobRecord>> {
        self.owed_cancels_impl()
    }
    fn lease_drive(&self, job_id: &str, holder: &str, now: i64, seconds: i64) -> StoreResult<bool> {
        let n = self.conn()?.execute(
            "INSERT INTO runner_leases (job_id, holder, expires_at) VALUES (?1, ?2, ?4) \
             ON CONFLICT(job_id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE runner_leases.holder = excluded.holder OR runner_leases.expires_at <= ?3",
            params![job_id, holder, now, now.saturating_add(seconds)],
        )?;
        Ok(n == 1)
    }
    fn release_drive(&self, job_id: &str, holder: &str) -> StoreResult<()> {
        self.conn()?.execute(
            "DELETE FROM runner_leases WHERE job_id = ?1 AND holder = ?2",
            params![job_id, holder],
        )?;
        Ok(())
    }
    fn insert_event(&self, e: &EventRecord) -> StoreResult<()> {
        super::sqlite_jobs::insert_event(&*self.conn()?, e)
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
        let listed: bool = self.conn()?.query_row(
            "SELECT EXISTS(SELECT 1 FROM jobs WHERE fine_tuned_model = ?2 AND tenant = ?1 \
                 AND status = 'succeeded') \
             OR EXISTS(SELECT 1 FROM checkpoints c JOIN jobs j ON j.id = c.job_id \
                 WHERE c.fine_tuned_model_checkpoint = ?2 AND j.tenant = ?1 \
                 AND NOT EXISTS(SELECT 1 FROM checkpoints r WHERE r.job_id = j.id \
                     AND r.fine_tuned_model_checkpoint = j.fine_tuned_model \
                     AND c.step_number > r.step_number))",
            params![tenant, model],
            |r| r.get(0),
        )?;
        Ok(listed)
    }

    fn listed_models(&self, tenant: &str) -> StoreResult<std::collections::HashSet<String>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT fine_tuned_model FROM jobs WHERE tenant = ?1 AND status = 'succeeded' \
                 AND fine_tuned_model IS NOT NULL \
             UNION SELECT c.fine_tuned_model_checkpoint FROM checkpoints c \
                 JOIN jobs j ON j.id = c.job_id WHERE j.tenant = ?1 \
                 AND NOT EXISTS(SELECT 1 FROM checkpoints r WHERE r.job_id = j.id \
                     AND r.fine_tuned_model_checkpoint = j.fine_tuned_model \
                     AND c.step_number > r.step_number)",
        )?;
        let rows = stmt.query_map([tenant], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn save_policy_snapshot(&self, s: &PolicySnapshot) -> StoreResult<()> {
        self.conn()?.execute(
            "INSERT OR IGNORE INTO policy_snapshots (version_hash, created_at, body) VALUES (?1,?2,?3)",
            params![s.version_hash, s.created_at, s.body.to_string()],
        )?;
        Ok(())
    }

    fn get_policy_snapshot(&self, version_hash: &str) -> StoreResult<Option<PolicySnapshot>> {
        let row = self
            .conn()?
            .query_row(
                "SELECT version_hash, created_at, body FROM policy_snapshots WHERE version_hash = ?1",
                [version_hash],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?)),
            )
            .optional()?;
        row.map(|(v, c, b)| {
            let body =
                serde_json::from_str(&b).map_err(|e| corrupt("policy_snapshots", "body", &v, e))?;
            Ok(PolicySnapshot {
                version_hash: v,
                created_at: c,
                body,
            })
        })
        .transpose()
    }
}

#[cfg(test)]
#[path = "sqlite_tests.rs"]
mod tests;
