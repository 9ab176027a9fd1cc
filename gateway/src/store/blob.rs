//! Blobs on local disk, written atomically: stream into a temp file in the same directory,
//! fsync it, rename it into place, fsync the directory. Nothing is ever held whole in memory.

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

/// Local-disk blob store rooted at `data_dir/blobs`.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
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
    bytes: u64,
    md5: Md5,
}

impl BlobStore {
    pub fn open(data_dir: &Path) -> StoreResult<BlobStore> {
        let root = data_dir.join("blobs");
        std::fs::create_dir_all(&root).map_err(io_err(&root))?;
        Ok(BlobStore { root })
    }

    fn check_key(key: &str) -> bool {
        !key.is_empty()
            && !key.starts_with(TEMP_PREFIX)
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            && !key.starts_with('.')
    }

    /// Path of a committed blob. Keys are generated ids; anything else is refused.
    pub fn path(&self, key: &str) -> StoreResult<PathBuf> {
        if !Self::check_key(key) {
            return Err(StoreError::Io {
                path: key.to_string(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "invalid blob key"),
            });
        }
        Ok(self.root.join(key))
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
            bytes,
            md5: Md5::new(),
        };
        let mut written = writer.commit(key).await?;
        written.md5_hex = String::new();
        Ok(written)
    }

    pub async fn open_read(&self, key: &str) -> StoreResult<tokio::fs::File> {
        let path = self.path(key)?;
        tokio::fs::File::open(&path).await.map_err(io_err(&path))
    }

    /// Removes a committed blob; a missing blob is not an error.
    pub async fn remove(&self, key: &str) -> StoreResult<()> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Startup sweep: removes temp files and committed blobs no record references.
    /// Returns how many files were removed.
    pub fn sweep(&self, referenced: &std::collections::HashSet<String>) -> StoreResult<usize> {
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
        assert_eq!(blobs.sweep(&referenced).unwrap(), 2);
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
        assert!(blobs.path("../etc/passwd").is_err());
        assert!(blobs.path("tmp-x").is_err());
        let w = blobs.create().await.unwrap();
        assert!(w.commit("a/b").await.is_err());
    }
}
