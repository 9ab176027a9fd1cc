//! The runner's side of local execution: `start` marks the job local (a worker will lease
//! it), `poll` mirrors what the worker wrote into the job directory — one `metrics` event per
//! optimizer step, each checkpoint, the resolved hyperparameters, and the outcome with its
//! result file — advancing a cursor kept in `exec_state`. The monitor's records are mirrored
//! and acted on through [`crate::monitoring`] (its cursor is `exec_state.monitor`). Each poll
//! also reports the job's [`Progress`]: `estimated_finish` from the pace of the worker's
//! session, and the steps it mirrored for the first time (counted on the metrics once).

use super::artifact;
use super::jobfiles;
use super::layout::{self, Outcome, Resolved};
use super::progress::{self, MetricsTail, Pace};
use crate::config::ModelRegistry;
use crate::jobs::seams::*;
use crate::metrics::Metrics;
use crate::monitoring::prom::MonitorCounts;
use crate::monitoring::{actions, mirror, record};
use crate::store::{
    run_blocking, BlobStore, EventLevel, FileRecord, JobRecord, Store, LOCAL_BACKEND,
};
use futures::future::BoxFuture;
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Most `metrics` events mirrored per job: a longer job mirrors every k-th step (k =
/// ceil(total / cap)) and always its last step, so a job's event list stays readable.
pub const MAX_METRIC_EVENTS: usize = 1000;

/// Local execution through worker processes.
#[derive(Clone)]
pub struct LocalExecutor {
    data_dir: PathBuf,
    models: ModelRegistry,
    store: Arc<dyn Store>,
    blobs: BlobStore,
    metrics: Option<Arc<Metrics>>,
    /// Jobs whose monitor gauges this process has set (after a restart they are set again
    /// from the last mirrored record).
    gauged: Arc<Mutex<HashSet<String>>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Cursor {
    backend: String,
    /// Last step whose metrics event is stored.
    step: usize,
    /// Last checkpoint step stored.
    checkpoint: usize,
    /// The resolved hyperparameters were reported.
    resolved: bool,
    /// The monitor's records mirrored and its pending action.
    #[serde(default)]
    monitor: mirror::MonitorCursor,
    /// How far `metrics.jsonl` was read (the next poll reads on from there).
    #[serde(default)]
    metrics: MetricsTail,
    /// The pace of the worker session training the job (for `estimated_finish`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pace: Option<Pace>,
}

impl LocalExecutor {
    pub fn new(
        data_dir: PathBuf,
        models: ModelRegistry,
        store: Arc<dyn Store>,
        blobs: BlobStore,
    ) -> Self {
        Self {
            data_dir,
            models,
            store,
            blobs,
            metrics: None,
            gauged: Arc::default(),
        }
    }

    /// Reports the monitor's gauges and counters on `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Deletes the job's monitor series (it ended).
    fn forget(&self, job_id: &str) {
        if let Some(m) = &self.metrics {
            m.monitor.forget_job(job_id);
        }
        if let Ok(mut g) = self.gauged.lock() {
            g.remove(job_id);
        }
    }

    /// Mirrors the monitor's new records; sets the gauges again after a restart.
    fn mirror_monitor(
        &self,
        job: &JobRecord,
        records: &[record::StepRecord],
        cursor: &mut mirror::MonitorCursor,
    ) -> mirror::Mirrored {
        let settings = monitor_settings(job);
        let m = self.metrics.as_deref().map(|m| &m.monitor);
        let before = cursor.last;
        let out = mirror::mirror(&job.id, records, &settings, cursor, m);
        let Some(m) = m else { return out };
        let Ok(mut gauged) = self.gauged.lock() else {
            return out;
        };
        if cursor.last != before {
            gauged.insert(job.id.clone());
        } else if !gauged.contains(&job.id) {
            if let Some(i) = records.iter().rposition(|r| Some(r.step) == cursor.last) {
                mirror::set_gauges(m, &job.id, records, i, &settings);
                gauged.insert(job.id.clone());
            }
        }
        out
    }
}

/// The monitor settings of the job's recorded plan (no rules when it has none).
fn monitor_settings(job: &JobRecord) -> monitor::MonitorSettings {
    job.pipeline
        .plan()
        .ok()
        .map(|p| monitor::MonitorSettings::from_policy(&p.monitor))
        .unwrap_or_else(|| {
            monitor::MonitorSettings::from_policy(&policies::Monitor::default().with_rules(vec![]))
        })
}

/// The lines of `metrics.jsonl` mirrored (the result CSV and `trained_tokens`, once, at the
/// end).
async fn mirrored_lines(run: PathBuf, tail: MetricsTail) -> StepResult<Vec<Value>> {
    tokio::task::spawn_blocking(move || progress::read_lines_to(&run, &tail))
        .await
        .map_err(|e| fail("internal_error", e.to_string()))
}

/// The worker session training the job: its lease (worker, claim time); `None` between
/// sessions (queued, paused). When the store cannot say, the session measured so far
/// (`known`): an estimate is not worth failing or pausing a poll for.
async fn session(store: &Arc<dyn Store>, job_id: &str, known: Option<String>) -> Option<String> {
    let id = job_id.to_string();
    match run_blocking(store, move |s| s.lease_of(&id)).await {
        Ok(lease) => lease.map(|l| format!("{}@{}", l.worker_id, l.acquired_at)),
        Err(e) => {
            tracing::warn!(job = job_id, error = %e, "reading the job's lease failed");
            known
        }
    }
}

fn num(v: &Value, k: &str) -> f64 {
    v.get(k).and_then(Value::as_f64).unwrap_or(0.0)
}

/// The metrics event of one step line of `metrics.jsonl`.
fn step_event(m: &Value) -> Observation {
    let step = m.get("step").and_then(Value::as_u64).unwrap_or(0);
    let total = m.get("total_steps").and_then(Value::as_u64).unwrap_or(0);
    let loss = num(m, "loss");
    Observation::Event {
        level: EventLevel::Info,
        message: format!("Step {step}/{total}: training loss={loss:.4}"),
        data: Some(json!({
            "step": step,
            "total_steps": total,
            "train_loss": loss,
            "train_mean_token_accuracy": num(m, "mean_token_accuracy"),
            "ce": num(m, "ce"),
            "kl": num(m, "kl"),
            "ldifs": num(m, "ldifs"),
            "learning_rate": num(m, "lr"),
            "grad_norm": num(m, "grad_norm"),
            "tokens": m.get("tokens").cloned().unwrap_or(Value::Null),
        })),
        kind: Some("metrics".into()),
        created_at: None,
    }
}

/// OpenAI's checkpoint metrics from a checkpoint's `state.json` metrics.
fn checkpoint_metrics(m: &trainer::train::CheckpointMetrics) -> Value {
    json!({
        "step": m.step,
        "train_loss": m.train_loss,
        "train_mean_token_accuracy": m.train_mean_token_accuracy,
        "valid_loss": m.valid_loss,
        "valid_mean_token_accuracy": m.valid_mean_token_accuracy,
        "full_valid_loss": m.valid_loss,
        "full_valid_mean_token_accuracy": m.valid_mean_token_accuracy,
        "kl": m.kl,
        "ldifs": m.ldifs,
    })
}

/// OpenAI's result CSV: a row per step; validation columns at checkpoint steps.
pub fn results_csv(
    lines: &[Value],
    checkpoints: &[(usize, trainer::train::CheckpointMetrics)],
) -> String {
    let mut out =
        String::from("step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy\n");
    for m in lines {
        let step = m.get("step").and_then(Value::as_u64).unwrap_or(0) as usize;
        let valid = checkpoints.iter().find(|(s, _)| *s == step).map(|(_, c)| c);
        let opt = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
        out.push_str(&format!(
            "{step},{},{},{},{}\n",
            num(m, "loss"),
            num(m, "mean_token_accuracy"),
            opt(valid.and_then(|c| c.valid_loss)),
            opt(valid.and_then(|c| c.valid_mean_token_accuracy)),
        ));
    }
    out
}

fn read_checkpoints(run: &Path) -> Vec<(usize, trainer::train::CheckpointMetrics)> {
    let root = run.join("checkpoints");
    let steps = trainer::train::checkpoint::list(&root).unwrap_or_default();
    steps
        .into_iter()
        .filter_map(|s| {
            let st: trainer::train::CheckpointState =
                layout::read_json(&root.join(format!("step-{s}")).join("state.json")).ok()??;
            Some((s, st.metrics))
        })
        .collect()
}

fn fail(code: &str, message: impl Into<String>) -> StepFailure {
    StepFailure::new(code, message)
}

impl LocalExecutor {
    fn fine_tuned(job: &JobRecord) -> String {
        layout::fine_tuned_model(&job.model, &job.tenant, job.suffix.as_deref(), &job.id)
    }

    /// Stores checkpoint `step`'s adapter (`None`: the final one) as a blob; its key, or
    /// `None` when it could not be stored (the download then reads the job directory, as for
    /// jobs mirrored before artifacts existed).
    async fn store_artifact(
        &self,
        job: &JobRecord,
        run: &Path,
        step: Option<usize>,
    ) -> Option<String> {
        let (dir, key) = match step {
            Some(s) => (
                run.join("checkpoints").join(format!("step-{s}")),
                artifact::checkpoint_key(&job.id, s),
            ),
            None => (run.to_path_buf(), artifact::final_key(&job.id)),
        };
        let name = artifact::tar_name(&job.id, step);
        match artifact::store_adapter(&self.blobs, dir, name, &key).await {
            Ok(()) => Some(key),
            Err(e) => {
                tracing::warn!(job = %job.id, ?step, error = %e, "adapter not stored as a blob");
                None
            }
        }
    }

    async fn result_file(&self, job: &JobRecord, csv: String) -> StepResult<String> {
        let short = job.id.strip_prefix("ftjob-").unwrap_or(&job.id);
        let id = format!("file-results-{short}");
        let (store, tenant, fid) = (Arc::clone(&self.store), job.tenant.clone(), id.clone());
        let exists = run_blocking(&store, move |s| s.get_file(&tenant, &fid))
            .await
            .map_err(|e| fail("internal_error", e.to_string()))?;
        if exists.is_some() {
            return Ok(id);
        }
        let key = format!("results-{}", job.id);
        let io = |e: crate::store::StoreError| fail("internal_error", e.to_string());
        let mut w = self.blobs.create().await.map_err(io)?;
        w.write(csv.as_bytes()).await.map_err(io)?;
        let written = w.commit(&key).await.map_err(io)?;
        let rec = FileRecord {
            id: id.clone(),
            tenant: job.tenant.clone(),
            bytes: written.bytes,
            created_at: crate::ids::now_unix(),
            filename: "step_metrics.csv".into(),
            purpose: "fine-tune-results".into(),
            expires_at: None,
            blob_key: key,
        };
        let inserted = run_blocking(&store, move |s| s.insert_file(&rec)).await;
        if let Err(e) = inserted {
            // Another replica polling the same job may have recorded it first.
            let (tenant, fid) = (job.tenant.clone(), id.clone());
            match run_blocking(&store, move |s| s.get_file(&tenant, &fid)).await {
                Ok(Some(_)) => {}
                _ => return Err(io(e)),
            }
        }
        Ok(id)
    }
}

impl Executor for LocalExecutor {
    fn start(&self, input: StartInput) -> BoxFuture<'static, StepResult<Value>> {
        let job = input.job;
        let known = self.models.model_for(&job.model).is_some();
        // The registry names the model, but is it in place (e.g. not fetched yet)?
        let missing = self
            .models
            .model_for(&job.model)
            .and_then(|e| e.missing_model(&job.model));
        async move {
            if !known {
                return Err(fail(
                    "model_not_available",
                    format!(
                        "The model `{}` is not available for local training on this gateway (no [[models]] entry matches it).",
                        job.model
                    ),
                )
                .param("model"));
            }
            if let Some(message) = missing {
                return Err(fail("model_not_available", message).param("model"));
            }
            Ok(serde_json::to_value(Cursor {
                backend: LOCAL_BACKEND.into(),
                ..Cursor::default()
            })
            .unwrap_or(Value::Null))
        }
        .boxed()
    }

    fn poll(
        &self,
        job: JobRecord,
        state: Value,
    ) -> BoxFuture<'static, StepResult<(RunState, Vec<Observation>)>> {
        let dir = jobfiles::runner_dir(&self.data_dir, &self.blobs, &job.id);
        let this = self.clone();
        async move {
            if let Some(remote) = this.blobs.remote() {
                // The worker is on another machine: its directory comes through the bucket.
                // A failed pull leaves the mirror as it was; the next poll tries again.
                if let Err(e) = jobfiles::pull(remote, &job.id, &dir).await {
                    tracing::warn!(job = %job.id, error = %e, "pulling the job directory failed");
                }
            }
            let mut cur: Cursor = serde_json::from_value(state).unwrap_or_default();
            let run = layout::run_dir(&dir);
            let gauged = this
                .gauged
                .lock()
                .map(|g| g.contains(&job.id))
                .unwrap_or(true);
            let last_mirrored = cur.monitor.last;
            let tail = cur.metrics.clone();
            let (lines, tail, ckpts, resolved, outcome, records) = {
                let (run, dir) = (run.clone(), dir.clone());
                tokio::task::spawn_blocking(move || {
                    // The outcome first: it is written last, so when it is there every
                    // metrics line and checkpoint before it is too. Monitor records before
                    // checkpoints: a record's checkpoint is durable before the record.
                    let outcome: Option<Outcome> =
                        layout::read_json(&dir.join(layout::OUTCOME)).ok().flatten();
                    let resolved: Option<Resolved> =
                        layout::read_json(&dir.join("resolved.json")).ok().flatten();
                    let fresh = record::steps(&dir)
                        .last()
                        .is_some_and(|s| last_mirrored.is_none_or(|l| *s > l));
                    let records = if fresh || !gauged {
                        record::read_all(&dir)
                    } else {
                        Vec::new()
                    };
                    let ckpts = read_checkpoints(&run);
                    let (lines, tail) = progress::read_new_lines(&run, &tail);
                    (lines, tail, ckpts, resolved, outcome, records)
                })
                .await
                .map_err(|e| fail("internal_error", e.to_string()))?
            };
            // A pause or cancel the monitor decided at the previous poll is taken now, alone.
            if let Some(p) = cur.monitor.pending.take() {
                let nothing_to_pause = outcome.is_some() && p.action == monitor::RuleAction::Pause;
                if !nothing_to_pause {
                    let state = serde_json::to_value(&cur).unwrap_or(Value::Null);
                    let taken = actions::take_pending(
                        &this.store,
                        this.metrics.as_deref(),
                        &job,
                        state.clone(),
                        &p,
                    )
                    .await
                    .map_err(|e| fail("internal_error", e.to_string()))?;
                    if taken && p.action == monitor::RuleAction::Cancel {
                        Executor::ended(&this, job.clone()).await;
                    }
                    // The job's status changed (or a client's change won): the runner's own
                    // write of this poll is refused, and the job is read again.
                    return Ok((RunState::Running { state }, Vec::new()));
                }
            }
            let mut obs = Vec::new();
            if let (Some(r), false) = (&resolved, cur.resolved) {
                obs.push(Observation::Hyperparameters(json!({
                    "n_epochs": r.n_epochs,
                    "batch_size": r.batch_size,
                    "learning_rate_multiplier": r.learning_rate_multiplier,
                })));
                cur.resolved = true;
            }
            let total = resolved.as_ref().map_or(0, |r| r.total_steps);
            let every = total.div_ceil(MAX_METRIC_EVENTS).max(1);
            let (before, mut measured) = (cur.step, Progress::default());
            let mut line_total = 0;
            for m in &lines {
                let step = m.get("step").and_then(Value::as_u64).unwrap_or(0) as usize;
                if step <= cur.step {
                    continue;
                }
                if step.is_multiple_of(every) || step == total {
                    obs.push(step_event(m));
                }
                cur.step = step;
                line_total = m.get("total_steps").and_then(Value::as_u64).unwrap_or(0) as usize;
                measured.steps += 1;
                measured.tokens += m.get("tokens").and_then(Value::as_u64).unwrap_or(0);
                measured.step_seconds.extend(progress::step_seconds(m));
            }
            cur.metrics = tail;
            let now = progress::now_secs();
            if before == 0 && cur.step > 0 {
                measured.queue_wait_seconds = Some((now - job.created_at as f64).max(0.0));
            }
            let known = cur.pace.as_ref().and_then(|p| p.session.clone());
            let session = session(&this.store, &job.id, known).await;
            Pace::observe(&mut cur.pace, session, now, cur.step, cur.step > before);
            let total_steps = if total > 0 { total } else { line_total };
            measured.estimated_finish =
                cur.pace.as_ref().and_then(|p| p.estimate(now, total_steps));
            obs.push(Observation::Progress(measured));
            let ft = LocalExecutor::fine_tuned(&job);
            let mirrored = this.mirror_monitor(&job, &records, &mut cur.monitor);
            // With a rollback rule, a checkpoint is offered only in the write that mirrors its
            // monitor record, or after it: one that drifted is never listed, even for the
            // length of its evaluation (it is stored with the rollback that hides it).
            let gated =
                outcome.is_none() && job.pipeline.plan().is_ok_and(|p| p.monitor.rolls_back());
            let mirrored_to = cur.monitor.last.unwrap_or(0);
            for (step, m) in &ckpts {
                if gated && (*step as u64) > mirrored_to {
                    break;
                }
                if *step > cur.checkpoint {
                    let artifact = this.store_artifact(&job, &run, Some(*step)).await;
                    obs.push(Observation::Checkpoint {
                        fine_tuned_model_checkpoint: layout::checkpoint_model(&ft, *step),
                        step_number: *step as i64,
                        metrics: checkpoint_metrics(m),
                        artifact,
                    });
                    cur.checkpoint = *step;
                }
            }
            obs.extend(mirrored.observations);
            if !mirrored.counts.is_empty() {
                obs.push(Observation::MonitorCounts(mirrored.counts.clone()));
            }
            let pending = cur.monitor.pending.as_ref().map(|p| p.action);
            if pending == Some(monitor::RuleAction::Pause) && outcome.is_some() {
                // The worker already finished: there is nothing left to pause.
                cur.monitor.pending = None;
            }
            // A cancel decided now is taken on the next poll, even if the worker finished.
            let hold = cur.monitor.pending.is_some();
            let state = serde_json::to_value(&cur).unwrap_or(Value::Null);
            // The whole file, only when the job finishes now (a rollback or success).
            let finishing =
                mirrored.decision.is_some() || matches!(outcome, Some(Outcome::Succeeded { .. }));
            let lines = if finishing {
                mirrored_lines(run.clone(), cur.metrics.clone()).await?
            } else {
                Vec::new()
            };
            let trained = |lines: &[Value]| -> i64 {
                lines
                    .iter()
                    .filter_map(|m| m.get("tokens").and_then(Value::as_i64))
                    .sum()
            };
            if let Some(d @ mirror::Decision::Rollback { to, .. }) = &mirrored.decision {
                let model = layout::checkpoint_model(&ft, *to as usize);
                obs.push(actions::rollback_event(d, &model));
                let file = this.result_file(&job, results_csv(&lines, &ckpts)).await?;
                obs.push(Observation::ResultFile(file));
                obs.push(Observation::MonitorCounts(MonitorCounts::rollback()));
                this.forget(&job.id);
                let artifact = this.store_artifact(&job, &run, Some(*to as usize)).await;
                return Ok((
                    RunState::Succeeded {
                        fine_tuned_model: Some(model),
                        trained_tokens: Some(trained(&lines)),
                        state,
                        artifact,
                    },
                    obs,
                ));
            }
            let run_state = match outcome {
                _ if hold => RunState::Running { state },
                None => RunState::Running { state },
                Some(Outcome::Failed { code, message }) => {
                    this.forget(&job.id);
                    RunState::Failed(fail(&code, message))
                }
                Some(Outcome::Succeeded { .. }) => {
                    let csv = results_csv(&lines, &ckpts);
                    let file = this.result_file(&job, csv).await?;
                    obs.push(Observation::ResultFile(file));
                    this.forget(&job.id);
                    RunState::Succeeded {
                        fine_tuned_model: Some(ft),
                        trained_tokens: Some(trained(&lines)),
                        state,
                        artifact: this.store_artifact(&job, &run, None).await,
                    }
                }
            };
            Ok((run_state, obs))
        }
        .boxed()
    }

    fn cancel(&self, job: JobRecord, _state: Value) -> BoxFuture<'static, StepResult<()>> {
        // The worker reads the job's status between optimizer steps and stops there.
        self.forget(&job.id);
        // The client's cancel is stored before this call: the job is terminal.
        self.ended(job).map(Ok).boxed()
    }

    /// A terminal job's checkpoints lose their optimizer state ([`super::retention`]).
    fn ended(&self, job: JobRecord) -> BoxFuture<'static, ()> {
        let dir = jobfiles::runner_dir(&self.data_dir, &self.blobs, &job.id);
        let blobs = self.blobs.clone();
        async move { super::retention::prune_logged(&job.id, dir, blobs.remote()).await }.boxed()
    }
}

#[cfg(test)]
#[path = "executor_tests.rs"]
mod tests;
