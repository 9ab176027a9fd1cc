//! Blobs, written atomically: stream into a temp file in `data_dir/blobs`, fsync it, then
//! either rename it into place and fsync the directory (`[storage] blobs = "local"`, the
//! default), or upload it to an S3-compatible bucket ([`Remote`], `blobs = "s3"`) and keep the
//! file as this machine's cached copy. Nothing is ever held whole in memory.
//!
//! Blob keys are generated ids and a key is written once, so a cached copy never goes stale:
//! reading a remote blob that is cached here reads the file.

use super::blob_remote::{Remote, RemoteError};
use super::{StoreError, StoreResult};
use md5::{Digest, Md5};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

const TEMP_PREFIX: &str = "tmp-";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The blob store: `data_dir/blobs` (the store itself, or the remote's cache).
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
    remote: Option<Remote>,
}

/// Remote blobs live under this folder of the bucket's prefix (job directories under `jobs/`).
const REMOTE_DIR: &str = "blobs/";

/// A remote object no record names yet may be one another process is about to record: the
/// startup sweep leaves remote objects younger than this alone.
pub const REMOTE_SWEEP_GRACE_SECS: i64 = 3600;
/// A cached copy used (or written) this recently is never trimmed: a reader may have been
/// handed its path and not opened it yet (an open file outlives its removal).
pub const CACHE_IN_USE: std::time::Duration = std::time::Duration::from_secs(60);

/// A blob opened for reading: a local file, or a remote object's byte stream.
pub type BlobReader = std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>;

fn remote_err(key: &str) -> impl FnOnce(RemoteError) -> StoreError + '_ {
    move |e| StoreError::Io {
        path: key.to_string(),
        source: match e {
            RemoteError::NotFound(what) => {
                std::io::Error::new(std::io::ErrorKind::NotFound, format!("{what} not found"))
            }
            RemoteError::Io { source, .. } => source,
            e => std::io::Error::other(e.to_string()),
        },
    }
}

/// A blob that is durable on disk under `key`; `md5_hex` is the md5 of the bytes written
/// through the writer (empty for [`BlobStore::adopt`]ed files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenBlob {
    pub key: String,
    pub bytes: u64,
    pub md5_hex: String,
}

/// An in-progress blob; dropped without [`BlobWriter::commit`] it removes its temp file (and
/// after a crash the startup sweep does).
pub struct BlobWriter {
    file: tokio::fs::File,
    temp: PathBuf,
    root: PathBuf,
    remote: Option<Remote>,
    bytes: u64,
    md5: Md5,
}

/// Runs `fut` to completion from synchronous code: on the current runtime's handle from a
/// blocking task, else on a small runtime of the process's own (a worker has none). For the
/// blob store's own blocking calls and other synchronous callers of the remote (job
/// directories).
pub fn block_on_io<T>(fut: impl std::future::Future<Output = T>) -> T {
    if let Ok(h) = tokio::runtime::Handle::try_current() {
        return tokio::task::block_in_place(|| h.block_on(fut));
    }
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("blob-io")
            .enable_all()
            .build()
            .expect("starting the blob store's I/O runtime")
    })
    .block_on(fut)
}

impl BlobStore {
    pub fn open(data_dir: &Path) -> StoreResult<BlobStore> {
        let root = data_dir.join("blobs");
        std::fs::create_dir_all(&root).map_err(io_err(&root))?;
        Ok(BlobStore { root, remote: None })
    }

    /// The store `backend` names (`data_dir/blobs` caches a remote one).
    pub fn open_with(
        data_dir: &Path,
        backend: &crate::config::BlobBackend,
    ) -> StoreResult<BlobStore> {
        let mut store = Self::open(data_dir)?;
        if let crate::config::BlobBackend::S3(s3) = backend {
            store.remote = Some(Remote::open(s3).map_err(remote_err("storage.blobs (s3)"))?);
        }
        Ok(store)
    }

    /// A store over the test server's bucket `s3` (tests).
    #[cfg(test)]
    pub(crate) fn open_s3_for_test(
        data_dir: &Path,
        s3: &crate::config::S3Config,
    ) -> StoreResult<BlobStore> {
        let (id, secret) = super::s3_test_server::ACCESS_KEY;
        let mut store = Self::open(data_dir)?;
        store.remote = Some(Remote::open_with_keys(s3, id, secret).map_err(remote_err("s3"))?);
        Ok(store)
    }

    /// The bucket, when blobs are remote (job directories of remote workers travel there too).
    pub fn remote(&self) -> Option<&Remote> {
        self.remote.as_ref()
    }

    fn check_key(key: &str) -> bool {
        !key.is_empty()
            && !key.starts_with(TEMP_PREFIX)
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            && !key.starts_with('.')
    }

    /// Where `key` is (or is cached) on this machine. Keys are generated ids; anything else is
    /// refused.
    fn cache_path(&self, key: &str) -> StoreResult<PathBuf> {
        if !Self::check_key(key) {
            return Err(StoreError::Io {
                path: key.to_string(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "invalid blob key"),
            });
        }
        Ok(self.root.join(key))
    }

    /// A local file holding the committed blob `key`, for readers that need a path (the
    /// screener, the transform, the trainer): the blob itself, or a remote one downloaded once
    /// into the cache.
    pub async fn local_file(&self, key: &str) -> StoreResult<PathBuf> {
        let path = self.cache_path(key)?;
        let Some(remote) = &self.remote else {
            return Ok(path);
        };
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            mark_used(&path);
            return Ok(path);
        }
        remote
            .get_to_file(&format!("{REMOTE_DIR}{key}"), &path)
            .await
            .map_err(remote_err(key))?;
        Ok(path)
    }

    /// [`BlobStore::local_file`] from synchronous code (a worker's thread, a blocking task).
    pub fn local_file_blocking(&self, key: &str) -> StoreResult<PathBuf> {
        if self.remote.is_none() {
            return self.cache_path(key);
        }
        block_on_io(self.local_file(key))
    }

    /// Whether the committed blob `key` exists.
    pub async fn exists(&self, key: &str) -> StoreResult<bool> {
        let path = self.cache_path(key)?;
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(true);
        }
        match &self.remote {
            None => Ok(false),
            Some(r) => r
                .exists(&format!("{REMOTE_DIR}{key}"))
                .await
                .map_err(remote_err(key)),
        }
    }

    pub async fn create(&self) -> StoreResult<BlobWriter> {
        let temp = self.root.join(format!(
            "{TEMP_PREFIX}{}",
            crate::ids::new_id(crate::ids::IdKind::Request)
        ));
        let file = tokio::fs::File::create(&temp)
            .await
            .map_err(io_err(&temp))?;
        Ok(BlobWriter {
            file,
            temp,
            root: self.root.clone(),
            remote: self.remote.clone(),
            bytes: 0,
            md5: Md5::new(),
        })
    }

    /// A fresh temp path in the blob directory for writers that are not [`BlobWriter`]s
    /// (e.g. a transform on the blocking pool); finish it with [`BlobStore::adopt`].
    pub fn temp_path(&self) -> PathBuf {
        self.root.join(format!(
            "{TEMP_PREFIX}{}",
            crate::ids::new_id(crate::ids::IdKind::Request)
        ))
    }

    /// Makes a finished temp file durable under `key` (fsync, rename, fsync dir).
    pub async fn adopt(&self, temp: &Path, key: &str) -> StoreResult<WrittenBlob> {
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(temp)
            .await
            .map_err(io_err(temp))?;
        let bytes = file.metadata().await.map_err(io_err(temp))?.len();
        let writer = BlobWriter {
            file,
            temp: temp.to_path_buf(),
            root: self.root.clone(),
            remote: self.remote.clone(),
            bytes,
            md5: Md5::new(),
        };
        let mut written = writer.commit(key).await?;
        written.md5_hex = String::new();
        Ok(written)
    }

    /// The blob's bytes as a stream: the local file (or cached copy), else the remote object,
    /// streamed as it arrives.
    pub async fn open_read(&self, key: &str) -> StoreResult<BlobReader> {
        let path = self.cache_path(key)?;
        match (tokio::fs::File::open(&path).await, &self.remote) {
            (Ok(f), remote) => {
                if remote.is_some() {
                    mark_used(&path);
                }
                Ok(Box::pin(f))
            }
            (Err(e), None) => Err(io_err(&path)(e)),
            (Err(_), Some(r)) => Ok(Box::pin(
                r.stream(&format!("{REMOTE_DIR}{key}"))
                    .await
                    .map_err(remote_err(key))?,
            )),
        }
    }

    /// Removes a committed blob (and its remote object); a missing blob is not an error.
    pub async fn remove(&self, key: &str) -> StoreResult<()> {
        let path = self.cache_path(key)?;
        if let Some(r) = &self.remote {
            r.delete(&format!("{REMOTE_DIR}{key}"))
                .await
                .map_err(remote_err(key))?;
        }
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Startup sweep: removes temp files and committed blobs no record references — local
    /// files (or cached copies), and remote objects older than [`REMOTE_SWEEP_GRACE_SECS`]
    /// (a younger one may be another replica's write whose record is on its way).
    /// Returns how many were removed.
    pub async fn sweep(
        &self,
        referenced: &std::collections::HashSet<String>,
    ) -> StoreResult<usize> {
        self.sweep_with_grace(referenced, REMOTE_SWEEP_GRACE_SECS)
            .await
    }

    async fn sweep_with_grace(
        &self,
        referenced: &std::collections::HashSet<String>,
        grace_secs: i64,
    ) -> StoreResult<usize> {
        let local = {
            let this = self.clone();
            let referenced = referenced.clone();
            tokio::task::spawn_blocking(move || this.sweep_local(&referenced))
                .await
                .map_err(|e| StoreError::Task(e.to_string()))??
        };
        let Some(r) = &self.remote else {
            return Ok(local);
        };
        let cutoff = crate::ids::now_unix() - grace_secs;
        let mut removed = local;
        for obj in r.list(REMOTE_DIR).await.map_err(remote_err(REMOTE_DIR))? {
            let key = obj.name.strip_prefix(REMOTE_DIR).unwrap_or(&obj.name);
            if !referenced.contains(key) && obj.last_modified <= cutoff {
                r.delete(&obj.name).await.map_err(remote_err(key))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// With a remote backend, removes the least recently used cached copies until
    /// `data_dir/blobs` holds at most `cap` bytes, never one used in the last
    /// [`CACHE_IN_USE`] (the remote keeps every object: a removed copy is fetched again when
    /// read). Returns how many were removed; a local backend's files are the blobs
    /// themselves and are never trimmed.
    pub fn trim_cache(&self, cap: u64) -> StoreResult<usize> {
        if self.remote.is_none() {
            return Ok(0);
        }
        let recent = std::time::SystemTime::now() - CACHE_IN_USE;
        let mut copies = Vec::new();
        let mut total = 0u64;
        let entries = std::fs::read_dir(&self.root).map_err(io_err(&self.root))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            total += meta.len();
            let used = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
            if !name.starts_with(TEMP_PREFIX) && used < recent {
                copies.push((used, meta.len(), entry.path()));
            }
        }
        copies.sort();
        let mut removed = 0;
        for (_, bytes, path) in copies {
            if total <= cap {
                break;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
            total = total.saturating_sub(bytes);
        }
        Ok(removed)
    }

    fn sweep_local(&self, referenced: &std::collections::HashSet<String>) -> StoreResult<usize> {
        let mut removed = 0;
        let entries = std::fs::read_dir(&self.root).map_err(io_err(&self.root))?;
        for entry in entries {
            let entry = entry.map_err(io_err(&self.root))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with(TEMP_PREFIX) || !referenced.contains(&name) {
                let p = entry.path();
                std::fs::remove_file(&p).map_err(io_err(&p))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Marks a cached copy as just used (its modification time: the copy's content never changes,
/// the remote object is the blob), for [`BlobStore::trim_cache`]. Best effort.
fn mark_used(path: &Path) {
    if let Ok(f) = std::fs::File::options().append(true).open(path) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

impl BlobWriter {
    pub async fn write(&mut self, chunk: &[u8]) -> StoreResult<()> {
        self.file
            .write_all(chunk)
            .await
            .map_err(io_err(&self.temp))?;
        self.md5.update(chunk);
        self.bytes += chunk.len() as u64;
        Ok(())
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Flushes buffered bytes so the temp file can be read (e.g. a quick format check)
    /// before it is committed.
    pub async fn flush(&mut self) -> StoreResult<()> {
        self.file.flush().await.map_err(io_err(&self.temp))
    }

    /// The temp file being written.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// fsync, rename to `key`, fsync the directory. After this returns the blob survives a crash.
    pub async fn commit(mut self, key: &str) -> StoreResult<WrittenBlob> {
        if !BlobStore::check_key(key) {
            return Err(StoreError::Io {
                path: key.to_string(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "invalid blob key"),
            });
        }
        self.file.flush().await.map_err(io_err(&self.temp))?;
        self.file.sync_all().await.map_err(io_err(&self.temp))?;
        if let Some(r) = &self.remote {
            // Durable once the upload completes; the file stays as this machine's copy.
            r.put_file(&format!("{REMOTE_DIR}{key}"), &self.temp)
                .await
                .map_err(remote_err(key))?;
        }
        let dest = self.root.join(key);
        tokio::fs::rename(&self.temp, &dest)
            .await
            .map_err(io_err(&dest))?;
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::File::open(&root)
                .and_then(|d| d.sync_all())
                .map_err(io_err(&root))
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))??;
        Ok(WrittenBlob {
            key: key.to_string(),
            bytes: self.bytes,
            md5_hex: hex::encode(self.md5.finalize_reset()),
        })
    }

    /// Drops the temp file now (e.g. the request was rejected).
    pub async fn abort(self) {
        drop(self);
    }
}

impl Drop for BlobWriter {
    /// An uncommitted writer (rejected request, client gone, shutdown past its grace period)
    /// removes its temp file; after a commit the temp path no longer exists.
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.temp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn commit_is_atomic_and_sweep_removes_temps_and_orphans() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path()).unwrap();
        let mut w = blobs.create().await.unwrap();
        w.write(b"hello ").await.unwrap();
        w.write(b"world").await.unwrap();
        let written = w.commit("file-a").await.unwrap();
        assert_eq!(written.bytes, 11);
        assert_eq!(written.md5_hex, "5eb63bbbe01eeed093cb22bb8f5acdc3");
        let mut s = String::new();
        blobs
            .open_read("file-a")
            .await
            .unwrap()
            .read_to_string(&mut s)
            .await
            .unwrap();
        assert_eq!(s, "hello world");

        let mut partial = blobs.create().await.unwrap();
        partial.write(b"half").await.unwrap();
        std::mem::forget(partial); // a crash mid-write: no destructor runs
        let orphan = blobs.create().await.unwrap();
        orphan.commit("file-orphan").await.unwrap();

        let referenced = ["file-a".to_string()].into_iter().collect();
        assert_eq!(blobs.sweep(&referenced).await.unwrap(), 2);
        let names: Vec<_> = std::fs::read_dir(dir.path().join("blobs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(names, vec!["file-a".to_string()]);
    }

    #[tokio::test]
    async fn bad_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path()).unwrap();
        assert!(blobs.local_file("../etc/passwd").await.is_err());
        assert!(blobs.local_file("tmp-x").await.is_err());
        let w = blobs.create().await.unwrap();
        assert!(w.commit("a/b").await.is_err());
    }

    /// Two machines (two data dirs) over one bucket, as two replicas are.
    fn two_machines(s3: &crate::config::S3Config) -> (tempfile::TempDir, BlobStore, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let a = BlobStore::open_s3_for_test(&dir.path().join("a"), s3).unwrap();
        let b = BlobStore::open_s3_for_test(&dir.path().join("b"), s3).unwrap();
        (dir, a, b)
    }

    async fn read_all(blobs: &BlobStore, key: &str) -> Vec<u8> {
        let mut out = Vec::new();
        blobs
            .open_read(key)
            .await
            .unwrap()
            .read_to_end(&mut out)
            .await
            .unwrap();
        out
    }

    #[tokio::test]
    async fn s3_blobs_written_on_one_machine_are_read_on_another() {
        let Some(s3) = crate::store::s3_test_server::fresh_bucket() else {
            return;
        };
        let (_dir, a, b) = two_machines(&s3);
        let mut w = a.create().await.unwrap();
        w.write(b"hello ").await.unwrap();
        w.write(b"world").await.unwrap();
        let written = w.commit("file-a").await.unwrap();
        assert_eq!(written.md5_hex, "5eb63bbbe01eeed093cb22bb8f5acdc3");
        // b has no copy: it streams the object, then downloads it once for path readers.
        assert!(!b.root.join("file-a").exists());
        assert!(b.exists("file-a").await.unwrap());
        assert_eq!(read_all(&b, "file-a").await, b"hello world");
        assert!(!b.root.join("file-a").exists());
        let path = b.local_file("file-a").await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello world");
        // From synchronous code (a worker's thread) too.
        let b2 = b.clone();
        let p2 = tokio::task::spawn_blocking(move || b2.local_file_blocking("file-a"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(p2, path);
        // A key nobody wrote is a NotFound error naming it.
        let e = b.local_file("file-none").await.unwrap_err().to_string();
        assert!(e.contains("file-none") && e.contains("not found"), "{e}");
        assert!(!b.exists("file-none").await.unwrap());
        assert!(b.open_read("file-none").await.is_err());
        // Removed (by the machine holding the copy): gone for both.
        b.remove("file-a").await.unwrap();
        assert!(!a.remote().unwrap().exists("blobs/file-a").await.unwrap());
        assert!(!b.exists("file-a").await.unwrap());
    }

    #[tokio::test]
    async fn s3_large_blobs_go_up_in_parts_and_come_back_byte_for_byte() {
        let Some(s3) = crate::store::s3_test_server::fresh_bucket() else {
            return;
        };
        let (_dir, a, b) = two_machines(&s3);
        let len = super::super::blob_remote::MULTIPART_FROM as usize + (3 << 20) + 17;
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let mut w = a.create().await.unwrap();
        for chunk in data.chunks(1 << 20) {
            w.write(chunk).await.unwrap();
        }
        w.commit("big").await.unwrap();
        let listed = a.remote().unwrap().list(REMOTE_DIR).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].size, len as u64);
        // S3 marks a multipart object's ETag with its part count.
        assert!(listed[0].tag.contains('-'), "{:?}", listed[0].tag);
        assert!(read_all(&b, "big").await == data);
        let path = b.local_file("big").await.unwrap();
        assert!(std::fs::read(path).unwrap() == data);
    }

    #[tokio::test]
    async fn s3_sweep_keeps_referenced_and_young_objects() {
        let Some(s3) = crate::store::s3_test_server::fresh_bucket() else {
            return;
        };
        let (_dir, a, b) = two_machines(&s3);
        for key in ["kept", "orphan"] {
            let mut w = a.create().await.unwrap();
            w.write(key.as_bytes()).await.unwrap();
            w.commit(key).await.unwrap();
        }
        let referenced = ["kept".to_string()].into_iter().collect();
        // With the real grace period a fresh orphan may be another replica's write: kept.
        assert_eq!(b.sweep(&referenced).await.unwrap(), 0);
        assert!(b.exists("orphan").await.unwrap());
        // Past the grace period it goes; the referenced one stays.
        assert_eq!(b.sweep_with_grace(&referenced, -1).await.unwrap(), 1);
        let names: Vec<String> = a
            .remote()
            .unwrap()
            .list(REMOTE_DIR)
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .collect();
        assert_eq!(names, vec![format!("{REMOTE_DIR}kept")]);
    }

    #[tokio::test]
    async fn s3_cached_copies_are_trimmed_least_recently_used_first_and_fetched_again() {
        let Some(s3) = crate::store::s3_test_server::fresh_bucket() else {
            return;
        };
        let (_dir, a, _b) = two_machines(&s3);
        let hours_ago =
            |h: u64| std::time::SystemTime::now() - std::time::Duration::from_secs(3600 * h);
        for (key, age) in [("old", 3), ("older", 4), ("used", 5)] {
            let mut w = a.create().await.unwrap();
            w.write(&[7u8; 100]).await.unwrap();
            w.commit(key).await.unwrap();
            let f = std::fs::File::options()
                .append(true)
                .open(a.cache_path(key).unwrap())
                .unwrap();
            f.set_modified(hours_ago(age)).unwrap();
        }
        // Read a minute ago or less: in use, whatever its age.
        a.local_file("used").await.unwrap();
        assert_eq!(a.trim_cache(150).unwrap(), 2, "older first, then old");
        assert!(a.cache_path("used").unwrap().exists());
        assert!(!a.cache_path("old").unwrap().exists());
        // A trimmed copy is only a copy: read again from the bucket.
        let path = a.local_file("old").await.unwrap();
        assert_eq!(std::fs::read(path).unwrap(), vec![7u8; 100]);
        assert_eq!(a.trim_cache(1 << 20).unwrap(), 0, "under the cap");
        // A local store's files are the blobs: never trimmed.
        let dir = tempfile::tempdir().unwrap();
        let local = BlobStore::open(dir.path()).unwrap();
        let mut w = local.create().await.unwrap();
        w.write(b"x").await.unwrap();
        w.commit("k").await.unwrap();
        assert_eq!(local.trim_cache(0).unwrap(), 0);
    }
}
