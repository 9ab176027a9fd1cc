//! Decoding shared by the SQLite and PostgreSQL stores: both keep JSON and enum columns as
//! text, so a row reads back into the same record, with the same corruption errors, on
//! either backend.

use super::*;

pub(super) fn corrupt(
    table: &'static str,
    column: &'static str,
    id: &str,
    m: impl ToString,
) -> StoreError {
    StoreError::Corrupt {
        table,
        column,
        id: id.to_string(),
        message: m.to_string(),
    }
}

/// Raw job row: JSON and enum columns still text, decoded (with errors) by [`decode_job`].
pub(super) struct RawJob {
    pub(super) rec: JobRecord,
    pub(super) hyperparameters: String,
    pub(super) method: String,
    pub(super) metadata: Option<String>,
    pub(super) status: String,
    pub(super) step: String,
    pub(super) error: Option<String>,
    pub(super) result_files: String,
    pub(super) pipeline: String,
}

pub(super) fn decode_job(raw: RawJob) -> StoreResult<JobRecord> {
    let mut j = raw.rec;
    let id = j.id.clone();
    let json = |col: &'static str, s: &str| -> StoreResult<serde_json::Value> {
        serde_json::from_str(s).map_err(|e| corrupt("jobs", col, &id, e))
    };
    j.hyperparameters = json("hyperparameters", &raw.hyperparameters)?;
    j.method = json("method", &raw.method)?;
    j.pipeline =
        serde_json::from_str(&raw.pipeline).map_err(|e| corrupt("jobs", "pipeline", &id, e))?;
    j.result_files = serde_json::from_str(&raw.result_files)
        .map_err(|e| corrupt("jobs", "result_files", &id, e))?;
    j.metadata = match raw.metadata {
        Some(m) => Some(serde_json::from_str(&m).map_err(|e| corrupt("jobs", "metadata", &id, e))?),
        None => None,
    };
    j.error = match raw.error {
        Some(e) => Some(serde_json::from_str(&e).map_err(|x| corrupt("jobs", "error", &id, x))?),
        None => None,
    };
    j.status =
        JobStatus::parse(&raw.status).ok_or_else(|| corrupt("jobs", "status", &id, &raw.status))?;
    j.step = JobStep::parse(&raw.step).ok_or_else(|| corrupt("jobs", "step", &id, &raw.step))?;
    Ok(j)
}

/// The companion record that remembers which request body an idempotency key was made with.
pub(super) fn fingerprint_key(key: &str, fingerprint: &str) -> String {
    format!("{key}\u{1f}fingerprint:{fingerprint}")
}

/// A job's JSON and enum columns as stored text.
pub(super) struct JobText {
    pub(super) hyperparameters: String,
    pub(super) method: String,
    pub(super) metadata: Option<String>,
    pub(super) error: Option<String>,
    pub(super) result_files: String,
    pub(super) pipeline: String,
}

pub(super) fn encode_job(j: &JobRecord) -> JobText {
    JobText {
        hyperparameters: j.hyperparameters.to_string(),
        method: j.method.to_string(),
        metadata: j
            .metadata
            .as_ref()
            .map(|m| serde_json::to_string(m).unwrap_or_default()),
        error: j
            .error
            .as_ref()
            .map(|e| serde_json::to_string(e).unwrap_or_default()),
        result_files: serde_json::to_string(&j.result_files).unwrap_or_else(|_| "[]".into()),
        pipeline: j.pipeline.to_json_string(),
    }
}

/// The `completed_part_ids` column: a JSON array of part ids.
pub(super) fn part_ids_json(ids: &[String]) -> String {
    serde_json::Value::from(ids).to_string()
}

/// An optional JSON column.
pub(super) fn json_opt(
    table: &'static str,
    column: &'static str,
    id: &str,
    text: Option<String>,
) -> StoreResult<Option<serde_json::Value>> {
    text.map(|s| serde_json::from_str(&s).map_err(|e| corrupt(table, column, id, e)))
        .transpose()
}
