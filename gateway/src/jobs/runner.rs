//! The runner: one tokio task that finds active jobs and drives each through its steps.
//! Every step is durable, so after a restart a job simply continues from its stored step.

use super::seams::Seams;
use super::steps::{self, Ctx, Next};
use crate::metrics::Metrics;
use crate::store::{run_blocking, BlobStore, JobStatus, Store};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Wakes the runner when a job is created, resumed or cancelled.
#[derive(Clone, Default)]
pub struct RunnerHandle {
    notify: Arc<Notify>,
}

impl RunnerHandle {
    pub fn wake(&self) {
        self.notify.notify_one();
    }
}

pub struct Runner {
    ctx: Arc<Ctx>,
    handle: RunnerHandle,
    in_flight: Arc<Mutex<HashSet<String>>>,
    poll_interval: Duration,
}

impl Runner {
    pub fn new(
        store: Arc<dyn Store>,
        blobs: BlobStore,
        seams: Seams,
        metrics: Arc<Metrics>,
        handle: RunnerHandle,
        poll_interval: Duration,
    ) -> Runner {
        Runner {
            ctx: Arc::new(Ctx {
                store,
                blobs,
                seams,
                metrics,
            }),
            handle,
            in_flight: Arc::new(Mutex::new(HashSet::new())),
            poll_interval,
        }
    }

    /// Runs until `shutdown` fires. Jobs mid-step at shutdown resume from their last
    /// durable step on the next start.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            self.tick().await;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.handle.notify.notified() => {}
                _ = tokio::time::sleep(self.poll_interval) => {}
            }
        }
    }

    async fn tick(&self) {
        let jobs = match run_blocking(&self.ctx.store, |s| s.active_jobs()).await {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(error = %e, "runner: listing active jobs failed");
                return;
            }
        };
        // The monitor's per-job series exist only while their job is active.
        let active: std::collections::HashSet<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
        self.ctx.metrics.monitor.retain_jobs(&active);
        for job in jobs {
            if job.status == JobStatus::Paused {
                continue;
            }
            {
                let Ok(mut set) = self.in_flight.lock() else {
                    return;
                };
                if !set.insert(job.id.clone()) {
                    continue;
                }
            }
            let ctx = Arc::clone(&self.ctx);
            let in_flight = Arc::clone(&self.in_flight);
            tokio::spawn(async move {
                drive(&ctx, &job.id).await;
                if let Ok(mut set) = in_flight.lock() {
                    set.remove(&job.id);
                }
            });
        }
    }
}

/// Drives one job until it stops, waits on its backend, or a step errors (retried next tick).
async fn drive(ctx: &Ctx, job_id: &str) {
    loop {
        let id = job_id.to_string();
        let job = match run_blocking(&ctx.store, move |s| s.get_job_any(&id)).await {
            Ok(Some(j)) => j,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(job = job_id, error = %e, "runner: reading job failed");
                return;
            }
        };
        let step = job.step;
        match steps::step(ctx, job).await {
            Ok(Next::Continue) => continue,
            Ok(Next::Wait) | Ok(Next::Stop) => return,
            Err(e) => {
                tracing::error!(job = job_id, step = step.as_str(), error = %e, "runner: step failed; retrying on the next tick");
                return;
            }
        }
    }
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
