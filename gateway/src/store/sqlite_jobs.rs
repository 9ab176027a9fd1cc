//! Jobs, events, checkpoints and idempotency records for [`SqliteStore`].

use super::codec::{decode_job, fingerprint_key, RawJob};
use super::sqlite::{corrupt, cursor_seq, SqliteStore};
use super::*;
use rusqlite::{params, Connection, OptionalExtension, Row};

pub(super) const JOB_COLS: &str = "id, tenant, created_at, model, training_file, validation_file, \
    hyperparameters, method, suffix, seed, metadata, status, step, error, fine_tuned_model, \
    finished_at, trained_tokens, result_files, estimated_finish, pipeline, revision";

fn job_row(r: &Row<'_>) -> rusqlite::Result<RawJob> {
    Ok(RawJob {
        rec: JobRecord {
            id: r.get(0)?,
            tenant: r.get(1)?,
            created_at: r.get(2)?,
            model: r.get(3)?,
            training_file: r.get(4)?,
            validation_file: r.get(5)?,
            hyperparameters: serde_json::Value::Null,
            method: serde_json::Value::Null,
            suffix: r.get(8)?,
            seed: r.get(9)?,
            metadata: None,
            status: JobStatus::Queued,
            step: JobStep::Queue,
            error: None,
            fine_tuned_model: r.get(14)?,
            finished_at: r.get(15)?,
            trained_tokens: r.get(16)?,
            result_files: Vec::new(),
            estimated_finish: r.get(18)?,
            pipeline: Pipeline::default(),
            revision: r.get(20)?,
        },
        hyperparameters: r.get(6)?,
        method: r.get(7)?,
        metadata: r.get(10)?,
        status: r.get(11)?,
        step: r.get(12)?,
        error: r.get(13)?,
        result_files: r.get(17)?,
        pipeline: r.get(19)?,
    })
}

fn insert_job(conn: &Connection, j: &JobRecord) -> StoreResult<()> {
    conn.execute(
        &format!("INSERT INTO jobs ({JOB_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21)"),
        params![
            j.id, j.tenant, j.created_at, j.model, j.training_file, j.validation_file,
            j.hyperparameters.to_string(), j.method.to_string(), j.suffix, j.seed,
            j.metadata.as_ref().map(|m| serde_json::to_string(m).unwrap_or_default()),
            j.status.as_str(), j.step.as_str(),
            j.error.as_ref().map(|e| serde_json::to_string(e).unwrap_or_default()),
            j.fine_tuned_model, j.finished_at, j.trained_tokens,
            serde_json::to_string(&j.result_files).unwrap_or_else(|_| "[]".into()),
            j.estimated_finish, j.pipeline.to_json_string(), j.revision
        ],
    )?;
    Ok(())
}

pub(super) fn insert_event(conn: &Connection, e: &EventRecord) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO events (id, job_id, created_at, level, message, kind, data) VALUES (?1,?2,?3,?4,?5,?6,?7)",
        params![e.id, e.job_id, e.created_at, e.level.as_str(), e.message, e.kind, e.data.as_ref().map(|d| d.to_string())],
    )?;
    Ok(())
}

pub(super) fn insert_checkpoint(conn: &Connection, c: &CheckpointRecord) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO checkpoints (id, job_id, created_at, fine_tuned_model_checkpoint, step_number, metrics, artifact) VALUES (?1,?2,?3,?4,?5,?6,?7)",
        params![c.id, c.job_id, c.created_at, c.fine_tuned_model_checkpoint, c.step_number, c.metrics.to_string(), c.artifact],
    )?;
    Ok(())
}

impl SqliteStore {
    pub(super) fn create_job_impl(
        &self,
        job: &JobRecord,
        event: &EventRecord,
        keys: &[IdempotencyKey],
    ) -> StoreResult<CreateOutcome> {
        let conn = self.conn()?;
        let tx =
            rusqlite::Transaction::new_unchecked(&conn, rusqlite::TransactionBehavior::Immediate)?;
        for k in keys {
            // An explicit key always names its job. A body match (no fingerprint) stands for
            // a retry only while that job is alive: a re-submission after a failure or a
            // cancel is a new attempt, not a replay of the dead job.
            let existing: Option<String> = tx
                .query_row(
                    "SELECT i.job_id FROM idempotency i LEFT JOIN jobs j ON j.id = i.job_id \
                     WHERE i.scope = ?1 AND i.key = ?2 AND i.created_at >= ?3 \
                     AND (?4 OR j.status IS NULL OR j.status NOT IN ('failed', 'cancelled'))",
                    params![k.scope, k.key, k.not_before, k.fingerprint.is_some()],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(id) = existing else { continue };
            let Some(fp) = &k.fingerprint else {
                return Ok(CreateOutcome::Existing(id));
            };
            // The fingerprint is kept as a companion record naming the same job.
            let same: Option<String> = tx
                .query_row(
                    "SELECT job_id FROM idempotency WHERE scope = ?1 AND key = ?2",
                    params![k.scope, fingerprint_key(&k.key, fp)],
                    |r| r.get(0),
                )
                .optional()?;
            return Ok(if same.as_deref() == Some(id.as_str()) {
                CreateOutcome::Existing(id)
            } else {
                CreateOutcome::Conflict(id)
            });
        }
        insert_job(&tx, job)?;
        insert_event(&tx, event)?;
        for k in keys {
            let mut rows = vec![k.key.clone()];
            rows.extend(k.fingerprint.iter().map(|fp| fingerprint_key(&k.key, fp)));
            for key in rows {
                tx.execute(
                    "INSERT OR REPLACE INTO idempotency (scope, key, job_id, created_at) VALUES (?1,?2,?3,?4)",
                    params![k.scope, key, job.id, job.created_at],
                )?;
            }
        }
        tx.commit()?;
        Ok(CreateOutcome::Created)
    }

    pub(super) fn get_job_impl(
        &self,
        tenant: Option<&str>,
        id: &str,
    ) -> StoreResult<Option<JobRecord>> {
        let raw = self
            .conn()?
            .query_row(
                &format!(
                    "SELECT {JOB_COLS} FROM jobs WHERE id = ?1 AND (?2 IS NULL OR tenant = ?2)"
                ),
                params![id, tenant],
                job_row,
            )
            .optional()?;
        raw.map(decode_job).transpose()
    }

    pub(super) fn list_jobs_impl(
        &self,
        tenant: &str,
        q: &JobQuery,
    ) -> StoreResult<Page<JobRecord>> {
        let conn = self.conn()?;
        let bound = match &q.after {
            Some(a) => cursor_seq(&conn, "jobs", "tenant", tenant, a)?,
            None => i64::MAX,
        };
        let mut stmt = conn.prepare(&format!(
            "SELECT {JOB_COLS} FROM jobs WHERE tenant = ?1 AND seq < ?2 ORDER BY seq DESC"
        ))?;
        let mut rows = stmt.query_map(params![tenant, bound], job_row)?;
        let mut data = Vec::new();
        let mut has_more = false;
        for raw in rows.by_ref() {
            let job = decode_job(raw?)?;
            let matches = q
                .metadata
                .iter()
                .all(|(k, v)| job.metadata.as_ref().and_then(|m| m.get(k)) == Some(v));
            if !matches {
                continue;
            }
            if data.len() == q.limit {
                has_more = true;
                break;
            }
            data.push(job);
        }
        Ok(Page { data, has_more })
    }

    pub(super) fn update_job_impl(
        &self,
        j: &JobRecord,
        expected: JobStatus,
        events: &[EventRecord],
        checkpoints: &[CheckpointRecord],
    ) -> StoreResult<bool> {
        let conn = self.conn()?;
        let tx =
            rusqlite::Transaction::new_unchecked(&conn, rusqlite::TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE jobs SET status = ?2, step = ?3, error = ?4, fine_tuned_model = ?5, finished_at = ?6, \
             trained_tokens = ?7, result_files = ?8, estimated_finish = ?9, pipeline = ?10, hyperparameters = ?11, \
             method = ?13, revision = revision + 1 WHERE id = ?1 AND status = ?12 AND revision = ?14",
            params![
                j.id, j.status.as_str(), j.step.as_str(),
                j.error.as_ref().map(|e| serde_json::to_string(e).unwrap_or_default()),
                j.fine_tuned_model, j.finished_at, j.trained_tokens,
                serde_json::to_string(&j.result_files).unwrap_or_else(|_| "[]".into()),
                j.estimated_finish, j.pipeline.to_json_string(), j.hyperparameters.to_string(),
                expected.as_str(), j.method.to_string(), j.revision
            ],
        )?;
        if changed == 1 {
            for e in events {
                insert_event(&tx, e)?;
            }
            for c in checkpoints {
                insert_checkpoint(&tx, c)?;
            }
        }
        tx.commit()?;
        Ok(changed == 1)
    }

    pub(super) fn active_jobs_impl(&self) -> StoreResult<Vec<JobRecord>> {
        self.jobs_where("status NOT IN ('succeeded','failed','cancelled')")
    }

    pub(super) fn owed_cancels_impl(&self) -> StoreResult<Vec<JobRecord>> {
        self.jobs_where("status = 'cancelled' AND step = 'cancel'")
    }

    /// Every job matching `condition` (a constant SQL condition), oldest first.
    fn jobs_where(&self, condition: &str) -> StoreResult<Vec<JobRecord>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {JOB_COLS} FROM jobs WHERE {condition} ORDER BY seq"
        ))?;
        let rows = stmt.query_map([], job_row)?;
        let mut out = Vec::new();
        for raw in rows {
            out.push(decode_job(raw?)?);
        }
        Ok(out)
    }

    pub(super) fn list_events_impl(
        &self,
        job_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<EventRecord>> {
        let conn = self.conn()?;
        let bound = match after {
            Some(a) => cursor_seq(&conn, "events", "job_id", job_id, a)?,
            None => i64::MAX,
        };
        let mut stmt = conn.prepare(
            "SELECT id, job_id, created_at, level, message, kind, data FROM events \
             WHERE job_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![job_id, bound, (limit + 1) as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, Option<String>>(6)?,
            ))
        })?;
        let mut data = Vec::new();
        for row in rows {
            let (id, job_id, created_at, level, message, kind, d) = row?;
            let level =
                EventLevel::parse(&level).ok_or_else(|| corrupt("events", "level", &id, &level))?;
            let data_v = match d {
                Some(s) => {
                    Some(serde_json::from_str(&s).map_err(|e| corrupt("events", "data", &id, e))?)
                }
                None => None,
            };
            data.push(EventRecord {
                id,
                job_id,
                created_at,
                level,
                message,
                kind,
                data: data_v,
            });
        }
        let has_more = data.len() > limit;
        data.truncate(limit);
        Ok(Page { data, has_more })
    }

    pub(super) fn list_checkpoints_impl(
        &self,
        job_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<CheckpointRecord>> {
        let conn = self.conn()?;
        let bound = match after {
            Some(a) => cursor_seq(&conn, "checkpoints", "job_id", job_id, a)?,
            None => i64::MAX,
        };
        let mut stmt = conn.prepare(
            "SELECT id, job_id, created_at, fine_tuned_model_checkpoint, step_number, metrics, artifact FROM checkpoints \
             WHERE job_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![job_id, bound, (limit + 1) as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, Option<String>>(6)?,
            ))
        })?;
        let mut data = Vec::new();
        for row in rows {
            let (id, job_id, created_at, ckpt, step_number, m, artifact) = row?;
            let metrics =
                serde_json::from_str(&m).map_err(|e| corrupt("checkpoints", "metrics", &id, e))?;
            data.push(CheckpointRecord {
                id,
                job_id,
                created_at,
                fine_tuned_model_checkpoint: ckpt,
                step_number,
                metrics,
                artifact,
            });
        }
        let has_more = data.len() > limit;
        data.truncate(limit);
        Ok(Page { data, has_more })
    }
}
