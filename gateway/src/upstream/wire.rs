//! OpenAI wire shapes: the create body, and parsing jobs, events, checkpoints and pages.

use super::error::UpstreamError;
use super::types::*;
use serde_json::{json, Map, Value};

/// The `POST /fine_tuning/jobs` body: method `supervised` with the mapped hyperparameters,
/// seed, suffix, and the gateway's job id as metadata.
pub(crate) fn create_body(spec: &JobSpec, file_id: &str) -> Value {
    let mut hp = Map::new();
    for key in ["batch_size", "learning_rate_multiplier", "n_epochs"] {
        if let Some(v) = spec
            .hyperparameters
            .get(key)
            .filter(|v| v.is_number() || v.as_str() == Some("auto"))
        {
            hp.insert(key.to_string(), v.clone());
        }
    }
    let mut body = json!({
        "model": spec.model,
        "training_file": file_id,
        "method": {"type": "supervised", "supervised": {"hyperparameters": hp}},
        "metadata": {"tuneguard_job_id": spec.gateway_job_id},
    });
    if let Some(seed) = spec.seed {
        body["seed"] = json!(seed);
    }
    if let Some(s) = &spec.suffix {
        body["suffix"] = json!(s);
    }
    body
}

pub(crate) struct JobState {
    pub status: UpstreamStatus,
    pub fine_tuned_model: Option<String>,
    pub trained_tokens: Option<i64>,
    pub error: Option<UpstreamJobError>,
    /// The job's `hyperparameters` object as the provider reports it.
    pub hyperparameters: Option<Value>,
}

pub(crate) fn parse_job(v: &Value) -> Result<JobState, UpstreamError> {
    let what = "the job status";
    let status_str = v
        .get("status")
        .and_then(Value::as_str)
        .ok_or_else(|| UpstreamError::protocol(what, "no `status`"))?;
    let status = UpstreamStatus::parse(status_str)
        .ok_or_else(|| UpstreamError::protocol(what, format!("unknown status `{status_str}`")))?;
    let error = v.get("error").filter(|e| !e.is_null()).and_then(|e| {
        let message = e.get("message").and_then(Value::as_str)?.to_string();
        Some(UpstreamJobError {
            code: e.get("code").and_then(Value::as_str).map(str::to_string),
            message,
            param: e.get("param").and_then(Value::as_str).map(str::to_string),
        })
    });
    Ok(JobState {
        status,
        fine_tuned_model: v
            .get("fine_tuned_model")
            .and_then(Value::as_str)
            .map(str::to_string),
        trained_tokens: v.get("trained_tokens").and_then(Value::as_i64),
        error,
        hyperparameters: v.get("hyperparameters").filter(|h| h.is_object()).cloned(),
    })
}

pub(crate) fn parse_event(v: &Value) -> Option<UpstreamEvent> {
    Some(UpstreamEvent {
        id: v.get("id")?.as_str()?.to_string(),
        created_at: v.get("created_at").and_then(Value::as_i64).unwrap_or(0),
        level: match v.get("level").and_then(Value::as_str) {
            Some(l @ ("info" | "warn" | "error")) => l.to_string(),
            _ => "info".to_string(),
        },
        message: v
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        kind: match v.get("type").and_then(Value::as_str) {
            Some(k @ ("message" | "metrics")) => Some(k.to_string()),
            _ => None,
        },
        data: v.get("data").filter(|d| !d.is_null()).cloned(),
    })
}

pub(crate) fn parse_checkpoint(v: &Value) -> Option<UpstreamCheckpoint> {
    Some(UpstreamCheckpoint {
        id: v.get("id")?.as_str()?.to_string(),
        fine_tuned_model_checkpoint: v
            .get("fine_tuned_model_checkpoint")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        step_number: v.get("step_number").and_then(Value::as_i64).unwrap_or(0),
        metrics: v.get("metrics").cloned().unwrap_or(Value::Null),
    })
}

/// A cursor page `{object:"list", data, has_more}`.
pub(crate) struct Page {
    pub data: Vec<Value>,
    pub has_more: bool,
}

impl Page {
    pub(crate) fn parse(v: &Value) -> Result<Page, String> {
        let data = v
            .get("data")
            .and_then(Value::as_array)
            .ok_or("no `data` list")?
            .clone();
        Ok(Page {
            data,
            has_more: v.get("has_more").and_then(Value::as_bool).unwrap_or(false),
        })
    }

    pub(crate) fn last_id(&self) -> Option<String> {
        self.data.last()?.get("id")?.as_str().map(str::to_string)
    }
}

/// Items of a newest-first page that come before `seen`; true when `seen` was reached.
pub(crate) fn take_new(data: &[Value], seen: Option<&str>) -> (Vec<Value>, bool) {
    let mut out = Vec::new();
    for item in data {
        if seen.is_some() && item.get("id").and_then(Value::as_str) == seen {
            return (out, true);
        }
        out.push(item.clone());
    }
    (out, false)
}
