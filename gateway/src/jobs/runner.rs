//! The runner: one tokio task that finds active jobs and drives each through its steps.
//! Every step is durable, so after a restart a job simply continues from its stored step.

use super::owed_cancel;
use super::seams::Seams;
use super::steps::{self, Ctx, Next};
use crate::metrics::Metrics;
use crate::store::{run_blocking, BlobStore, JobStatus, Store};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
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
    /// Owed cancels that failed: attempts so far and when the next one is due.
    cancel_retries: Arc<Mutex<HashMap<String, (u32, Instant)>>>,
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
            cancel_retries: Arc::default(),
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
        self.forward_owed_cancels().await;
    }

    /// Forwards each owed cancel whose retry is due ([`owed_cancel`]), one task per job.
    async fn forward_owed_cancels(&self) {
        let owed = match run_blocking(&self.ctx.store, |s| s.owed_cancels()).await {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(error = %e, "runner: listing owed cancels failed");
                return;
            }
        };
        let now = Instant::now();
        for job in owed {
            let due = self
                .cancel_retries
                .lock()
                .map(|r| r.get(&job.id).is_none_or(|(_, at)| *at <= now))
                .unwrap_or(false);
            if !due {
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
            let (ctx, in_flight, retries) = (
                Arc::clone(&self.ctx),
                Arc::clone(&self.in_flight),
                Arc::clone(&self.cancel_retries),
            );
            let base = self.poll_interval;
            tokio::spawn(async move {
                let id = job.id.clone();
                let outcome = owed_cancel::settle(&ctx, job).await;
                if let Ok(mut r) = retries.lock() {
                    match outcome {
                        Ok(()) => {
                            r.remove(&id);
                        }
                        Err(why) => {
                            let attempts = r.get(&id).map_or(0, |(n, _)| *n) + 1;
                            let wait = owed_cancel::retry_wait(base, attempts - 1);
                            tracing::warn!(job = %id, attempts, retry_in_s = wait.as_secs_f64(), error = %why,
                                "forwarding a cancel to the backend failed; retrying");
                            r.insert(id.clone(), (attempts, Instant::now() + wait));
                        }
                    }
                }
                if let Ok(mut set) = in_flight.lock() {
                    set.remove(&id);
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
