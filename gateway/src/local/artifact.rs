//! A local job's adapters as blobs: each checkpoint's, and the final one, stored as the tar a
//! tenant downloads (its PEFT directory: `adapter_config.json`, `adapter_model.safetensors`)
//! before the checkpoint (or the success) is recorded, so the store names a durable artifact
//! and the download never depends on the directory of the worker that trained the job.
//!
//! Keys are a function of the job and the step, so a poll whose write is refused (and
//! repeated) writes the same blob again instead of leaking a new one; a blob no row names
//! (a job cancelled between the two) is removed by the startup sweep.

use crate::store::{run_blocking, BlobStore, JobRecord, Store, StoreError, StoreResult};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The files of a PEFT adapter directory, in the tar's order.
pub const ADAPTER_FILES: [&str; 2] = ["adapter_config.json", "adapter_model.safetensors"];

/// The blob key of checkpoint `step`'s adapter.
pub fn checkpoint_key(job_id: &str, step: usize) -> String {
    format!("adapter-{job_id}-step-{step}")
}

/// The blob key of the job's final adapter.
pub fn final_key(job_id: &str) -> String {
    format!("adapter-{job_id}-final")
}

/// The name of the directory inside the tar (and of the downloaded file, plus `.tar`).
pub fn tar_name(job_id: &str, step: Option<usize>) -> String {
    match step {
        Some(s) => format!("{job_id}-ckpt-step-{s}"),
        None => job_id.to_string(),
    }
}

/// The tar of the adapter directory `dir`, its files under `name/`.
pub fn adapter_tar(dir: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for f in ADAPTER_FILES {
        b.append_path_with_name(dir.join(f), format!("{name}/{f}"))
            .map_err(|e| {
                std::io::Error::new(e.kind(), format!("{}: {e}", dir.join(f).display()))
            })?;
    }
    b.into_inner()
}

/// Why an adapter could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("reading the adapter: {0}")]
    Read(#[from] std::io::Error),
    #[error("storing the adapter: {0}")]
    Store(#[from] StoreError),
    #[error("the adapter task failed: {0}")]
    Task(String),
}

/// Stores the adapter directory `dir` as the blob `key` (the tar [`adapter_tar`] makes).
pub async fn store_adapter(
    blobs: &BlobStore,
    dir: PathBuf,
    name: String,
    key: &str,
) -> Result<(), ArtifactError> {
    let tar = tokio::task::spawn_blocking(move || adapter_tar(&dir, &name))
        .await
        .map_err(|e| ArtifactError::Task(e.to_string()))??;
    let mut w = blobs.create().await?;
    w.write(&tar).await?;
    w.commit(key).await?;
    Ok(())
}

/// Where a job's adapter (checkpoint `step`, or the final one) is on this machine.
#[derive(Debug, Clone, PartialEq)]
pub enum AdapterSource {
    /// The worker's directory, here: a checkpoint with its `state.json` (written last), or the
    /// run directory with its adapter.
    Dir(PathBuf),
    /// The stored artifact (the worker's directory is elsewhere, or gone).
    Blob(String),
}

/// The adapter of the job's checkpoint `step` (`None`: the final one): the worker's directory
/// when it is on this machine, else the recorded artifact whose blob is there; `None` when
/// neither is. Downloads and chat serving both resolve through here.
pub async fn locate(
    store: &Arc<dyn Store>,
    blobs: &BlobStore,
    job: &JobRecord,
    run_dir: &Path,
    step: Option<usize>,
) -> StoreResult<Option<AdapterSource>> {
    let (dir, done) = match step {
        Some(s) => {
            let d = run_dir.join("checkpoints").join(format!("step-{s}"));
            let done = d.join("state.json");
            (d, done)
        }
        None => (run_dir.to_path_buf(), run_dir.join(ADAPTER_FILES[1])),
    };
    if done.is_file() {
        return Ok(Some(AdapterSource::Dir(dir)));
    }
    match recorded(store, job, step).await? {
        Some(key) if blobs.exists(&key).await.unwrap_or(false) => {
            Ok(Some(AdapterSource::Blob(key)))
        }
        _ => Ok(None),
    }
}

/// The artifact recorded for the job's checkpoint `step` (`None`: its final adapter), if any.
pub async fn recorded(
    store: &Arc<dyn Store>,
    job: &JobRecord,
    step: Option<usize>,
) -> StoreResult<Option<String>> {
    let Some(step) = step else {
        return Ok(job.pipeline.adapter_blob.clone());
    };
    let job_id = job.id.clone();
    run_blocking(store, move |s| {
        let mut after: Option<String> = None;
        loop {
            let page = s.list_checkpoints(&job_id, after.as_deref(), 100)?;
            if let Some(c) = page.data.iter().find(|c| c.step_number == step as i64) {
                return Ok(c.artifact.clone());
            }
            match page.data.last() {
                Some(last) if page.has_more => after = Some(last.id.clone()),
                _ => return Ok(None),
            }
        }
    })
    .await
}

/// The adapter directory of the blob `key`, unpacked once under `cache` (`cache/<key>/`,
/// written to a temporary directory and renamed into place, so a crash leaves no half
/// adapter). For serving a model whose worker's directory is not on this machine. The cache
/// holds at most `cap` bytes: after an unpack, the least recently used adapters go until it
/// fits ([`evict`]; never the one just unpacked). Blocking.
pub fn materialize(
    blobs: &BlobStore,
    key: &str,
    cache: &Path,
    cap: u64,
) -> std::io::Result<PathBuf> {
    let dest = cache.join(key);
    if dest.join(ADAPTER_FILES[1]).is_file() {
        touch(&dest);
        return Ok(dest);
    }
    let dest = unpack(blobs, key, cache, &dest)?;
    touch(&dest);
    match evict(cache, cap, &dest) {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            adapters = n,
            "adapter cache over its size: least recently used removed"
        ),
        Err(e) => tracing::warn!(error = %e, "evicting from the adapter cache failed"),
    }
    Ok(dest)
}

/// The file whose modification time says when a cached adapter was last used.
const USED: &str = ".used";

fn touch(dir: &Path) {
    if let Err(e) = std::fs::write(dir.join(USED), b"") {
        tracing::warn!(dir = %dir.display(), error = %e, "marking a cached adapter used failed");
    }
}

/// Adapters used this recently are never evicted: a request that just resolved one may not
/// have loaded it yet (the cache may run over its cap meanwhile).
const IN_USE: std::time::Duration = std::time::Duration::from_secs(60);

/// Removes the least recently used adapters of `cache` (by their `.used` mark, else their
/// directory's time), never `keep`, one used in the last [`IN_USE`], nor a temporary
/// directory, until the rest hold at most `cap` bytes; returns how many went. Racing
/// evictions (another process) are harmless.
pub fn evict(cache: &Path, cap: u64, keep: &Path) -> std::io::Result<usize> {
    let recent = std::time::SystemTime::now() - IN_USE;
    let mut entries = Vec::new();
    let mut total = 0u64;
    for entry in std::fs::read_dir(cache)? {
        let entry = entry?;
        let dir = entry.path();
        let hidden = entry
            .file_name()
            .to_str()
            .is_none_or(|n| n.starts_with('.'));
        if hidden || !dir.is_dir() {
            continue;
        }
        let mut bytes = 0;
        for f in std::fs::read_dir(&dir)?.flatten() {
            bytes += f.metadata().map(|m| m.len()).unwrap_or(0);
        }
        let used = std::fs::metadata(dir.join(USED))
            .or_else(|_| std::fs::metadata(&dir))
            .and_then(|m| m.modified())
            .unwrap_or(std::time::UNIX_EPOCH);
        total += bytes;
        if dir != keep && used < recent {
            entries.push((used, bytes, dir));
        }
    }
    entries.sort_by_key(|(used, _, _)| *used);
    let mut removed = 0;
    for (_, bytes, dir) in entries {
        if total <= cap {
            break;
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        total = total.saturating_sub(bytes);
    }
    Ok(removed)
}

/// Unpacks the adapter blob `key` into `dest` (see [`materialize`]).
fn unpack(blobs: &BlobStore, key: &str, cache: &Path, dest: &Path) -> std::io::Result<PathBuf> {
    let dest = dest.to_path_buf();
    let path = blobs
        .local_file_blocking(key)
        .map_err(std::io::Error::other)?;
    std::fs::create_dir_all(cache)?;
    // A temporary directory of this call's own: two requests unpacking the same adapter never
    // write into one another's.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = cache.join(format!(".{key}.{}.{call}.tmp", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let mut ar = tar::Archive::new(std::fs::File::open(&path)?);
    for entry in ar.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue; // links and directories are not an adapter's files
        }
        let name = entry.path()?.file_name().map(|n| n.to_owned());
        // Only the adapter's own files, by name: nothing in the tar picks where it is written.
        match name.and_then(|n| n.to_str().map(str::to_string)) {
            Some(n) if ADAPTER_FILES.contains(&n.as_str()) => {
                entry.unpack(tmp.join(n))?;
            }
            _ => {}
        }
    }
    if !tmp.join(ADAPTER_FILES[1]).is_file() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(std::io::Error::other(format!(
            "blob {key} holds no {}",
            ADAPTER_FILES[1]
        )));
    }
    match std::fs::rename(&tmp, &dest) {
        Ok(()) => Ok(dest),
        // Another request unpacked it first.
        Err(_) if dest.join(ADAPTER_FILES[1]).is_file() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(dest)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_adapter_directory_is_stored_as_the_tar_a_tenant_downloads() {
        let dir = tempfile::tempdir().unwrap();
        let adapter = dir.path().join("step-4");
        std::fs::create_dir_all(&adapter).unwrap();
        std::fs::write(adapter.join("adapter_config.json"), b"{\"r\": 4}").unwrap();
        std::fs::write(adapter.join("adapter_model.safetensors"), b"weights").unwrap();
        std::fs::write(adapter.join("state.json"), b"{}").unwrap();
        let blobs = BlobStore::open(&dir.path().join("data")).unwrap();
        let key = checkpoint_key("ftjob-1", 4);
        let name = tar_name("ftjob-1", Some(4));
        store_adapter(&blobs, adapter.clone(), name, &key)
            .await
            .unwrap();
        let bytes = std::fs::read(blobs.local_file(&key).await.unwrap()).unwrap();
        let mut ar = tar::Archive::new(&bytes[..]);
        let mut got = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut body).unwrap();
            got.push((e.path().unwrap().display().to_string(), body));
        }
        assert_eq!(
            got,
            [
                (
                    "ftjob-1-ckpt-step-4/adapter_config.json".to_string(),
                    b"{\"r\": 4}".to_vec()
                ),
                (
                    "ftjob-1-ckpt-step-4/adapter_model.safetensors".to_string(),
                    b"weights".to_vec()
                ),
            ]
        );
        // Unpacked for serving: the adapter's two files, once.
        let cache = dir.path().join("cache");
        let unpacked = materialize(&blobs, &key, &cache, u64::MAX).unwrap();
        assert_eq!(unpacked, cache.join(&key));
        assert_eq!(
            std::fs::read(unpacked.join("adapter_model.safetensors")).unwrap(),
            b"weights"
        );
        assert_eq!(
            std::fs::read_dir(&cache).unwrap().count(),
            1,
            "no temp left"
        );
        assert_eq!(
            materialize(&blobs, &key, &cache, u64::MAX).unwrap(),
            unpacked
        );
        // A directory without the weights is an error naming the missing file.
        std::fs::remove_file(adapter.join("adapter_model.safetensors")).unwrap();
        let e = store_adapter(&blobs, adapter, "x".into(), "k")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("adapter_model.safetensors"), "{e}");
        assert!(!blobs.exists("k").await.unwrap());
    }

    /// An adapter directory of `bytes` bytes in `cache`, last used `age_s` seconds ago.
    fn cached(cache: &Path, name: &str, bytes: usize, age_s: u64) -> PathBuf {
        let d = cache.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(ADAPTER_FILES[1]), vec![0u8; bytes]).unwrap();
        let used = std::fs::File::create(d.join(USED)).unwrap();
        used.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(age_s))
            .unwrap();
        d
    }

    #[test]
    fn the_cache_drops_the_least_recently_used_adapters_until_it_fits() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path();
        let oldest = cached(cache, "a", 100, 300);
        let older = cached(cache, "b", 100, 200);
        let recent = cached(cache, "c", 100, 100);
        let new = cached(cache, "d", 100, 0);
        let in_use = cached(cache, "f", 0, 5);
        // A temporary unpack is never counted or removed.
        let tmp = cached(cache, ".e.1.0.tmp", 1000, 1000);
        assert_eq!(evict(cache, 250, &new).unwrap(), 2);
        assert!(!oldest.exists() && !older.exists());
        assert!(recent.exists() && new.exists() && tmp.exists());
        assert_eq!(evict(cache, 250, &new).unwrap(), 0, "it fits now");
        // The adapter just unpacked stays even when it alone is over the cap.
        assert_eq!(evict(cache, 50, &new).unwrap(), 1);
        assert!(!recent.exists() && new.exists());
        assert!(
            in_use.exists(),
            "used a moment ago: a request may be loading it"
        );
    }
}
