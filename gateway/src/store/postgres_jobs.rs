//! Jobs, events, checkpoints and idempotency records for [`PgStore`].

use super::codec::{corrupt, decode_job, encode_job, fingerprint_key, json_opt, RawJob};
use super::postgres::{cursor_seq, PgStore};
use super::*;
use ::postgres::{GenericClient, Row};

const JOB_COLS: &str = "id, tenant, created_at, model, training_file, validation_file, \
    hyperparameters, method, suffix, seed, metadata, status, step, error, fine_tuned_model, \
    finished_at, trained_tokens, result_files, estimated_finish, pipeline, revision";

/// How many rows a metadata-filtered job list reads per round trip.
const JOB_SCAN_BATCH: i64 = 256;

fn job_row(r: &Row) -> StoreResult<RawJob> {
    job_row_at(r, 0)
}

/// A row that starts with `seq` before the job's columns.
fn job_row_after_seq(r: &Row) -> StoreResult<RawJob> {
    job_row_at(r, 1)
}

/// The job's columns ([`JOB_COLS`]) starting at column `o`.
fn job_row_at(r: &Row, o: usize) -> StoreResult<RawJob> {
    Ok(RawJob {
        rec: JobRecord {
            id: r.try_get(o)?,
            tenant: r.try_get(o + 1)?,
            created_at: r.try_get(o + 2)?,
            model: r.try_get(o + 3)?,
            training_file: r.try_get(o + 4)?,
            validation_file: r.try_get(o + 5)?,
            hyperparameters: serde_json::Value::Null,
            method: serde_json::Value::Null,
            suffix: r.try_get(o + 8)?,
            seed: r.try_get(o + 9)?,
            metadata: None,
            status: JobStatus::Queued,
            step: JobStep::Queue,
            error: None,
            fine_tuned_model: r.try_get(o + 14)?,
            finished_at: r.try_get(o + 15)?,
            trained_tokens: r.try_get(o + 16)?,
            result_files: Vec::new(),
            estimated_finish: r.try_get(o + 18)?,
            pipeline: Pipeline::default(),
            revision: r.try_get(o + 20)?,
        },
        hyperparameters: r.try_get(o + 6)?,
        method: r.try_get(o + 7)?,
        metadata: r.try_get(o + 10)?,
        status: r.try_get(o + 11)?,
        step: r.try_get(o + 12)?,
        error: r.try_get(o + 13)?,
        result_files: r.try_get(o + 17)?,
        pipeline: r.try_get(o + 19)?,
    })
}

fn insert_job(c: &mut impl GenericClient, j: &JobRecord) -> StoreResult<()> {
    let t = encode_job(j);
    c.execute(
        format!(
            "INSERT INTO jobs ({JOB_COLS}) VALUES \
             ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21)"
        )
        .as_str(),
        &[
            &j.id,
            &j.tenant,
            &j.created_at,
            &j.model,
            &j.training_file,
            &j.validation_file,
            &t.hyperparameters,
            &t.method,
            &j.suffix,
            &j.seed,
            &t.metadata,
            &j.status.as_str(),
            &j.step.as_str(),
            &t.error,
            &j.fine_tuned_model,
            &j.finished_at,
            &j.trained_tokens,
            &t.result_files,
            &j.estimated_finish,
            &t.pipeline,
            &j.revision,
        ],
    )?;
    Ok(())
}

pub(super) fn insert_event(c: &mut impl GenericClient, e: &EventRecord) -> StoreResult<()> {
    c.execute(
        "INSERT INTO events (id, job_id, created_at, level, message, kind, data) \
         VALUES ($1,$2,$3,$4,$5,$6,$7)",
        &[
            &e.id,
            &e.job_id,
            &e.created_at,
            &e.level.as_str(),
            &e.message,
            &e.kind,
            &e.data.as_ref().map(|d| d.to_string()),
        ],
    )?;
    Ok(())
}

fn insert_checkpoint(c: &mut impl GenericClient, k: &CheckpointRecord) -> StoreResult<()> {
    c.execute(
        "INSERT INTO checkpoints (id, job_id, created_at, fine_tuned_model_checkpoint, \
         step_number, metrics, artifact) VALUES ($1,$2,$3,$4,$5,$6,$7)",
        &[
            &k.id,
            &k.job_id,
            &k.created_at,
            &k.fine_tuned_model_checkpoint,
            &k.step_number,
            &k.metrics.to_string(),
            &k.artifact,
        ],
    )?;
    Ok(())
}

/// The advisory lock that serialises creates naming one idempotency record, standing in for
/// SQLite's single writer: the second of two racing creates waits, then sees the first's
/// record. A hash collision only serialises two unrelated creates.
fn lock_idempotency_keys(c: &mut impl GenericClient, keys: &[IdempotencyKey]) -> StoreResult<()> {
    let mut names: Vec<String> = keys
        .iter()
        .map(|k| format!("tuneguard-idempotency\u{1f}{}\u{1f}{}", k.scope, k.key))
        .collect();
    // One order for every process, so two creates never wait on each other's locks.
    names.sort();
    names.dedup();
    for name in names {
        c.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&name],
        )?;
    }
    Ok(())
}

impl PgStore {
    pub(super) fn create_job_impl(
        &self,
        job: &JobRecord,
        event: &EventRecord,
        keys: &[IdempotencyKey],
    ) -> StoreResult<CreateOutcome> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            lock_idempotency_keys(&mut tx, keys)?;
            for k in keys {
                // An explicit key always names its job. A body match (no fingerprint) stands
                // for a retry only while that job is alive: a re-submission after a failure or
                // a cancel is a new attempt, not a replay of the dead job.
                let existing: Option<String> = tx
                    .query_opt(
                        "SELECT i.job_id FROM idempotency i LEFT JOIN jobs j ON j.id = i.job_id \
                         WHERE i.scope = $1 AND i.key = $2 AND i.created_at >= $3 \
                         AND ($4 OR j.status IS NULL OR j.status NOT IN ('failed', 'cancelled'))",
                        &[&k.scope, &k.key, &k.not_before, &k.fingerprint.is_some()],
                    )?
                    .map(|r| r.try_get(0))
                    .transpose()?;
                let Some(id) = existing else { continue };
                let Some(fp) = &k.fingerprint else {
                    return Ok(CreateOutcome::Existing(id));
                };
                // The fingerprint is kept as a companion record naming the same job.
                let same: Option<String> = tx
                    .query_opt(
                        "SELECT job_id FROM idempotency WHERE scope = $1 AND key = $2",
                        &[&k.scope, &fingerprint_key(&k.key, fp)],
                    )?
                    .map(|r| r.try_get(0))
                    .transpose()?;
                return Ok(if same.as_deref() == Some(id.as_str()) {
                    CreateOutcome::Existing(id)
                } else {
                    CreateOutcome::Conflict(id)
                });
            }
            insert_job(&mut tx, job)?;
            insert_event(&mut tx, event)?;
            for k in keys {
                let mut rows = vec![k.key.clone()];
                rows.extend(k.fingerprint.iter().map(|fp| fingerprint_key(&k.key, fp)));
                for key in rows {
                    tx.execute(
                        "INSERT INTO idempotency (scope, key, job_id, created_at) VALUES ($1,$2,$3,$4) \
                         ON CONFLICT (scope, key) DO UPDATE SET job_id = excluded.job_id, \
                         created_at = excluded.created_at",
                        &[&k.scope, &key, &job.id, &job.created_at],
                    )?;
                }
            }
            tx.commit()?;
            Ok(CreateOutcome::Created)
        })
    }

    pub(super) fn get_job_impl(
        &self,
        tenant: Option<&str>,
        id: &str,
    ) -> StoreResult<Option<JobRecord>> {
        self.with(|c| {
            let row = c.query_opt(
                format!(
                    "SELECT {JOB_COLS} FROM jobs WHERE id = $1 AND ($2::text IS NULL OR tenant = $2)"
                )
                .as_str(),
                &[&id, &tenant],
            )?;
            row.as_ref()
                .map(|r| job_row(r).and_then(decode_job))
                .transpose()
        })
    }

    /// Newest first. With a metadata filter the matching is done on the decoded record (as
    /// SQLite does, so both backends agree on every value), reading the tenant's jobs in
    /// batches until a page and one more match are found.
    pub(super) fn list_jobs_impl(
        &self,
        tenant: &str,
        q: &JobQuery,
    ) -> StoreResult<Page<JobRecord>> {
        self.with(|c| {
            let mut bound = match &q.after {
                Some(a) => cursor_seq(&mut **c, "jobs", "tenant", tenant, a)?,
                None => i64::MAX,
            };
            let batch = if q.metadata.is_empty() {
                (q.limit + 1) as i64
            } else {
                JOB_SCAN_BATCH
            };
            let mut data = Vec::new();
            loop {
                let rows = c.query(
                    format!(
                        "SELECT seq, {JOB_COLS} FROM jobs WHERE tenant = $1 AND seq < $2 \
                         ORDER BY seq DESC LIMIT $3"
                    )
                    .as_str(),
                    &[&tenant, &bound, &batch],
                )?;
                let exhausted = (rows.len() as i64) < batch;
                for r in &rows {
                    bound = r.try_get(0)?;
                    let job = decode_job(job_row_after_seq(r)?)?;
                    let matches = q
                        .metadata
                        .iter()
                        .all(|(k, v)| job.metadata.as_ref().and_then(|m| m.get(k)) == Some(v));
                    if !matches {
                        continue;
                    }
                    if data.len() == q.limit {
                        return Ok(Page {
                            data,
                            has_more: true,
                        });
                    }
                    data.push(job);
                }
                if exhausted {
                    return Ok(Page {
                        data,
                        has_more: false,
                    });
                }
            }
        })
    }

    pub(super) fn update_job_impl(
        &self,
        j: &JobRecord,
        expected: JobStatus,
        events: &[EventRecord],
        checkpoints: &[CheckpointRecord],
    ) -> StoreResult<bool> {
        let t = encode_job(j);
        self.with(|c| {
            let mut tx = c.transaction()?;
            let changed = tx.execute(
                "UPDATE jobs SET status = $2, step = $3, error = $4, fine_tuned_model = $5, \
                 finished_at = $6, trained_tokens = $7, result_files = $8, estimated_finish = $9, \
                 pipeline = $10, hyperparameters = $11, method = $13, revision = revision + 1 \
                 WHERE id = $1 AND status = $12 AND revision = $14",
                &[
                    &j.id,
                    &j.status.as_str(),
                    &j.step.as_str(),
                    &t.error,
                    &j.fine_tuned_model,
                    &j.finished_at,
                    &j.trained_tokens,
                    &t.result_files,
                    &j.estimated_finish,
                    &t.pipeline,
                    &t.hyperparameters,
                    &expected.as_str(),
                    &t.method,
                    &j.revision,
                ],
            )?;
            if changed == 1 {
                for e in events {
                    insert_event(&mut tx, e)?;
                }
                for k in checkpoints {
                    insert_checkpoint(&mut tx, k)?;
                }
            }
            tx.commit()?;
            Ok(changed == 1)
        })
    }

    pub(super) fn set_job_status_impl(
        &self,
        s: &StatusChange,
        event: &EventRecord,
    ) -> StoreResult<bool> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let changed = tx.execute(
                "UPDATE jobs SET status = $2, step = $3, finished_at = COALESCE($4, finished_at), \
                 estimated_finish = NULL, revision = revision + 1 \
                 WHERE id = $1 AND status = $5 AND step = $6",
                &[
                    &s.job_id,
                    &s.status.as_str(),
                    &s.step.as_str(),
                    &s.finished_at,
                    &s.expected.as_str(),
                    &s.expected_step.as_str(),
                ],
            )?;
            if changed == 1 {
                insert_event(&mut tx, event)?;
            }
            tx.commit()?;
            Ok(changed == 1)
        })
    }

    pub(super) fn active_jobs_impl(&self) -> StoreResult<Vec<JobRecord>> {
        self.jobs_where("status NOT IN ('succeeded','failed','cancelled')")
    }

    pub(super) fn owed_cancels_impl(&self) -> StoreResult<Vec<JobRecord>> {
        self.jobs_where("status = 'cancelled' AND step = 'cancel'")
    }

    /// Every job matching `condition` (a constant SQL condition), oldest first.
    fn jobs_where(&self, condition: &str) -> StoreResult<Vec<JobRecord>> {
        self.with(|c| {
            c.query(
                format!("SELECT {JOB_COLS} FROM jobs WHERE {condition} ORDER BY seq").as_str(),
                &[],
            )?
            .iter()
            .map(|r| job_row(r).and_then(decode_job))
            .collect()
        })
    }

    pub(super) fn list_events_impl(
        &self,
        job_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<EventRecord>> {
        self.with(|c| {
            let bound = match after {
                Some(a) => cursor_seq(&mut **c, "events", "job_id", job_id, a)?,
                None => i64::MAX,
            };
            let rows = c.query(
                "SELECT id, job_id, created_at, level, message, kind, data FROM events \
                 WHERE job_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
                &[&job_id, &bound, &((limit + 1) as i64)],
            )?;
            let mut data = Vec::with_capacity(rows.len());
            for r in &rows {
                let id: String = r.try_get(0)?;
                let level: String = r.try_get(3)?;
                let level = EventLevel::parse(&level)
                    .ok_or_else(|| corrupt("events", "level", &id, &level))?;
                let d = json_opt("events", "data", &id, r.try_get(6)?)?;
                data.push(EventRecord {
                    job_id: r.try_get(1)?,
                    created_at: r.try_get(2)?,
                    level,
                    message: r.try_get(4)?,
                    kind: r.try_get(5)?,
                    data: d,
                    id,
                });
            }
            let has_more = data.len() > limit;
            data.truncate(limit);
            Ok(Page { data, has_more })
        })
    }

    pub(super) fn list_checkpoints_impl(
        &self,
        job_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<CheckpointRecord>> {
        self.with(|c| {
            let bound = match after {
                Some(a) => cursor_seq(&mut **c, "checkpoints", "job_id", job_id, a)?,
                None => i64::MAX,
            };
            let rows = c.query(
                "SELECT id, job_id, created_at, fine_tuned_model_checkpoint, step_number, metrics, \
                 artifact FROM checkpoints WHERE job_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
                &[&job_id, &bound, &((limit + 1) as i64)],
            )?;
            let mut data = Vec::with_capacity(rows.len());
            for r in &rows {
                let id: String = r.try_get(0)?;
                let m: String = r.try_get(5)?;
                let metrics = serde_json::from_str(&m)
                    .map_err(|e| corrupt("checkpoints", "metrics", &id, e))?;
                data.push(CheckpointRecord {
                    job_id: r.try_get(1)?,
                    created_at: r.try_get(2)?,
                    fine_tuned_model_checkpoint: r.try_get(3)?,
                    step_number: r.try_get(4)?,
                    metrics,
                    artifact: r.try_get(6)?,
                    id,
                });
            }
            let has_more = data.len() > limit;
            data.truncate(limit);
            Ok(Page { data, has_more })
        })
    }
}
