//! `/v1/fine_tuning/jobs`: create, list, retrieve (which advances a job when the fake plays a
//! provider), events, checkpoints, cancel, pause, resume.

use super::state::{now, FakeState, UpJob};
use super::v1::error;
use super::FakeUpstream;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::collections::HashMap;

type Q = Query<HashMap<String, String>>;

/// One cursor page of `newest_first`: `after` an id (an unknown one gives an empty page),
/// `limit` items (20 by default), `has_more`.
pub(super) fn page(newest_first: Vec<Value>, q: &HashMap<String, String>) -> Value {
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(20);
    let mut items = newest_first;
    if let Some(after) = q.get("after") {
        match items.iter().position(|e| e["id"] == after.as_str()) {
            Some(i) => drop(items.drain(..=i)),
            None => items.clear(),
        }
    }
    let has_more = items.len() > limit;
    items.truncate(limit);
    json!({"object": "list", "data": items, "has_more": has_more})
}

fn missing(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        &format!("No such FineTuningJob object: {id}"),
        Some("id"),
    )
}

pub(super) async fn create(State(f): State<FakeUpstream>, Json(req): Json<Value>) -> Response {
    f.with(|s| {
        let training_file = req["training_file"].as_str().unwrap_or_default();
        if s.file(training_file).is_none() {
            let msg = format!("invalid training_file: {training_file}");
            return error(StatusCode::BAD_REQUEST, &msg, Some("training_file"));
        }
        s.creates.push(req.clone());
        let id = format!("ftjob-up{}", s.jobs.len());
        let hp = &req["method"]["supervised"]["hyperparameters"];
        let auto = |k: &str| match &hp[k] {
            Value::Null => json!("auto"),
            v => v.clone(),
        };
        let obj = json!({"id": id, "object": "fine_tuning.job", "created_at": now(), "error": null,
            "fine_tuned_model": null, "finished_at": null,
            "hyperparameters": {"batch_size": auto("batch_size"),
                "learning_rate_multiplier": auto("learning_rate_multiplier"), "n_epochs": auto("n_epochs")},
            "model": req["model"], "organization_id": "org-fake", "result_files": [],
            "seed": req.get("seed").cloned().unwrap_or(json!(42)), "status": "validating_files",
            "trained_tokens": null, "training_file": training_file,
            "validation_file": req.get("validation_file").cloned().unwrap_or(Value::Null),
            "metadata": req.get("metadata").cloned().unwrap_or(Value::Null),
            "method": req.get("method").cloned().unwrap_or(Value::Null)});
        let hold = s.knobs.hold_running;
        s.jobs.push(UpJob {
            obj: obj.clone(),
            events: vec![],
            checkpoints: vec![],
            hold,
        });
        if s.knobs.auto_advance {
            s.push_event(&id, "info", "Validating training file", None);
        }
        Json(obj).into_response()
    })
}

/// Newest first, filtered by every `metadata[k]=v` in the query.
pub(super) async fn list(State(f): State<FakeUpstream>, Query(q): Q) -> Response {
    let wanted: Vec<(&str, &str)> = q
        .iter()
        .filter_map(|(k, v)| {
            let key = k.strip_prefix("metadata[")?.strip_suffix(']')?;
            Some((key, v.as_str()))
        })
        .collect();
    let objs = f.with(|s| {
        s.jobs
            .iter()
            .rev()
            .filter(|j| wanted.iter().all(|(k, v)| j.obj["metadata"][*k] == *v))
            .map(|j| j.obj.clone())
            .collect()
    });
    Json(page(objs, &q)).into_response()
}

pub(super) async fn retrieve(State(f): State<FakeUpstream>, Path(id): Path<String>) -> Response {
    f.with(|s| {
        if s.knobs.auto_advance {
            advance(s, &id);
        }
        match s.job(&id) {
            Some(j) => Json(&j.obj).into_response(),
            None => missing(&id),
        }
    })
}

/// One step of a provider's job: validating_files → running (the "auto"s resolved, as
/// OpenAI does once a job starts) → a metrics event and a checkpoint per retrieve →
/// succeeded after the second step, unless held.
fn advance(s: &mut FakeState, id: &str) {
    let Some(job) = s.job_mut(id) else { return };
    match job.obj["status"].as_str() {
        Some("validating_files") => {
            job.obj["status"] = json!("running");
            let chosen = json!({"batch_size": 1, "learning_rate_multiplier": 1.8, "n_epochs": 3});
            if let Some(hp) = job.obj["hyperparameters"].as_object_mut() {
                for (k, v) in hp.iter_mut() {
                    if v == "auto" {
                        *v = chosen[k.as_str()].clone();
                    }
                }
            }
            s.push_event(id, "info", "Fine-tuning job started", None);
        }
        Some("running") => {
            let step = job.checkpoints.len() as i64 + 1;
            let data = json!({"step": step, "train_loss": 0.5});
            let finish = step >= 2 && !job.hold;
            s.push_event(
                id,
                "info",
                &format!("Step {step}/2: training loss=0.5"),
                Some(data),
            );
            s.push_checkpoint(id, step);
            if finish {
                let job = s.job_mut(id).expect("job exists");
                let model = job.obj["model"].as_str().unwrap_or_default().to_string();
                job.obj["status"] = json!("succeeded");
                job.obj["fine_tuned_model"] = json!(format!("ft:{model}:fake::{id}"));
                job.obj["finished_at"] = json!(now());
                job.obj["trained_tokens"] = json!(1234);
                s.push_event(id, "info", "The job has successfully completed", None);
            }
        }
        _ => {}
    }
}

pub(super) async fn events(
    State(f): State<FakeUpstream>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Response {
    match f.with(|s| s.job(&id).map(|j| j.events.iter().rev().cloned().collect())) {
        Some(items) => Json(page(items, &q)).into_response(),
        None => missing(&id),
    }
}

pub(super) async fn checkpoints(
    State(f): State<FakeUpstream>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Response {
    match f.with(|s| {
        s.job(&id)
            .map(|j| j.checkpoints.iter().rev().cloned().collect())
    }) {
        Some(items) => Json(page(items, &q)).into_response(),
        None => missing(&id),
    }
}

/// Moves a job from one of `from` to `to`; OpenAI's 400 otherwise.
fn transition(f: &FakeUpstream, id: &str, from: &[&str], to: &str, event: &str) -> Response {
    f.with(|s| {
        let auto = s.knobs.auto_advance;
        let Some(job) = s.job_mut(id) else {
            return missing(id);
        };
        let status = job.obj["status"].as_str().unwrap_or_default().to_string();
        if !from.contains(&status.as_str()) {
            let msg = format!("Job {id} is {status}, cannot move to {to}");
            return error(StatusCode::BAD_REQUEST, &msg, None);
        }
        job.obj["status"] = json!(to);
        let obj = job.obj.clone();
        if auto {
            s.push_event(id, "info", event, None);
        }
        Json(obj).into_response()
    })
}

const LIVE: &[&str] = &["validating_files", "queued", "running", "paused"];

pub(super) async fn cancel(State(f): State<FakeUpstream>, Path(id): Path<String>) -> Response {
    transition(&f, &id, LIVE, "cancelled", "Job cancelled")
}

pub(super) async fn pause(State(f): State<FakeUpstream>, Path(id): Path<String>) -> Response {
    transition(&f, &id, &["running"], "paused", "Job paused")
}

pub(super) async fn resume(State(f): State<FakeUpstream>, Path(id): Path<String>) -> Response {
    transition(&f, &id, &["paused"], "running", "Job running")
}
