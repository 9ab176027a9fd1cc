//! The runner: one tokio task that finds active jobs and drives each through its steps.
//! Every step is durable, so after a restart a job simply continues from its stored step.

use super::owed_cancel;
use super::pause_checks::PauseChecks;
use super::seams::Seams;
use super::steps::{self, Ctx, Next};
use crate::metrics::Metrics;
use crate::store::{run_blocking, BlobStore, JobRecord, JobStatus, Store};
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

/// How long a replica's lease on driving a job lasts without renewal; renewed by every tick
/// once half of it has passed. A replica that dies holds its jobs this long at most.
pub const DRIVE_LEASE_SECONDS: i64 = 30;

pub struct Runner {
    ctx: Arc<Ctx>,
    handle: RunnerHandle,
    /// Who this runner is to the store's drive leases: several replicas drive different jobs
    /// (one replica per job at a time), so no provider call or checkpoint evaluation is
    /// repeated by another replica.
    holder: String,
    /// The drive leases this runner holds, and until when.
    held: Mutex<HashMap<String, i64>>,
    in_flight: Arc<Mutex<HashSet<String>>>,
    /// Owed cancels that failed: attempts so far and when the next one is due.
    cancel_retries: Arc<Mutex<HashMap<String, (u32, Instant)>>>,
    /// When each paused job's backend is next asked whether it holds the job paused.
    pause_checks: Arc<Mutex<PauseChecks>>,
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
            holder: crate::ids::process_tag("runner"),
            held: Mutex::default(),
            in_flight: Arc::new(Mutex::new(HashSet::new())),
            cancel_retries: Arc::default(),
            pause_checks: Arc::default(),
            poll_interval,
        }
    }

    /// Same, holding drive leases as `holder`: a replica's own stable name (`serve` keeps it
    /// in its data folder), so a restarted replica takes its jobs back at once.
    pub fn with_holder(mut self, holder: String) -> Runner {
        self.holder = holder;
        self
    }

    /// Takes or renews the lease on driving `job_id` (renewed once half of it has passed);
    /// false when another replica holds it.
    async fn leased(&self, job_id: &str) -> bool {
        let now = crate::ids::now_unix();
        let fresh = self
            .held
            .lock()
            .map(|h| {
                h.get(job_id)
                    .is_some_and(|until| until - now > DRIVE_LEASE_SECONDS / 2)
            })
            .unwrap_or(false);
        if fresh {
            return true;
        }
        let (id, holder) = (job_id.to_string(), self.holder.clone());
        let got = run_blocking(&self.ctx.store, move |s| {
            s.lease_drive(&id, &holder, now, DRIVE_LEASE_SECONDS)
        })
        .await;
        let got = match got {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(job = job_id, error = %e, "runner: taking the drive lease failed");
                false
            }
        };
        if let Ok(mut h) = self.held.lock() {
            if got {
                h.insert(job_id.to_string(), now + DRIVE_LEASE_SECONDS);
            } else {
                h.remove(job_id);
            }
        }
        got
    }

    /// Gives back the drive leases of jobs that are no longer active.
    async fn release_ended(&self, active: &HashSet<&str>) {
        let ended: Vec<String> = match self.held.lock() {
            Ok(mut h) => {
                let gone: Vec<String> = h
                    .keys()
                    .filter(|id| !active.contains(id.as_str()))
                    .cloned()
                    .collect();
                for id in &gone {
                    h.remove(id);
                }
                gone
            }
            Err(_) => return,
        };
        for id in ended {
            let holder = self.holder.clone();
            let released =
                run_blocking(&self.ctx.store, move |s| s.release_drive(&id, &holder)).await;
            if let Err(e) = released {
                tracing::warn!(error = %e, "runner: releasing a drive lease failed");
            }
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
        // Another replica may take this one's jobs at once instead of when the leases lapse.
        self.release_ended(&HashSet::new()).await;
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
        let active: HashSet<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
        self.ctx.metrics.monitor.retain_jobs(&active);
        self.release_ended(&active).await;
        let paused: HashSet<&str> = jobs
            .iter()
            .filter(|j| j.status == JobStatus::Paused)
            .map(|j| j.id.as_str())
            .collect();
        if let Ok(mut c) = self.pause_checks.lock() {
            c.retain(&paused);
        }
        for job in &jobs {
            if job.status == JobStatus::Paused {
                self.hold_paused(job).await;
                continue;
            }
            // Renewed while this runner drives the job; skipped while another replica does.
            if !self.leased(&job.id).await {
                continue;
            }
            let job = job.clone();
            if !self.start_work(&job.id) {
                continue;
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

    /// Marks `job_id` as worked on by one of this runner's tasks (which removes it when done);
    /// false when a task already is (or the set is unusable).
    fn start_work(&self, job_id: &str) -> bool {
        self.in_flight
            .lock()
            .map(|mut set| set.insert(job_id.to_string()))
            .unwrap_or(false)
    }

    /// The base wait between checks that a paused job's backend holds it paused.
    fn pause_check_base(&self) -> Duration {
        (self.poll_interval * 15).min(Duration::from_secs(30))
    }

    /// Asks the backend of paused `job` to hold it paused, when its check is due
    /// ([`PauseChecks`]) and this replica drives it.
    async fn hold_paused(&self, job: &JobRecord) {
        let Some(state) = job.pipeline.exec_state.clone() else {
            return;
        };
        let base = self.pause_check_base();
        let due = self
            .pause_checks
            .lock()
            .map(|mut c| c.due(&job.id, Instant::now(), base))
            .unwrap_or(false);
        if !due || !self.leased(&job.id).await {
            return;
        }
        if !self.start_work(&job.id) {
            return;
        }
        let (ctx, in_flight, checks) = (
            Arc::clone(&self.ctx),
            Arc::clone(&self.in_flight),
            Arc::clone(&self.pause_checks),
        );
        let job = job.clone();
        tokio::spawn(async move {
            let held = match ctx.seams.executor.hold_paused(job.clone(), state).await {
                Ok(held) => held,
                Err(f) => {
                    tracing::warn!(job = %job.id, code = %f.code, error = %f.message, "checking that the backend holds a paused job failed");
                    false
                }
            };
            if let Ok(mut c) = checks.lock() {
                c.checked(&job.id, held, Instant::now(), base);
            }
            if let Ok(mut set) = in_flight.lock() {
                set.remove(&job.id);
            }
        });
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
            if !self.start_work(&job.id) {
                continue;
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
