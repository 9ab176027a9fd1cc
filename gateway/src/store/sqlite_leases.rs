//! Job leases on SQLite: claim (FIFO with round-robin across tenants), heartbeat, release.
//! A claim runs in an IMMEDIATE transaction, so two processes never take the same job.

use super::sqlite::SqliteStore;
use super::*;
use rusqlite::{params, OptionalExtension, TransactionBehavior};

impl SqliteStore {
    pub(super) fn claim_local_job_impl(
        &self,
        worker_id: &str,
        now: i64,
        lease_seconds: i64,
    ) -> StoreResult<Option<Claim>> {
        let mut conn = self.conn()?;
        // Idle workers poll often: look without taking the write lock first.
        let any: Option<i64> = conn
            .query_row(
                "SELECT 1 FROM jobs j LEFT JOIN job_leases l ON l.job_id = j.id \
                 WHERE j.status = ?1 AND j.step = ?2 \
                   AND json_extract(j.pipeline, '$.exec_state.backend') = 'local' \
                   AND (l.job_id IS NULL OR l.expires_at <= ?3) LIMIT 1",
                params![JobStatus::Running.as_str(), JobStep::Run.as_str(), now],
                |r| r.get(0),
            )
            .optional()?;
        if any.is_none() {
            return Ok(None);
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let candidate: Option<(String, String, Option<String>)> = tx
            .query_row(
                "SELECT j.id, j.tenant, l.worker_id FROM jobs j \
                 LEFT JOIN job_leases l ON l.job_id = j.id \
                 LEFT JOIN tenant_claims t ON t.tenant = j.tenant \
                 WHERE j.status = ?1 AND j.step = ?2 \
                   AND json_extract(j.pipeline, '$.exec_state.backend') = 'local' \
                   AND (l.job_id IS NULL OR l.expires_at <= ?3) \
                 ORDER BY COALESCE(t.seq, 0), j.seq LIMIT 1",
                params![JobStatus::Running.as_str(), JobStep::Run.as_str(), now],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((job_id, tenant, previous)) = candidate else {
            return Ok(None);
        };
        tx.execute(
            "INSERT INTO job_leases (job_id, worker_id, acquired_at, heartbeat_at, expires_at) \
             VALUES (?1, ?2, ?3, ?3, ?4) ON CONFLICT(job_id) DO UPDATE SET \
             worker_id = excluded.worker_id, acquired_at = excluded.acquired_at, \
             heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at",
            params![job_id, worker_id, now, now + lease_seconds],
        )?;
        tx.execute(
            "INSERT INTO tenant_claims (tenant, seq) \
             VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM tenant_claims)) \
             ON CONFLICT(tenant) DO UPDATE SET seq = excluded.seq",
            params![tenant],
        )?;
        if previous.is_some() {
            tx.execute(
                "INSERT INTO counters (name, value) VALUES ('lease_takeovers', 1) \
                 ON CONFLICT(name) DO UPDATE SET value = value + 1",
                [],
            )?;
        }
        tx.commit()?;
        drop(conn);
        let job = self.get_job_any(&job_id)?;
        Ok(job.map(|job| Claim {
            job,
            takeover_from: previous,
        }))
    }

    pub(super) fn heartbeat_lease_impl(
        &self,
        job_id: &str,
        worker_id: &str,
        now: i64,
        lease_seconds: i64,
    ) -> StoreResult<bool> {
        let n = self.conn()?.execute(
            "UPDATE job_leases SET heartbeat_at = ?3, expires_at = ?4 \
             WHERE job_id = ?1 AND worker_id = ?2",
            params![job_id, worker_id, now, now + lease_seconds],
        )?;
        Ok(n == 1)
    }

    pub(super) fn release_lease_impl(&self, job_id: &str, worker_id: &str) -> StoreResult<()> {
        self.conn()?.execute(
            "DELETE FROM job_leases WHERE job_id = ?1 AND worker_id = ?2",
            params![job_id, worker_id],
        )?;
        Ok(())
    }

    pub(super) fn local_queue_impl(&self, now: i64) -> StoreResult<LocalQueue> {
        let conn = self.conn()?;
        let waiting: i64 = conn.query_row(
            "SELECT COUNT(*) FROM jobs j LEFT JOIN job_leases l ON l.job_id = j.id \
             WHERE j.status = ?1 AND j.step = ?2 \
               AND json_extract(j.pipeline, '$.exec_state.backend') = 'local' \
               AND (l.job_id IS NULL OR l.expires_at <= ?3)",
            params![JobStatus::Running.as_str(), JobStep::Run.as_str(), now],
            |r| r.get(0),
        )?;
        let leased: i64 = conn.query_row(
            "SELECT COUNT(*) FROM job_leases l JOIN jobs j ON j.id = l.job_id \
             WHERE l.expires_at > ?1 AND j.status = 'running'",
            params![now],
            |r| r.get(0),
        )?;
        let takeovers: Option<i64> = conn
            .query_row(
                "SELECT value FROM counters WHERE name = 'lease_takeovers'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(LocalQueue {
            waiting: waiting.max(0) as u64,
            leased: leased.max(0) as u64,
            takeovers: takeovers.unwrap_or(0).max(0) as u64,
        })
    }

    pub(super) fn lease_of_impl(&self, job_id: &str) -> StoreResult<Option<Lease>> {
        Ok(self
            .conn()?
            .query_row(
                "SELECT job_id, worker_id, acquired_at, heartbeat_at, expires_at \
                 FROM job_leases WHERE job_id = ?1",
                params![job_id],
                |r| {
                    Ok(Lease {
                        job_id: r.get(0)?,
                        worker_id: r.get(1)?,
                        acquired_at: r.get(2)?,
                        heartbeat_at: r.get(3)?,
                        expires_at: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }
}
