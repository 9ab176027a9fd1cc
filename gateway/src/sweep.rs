//! Housekeeping: the startup sweep (orphan and temp blobs, expired uploads, jobs that were
//! mid-pipeline) and upload expiry.

use crate::error::ApiError;
use crate::ids::now_unix;
use crate::state::AppState;
use crate::store::{run_blocking, EventLevel, EventRecord, StoreResult};

/// Removes part rows and blobs of a finished upload (best effort on blobs: the startup sweep
/// removes any left behind).
pub async fn drop_parts(state: &AppState, upload_id: &str) {
    let uid = upload_id.to_string();
    match run_blocking(&state.store, move |s| s.delete_parts(&uid)).await {
        Ok(keys) => {
            for k in keys {
                if let Err(e) = state.blobs.remove(&k).await {
                    tracing::warn!(upload = upload_id, error = %e, "part blob removal failed");
                }
            }
        }
        Err(e) => tracing::warn!(upload = upload_id, error = %e, "part cleanup failed"),
    }
}

/// Deletes files past their `expires_at` (set by `expires_after` at upload) and their blobs.
pub async fn expire_files(state: &AppState) -> Result<usize, ApiError> {
    let now = now_unix();
    let expired = run_blocking(&state.store, move |s| s.delete_expired_files(now)).await?;
    for f in &expired {
        if let Err(e) = state.blobs.remove(&f.blob_key).await {
            tracing::warn!(file = %f.id, error = %e, "expired file blob removal failed");
        }
    }
    Ok(expired.len())
}

/// Marks pending uploads past their expiry as expired and frees their parts.
pub async fn expire_uploads(state: &AppState) -> Result<usize, ApiError> {
    let now = now_unix();
    let expired = run_blocking(&state.store, move |s| s.expire_uploads(now)).await?;
    for u in &expired {
        drop_parts(state, &u.id).await;
    }
    Ok(expired.len())
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub blobs_removed: usize,
    pub uploads_expired: usize,
    pub jobs_resumed: usize,
}

/// Runs once at start, before the listener accepts: nothing partial stays on disk, expired
/// uploads are closed, and every job that was mid-pipeline gets an event saying it resumes
/// from its last durable step.
pub async fn startup(state: &AppState) -> StoreResult<SweepReport> {
    let uploads_expired = match expire_uploads(state).await {
        Ok(n) => n,
        Err(e) => return Err(crate::store::StoreError::Task(e.to_string())),
    };
    for upload_id in run_blocking(&state.store, |s| s.finished_uploads_with_parts()).await? {
        drop_parts(state, &upload_id).await;
    }
    let keys = run_blocking(&state.store, |s| s.referenced_blob_keys()).await?;
    let referenced = keys.into_iter().collect();
    let blobs_removed = state.blobs.sweep(&referenced).await?;
    let data_dir = state.config.data_dir.clone();
    let pruned = run_blocking(&state.store, move |s| {
        crate::local::retention::sweep(&data_dir, s)
    })
    .await?;
    if pruned.files > 0 {
        tracing::info!(
            files = pruned.files,
            bytes = pruned.bytes,
            "startup sweep: optimizer state of terminal jobs pruned"
        );
    }
    drop_mirrors(state).await;
    let jobs = run_blocking(&state.store, |s| s.active_jobs()).await?;
    let mut jobs_resumed = 0;
    for job in jobs {
        let ev = EventRecord {
            id: crate::ids::new_id(crate::ids::IdKind::Event),
            job_id: job.id.clone(),
            created_at: now_unix(),
            level: EventLevel::Warn,
            message: format!(
                "Gateway restarted; job resumes from its last durable step ({})",
                job.step.as_str()
            ),
            kind: "message".into(),
            data: None,
        };
        run_blocking(&state.store, move |s| s.insert_event(&ev)).await?;
        jobs_resumed += 1;
    }
    Ok(SweepReport {
        blobs_removed,
        uploads_expired,
        jobs_resumed,
    })
}

/// How often pending uploads and files are checked for expiry.
pub const EXPIRY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// Periodically expires uploads and files until `shutdown`.
pub async fn expiry_loop(state: AppState, shutdown: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(EXPIRY_INTERVAL) => {}
        }
        if let Err(e) = expire_uploads(&state).await {
            tracing::warn!(error = %e, "upload expiry failed");
        }
        if let Err(e) = expire_files(&state).await {
            tracing::warn!(error = %e, "file expiry failed");
        }
        drop_mirrors(&state).await;
        trim_blob_cache(&state).await;
    }
}

/// With remote blobs, keeps this replica's cached copies within `[storage] blob_cache_mb`.
async fn trim_blob_cache(state: &AppState) {
    let (blobs, cap) = (state.blobs.clone(), state.config.storage.blob_cache_bytes);
    match tokio::task::spawn_blocking(move || blobs.trim_cache(cap)).await {
        Ok(Ok(n)) if n > 0 => tracing::info!(removed = n, "trimmed the blob cache"),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "trimming the blob cache failed"),
        Err(e) => tracing::warn!(error = %e, "trimming the blob cache failed"),
    }
}

/// With remote blobs, removes this replica's mirrors of jobs that finished over
/// [`MIRROR_GRACE_S`](crate::local::retention::MIRROR_GRACE_S) ago (whichever replica
/// finished them): the bucket holds each job's directory, and every adapter of a finished
/// job is served from its recorded artifact.
pub async fn drop_mirrors(state: &AppState) {
    if state.blobs.remote().is_none() {
        return;
    }
    let mirrors = state.config.data_dir.join("mirror");
    let dropped = run_blocking(&state.store, move |s| {
        crate::local::retention::drop_terminal(
            &mirrors,
            s,
            now_unix(),
            crate::local::retention::MIRROR_GRACE_S,
            &crate::local::retention::mirror_still_needed,
        )
    })
    .await;
    match dropped {
        Ok(n) if n > 0 => tracing::info!(dirs = n, "removed the mirrors of finished jobs"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "looking for mirrors of finished jobs failed"),
    }
}
