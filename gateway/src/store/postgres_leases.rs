//! Job leases on PostgreSQL: claim (FIFO with round-robin across tenants), heartbeat, release.
//!
//! A claim mirrors SQLite's: a read-only look first (idle workers poll often and take no lock),
//! then, in one transaction,
//! 1. a transaction-scoped advisory lock that serialises claims across every worker process —
//!    SQLite's IMMEDIATE transaction — so each claim sees the previous one's lease and
//!    tenant turn, and the round-robin order is exact, not approximately fair;
//! 2. the candidate job row locked `FOR UPDATE OF j SKIP LOCKED`: a job row another
//!    transaction holds (the runner writing a step) is passed over for this poll, not waited on;
//! 3. the job's lease re-read `FOR UPDATE` (a heartbeat may have just renewed it, and
//!    heartbeats take no claim lock): a live lease sends the claim on to the next candidate;
//! 4. the lease written and the tenant's turn moved to the back (a sequence number).

use super::postgres::PgStore;
use super::*;
use ::postgres::GenericClient;

/// The advisory lock claims take ("tgclaims" as ASCII).
const CLAIM_LOCK: i64 = 0x7467_636c_6169_6d73;

/// Candidates a claim passes over (their lease turned out live) before giving up this poll.
const MAX_SKIPPED: usize = 64;

const CLAIMABLE: &str = "j.status = $1 AND j.step = $2 \
    AND (j.pipeline::jsonb -> 'exec_state' ->> 'backend') = 'local' \
    AND (l.job_id IS NULL OR l.expires_at <= $3)";

impl PgStore {
    pub(super) fn claim_local_job_impl(
        &self,
        worker_id: &str,
        now: i64,
        lease_seconds: i64,
    ) -> StoreResult<Option<Claim>> {
        let running = JobStatus::Running.as_str();
        let run = JobStep::Run.as_str();
        let claimed = self.with(|c| {
            let any = c.query_opt(
                format!(
                    "SELECT 1 FROM jobs j LEFT JOIN job_leases l ON l.job_id = j.id \
                     WHERE {CLAIMABLE} LIMIT 1"
                )
                .as_str(),
                &[&running, &run, &now],
            )?;
            if any.is_none() {
                return Ok(None);
            }
            let mut tx = c.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CLAIM_LOCK])?;
            let mut skipped: Vec<String> = Vec::new();
            let (job_id, previous) = loop {
                if skipped.len() > MAX_SKIPPED {
                    return Ok(None);
                }
                let candidate = tx.query_opt(
                    format!(
                        "SELECT j.id, j.tenant FROM jobs j \
                         LEFT JOIN job_leases l ON l.job_id = j.id \
                         LEFT JOIN tenant_claims t ON t.tenant = j.tenant \
                         WHERE {CLAIMABLE} AND NOT (j.id = ANY($4)) \
                         ORDER BY COALESCE(t.seq, 0), j.seq LIMIT 1 \
                         FOR UPDATE OF j SKIP LOCKED"
                    )
                    .as_str(),
                    &[&running, &run, &now, &skipped],
                )?;
                let Some(row) = candidate else {
                    return Ok(None);
                };
                let job_id: String = row.try_get(0)?;
                let tenant: String = row.try_get(1)?;
                let lease = tx.query_opt(
                    "SELECT worker_id, expires_at FROM job_leases WHERE job_id = $1 FOR UPDATE",
                    &[&job_id],
                )?;
                let previous = match lease {
                    Some(l) if l.try_get::<_, i64>(1)? > now => {
                        skipped.push(job_id);
                        continue;
                    }
                    Some(l) => Some(l.try_get::<_, String>(0)?),
                    None => None,
                };
                write_claim(&mut tx, &job_id, &tenant, worker_id, now, lease_seconds)?;
                if previous.is_some() {
                    tx.execute(
                        "INSERT INTO counters (name, value) VALUES ('lease_takeovers', 1) \
                         ON CONFLICT (name) DO UPDATE SET value = counters.value + 1",
                        &[],
                    )?;
                }
                break (job_id, previous);
            };
            tx.commit()?;
            Ok(Some((job_id, previous)))
        })?;
        let Some((job_id, previous)) = claimed else {
            return Ok(None);
        };
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
        self.with(|c| {
            let n = c.execute(
                "UPDATE job_leases SET heartbeat_at = $3, expires_at = $4 \
                 WHERE job_id = $1 AND worker_id = $2",
                &[&job_id, &worker_id, &now, &(now + lease_seconds)],
            )?;
            Ok(n == 1)
        })
    }

    pub(super) fn release_lease_impl(&self, job_id: &str, worker_id: &str) -> StoreResult<()> {
        self.with(|c| {
            c.execute(
                "DELETE FROM job_leases WHERE job_id = $1 AND worker_id = $2",
                &[&job_id, &worker_id],
            )?;
            Ok(())
        })
    }

    pub(super) fn local_queue_impl(&self, now: i64) -> StoreResult<LocalQueue> {
        let running = JobStatus::Running.as_str();
        let run = JobStep::Run.as_str();
        self.with(|c| {
            let waiting: i64 = c
                .query_one(
                    format!(
                        "SELECT COUNT(*) FROM jobs j LEFT JOIN job_leases l ON l.job_id = j.id \
                         WHERE {CLAIMABLE}"
                    )
                    .as_str(),
                    &[&running, &run, &now],
                )?
                .try_get(0)?;
            let leased: i64 = c
                .query_one(
                    "SELECT COUNT(*) FROM job_leases l JOIN jobs j ON j.id = l.job_id \
                     WHERE l.expires_at > $1 AND j.status = 'running'",
                    &[&now],
                )?
                .try_get(0)?;
            let takeovers: Option<i64> = c
                .query_opt(
                    "SELECT value FROM counters WHERE name = 'lease_takeovers'",
                    &[],
                )?
                .map(|r| r.try_get(0))
                .transpose()?;
            Ok(LocalQueue {
                waiting: waiting.max(0) as u64,
                leased: leased.max(0) as u64,
                takeovers: takeovers.unwrap_or(0).max(0) as u64,
            })
        })
    }

    pub(super) fn lease_of_impl(&self, job_id: &str) -> StoreResult<Option<Lease>> {
        self.with(|c| {
            let Some(r) = c.query_opt(
                "SELECT job_id, worker_id, acquired_at, heartbeat_at, expires_at \
                 FROM job_leases WHERE job_id = $1",
                &[&job_id],
            )?
            else {
                return Ok(None);
            };
            Ok(Some(Lease {
                job_id: r.try_get(0)?,
                worker_id: r.try_get(1)?,
                acquired_at: r.try_get(2)?,
                heartbeat_at: r.try_get(3)?,
                expires_at: r.try_get(4)?,
            }))
        })
    }
}

/// The lease row (new, or an expired one taken over) and the tenant's turn to the back.
fn write_claim(
    tx: &mut impl GenericClient,
    job_id: &str,
    tenant: &str,
    worker_id: &str,
    now: i64,
    lease_seconds: i64,
) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO job_leases (job_id, worker_id, acquired_at, heartbeat_at, expires_at) \
         VALUES ($1, $2, $3, $3, $4) ON CONFLICT (job_id) DO UPDATE SET \
         worker_id = excluded.worker_id, acquired_at = excluded.acquired_at, \
         heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at",
        &[&job_id, &worker_id, &now, &(now + lease_seconds)],
    )?;
    tx.execute(
        "INSERT INTO tenant_claims (tenant, seq) VALUES ($1, nextval('tenant_claims_seq')) \
         ON CONFLICT (tenant) DO UPDATE SET seq = excluded.seq",
        &[&tenant],
    )?;
    Ok(())
}
