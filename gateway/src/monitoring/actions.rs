//! Taking the monitor's actions on a local job.
//!
//! - **pause / cancel** are decided while mirroring (the decision is stored in the poll cursor,
//!   in the same transaction as the events of the checkpoint that fired it) and taken on the
//!   next poll: one conditional write (status must still be `running`, as the API's pause and
//!   cancel are) that sets the status, clears the pending decision from the cursor and appends
//!   the action's event, so each is taken exactly once even across crashes and races with the
//!   client. The worker reads the status between optimizer steps: a pause checkpoints and
//!   stops (the client may resume), a cancel stops.
//! - **rollback** finishes the job as succeeded with the chosen checkpoint's `:ckpt-step-N`
//!   model, through the runner's own success transition (one transaction with the events).

use super::mirror::{Decision, PendingAction};
use crate::ids::{new_id, now_unix, IdKind};
use crate::jobs::seams::Observation;
use crate::metrics::Metrics;
use crate::store::{
    run_blocking, EventLevel, EventRecord, JobRecord, JobStatus, JobStep, Store, StoreResult,
};
use monitor::RuleAction;
use serde_json::{json, Value};
use std::sync::Arc;

fn action_data(action: &str, step: u64, reason: &str, firings: &impl serde::Serialize) -> Value {
    json!({"monitor_action": {"action": action, "step": step, "reason": reason, "firings": firings}})
}

/// Takes a pending pause or cancel: true when written (false: the job's status changed
/// first, e.g. the client paused or cancelled it; the pending action stays in the stored
/// cursor and is taken when the job runs again).
pub async fn take_pending(
    store: &Arc<dyn Store>,
    metrics: Option<&Metrics>,
    job: &JobRecord,
    cursor_after: Value,
    p: &PendingAction,
) -> StoreResult<bool> {
    let mut next = job.clone();
    // Paused or cancelled: no finish to estimate.
    next.estimated_finish = None;
    let (name, message) = match p.action {
        RuleAction::Cancel => {
            next.status = JobStatus::Cancelled;
            next.step = JobStep::Done;
            next.finished_at = Some(now_unix());
            (
                "cancel",
                format!("Monitor cancelled the job at step {}: {}", p.step, p.reason),
            )
        }
        _ => {
            next.status = JobStatus::Paused;
            (
                "pause",
                format!(
                    "Monitor paused the job at step {}: {}. Resume it to continue training.",
                    p.step, p.reason
                ),
            )
        }
    };
    next.pipeline.exec_state = Some(cursor_after);
    let event = EventRecord {
        id: new_id(IdKind::Event),
        job_id: job.id.clone(),
        created_at: now_unix(),
        level: EventLevel::Warn,
        message,
        kind: "message".into(),
        data: Some(action_data(name, p.step, &p.reason, &p.firings)),
    };
    let expected = job.status;
    let status = next.status;
    let written = run_blocking(store, move |s| {
        s.update_job_observed(&next, expected, &[event], &[])
    })
    .await?;
    if written {
        if let Some(m) = metrics {
            m.job_entered(status);
            m.monitor.actions.with_label_values(&[name]).inc();
            if status == JobStatus::Cancelled {
                m.monitor.forget_job(&job.id);
            }
        }
    }
    Ok(written)
}

/// The event of a rollback decision (the job then succeeds with `model`).
pub fn rollback_event(d: &Decision, model: &str) -> Observation {
    let Decision::Rollback {
        step,
        to,
        reason,
        firings,
    } = d;
    Observation::Event {
        level: EventLevel::Warn,
        message: format!(
            "Monitor rolled the job back at step {step} to the checkpoint of step {to} ({model}): {reason}"
        ),
        data: Some({
            let mut d = action_data("rollback", *step, reason, firings);
            d["monitor_action"]["to"] = json!(to);
            d["monitor_action"]["fine_tuned_model"] = json!(model);
            d
        }),
        kind: Some("message".into()),
        created_at: None,
    }
}
