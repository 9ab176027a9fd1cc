//! The run step: start the job on its backend (upstream or local), then poll it, mirroring
//! events and checkpoints, until it succeeds, fails or is cancelled. What a poll observed
//! is stored in the one transaction that advances the poll cursor, so it is mirrored once.

use super::route::{route, Route};
use super::seams::*;
use super::steps::{
    commit, commit_observed, event, failed, message_event, recorded_plan, Ctx, Next,
};
use crate::ids::{new_id, now_unix, IdKind};
use crate::store::*;
use serde_json::Value;

pub(super) async fn run(ctx: &Ctx, mut job: JobRecord, old: JobStatus) -> StoreResult<Next> {
    let Some(state) = job.pipeline.exec_state.clone() else {
        return start(ctx, job, old).await;
    };
    let (run_state, observations) = match ctx.seams.executor.poll(job.clone(), state).await {
        Ok(x) => x,
        Err(f) => {
            let (job, evs) = failed(job, f);
            return commit(ctx, old, &job, evs).await;
        }
    };
    let (mut evs, mut ckpts, mut progress) = (Vec::new(), Vec::new(), None);
    let mut counts = crate::monitoring::prom::MonitorCounts::default();
    for o in observations {
        match o {
            Observation::Event {
                level,
                message,
                data,
                kind,
                created_at,
            } => {
                let mut e = event(&job.id, level, message, data);
                e.kind = kind.unwrap_or(e.kind);
                e.created_at = created_at.unwrap_or(e.created_at);
                evs.push(e);
            }
            Observation::Checkpoint {
                fine_tuned_model_checkpoint,
                step_number,
                metrics,
                artifact,
            } => ckpts.push(CheckpointRecord {
                id: new_id(IdKind::Checkpoint),
                job_id: job.id.clone(),
                created_at: now_unix(),
                fine_tuned_model_checkpoint,
                step_number,
                metrics,
                artifact,
            }),
            Observation::Hyperparameters(reported) => {
                resolve_hyperparameters(&mut job.hyperparameters, &mut job.method, &reported);
            }
            Observation::ResultFile(id) => {
                if !job.result_files.contains(&id) {
                    job.result_files.push(id);
                }
            }
            Observation::Progress(p) => {
                job.estimated_finish = p.estimated_finish;
                progress = Some(p);
            }
            Observation::MonitorCounts(c) => counts.absorb(c),
        }
    }
    let next = match run_state {
        RunState::Running { state } => {
            job.pipeline.exec_state = Some(state);
            let _ = commit_observed(ctx, old, &job, evs, ckpts, progress, counts).await?;
            return Ok(Next::Wait);
        }
        RunState::Succeeded {
            fine_tuned_model,
            trained_tokens,
            state,
            artifact,
        } => {
            job.pipeline.exec_state = Some(state);
            job.pipeline.adapter_blob = artifact;
            job.status = JobStatus::Succeeded;
            job.step = JobStep::Done;
            job.finished_at = Some(now_unix());
            job.estimated_finish = None;
            job.fine_tuned_model = fine_tuned_model;
            job.trained_tokens = trained_tokens;
            evs.push(message_event(
                &job.id,
                EventLevel::Info,
                "The job has successfully completed",
            ));
            job
        }
        RunState::Failed(f) => {
            let (j, mut e) = failed(job, f);
            evs.append(&mut e);
            j
        }
        RunState::Cancelled => {
            job.status = JobStatus::Cancelled;
            job.step = JobStep::Done;
            job.finished_at = Some(now_unix());
            job.estimated_finish = None;
            evs.push(message_event(
                &job.id,
                EventLevel::Info,
                "The job was cancelled upstream",
            ));
            job
        }
    };
    commit_observed(ctx, old, &next, evs, ckpts, progress, counts).await
}

/// Starts the job on the backend its plan routes it to ([`route`]); records the backend's
/// state and the route's warnings with the job's move to `running`.
async fn start(ctx: &Ctx, mut job: JobRecord, old: JobStatus) -> StoreResult<Next> {
    let decided = recorded_plan(&job).and_then(|plan| {
        let dataset_blob = job.pipeline.dataset_blob.clone().ok_or_else(|| {
            StepFailure::new(
                "invalid_training_file",
                "The job has no transformed dataset.",
            )
        })?;
        match route(&plan, ctx.seams.mode) {
            Route::Fail(f) => Err(f),
            Route::Run { backend, warnings } => Ok((plan, dataset_blob, backend, warnings)),
        }
    });
    let (plan, dataset_blob, backend, warnings) = match decided {
        Ok(d) => d,
        Err(f) => {
            let (job, evs) = failed(job, f);
            return commit(ctx, old, &job, evs).await;
        }
    };
    let input = StartInput {
        job: job.clone(),
        plan,
        dataset_blob,
        backend,
    };
    let state = match ctx.seams.executor.start(input).await {
        Ok(state) => state,
        Err(f) => {
            let (job, evs) = failed(job, f);
            return commit(ctx, old, &job, evs).await;
        }
    };
    job.pipeline.exec_state = Some(state.clone());
    job.status = JobStatus::Running;
    let mut evs = vec![message_event(
        &job.id,
        EventLevel::Info,
        "Fine-tuning job started",
    )];
    evs.extend(
        warnings
            .into_iter()
            .map(|w| message_event(&job.id, EventLevel::Warn, w)),
    );
    let j = job.clone();
    let written = run_blocking(&ctx.store, move |s| s.update_job(&j, old, &evs)).await?;
    if !written {
        // The status changed while the backend was starting the job (a cancel or a pause),
        // so the backend state was not recorded: the backend's job has to be cancelled.
        owe_cancel(ctx, job, state).await?;
    }
    Ok(Next::Continue)
}

/// Replaces each `"auto"` in the job's hyperparameters (and its `method`'s copy) with the
/// backend's concrete value for that key; keys the client set, and values the backend still
/// reports as `auto` or leaves out, stay as they are.
pub(super) fn resolve_hyperparameters(
    hyperparameters: &mut Value,
    method: &mut Value,
    reported: &Value,
) {
    let Some(reported) = reported.as_object() else {
        return;
    };
    let Some(hp) = hyperparameters.as_object_mut() else {
        return;
    };
    for (k, v) in hp.iter_mut() {
        if v == "auto" {
            if let Some(r) = reported.get(k).filter(|r| r.is_number()) {
                *v = r.clone();
            }
        }
    }
    let resolved = hyperparameters.clone();
    if let Some(m) = method
        .get_mut("supervised")
        .and_then(|s| s.get_mut("hyperparameters"))
    {
        *m = resolved;
    }
}

/// The backend started `job` (its state `state`) but a client's cancel or pause was stored
/// first, so that state was never recorded. A cancelled job records it now with step
/// `cancel`, so the runner forwards the cancel until the backend confirms (`owed_cancel`);
/// a paused job's backend job is cancelled here, best effort (its resume starts a new one).
async fn owe_cancel(ctx: &Ctx, job: JobRecord, state: Value) -> StoreResult<()> {
    let id = job.id.clone();
    let Some(now) = run_blocking(&ctx.store, move |s| s.get_job_any(&id)).await? else {
        return Ok(());
    };
    if now.status == JobStatus::Cancelled && now.pipeline.exec_state.is_none() {
        let mut owed = now;
        owed.pipeline.exec_state = Some(state.clone());
        owed.step = JobStep::Cancel;
        if run_blocking(&ctx.store, move |s| {
            s.update_job(&owed, JobStatus::Cancelled, &[])
        })
        .await?
        {
            return Ok(());
        }
    }
    if let Err(f) = ctx.seams.executor.cancel(job, state).await {
        tracing::warn!(code = %f.code, "backend cancel after a racing status change failed");
    }
    Ok(())
}
