//! Store records → OpenAI's wire objects (field names checked against openai-python's types).

use crate::store::*;
use serde_json::{json, Value};

pub fn file(f: &FileRecord) -> Value {
    json!({
        "id": f.id,
        "object": "file",
        "bytes": f.bytes,
        "created_at": f.created_at,
        "filename": f.filename,
        "purpose": f.purpose,
        "status": "processed",
        "expires_at": f.expires_at,
        "status_details": null,
    })
}

pub fn upload(u: &UploadRecord, f: Option<&FileRecord>) -> Value {
    json!({
        "id": u.id,
        "object": "upload",
        "bytes": u.bytes,
        "created_at": u.created_at,
        "expires_at": u.expires_at,
        "filename": u.filename,
        "purpose": u.purpose,
        "status": u.status.as_str(),
        "file": f.map(file),
    })
}

pub fn part(p: &PartRecord) -> Value {
    json!({
        "id": p.id,
        "object": "upload.part",
        "created_at": p.created_at,
        "upload_id": p.upload_id,
    })
}

pub fn job(j: &JobRecord) -> Value {
    json!({
        "id": j.id,
        "object": "fine_tuning.job",
        "created_at": j.created_at,
        "error": j.error.as_ref().map(|e| json!({"code": e.code, "message": e.message, "param": e.param})),
        "fine_tuned_model": j.fine_tuned_model,
        "finished_at": j.finished_at,
        "hyperparameters": j.hyperparameters,
        "model": j.model,
        "organization_id": format!("org-{}", j.tenant),
        "result_files": j.result_files,
        "seed": j.seed,
        "status": j.status.as_str(),
        "trained_tokens": j.trained_tokens,
        "training_file": j.training_file,
        "validation_file": j.validation_file,
        "estimated_finish": j.estimated_finish,
        "integrations": [],
        "metadata": j.metadata,
        "method": j.method,
        "user_provided_suffix": j.suffix,
    })
}

pub fn event(e: &EventRecord) -> Value {
    json!({
        "id": e.id,
        "object": "fine_tuning.job.event",
        "created_at": e.created_at,
        "level": e.level.as_str(),
        "message": e.message,
        "type": e.kind,
        "data": e.data.clone().unwrap_or_else(|| json!({})),
    })
}

pub fn checkpoint(c: &CheckpointRecord) -> Value {
    json!({
        "id": c.id,
        "object": "fine_tuning.job.checkpoint",
        "created_at": c.created_at,
        "fine_tuned_model_checkpoint": c.fine_tuned_model_checkpoint,
        "fine_tuning_job_id": c.job_id,
        "step_number": c.step_number,
        "metrics": c.metrics,
    })
}

/// A cursor page `{object:"list", data, has_more}` (plus first_id/last_id like OpenAI's).
pub fn page<T>(p: &Page<T>, f: impl Fn(&T) -> Value) -> Value {
    let data: Vec<Value> = p.data.iter().map(f).collect();
    let first = data.first().and_then(|v| v.get("id")).cloned();
    let last = data.last().and_then(|v| v.get("id")).cloned();
    json!({"object": "list", "data": data, "has_more": p.has_more, "first_id": first, "last_id": last})
}
