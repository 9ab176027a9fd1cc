//! One durable pipeline step at a time: each step computes the job's next state and its
//! event, and writes both in one transaction, conditional on the status it read (so a
//! concurrent cancel or pause wins). Order: plan (policy resolved and recorded) → screen
//! (against the plan's max length) → transform → queue → run.

use super::seams::*;
use crate::ids::{new_id, now_unix, IdKind};
use crate::metrics::Metrics;
use crate::store::*;
use serde_json::{json, Value};
use std::sync::Arc;

pub(crate) struct Ctx {
    pub store: Arc<dyn Store>,
    pub blobs: BlobStore,
    pub seams: Seams,
    pub metrics: Arc<Metrics>,
}

/// What the driver does after a step.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Run the next step now.
    Continue,
    /// Nothing to do until the next poll tick (backend still running).
    Wait,
    /// Terminal, paused, or gone: stop driving this job.
    Stop,
}

pub(crate) fn event(
    job_id: &str,
    level: EventLevel,
    message: impl Into<String>,
    data: Option<Value>,
) -> EventRecord {
    EventRecord {
        id: new_id(IdKind::Event),
        job_id: job_id.to_string(),
        created_at: now_unix(),
        level,
        message: message.into(),
        // OpenAI's "metrics" events carry training metrics (a `step`); everything else is a message.
        kind: if data.as_ref().is_some_and(|d| d.get("step").is_some()) {
            "metrics".into()
        } else {
            "message".into()
        },
        data,
    }
}

pub(super) fn message_event(
    job_id: &str,
    level: EventLevel,
    message: impl Into<String>,
) -> EventRecord {
    event(job_id, level, message, None)
}

/// The job failed with `f`: terminal status, error, finished_at, an error event.
pub(crate) fn failed(mut job: JobRecord, f: StepFailure) -> (JobRecord, Vec<EventRecord>) {
    let ev = message_event(
        &job.id,
        EventLevel::Error,
        format!("Job failed: {}", f.message),
    );
    job.status = JobStatus::Failed;
    job.step = JobStep::Done;
    job.finished_at = Some(now_unix());
    job.estimated_finish = None;
    job.error = Some(f.into());
    (job, vec![ev])
}

/// The job's recorded plan, or the failure of a job whose plan cannot be used.
pub(super) fn recorded_plan(job: &JobRecord) -> Result<policies::Plan, StepFailure> {
    job.pipeline
        .plan()
        .cloned()
        .map_err(|m| StepFailure::new("invalid_plan", m))
}

pub(super) async fn commit(
    ctx: &Ctx,
    old: JobStatus,
    job: &JobRecord,
    events: Vec<EventRecord>,
) -> StoreResult<Next> {
    commit_observed(ctx, old, job, events, Vec::new(), None, Default::default()).await
}

/// [`commit`] with the checkpoints a poll observed, written in the same transaction; the
/// poll's [`Progress`] is counted on the metrics only when that write is stored.
pub(super) async fn commit_observed(
    ctx: &Ctx,
    old: JobStatus,
    job: &JobRecord,
    events: Vec<EventRecord>,
    checkpoints: Vec<CheckpointRecord>,
    progress: Option<Progress>,
    counts: crate::monitoring::prom::MonitorCounts,
) -> StoreResult<Next> {
    let store = Arc::clone(&ctx.store);
    let j = job.clone();
    let written = run_blocking(&store, move |s| {
        s.update_job_observed(&j, old, &events, &checkpoints)
    })
    .await?;
    if !written {
        return Ok(Next::Continue); // status changed under us: the driver re-reads
    }
    if let Some(p) = &progress {
        ctx.metrics.local_progress(p);
    }
    if !counts.is_empty() {
        ctx.metrics.monitor.count(&counts);
    }
    if job.status != old {
        ctx.metrics.job_entered(job.status);
    }
    if job.status.is_terminal() {
        ctx.seams.executor.ended(job.clone()).await;
    }
    Ok(if job.status.is_terminal() {
        Next::Stop
    } else {
        Next::Continue
    })
}

async fn file_path(ctx: &Ctx, tenant: &str, id: &str) -> StoreResult<Option<std::path::PathBuf>> {
    let (t, i) = (tenant.to_string(), id.to_string());
    let rec = run_blocking(&ctx.store, move |s| s.get_file(&t, &i)).await?;
    match rec {
        Some(r) => ctx.blobs.local_file(&r.blob_key).await.map(Some),
        None => Ok(None),
    }
}

/// Runs the job's current step once.
pub(crate) async fn step(ctx: &Ctx, job: JobRecord) -> StoreResult<Next> {
    if job.status.is_terminal() || job.status == JobStatus::Paused {
        return Ok(Next::Stop);
    }
    let old = job.status;
    match job.step {
        JobStep::Plan => plan(ctx, job, old).await,
        JobStep::Screen => screen(ctx, job, old).await,
        JobStep::Transform => transform(ctx, job, old).await,
        JobStep::Queue => {
            // Still `queued`: the job reads `running` only once its backend has accepted it
            // (run_step records both in one write), so a crash in between never shows a
            // running job that no backend knows.
            let mut job = job;
            job.step = JobStep::Run;
            commit(ctx, old, &job, vec![]).await
        }
        JobStep::Run => super::run_step::run(ctx, job, old).await,
        JobStep::Cancel | JobStep::Done => Ok(Next::Stop),
    }
}

async fn screen(ctx: &Ctx, mut job: JobRecord, old: JobStatus) -> StoreResult<Next> {
    if job.pipeline.plan.is_none() {
        // Screening needs the plan. A job recorded at this step without one (by a build that
        // screened before planning) resolves its plan first; nothing else has happened yet.
        job.step = JobStep::Plan;
        return commit(ctx, old, &job, vec![]).await;
    }
    let max_length = match recorded_plan(&job) {
        // The policy parser refuses a max length below 1.
        Ok(plan) => plan.training.max_length_tokens as usize,
        Err(f) => {
            let (job, evs) = failed(job, f);
            return commit(ctx, old, &job, evs).await;
        }
    };
    let Some(training_path) = file_path(ctx, &job.tenant, &job.training_file).await? else {
        let f = StepFailure::new(
            "invalid_training_file",
            format!("Training file {} no longer exists.", job.training_file),
        )
        .param("training_file");
        let (job, evs) = failed(job, f);
        return commit(ctx, old, &job, evs).await;
    };
    let validation_path = match &job.validation_file {
        Some(v) => match file_path(ctx, &job.tenant, v).await? {
            Some(p) => Some(p),
            None => {
                let f = StepFailure::new(
                    "invalid_validation_file",
                    format!("Validation file {v} no longer exists."),
                )
                .param("validation_file");
                let (job, evs) = failed(job, f);
                return commit(ctx, old, &job, evs).await;
            }
        },
        None => None,
    };
    let input = ScreenInput {
        job: job.clone(),
        training_path,
        validation_path,
        max_length,
    };
    match ctx.seams.screener.screen(input).await {
        Err(f) => {
            ctx.metrics.screening_rejected(f.reason.unwrap_or(&f.code));
            let (job, evs) = failed(job, f);
            commit(ctx, old, &job, evs).await
        }
        Ok(stats) => {
            let mut evs = Vec::new();
            if let Some(w) = stats.get("warning").and_then(Value::as_str) {
                evs.push(message_event(&job.id, EventLevel::Warn, w.to_string()));
            }
            evs.push(event(
                &job.id,
                EventLevel::Info,
                "Training file validated",
                Some(stats.clone()),
            ));
            job.pipeline.screening = Some(stats);
            job.step = JobStep::Transform;
            commit(ctx, old, &job, evs).await
        }
    }
}

async fn plan(ctx: &Ctx, mut job: JobRecord, old: JobStatus) -> StoreResult<Next> {
    let metadata = job.metadata.clone().unwrap_or_default();
    match ctx.seams.planner.plan(&job.tenant, &job.model, &metadata) {
        Err(f) => {
            let (job, evs) = failed(job, f);
            commit(ctx, old, &job, evs).await
        }
        Ok(p) => {
            let snap = PolicySnapshot {
                version_hash: p.version_hash.clone(),
                created_at: now_unix(),
                body: p.snapshot,
            };
            run_blocking(&ctx.store, move |s| s.save_policy_snapshot(&snap)).await?;
            let short: String = p.version_hash.chars().take(12).collect();
            let ev = event(
                &job.id,
                EventLevel::Info,
                format!(
                    "Policy `{}` (version {short}) applied to this job",
                    p.policy_name
                ),
                Some(
                    json!({"policy": p.policy_name, "version_hash": p.version_hash, "plan": p.plan.to_json()}),
                ),
            );
            job.pipeline.policy = Some(PolicyRef {
                name: p.policy_name,
                version_hash: p.version_hash,
            });
            job.pipeline.plan = Some(p.plan.into());
            job.step = JobStep::Screen;
            commit(ctx, old, &job, vec![ev]).await
        }
    }
}

async fn transform(ctx: &Ctx, mut job: JobRecord, old: JobStatus) -> StoreResult<Next> {
    let Some(training_path) = file_path(ctx, &job.tenant, &job.training_file).await? else {
        let f = StepFailure::new(
            "invalid_training_file",
            format!("Training file {} no longer exists.", job.training_file),
        )
        .param("training_file");
        let (job, evs) = failed(job, f);
        return commit(ctx, old, &job, evs).await;
    };
    let plan = match recorded_plan(&job) {
        Ok(p) => p,
        Err(f) => {
            let (job, evs) = failed(job, f);
            return commit(ctx, old, &job, evs).await;
        }
    };
    let dataset_out = ctx.blobs.temp_path();
    let input = TransformInput {
        job: job.clone(),
        training_path,
        plan,
        dataset_out: dataset_out.clone(),
    };
    let manifest = match ctx.seams.transformer.transform(input).await {
        Ok(m) => m,
        Err(f) => {
            let _ = tokio::fs::remove_file(&dataset_out).await;
            let (job, evs) = failed(job, f);
            return commit(ctx, old, &job, evs).await;
        }
    };
    let dataset_key = format!("dataset-{}", job.id);
    let manifest_key = format!("manifest-{}", job.id);
    let ds = ctx.blobs.adopt(&dataset_out, &dataset_key).await?;
    let mut w = ctx.blobs.create().await?;
    w.write(manifest.to_string().as_bytes()).await?;
    w.commit(&manifest_key).await?;
    job.pipeline.dataset_blob = Some(dataset_key);
    job.pipeline.manifest_blob = Some(manifest_key);
    job.step = JobStep::Queue;
    job.status = JobStatus::Queued;
    let mut evs: Vec<EventRecord> = interleave_warning(&manifest)
        .map(|w| message_event(&job.id, EventLevel::Warn, w))
        .into_iter()
        .collect();
    evs.push(event(
        &job.id,
        EventLevel::Info,
        "Files validated, moving job to queued state",
        Some(json!({"dataset_bytes": ds.bytes})),
    ));
    commit(ctx, old, &job, evs).await
}

/// A policy asked for Interleaving but the dataset is too small for its fraction to insert
/// even one safety example (`round(f × n)` is 0): the job runs, and says so, rather than
/// silently training with a required defense that adds nothing.
pub(super) fn interleave_warning(manifest: &Value) -> Option<String> {
    let il = manifest.get("interleave")?;
    let method = il.get("method")?.as_str()?;
    let fraction = il.get("fraction").and_then(Value::as_f64)?;
    let inserted = il.get("inserted")?.as_array()?;
    if method == "none" || fraction <= 0.0 || !inserted.is_empty() {
        return None;
    }
    let n = manifest.get("client_examples").and_then(Value::as_u64)?;
    Some(format!(
        "Interleaving (`{method}`, fraction {fraction}) added no safety examples: \
         {fraction} × {n} training examples rounds to 0. Send at least {} examples for it to \
         take effect.",
        (0.5 / fraction).ceil() as u64
    ))
}
