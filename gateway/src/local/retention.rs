//! What a local job no longer needs once it is terminal (succeeded, failed, cancelled): the
//! optimizer state of its checkpoints (`optimizer.safetensors`, Adam's two moments — twice the
//! adapter's size). It exists only to resume training, and a terminal job never trains again;
//! each checkpoint's adapter, `state.json` and the job's final adapter stay, so every
//! `…:ckpt-step-N` model is still served, downloaded and listed. Without this, every finished
//! job keeps three times its adapters' size on disk for ever (≈160 MB per checkpoint of a
//! rank-32 SmolLM2 adapter).
//!
//! Pruned only once the job's terminal state is stored (`Executor::ended`: the runner's
//! terminal commit, a client's or the monitor's cancel) — never from a poll that may still be
//! refused, since a job that is not terminal may be claimed and resumed — and by the startup
//! sweep for jobs that ended while no gateway was running to do it. Only committed checkpoints
//! are touched (a write in progress is left whole). Best effort: a failure is logged, and the
//! startup sweep tries local job directories again.

use super::layout;
use crate::store::{JobRecord, JobStatus, Store, StoreResult};
use std::path::Path;

/// What a prune removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub files: usize,
    pub bytes: u64,
}

/// The optimizer-state file of a checkpoint directory.
pub const OPTIMIZER_STATE: &str = "optimizer.safetensors";

/// Removes the optimizer state of every checkpoint under the job directory `job_dir`.
pub fn prune(job_dir: &Path) -> std::io::Result<Pruned> {
    let root = layout::run_dir(job_dir).join("checkpoints");
    let mut out = Pruned::default();
    let entries = match std::fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let dir = entry?.path();
        // Only committed checkpoints: a `.`-named one is a write in progress (a worker that
        // has not yet seen the job end), whose commit must find every file it wrote.
        let hidden = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.'));
        if hidden || !dir.join("state.json").is_file() {
            continue;
        }
        let path = dir.join(OPTIMIZER_STATE);
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        match std::fs::remove_file(&path) {
            Ok(()) => {
                out.files += 1;
                out.bytes += meta.len();
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Prunes `job_dir` off the async runtime — and the job's copy in the bucket when blobs are
/// remote (`remote`) — logging the outcome.
pub async fn prune_logged(
    job_id: &str,
    job_dir: std::path::PathBuf,
    remote: Option<&crate::store::blob_remote::Remote>,
) {
    if let Some(r) = remote {
        match super::jobfiles::prune_remote(r, job_id).await {
            Ok(n) if n > 0 => {
                tracing::info!(job = %job_id, objects = n, "terminal job: optimizer state pruned from the bucket")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(job = %job_id, error = %e, "pruning the optimizer state from the bucket failed")
            }
        }
    }
    let id = job_id.to_string();
    let r = tokio::task::spawn_blocking(move || prune(&job_dir)).await;
    match r {
        Ok(Ok(p)) if p.files > 0 => {
            tracing::info!(job = %id, files = p.files, bytes = p.bytes, "terminal job: optimizer state pruned")
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(job = %id, error = %e, "pruning the optimizer state failed"),
        Err(e) => tracing::warn!(job = %id, error = %e, "pruning task failed"),
    }
}

fn terminal(s: JobStatus) -> bool {
    matches!(
        s,
        JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
    )
}

/// The startup sweep's part: prunes every job directory under `data_dir/jobs` whose job is
/// terminal in `store` (a directory whose job the store does not know is left alone).
pub fn sweep(data_dir: &Path, store: &dyn Store) -> StoreResult<Pruned> {
    let mut total = Pruned::default();
    let Ok(entries) = std::fs::read_dir(data_dir.join("jobs")) else {
        return Ok(total);
    };
    for entry in entries.flatten() {
        let Some(id) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let Some(job) = store.get_job_any(&id)? else {
            continue;
        };
        if !terminal(job.status) {
            continue;
        }
        match prune(&entry.path()) {
            Ok(p) => {
                total.files += p.files;
                total.bytes += p.bytes;
            }
            Err(e) => tracing::warn!(job = %id, error = %e, "pruning the optimizer state failed"),
        }
    }
    Ok(total)
}

/// Removes every directory under `parent` named for a job that is terminal in `store` and
/// finished at least `grace_s` seconds before `now`; returns how many went. For copies of a
/// job's directory that the bucket makes redundant once the job is over (blobs remote): a
/// replica's mirror (`data_dir/mirror/<id>`; every adapter is then served from its recorded
/// artifact) and a worker's own copy (`data_dir/jobs/<id>` on a worker's machine). A
/// directory whose job the store does not know, that is not terminal, or that `keep` says is
/// still needed, is left alone; the grace keeps a just-finished job's adapters where a request
/// that found them a moment ago reads them.
pub fn drop_terminal(
    parent: &Path,
    store: &dyn Store,
    now: i64,
    grace_s: i64,
    keep: &dyn Fn(&dyn Store, &JobRecord) -> StoreResult<bool>,
) -> StoreResult<usize> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Ok(0);
    };
    let mut dropped = 0;
    for entry in entries.flatten() {
        let Some(id) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if id.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        let Some(job) = store.get_job_any(&id)? else {
            continue;
        };
        let over = terminal(job.status) && job.finished_at.is_none_or(|t| t + grace_s <= now);
        if !over || keep(store, &job)? {
            continue;
        }
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => dropped += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(job = %id, dir = %entry.path().display(), error = %e, "removing a finished job's copy failed")
            }
        }
    }
    Ok(dropped)
}

/// How long a replica keeps a finished job's mirror.
pub const MIRROR_GRACE_S: i64 = 60;

/// Whether a finished job's mirror is still the only copy a replica can serve some adapter of
/// the job from: its final adapter (a succeeded job) or a checkpoint's has no stored artifact
/// (the artifact's upload failed, or the job predates artifacts).
pub fn mirror_still_needed(store: &dyn Store, job: &JobRecord) -> StoreResult<bool> {
    if job.status == JobStatus::Succeeded && job.pipeline.adapter_blob.is_none() {
        return Ok(true);
    }
    let mut after: Option<String> = None;
    loop {
        let page = store.list_checkpoints(&job.id, after.as_deref(), 100)?;
        if page.data.iter().any(|c| c.artifact.is_none()) {
            return Ok(true);
        }
        match (page.has_more, page.data.last()) {
            (true, Some(last)) => after = Some(last.id.clone()),
            _ => return Ok(false),
        }
    }
}

/// For copies nothing is ever served from (a worker's own): none is still needed.
pub fn never_needed(_: &dyn Store, _: &JobRecord) -> StoreResult<bool> {
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(job_dir: &Path, step: usize, optimizer: &[u8]) {
        let d = layout::run_dir(job_dir).join(format!("checkpoints/step-{step}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("adapter_model.safetensors"), b"adapter").unwrap();
        std::fs::write(d.join("state.json"), b"{}").unwrap();
        std::fs::write(d.join(OPTIMIZER_STATE), optimizer).unwrap();
    }

    #[test]
    fn a_checkpoint_being_written_is_left_whole() {
        let d = tempfile::tempdir().unwrap();
        let tmp = layout::run_dir(d.path()).join("checkpoints/.step-6.tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::write(tmp.join(OPTIMIZER_STATE), b"m").unwrap();
        let uncommitted = layout::run_dir(d.path()).join("checkpoints/step-8");
        std::fs::create_dir_all(&uncommitted).unwrap();
        std::fs::write(uncommitted.join(OPTIMIZER_STATE), b"m").unwrap();
        assert_eq!(prune(d.path()).unwrap(), Pruned::default());
        assert!(tmp.join(OPTIMIZER_STATE).is_file());
        assert!(uncommitted.join(OPTIMIZER_STATE).is_file());
    }

    #[test]
    fn only_the_optimizer_state_goes_and_a_second_prune_finds_nothing() {
        let d = tempfile::tempdir().unwrap();
        checkpoint(d.path(), 2, &[0; 100]);
        checkpoint(d.path(), 4, &[0; 50]);
        assert_eq!(
            prune(d.path()).unwrap(),
            Pruned {
                files: 2,
                bytes: 150
            }
        );
        for step in [2, 4] {
            let c = layout::run_dir(d.path()).join(format!("checkpoints/step-{step}"));
            assert!(c.join("adapter_model.safetensors").is_file());
            assert!(c.join("state.json").is_file());
            assert!(!c.join(OPTIMIZER_STATE).exists());
        }
        assert_eq!(prune(d.path()).unwrap(), Pruned::default());
        // A job that never checkpointed has nothing to prune.
        assert_eq!(prune(&d.path().join("nope")).unwrap(), Pruned::default());
    }

    #[test]
    fn only_copies_of_jobs_over_for_the_grace_are_dropped() {
        use crate::store::{JobStatus, SqliteStore};
        use crate::testutil::{event_record, job_record};
        let d = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&d.path().join("db")).unwrap();
        let parent = d.path().join("mirror");
        for (id, status, finished_at) in [
            ("ftjob-old", JobStatus::Succeeded, Some(100)),
            ("ftjob-cancelled", JobStatus::Cancelled, Some(100)),
            ("ftjob-recent", JobStatus::Failed, Some(170)),
            ("ftjob-running", JobStatus::Running, None),
        ] {
            let mut j = job_record(id, "acme", status);
            j.finished_at = finished_at;
            store
                .create_job(&j, &event_record(id, "created"), &[])
                .unwrap();
            checkpoint(&parent.join(id), 2, b"m");
        }
        // Unknown to the store, and a temporary name: not ours to judge.
        checkpoint(&parent.join("ftjob-unknown"), 2, b"m");
        checkpoint(&parent.join(".ftjob-old.tmp"), 2, b"m");
        assert_eq!(
            drop_terminal(&parent, &store, 200, 60, &never_needed).unwrap(),
            2
        );
        let mut left: Vec<String> = std::fs::read_dir(&parent)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ".ftjob-old.tmp",
                "ftjob-recent",
                "ftjob-running",
                "ftjob-unknown"
            ]
        );
        assert_eq!(
            drop_terminal(&parent, &store, 230, 60, &never_needed).unwrap(),
            1,
            "its grace is over"
        );
        assert_eq!(
            drop_terminal(&d.path().join("none"), &store, 230, 60, &never_needed).unwrap(),
            0
        );
    }

    #[test]
    fn a_mirror_stays_while_some_adapter_of_the_job_has_no_stored_artifact() {
        use crate::store::{CheckpointRecord, SqliteStore};
        use crate::testutil::{event_record, job_record};
        let d = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&d.path().join("db")).unwrap();
        let parent = d.path().join("mirror");
        let ckpt = |id: &str, job: &str, artifact: Option<&str>| CheckpointRecord {
            id: id.into(),
            job_id: job.into(),
            created_at: 1,
            fine_tuned_model_checkpoint: format!("ft:m:acme::{job}:ckpt-step-1"),
            step_number: 1,
            metrics: serde_json::json!({}),
            artifact: artifact.map(String::from),
        };
        for (id, adapter, ckpt_artifact) in [
            ("ftjob-stored", Some("adapter-stored"), Some("ckpt-stored")),
            ("ftjob-no-final", None, Some("ckpt-no-final")),
            ("ftjob-no-ckpt", Some("adapter-no-ckpt"), None),
        ] {
            let mut j = job_record(id, "acme", JobStatus::Running);
            store
                .create_job(&j, &event_record(id, "created"), &[])
                .unwrap();
            assert!(store
                .update_job_observed(
                    &j,
                    JobStatus::Running,
                    &[],
                    &[ckpt(&format!("ck-{id}"), id, ckpt_artifact)]
                )
                .unwrap());
            j = store.get_job_any(id).unwrap().unwrap();
            j.status = JobStatus::Succeeded;
            j.finished_at = Some(100);
            j.pipeline.adapter_blob = adapter.map(String::from);
            assert!(store.update_job(&j, JobStatus::Running, &[]).unwrap());
            checkpoint(&parent.join(id), 1, b"m");
        }
        let needed = |id: &str| {
            mirror_still_needed(&store, &store.get_job_any(id).unwrap().unwrap()).unwrap()
        };
        assert!(!needed("ftjob-stored"));
        assert!(needed("ftjob-no-final"));
        assert!(needed("ftjob-no-ckpt"));
        assert_eq!(
            drop_terminal(&parent, &store, 200, 60, &mirror_still_needed).unwrap(),
            1
        );
        assert!(!parent.join("ftjob-stored").exists());
        assert!(parent.join("ftjob-no-final").exists() && parent.join("ftjob-no-ckpt").exists());
    }
}
