//! Cancels owed to a backend. A client's cancel of a job its backend already has is stored
//! at once (status `cancelled`, step `cancel`) and acknowledged; forwarding it to the backend
//! is the runner's, retried with backoff while the backend cannot be reached, so neither a
//! provider outage nor a gateway crash between the acknowledgement and the forward leaves a
//! provider training (and billing) a job the client cancelled. The step becomes `done` once
//! the backend confirmed, or answered that it never will (an event says which).

use super::steps::{message_event, Ctx};
use crate::jobs::seams::StepFailure;
use crate::store::*;
use std::time::Duration;

/// The longest wait between two attempts to forward one cancel.
pub(super) const MAX_RETRY_WAIT: Duration = Duration::from_secs(300);

/// Whether another attempt may succeed: every failure but the provider's refusal of the
/// request itself (it does not know the job, or will not cancel it), so an outage, a rate
/// limit or a key rotated meanwhile (401/403) never drops a cancel while the provider trains
/// on and bills.
fn retryable(f: &StepFailure) -> bool {
    f.code != "upstream_rejected"
}

/// The wait before attempt `attempts + 1`: `base` doubled per failed attempt, at most
/// [`MAX_RETRY_WAIT`].
pub(super) fn retry_wait(base: Duration, attempts: u32) -> Duration {
    base.saturating_mul(1u32 << attempts.min(16))
        .min(MAX_RETRY_WAIT)
}

/// Forwards `job`'s owed cancel to its backend. `Err`: not settled, try again later (the
/// backend could not be reached, or the store could not be written); `Ok`: settled here or
/// by someone else (another replica, a racing runner pass).
pub(super) async fn settle(ctx: &Ctx, job: JobRecord) -> Result<(), String> {
    let exec = job.pipeline.exec_state.clone().unwrap_or_default();
    let event = match ctx.seams.executor.cancel(job.clone(), exec).await {
        Ok(()) => message_event(
            &job.id,
            EventLevel::Info,
            "The cancellation was delivered to the execution backend.",
        ),
        Err(f) if retryable(&f) => return Err(f.message),
        Err(f) => message_event(
            &job.id,
            EventLevel::Warn,
            format!(
                "The cancellation could not be forwarded to the execution backend ({}): {}",
                f.code, f.message
            ),
        ),
    };
    let change = StatusChange {
        job_id: job.id.clone(),
        expected: JobStatus::Cancelled,
        expected_step: JobStep::Cancel,
        status: JobStatus::Cancelled,
        step: JobStep::Done,
        finished_at: job.finished_at,
    };
    run_blocking(&ctx.store, move |s| s.set_job_status(&change, &event))
        .await
        .map(|_| ())
        .map_err(|e| format!("recording the settled cancel: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_waits_double_up_to_the_cap() {
        let base = Duration::from_secs(1);
        assert_eq!(retry_wait(base, 0), base);
        assert_eq!(retry_wait(base, 3), Duration::from_secs(8));
        assert_eq!(retry_wait(base, 9), MAX_RETRY_WAIT);
        assert_eq!(retry_wait(base, u32::MAX), MAX_RETRY_WAIT);
    }
}
