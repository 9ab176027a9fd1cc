//! `tuneguard worker`: claims local jobs from the store, trains each with the trainer library,
//! heartbeats its lease between optimizer steps, and writes the job directory the runner
//! mirrors. Pause and cancel are the job's status in the store, read between steps: pause
//! writes a checkpoint first; cancel stops at once. A worker that dies leaves a lease that
//! expires; the next worker resumes the job from its newest checkpoint.

use super::hyper::job_config;
use super::jobfiles::Pusher;
use super::layout::{self, Outcome, Resolved};
use crate::config::{Config, ModelEntry};
use crate::ids::now_unix;
use crate::local::lease_keeper::LeaseKeeper;
use crate::monitoring::worker::{CheckpointMonitor, MonitorSetup};
use crate::store::{open_store, BlobStore, Claim, JobRecord, JobStatus, Store};
use anyhow::Context;
use burn::backend::Autodiff;
use burn::tensor::backend::AutodiffBackend;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use trainer::cli::DeviceKind;
use trainer::train::{Control, Directive, Outcome as RunOutcome, Session, SessionInputs};
use trainer::Engine;

/// The environment variable `serve` sets on the workers it supervises: its own process id.
/// A worker whose parent is no longer that process (serve died, even before the worker read
/// its parent) stops at its next step boundary instead of running on as an orphan.
pub const SUPERVISOR_PID_ENV: &str = "TUNEGUARD_SUPERVISOR_PID";

/// The supervising `serve`'s process id from the environment, when there is one.
pub fn supervisor_pid() -> Option<u32> {
    std::env::var(SUPERVISOR_PID_ENV).ok()?.trim().parse().ok()
}

/// Runs until `stop` is set, or the process's parent is no longer `supervisor` (when given).
pub fn run(config: &Config, stop: Arc<AtomicBool>, supervisor: Option<u32>) -> anyhow::Result<()> {
    let store: Arc<dyn Store> = open_store(config).context("opening the store")?;
    let blobs = BlobStore::open_with(&config.data_dir, &config.storage.blobs)
        .context("opening the blob store")?;
    let worker_id = crate::ids::process_tag("worker");
    let orphaned = move || supervisor.is_some_and(|p| std::os::unix::process::parent_id() != p);
    tracing::info!(worker = %worker_id, "worker started");
    if blobs.remote().is_some() {
        // Copies of finished jobs a previous run of a worker here left (it died before
        // removing them, or stopped before the job ended elsewhere).
        let jobs = config.data_dir.join("jobs");
        match super::retention::drop_terminal(
            &jobs,
            &*store,
            now_unix(),
            0,
            &super::retention::never_needed,
        ) {
            Ok(n) if n > 0 => tracing::info!(dirs = n, "removed the copies of finished jobs"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "looking for copies of finished jobs failed"),
        }
        trim_blob_cache(&blobs, config);
    }
    let lease = config.local.lease_seconds as i64;
    while !stop.load(Ordering::SeqCst) && !orphaned() {
        match store.claim_local_job(&worker_id, now_unix(), lease) {
            Ok(Some(claim)) => {
                let ctx = JobCtx {
                    config,
                    store: Arc::clone(&store),
                    blobs: &blobs,
                    worker_id: &worker_id,
                    stop: Arc::clone(&stop),
                    orphaned: &orphaned,
                };
                let job_id = claim.job.id.clone();
                if let Ended::Outcome = ctx.run(claim) {
                    // The job stays `running` until the runner reads the outcome: a lease let
                    // go now would let a worker claim (fetch, and train) a finished job.
                    ctx.hold_until_read(&job_id, lease);
                }
                if let Err(e) = store.release_lease(&job_id, &worker_id) {
                    tracing::warn!(job = %job_id, error = %e, "releasing the lease failed");
                }
                trim_blob_cache(&blobs, config);
            }
            Ok(None) => std::thread::sleep(config.local.poll_interval),
            Err(e) => {
                tracing::error!(error = %e, "claiming a job failed");
                std::thread::sleep(config.local.poll_interval);
            }
        }
    }
    tracing::info!(worker = %worker_id, "worker stopped");
    Ok(())
}

/// Keeps the cached copies of remote blobs (datasets, manifests) within
/// `[storage] blob_cache_mb`, between jobs.
fn trim_blob_cache(blobs: &BlobStore, config: &Config) {
    match blobs.trim_cache(config.storage.blob_cache_bytes) {
        Ok(n) if n > 0 => tracing::info!(removed = n, "trimmed the blob cache"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "trimming the blob cache failed"),
    }
}

/// How a job's run on this worker ended.
enum Ended {
    /// The job's outcome is written (by this run, or by an earlier one the runner has not
    /// read yet): the lease is held until the runner reads it.
    Outcome,
    /// Stopped without one (paused, cancelled, lease lost, worker stopping, a failed fetch):
    /// the job is free for the next claim.
    Stopped,
}

struct JobCtx<'a> {
    config: &'a Config,
    store: Arc<dyn Store>,
    blobs: &'a BlobStore,
    worker_id: &'a str,
    stop: Arc<AtomicBool>,
    orphaned: &'a dyn Fn() -> bool,
}

/// Attempts to push the job directory with its outcome (backing off from twice the poll
/// interval) before the worker gives the job up.
const FINAL_PUSH_ATTEMPTS: u32 = 4;

/// The longest a worker waits, holding its lease, for the runner to read an outcome.
const OUTCOME_READ_WAIT: Duration = Duration::from_secs(300);

/// How often a worker on its own machine (remote blobs) pushes its job directory between
/// optimizer steps; it always pushes when it stops.
const PUSH_EVERY: Duration = Duration::from_secs(1);

/// Between optimizer steps: renew the lease (a lost lease stops at once: another worker owns
/// the job now), push the job directory when blobs are remote, then follow the job's status
/// and the process's own stop request.
struct JobControl<'a, 'p> {
    pusher: Option<&'p mut Pusher>,
    last_push: Instant,
    store: Arc<dyn Store>,
    job_id: String,
    worker_id: &'a str,
    lease_seconds: i64,
    last_heartbeat: Instant,
    stop: Arc<AtomicBool>,
    orphaned: &'a dyn Fn() -> bool,
    lost: bool,
}

/// Pushes the job directory's changes; a failed push is retried at the next one. True when
/// it went through.
fn push(pusher: &mut Pusher, job_id: &str) -> bool {
    match crate::store::block_on_io(pusher.push()) {
        Ok(n) => {
            tracing::debug!(job = %job_id, files = n, "job directory pushed");
            true
        }
        Err(e) => {
            tracing::warn!(job = %job_id, error = %e, "pushing the job directory failed");
            false
        }
    }
}

impl Control for JobControl<'_, '_> {
    fn check(&mut self) -> Directive {
        if let Some(p) = self.pusher.as_deref_mut() {
            if self.last_push.elapsed() >= PUSH_EVERY {
                push(p, &self.job_id);
                self.last_push = Instant::now();
            }
        }
        if self.last_heartbeat.elapsed()
            >= Duration::from_secs((self.lease_seconds / 3).max(1) as u64)
        {
            match self.store.heartbeat_lease(
                &self.job_id,
                self.worker_id,
                now_unix(),
                self.lease_seconds,
            ) {
                Ok(true) => self.last_heartbeat = Instant::now(),
                Ok(false) => {
                    tracing::warn!(job = %self.job_id, "lease lost; stopping without writing");
                    self.lost = true;
                    return Directive::Cancel;
                }
                Err(e) => tracing::warn!(job = %self.job_id, error = %e, "heartbeat failed"),
            }
        }
        if self.stop.load(Ordering::SeqCst) || (self.orphaned)() {
            return Directive::Pause;
        }
        match self.store.get_job_any(&self.job_id) {
            Ok(Some(j)) if j.status == JobStatus::Running => Directive::Continue,
            Ok(Some(j)) if j.status == JobStatus::Paused => Directive::Pause,
            Ok(_) => Directive::Cancel,
            Err(e) => {
                tracing::warn!(job = %self.job_id, error = %e, "reading the job's status failed");
                Directive::Continue
            }
        }
    }
}

/// A failure with an OpenAI-style code and a message a person can act on.
struct Failure {
    code: &'static str,
    message: String,
}

fn failure(code: &'static str, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
    }
}

impl JobCtx<'_> {
    fn run(&self, claim: Claim) -> Ended {
        let job = claim.job;
        if let Some(prev) = &claim.takeover_from {
            tracing::warn!(job = %job.id, previous = %prev, "taking over a job whose lease expired");
        }
        let dir = layout::job_dir(&self.config.data_dir, &job.id);
        if self.outcome_written(&job.id, &dir) {
            tracing::info!(job = %job.id, "the job's outcome is already written; leaving it to the runner");
            return Ended::Outcome;
        }
        tracing::info!(job = %job.id, worker = %self.worker_id, "training");
        // On its own machine (remote blobs) the worker starts from the bucket's copy of the
        // job directory: whatever the previous holder of the lease pushed.
        let mut pusher = match self.blobs.remote() {
            None => None,
            Some(r) => match crate::store::block_on_io(Pusher::claim(r.clone(), &job.id, &dir)) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::error!(job = %job.id, error = %e, "fetching the job directory failed; leaving the job to the next claim");
                    return Ended::Stopped;
                }
            },
        };
        let result = match self.config.models.model_for(&job.model) {
            None => Err(failure(
                "model_not_available",
                format!("No [[models]] entry of this gateway matches the model `{}`.", job.model),
            )),
            Some(entry) => match entry.device {
                DeviceKind::Cpu => self.train::<Autodiff<trainer::CpuBackend>>(&job, entry, Default::default(), pusher.as_mut()),
                #[cfg(feature = "cuda")]
                DeviceKind::Cuda => self.train::<Autodiff<burn::backend::Cuda>>(&job, entry, Default::default(), pusher.as_mut()),
                #[cfg(not(feature = "cuda"))]
                DeviceKind::Cuda => Err(failure(
                    "device_unavailable",
                    "The model is configured for device cuda, but this gateway was built without the `cuda` feature.",
                )),
            },
        };
        // What the run wrote (its last checkpoint when it paused or stopped) goes up first…
        if let Some(p) = pusher.as_mut() {
            push(p, &job.id);
        }
        let outcome = match result {
            Ok(Some(o)) => o,
            Ok(None) => return Ended::Stopped,
            Err(f) => Outcome::Failed {
                code: f.code.into(),
                message: f.message,
            },
        };
        if let Err(e) = layout::write_json_atomic(&dir.join(layout::OUTCOME), &outcome) {
            // The runner cannot see an outcome that is not written: the job is left to the
            // next claim, which trains on from the last checkpoint.
            tracing::error!(job = %job.id, error = %e, "writing the outcome failed");
            return Ended::Stopped;
        }
        // …and the outcome last, as on disk.
        if let Some(p) = pusher.as_mut() {
            let pushed = (0..FINAL_PUSH_ATTEMPTS).any(|attempt| {
                if attempt > 0 {
                    std::thread::sleep(self.config.local.poll_interval * (1 << attempt));
                }
                push(p, &job.id)
            });
            if !pushed {
                // The bucket lacks the outcome, so the runner never sees it: the job is left
                // to the next claim, which starts from the bucket's copy.
                tracing::error!(job = %job.id, attempts = FINAL_PUSH_ATTEMPTS, "pushing the outcome failed; leaving the job to the next claim");
                return Ended::Stopped;
            }
            // On another machine than the runner: with the outcome in the bucket this copy is
            // redundant (a later claim starts from the bucket's), so it goes whole.
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(job = %job.id, error = %e, "removing the pushed job directory failed");
            }
        }
        Ended::Outcome
    }

    /// Heartbeats the lease on `job_id`, whose outcome is written, until the runner has read
    /// it (the job is no longer `running`), at most [`OUTCOME_READ_WAIT`] (no runner may be
    /// up), or the worker is asked to stop. Usually one poll interval of the runner.
    fn hold_until_read(&self, job_id: &str, lease_seconds: i64) {
        let since = Instant::now();
        while since.elapsed() < OUTCOME_READ_WAIT
            && !self.stop.load(Ordering::SeqCst)
            && !(self.orphaned)()
        {
            match self.store.get_job_any(job_id) {
                Ok(Some(j)) if j.status == JobStatus::Running => {}
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(job = %job_id, error = %e, "reading the job's status failed")
                }
            }
            match self
                .store
                .heartbeat_lease(job_id, self.worker_id, now_unix(), lease_seconds)
            {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => tracing::warn!(job = %job_id, error = %e, "renewing the lease failed"),
            }
            std::thread::sleep(self.config.local.poll_interval);
        }
    }

    /// Whether a run already wrote the job's outcome: in the bucket when blobs are remote (a
    /// failed look counts as no), else in the job directory.
    fn outcome_written(&self, job_id: &str, dir: &std::path::Path) -> bool {
        match self.blobs.remote() {
            Some(r) => crate::store::block_on_io(super::jobfiles::outcome_pushed(r, job_id))
                .unwrap_or_else(|e| {
                    tracing::warn!(job = %job_id, error = %e, "looking for the job's outcome failed");
                    false
                }),
            None => dir.join(layout::OUTCOME).is_file(),
        }
    }

    /// Trains the job; `Ok(None)` when it stopped without an outcome (paused, cancelled,
    /// lease lost, worker stopping).
    fn train<B: AutodiffBackend>(
        &self,
        job: &JobRecord,
        entry: &ModelEntry,
        device: B::Device,
        pusher: Option<&mut Pusher>,
    ) -> Result<Option<Outcome>, Failure> {
        let dir = layout::job_dir(&self.config.data_dir, &job.id);
        let plan = job
            .pipeline
            .plan()
            .cloned()
            .map_err(|m| failure("invalid_plan", m))?;
        let dataset = job
            .pipeline
            .dataset_blob
            .as_deref()
            .ok_or_else(|| {
                failure(
                    "invalid_training_file",
                    "The job has no transformed dataset.",
                )
            })
            .and_then(|k| {
                self.blobs
                    .local_file_blocking(k)
                    .map_err(|e| failure("invalid_training_file", e.to_string()))
            })?;
        let validation: Option<PathBuf> = match &job.validation_file {
            None => None,
            Some(id) => {
                let rec = self
                    .store
                    .get_file(&job.tenant, id)
                    .map_err(|e| failure("internal_error", e.to_string()))?
                    .ok_or_else(|| {
                        failure(
                            "invalid_validation_file",
                            format!("Validation file {id} no longer exists."),
                        )
                    })?;
                Some(
                    self.blobs
                        .local_file_blocking(&rec.blob_key)
                        .map_err(|e| failure("invalid_validation_file", e.to_string()))?,
                )
            }
        };
        // The monitor's held-out slice of the client's examples (policy `holdout_examples`).
        let (dataset, holdout) = self.holdout_split(job, &plan, dataset, &dir)?;
        let eval_device = device.clone();
        let engine = Engine::<B>::load_with(&entry.path, device, entry.precision).map_err(|e| {
            failure(
                "model_load_failed",
                format!(
                    "The base model for `{}` failed to load from {}: {e}",
                    job.model,
                    entry.path.display()
                ),
            )
        })?;
        let config = job_config(
            &plan,
            &job.hyperparameters,
            job.seed,
            engine.weights.config.num_layers,
        )
        .map_err(|e| failure("invalid_hyperparameters", e))?;
        let run = layout::run_dir(&dir);
        let base = job.model.clone();
        let inputs = SessionInputs {
            data: &dataset,
            validation: validation.as_deref(),
            out: &run,
            base_model: &base,
        };
        let has_checkpoint = !trainer::train::checkpoint::list(&run.join("checkpoints"))
            .unwrap_or_default()
            .is_empty();
        let session = if has_checkpoint {
            Session::resume(&engine, config.clone(), &inputs)
        } else {
            Session::start(&engine, config.clone(), &inputs, None)
        };
        let mut session = session.map_err(|e| failure("training_failed", e.to_string()))?;
        let resolved = Resolved {
            n_epochs: config.epochs,
            batch_size: config.batch_size * config.gradient_accumulation_steps,
            learning_rate_multiplier: config.learning_rate / plan.training.learning_rate,
            total_steps: session.total_steps(),
        };
        layout::write_json_atomic(&dir.join("resolved.json"), &resolved)
            .map_err(|e| failure("internal_error", e.to_string()))?;
        let mut control = JobControl {
            pusher,
            last_push: Instant::now(),
            store: Arc::clone(&self.store),
            job_id: job.id.clone(),
            worker_id: self.worker_id,
            lease_seconds: self.config.local.lease_seconds as i64,
            last_heartbeat: Instant::now(),
            stop: Arc::clone(&self.stop),
            orphaned: self.orphaned,
            lost: false,
        };
        let mut monitor = self.monitor::<B::InnerBackend>(
            job,
            entry,
            eval_device,
            &plan,
            &dir,
            holdout.as_deref(),
        )?;
        monitor.catch_up(&run);
        if monitor.lease_lost {
            return Ok(None);
        }
        let ran = session.run(&mut monitor, &mut control);
        if monitor.lease_lost {
            tracing::warn!(job = %job.id, "lease lost during the monitor's evaluation; stopping without an outcome");
            return Ok(None);
        }
        match ran {
            Ok(RunOutcome::Finished { step }) => Ok(Some(Outcome::Succeeded { steps: step })),
            Ok(RunOutcome::Paused { step }) => {
                tracing::info!(job = %job.id, step, "paused after a checkpoint");
                Ok(None)
            }
            Ok(RunOutcome::Cancelled { step }) => {
                tracing::info!(job = %job.id, step, lost = control.lost, "stopped");
                Ok(None)
            }
            Err(e) => Err(failure("training_failed", e.to_string())),
        }
    }

    /// With `holdout_examples` > 0: the dataset without its last client examples, and the
    /// held-out file (`monitor_holdout/` in the job directory).
    fn holdout_split(
        &self,
        job: &JobRecord,
        plan: &policies::Plan,
        dataset: PathBuf,
        dir: &std::path::Path,
    ) -> Result<(PathBuf, Option<PathBuf>), Failure> {
        let n = plan.monitor.holdout_examples as usize;
        if n == 0 {
            return Ok((dataset, None));
        }
        let manifest: Option<serde_json::Value> = job
            .pipeline
            .manifest_blob
            .as_deref()
            .and_then(|k| self.blobs.local_file_blocking(k).ok())
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok());
        // The client's training file as uploaded: the held-out rows are scored as sent.
        let original = self
            .store
            .get_file(&job.tenant, &job.training_file)
            .ok()
            .flatten()
            .and_then(|f| self.blobs.local_file_blocking(&f.blob_key).ok());
        let (train, held) = crate::monitoring::holdout::write_split(
            &dataset,
            original.as_deref(),
            manifest.as_ref(),
            n,
            &dir.join("monitor_holdout"),
        )
        .map_err(|e| failure("invalid_training_file", e))?;
        Ok((train, Some(held)))
    }

    /// The job's checkpoint monitor on its own inference engine (see `monitoring::worker`).
    fn monitor<I: burn::tensor::backend::Backend>(
        &self,
        job: &JobRecord,
        entry: &ModelEntry,
        device: I::Device,
        plan: &policies::Plan,
        dir: &std::path::Path,
        holdout: Option<&std::path::Path>,
    ) -> Result<CheckpointMonitor<I>, Failure> {
        let device_name = format!("{device:?}");
        let engine =
            Engine::<I>::load_with(&entry.path, device.clone(), entry.precision).map_err(|e| {
                failure(
                    "model_load_failed",
                    format!("The monitor's copy of `{}` failed to load: {e}", job.model),
                )
            })?;
        // The engine-served judge (`[monitor] local_judge_model`; config validation checked
        // that a `[[models]]` entry matches it). A judge that fails to load costs the judged
        // signals, not the job: the evaluation goes on with the other judges, if any.
        let judge = self.config.monitor.local_judge.as_ref().and_then(|name| {
            let e = self.config.models.model_for(name)?;
            match Engine::<I>::load_with(&e.path, device, e.precision) {
                Ok(judge) => Some(judge),
                Err(err) => {
                    tracing::warn!(job = %job.id, judge = %name, error = %err, "the monitor's local judge failed to load; judging without it");
                    None
                }
            }
        });
        CheckpointMonitor::new(
            engine,
            judge,
            MonitorSetup {
                plan,
                config: &self.config.monitor,
                job_dir: dir,
                holdout,
                keeper: LeaseKeeper {
                    store: Arc::clone(&self.store),
                    job_id: job.id.clone(),
                    worker_id: self.worker_id.to_string(),
                    lease_seconds: self.config.local.lease_seconds as i64,
                },
                model_path: &entry.path,
                engine: format!("{:?} {:?}", entry.precision, device_name),
                seed: job.seed.max(0) as u64,
            },
        )
        .map_err(|e| failure("monitor_unavailable", e))
    }
}
