//! Durable state behind a narrow trait ([`Store`]) with two backends — the embedded SQLite
//! one (the single-machine default) and PostgreSQL (`[storage] backend = "postgres"`, shared
//! by several replicas and workers) — plus the local-disk [`BlobStore`]. [`open_store`] picks
//! the configured backend. Store calls are blocking; async callers go through
//! [`run_blocking`].

mod blob;
pub mod blob_remote;
mod codec;
mod open;
mod pipeline;
mod postgres;
mod postgres_jobs;
mod postgres_leases;
mod postgres_migrate;
mod postgres_pool;
mod postgres_score_cache;
mod postgres_tls;
mod postgres_uploads;
mod records;
#[cfg(test)]
pub(crate) mod s3_test_server;
mod sqlite;
mod sqlite_jobs;
mod sqlite_leases;
mod sqlite_uploads;

#[cfg(test)]
mod contract_tests;
#[cfg(test)]
pub(crate) mod pg_test_server;

pub use blob::{block_on_io, BlobReader, BlobStore, BlobWriter, WrittenBlob};
pub use open::{open_store, OpenStoreError};
pub use pipeline::{Backend, Pipeline, PipelineBlobKeys, PolicyRef, RecordedPlan, LOCAL_BACKEND};
pub use postgres::{PgOptions, PgStore};
pub use postgres_score_cache::PgScoreCache;
pub use records::*;
pub use sqlite::SqliteStore;

use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {0}")]
    Postgres(#[from] ::postgres::Error),
    /// The database could not be reached (connect failure, no free pooled connection).
    #[error("postgres unavailable: {0}")]
    Unavailable(String),
    #[error("io at {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt row {table}.{column} for {id}: {message}")]
    Corrupt {
        table: &'static str,
        column: &'static str,
        id: String,
        message: String,
    },
    #[error("store task failed: {0}")]
    Task(String),
    /// A list cursor (`after`) that names no object of that list (missing, deleted, or
    /// another tenant's / job's: indistinguishable on purpose).
    #[error("unknown list cursor {0}")]
    UnknownCursor(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Every durable record the gateway keeps. All reads are tenant-scoped where the object
/// belongs to a tenant; a foreign id reads as absent.
pub trait Store: Send + Sync + 'static {
    // files
    fn insert_file(&self, file: &FileRecord) -> StoreResult<()>;
    fn get_file(&self, tenant: &str, id: &str) -> StoreResult<Option<FileRecord>>;
    fn list_files(&self, tenant: &str, q: &FileQuery) -> StoreResult<Page<FileRecord>>;
    /// Removes the row and returns it (the caller removes the blob afterwards).
    fn delete_file(&self, tenant: &str, id: &str) -> StoreResult<Option<FileRecord>>;
    /// Removes files whose `expires_at` is at or before `now`; returns them (blobs are the
    /// caller's to remove).
    fn delete_expired_files(&self, now: i64) -> StoreResult<Vec<FileRecord>>;
    /// Every blob key referenced by a file, part, or job (for the orphan sweep).
    fn referenced_blob_keys(&self) -> StoreResult<Vec<String>>;

    // uploads
    fn insert_upload(&self, upload: &UploadRecord) -> StoreResult<()>;
    fn get_upload(&self, tenant: &str, id: &str) -> StoreResult<Option<UploadRecord>>;
    fn insert_part(&self, part: &PartRecord) -> StoreResult<()>;
    fn list_parts(&self, upload_id: &str) -> StoreResult<Vec<PartRecord>>;
    /// Sets a pending upload's status; on completion also inserts the file and records the
    /// part ids it was made from. False when the upload was no longer pending.
    fn finish_upload(
        &self,
        upload_id: &str,
        status: UploadStatus,
        file: Option<(&FileRecord, &[String])>,
    ) -> StoreResult<bool>;
    /// Pending uploads whose expiry is at or before `now`, marked expired; returns them.
    fn expire_uploads(&self, now: i64) -> StoreResult<Vec<UploadRecord>>;
    /// Ids of uploads no longer pending that still have part rows (a crash between
    /// completing/cancelling and freeing the parts).
    fn finished_uploads_with_parts(&self) -> StoreResult<Vec<String>>;
    /// Removes part rows of a finished upload, returning their blob keys.
    fn delete_parts(&self, upload_id: &str) -> StoreResult<Vec<String>>;

    // jobs
    /// Inserts the job and its first event unless an idempotency record in `keys` already
    /// names a job; then returns that job's id instead.
    fn create_job(
        &self,
        job: &JobRecord,
        event: &EventRecord,
        keys: &[IdempotencyKey],
    ) -> StoreResult<CreateOutcome>;
    fn get_job(&self, tenant: &str, id: &str) -> StoreResult<Option<JobRecord>>;
    fn get_job_any(&self, id: &str) -> StoreResult<Option<JobRecord>>;
    fn list_jobs(&self, tenant: &str, q: &JobQuery) -> StoreResult<Page<JobRecord>>;
    /// Writes `job` only if its stored status is still `expected`; appends `events` in the
    /// same transaction. False when the status had changed (cancel/pause raced).
    fn update_job(
        &self,
        job: &JobRecord,
        expected: JobStatus,
        events: &[EventRecord],
    ) -> StoreResult<bool> {
        self.update_job_observed(job, expected, events, &[])
    }
    /// As [`Store::update_job`], also inserting the checkpoints a poll observed in the same
    /// transaction: when the write is refused (a pause raced the poll) or never happens (a
    /// crash), neither the checkpoints nor the advanced poll cursor are stored, so the next
    /// poll mirrors them exactly once.
    fn update_job_observed(
        &self,
        job: &JobRecord,
        expected: JobStatus,
        events: &[EventRecord],
        checkpoints: &[CheckpointRecord],
    ) -> StoreResult<bool>;
    /// Changes only a job's status, step and finished_at (never the pipeline state the runner
    /// owns), if its stored status is still `expected`; appends `event` in the same
    /// transaction. False when the status had changed. The job's `estimated_finish` is
    /// cleared (a pause, cancel or resume ends the run it was measured on; the runner
    /// estimates again from the steps that follow).
    fn set_job_status(&self, change: &StatusChange, event: &EventRecord) -> StoreResult<bool>;
    /// Number of jobs per status (all tenants).
    fn count_jobs(&self) -> StoreResult<Vec<(JobStatus, u64)>>;
    /// Jobs not in a terminal status.
    fn active_jobs(&self) -> StoreResult<Vec<JobRecord>>;
    /// Cancelled jobs whose backend's job is still to be cancelled (step `cancel`), oldest
    /// first.
    fn owed_cancels(&self) -> StoreResult<Vec<JobRecord>>;
    fn insert_event(&self, event: &EventRecord) -> StoreResult<()>;
    fn list_events(
        &self,
        job_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<EventRecord>>;
    fn list_checkpoints(
        &self,
        job_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<CheckpointRecord>>;
    /// Whether the gateway lists `model` to `tenant`: the `fine_tuned_model` of one of its
    /// succeeded jobs, or a checkpoint of one of its jobs — except, for a job that finished
    /// with one of its checkpoints (a monitor rollback), the checkpoints after that one. What
    /// it lists is what it serves.
    fn model_listed(&self, tenant: &str, model: &str) -> StoreResult<bool>;
    /// Every model [`Store::model_listed`] lists to `tenant`, in one query (the filter of a
    /// provider's `GET /v1/models`, which may name thousands).
    fn listed_models(&self, tenant: &str) -> StoreResult<std::collections::HashSet<String>>;

    // which replica's runner drives a job
    /// Takes or renews the lease on driving `job_id` for `holder` until `now + seconds`: true
    /// when `holder` has it now (it was free, expired, or already `holder`'s).
    fn lease_drive(&self, job_id: &str, holder: &str, now: i64, seconds: i64) -> StoreResult<bool>;
    /// Gives up `holder`'s lease on driving `job_id` (a no-op when another holds it).
    fn release_drive(&self, job_id: &str, holder: &str) -> StoreResult<()>;

    // leases of local jobs (several worker processes share the queue)
    /// Takes a running local job (`exec_state.backend = "local"`) that no live lease holds:
    /// the tenant served longest ago first (round-robin), then the oldest job. The lease
    /// lasts `lease_seconds` unless renewed by [`Store::heartbeat_lease`].
    fn claim_local_job(
        &self,
        worker_id: &str,
        now: i64,
        lease_seconds: i64,
    ) -> StoreResult<Option<Claim>>;
    /// Extends `worker_id`'s lease; false when it no longer holds it (expired and taken over).
    fn heartbeat_lease(
        &self,
        job_id: &str,
        worker_id: &str,
        now: i64,
        lease_seconds: i64,
    ) -> StoreResult<bool>;
    /// Gives the lease up (a no-op when `worker_id` no longer holds it).
    fn release_lease(&self, job_id: &str, worker_id: &str) -> StoreResult<()>;
    /// The lease on a job, live or expired.
    fn lease_of(&self, job_id: &str) -> StoreResult<Option<Lease>>;
    /// How many local jobs wait for a worker (claimable at `now`) and how many leases are
    /// live at `now`.
    fn local_queue(&self, now: i64) -> StoreResult<LocalQueue>;

    // policy snapshots
    fn save_policy_snapshot(&self, snap: &PolicySnapshot) -> StoreResult<()>;
    fn get_policy_snapshot(&self, version_hash: &str) -> StoreResult<Option<PolicySnapshot>>;

    /// The selector's score cache in this store's database, shared by every process on it
    /// (PostgreSQL: [`PgScoreCache`]); `None` where the store has none (SQLite: Interleaving
    /// keeps its own cache file, `interleave.score_cache`).
    fn score_cache(&self) -> Option<Arc<dyn selector::ScoreCache>> {
        None
    }
}

/// Runs a blocking store call on tokio's blocking pool.
pub async fn run_blocking<T, F>(store: &Arc<dyn Store>, f: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce(&dyn Store) -> StoreResult<T> + Send + 'static,
{
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}
