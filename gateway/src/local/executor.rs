//! The runner's side of local execution: `start` marks the job local (a worker will lease
//! it), `poll` mirrors what the worker wrote into the job directory — one `metrics` event per
//! optimizer step, each checkpoint, the resolved hyperparameters, and the outcome with its
//! result file — advancing a cursor kept in `exec_state`.

use super::layout::{self, Outcome, Resolved};
use crate::config::ModelRegistry;
use crate::jobs::seams::*;
use crate::store::{run_blocking, BlobStore, EventLevel, FileRecord, JobRecord, Store};
use futures::future::BoxFuture;
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
        }
    }
}

fn metrics_lines(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
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
        run_blocking(&store, move |s| s.insert_file(&rec))
            .await
            .map_err(io)?;
        Ok(id)
    }
}

impl Executor for LocalExecutor {
    fn start(&self, job: JobRecord, _dataset: PathBuf) -> BoxFuture<'static, StepResult<Value>> {
        let known = self.models.model_for(&job.model).is_some();
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
            Ok(serde_json::to_value(Cursor {
                backend: "local".into(),
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
        let dir = layout::job_dir(&self.data_dir, &job.id);
        let this = self.clone();
        async move {
            let mut cur: Cursor = serde_json::from_value(state).unwrap_or_default();
            let run = layout::run_dir(&dir);
            let (lines, ckpts, resolved, outcome) = {
                let (run, dir) = (run.clone(), dir.clone());
                tokio::task::spawn_blocking(move || {
                    // The outcome first: it is written last, so when it is there every
                    // metrics line and checkpoint before it is too.
                    let outcome: Option<Outcome> =
                        layout::read_json(&dir.join("outcome.json")).ok().flatten();
                    let resolved: Option<Resolved> =
                        layout::read_json(&dir.join("resolved.json")).ok().flatten();
                    let ckpts = read_checkpoints(&run);
                    let lines = metrics_lines(&run);
                    (lines, ckpts, resolved, outcome)
                })
                .await
                .map_err(|e| fail("internal_error", e.to_string()))?
            };
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
            for m in &lines {
                let step = m.get("step").and_then(Value::as_u64).unwrap_or(0) as usize;
                if step <= cur.step {
                    continue;
                }
                if step % every == 0 || step == total {
                    obs.push(step_event(m));
                }
                cur.step = step;
            }
            let ft = LocalExecutor::fine_tuned(&job);
            for (step, m) in &ckpts {
                if *step > cur.checkpoint {
                    obs.push(Observation::Checkpoint {
                        fine_tuned_model_checkpoint: layout::checkpoint_model(&ft, *step),
                        step_number: *step as i64,
                        metrics: checkpoint_metrics(m),
                    });
                    cur.checkpoint = *step;
                }
            }
            let state = serde_json::to_value(&cur).unwrap_or(Value::Null);
            let run_state = match outcome {
                None => RunState::Running { state },
                Some(Outcome::Failed { code, message }) => RunState::Failed(fail(&code, message)),
                Some(Outcome::Succeeded { .. }) => {
                    let csv = results_csv(&lines, &ckpts);
                    let file = this.result_file(&job, csv).await?;
                    obs.push(Observation::ResultFile(file));
                    let trained: i64 = lines
                        .iter()
                        .filter_map(|m| m.get("tokens").and_then(Value::as_i64))
                        .sum();
                    RunState::Succeeded {
                        fine_tuned_model: Some(ft),
                        trained_tokens: Some(trained),
                        state,
                    }
                }
            };
            Ok((run_state, obs))
        }
        .boxed()
    }

    fn cancel(&self, _job: JobRecord, _state: Value) -> BoxFuture<'static, StepResult<()>> {
        // The worker reads the job's status between optimizer steps and stops there.
        async { Ok(()) }.boxed()
    }
}
