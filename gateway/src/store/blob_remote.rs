//! The S3-compatible side of the blob store (`[storage] blobs = "s3"`), through the
//! `object_store` crate. Objects are written whole from a finished local file (one PUT, or a
//! multipart upload past [`MULTIPART_FROM`]) and are visible only once the upload completed —
//! S3 never shows a half-written object — so a record naming a key always names a complete
//! object. Reads stream, or land in a local file written to a temporary name and renamed.
//!
//! Only the S3 client comes from `object_store`: its `LocalFileSystem` renames a temp file into
//! place but never fsyncs the file or its directory, so the local backend stays our own
//! (`blob.rs`), which does both.

use crate::config::S3Config;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use std::path::Path;
use std::sync::Arc;
use tokio::io::AsyncReadExt;

/// Files at least this large go up as a multipart upload (S3's parts are ≥ 5 MiB).
pub const MULTIPART_FROM: u64 = 16 << 20;
/// Part size of a multipart upload.
const PART: usize = 8 << 20;

/// One object as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    /// The name under the listed prefix (`a/b` for `<prefix>a/b`).
    pub name: String,
    pub size: u64,
    /// The object's version tag (S3's ETag); changes whenever the object is replaced.
    pub tag: String,
    /// Seconds since the Unix epoch.
    pub last_modified: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("object {0} not found")]
    NotFound(String),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl RemoteError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RemoteError + '_ {
        move |source| RemoteError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// An S3 bucket (and key prefix) as the gateway uses it.
#[derive(Clone)]
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    /// The configured prefix (empty or ending in `/`).
    prefix: String,
    /// `s3://bucket/prefix`, for messages.
    pub label: String,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("label", &self.label)
            .finish()
    }
}

impl Remote {
    /// The bucket of `config`; credentials from the environment (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`).
    pub fn open(config: &S3Config) -> Result<Remote, RemoteError> {
        Self::build(config, AmazonS3Builder::from_env())
    }

    /// With the given credentials instead of the environment's (tests).
    #[cfg(test)]
    pub fn open_with_keys(
        config: &S3Config,
        id: &str,
        secret: &str,
    ) -> Result<Remote, RemoteError> {
        Self::build(
            config,
            AmazonS3Builder::new()
                .with_access_key_id(id)
                .with_secret_access_key(secret),
        )
    }

    fn build(config: &S3Config, builder: AmazonS3Builder) -> Result<Remote, RemoteError> {
        let mut b = builder
            .with_bucket_name(&config.bucket)
            .with_allow_http(config.allow_http);
        if let Some(e) = &config.endpoint {
            // A custom endpoint (MinIO, moto, Ceph…) serves buckets as paths, not subdomains.
            b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
        }
        if let Some(r) = &config.region {
            b = b.with_region(r);
        } else if std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        {
            b = b.with_region("us-east-1");
        }
        let store = b.build()?;
        Ok(Remote {
            store: Arc::new(store),
            prefix: config.prefix.clone(),
            label: format!("s3://{}/{}", config.bucket, config.prefix),
        })
    }

    fn path(&self, name: &str) -> ObjPath {
        ObjPath::from(format!("{}{name}", self.prefix))
    }

    /// Uploads the finished local file `file` as `name`; returns the object's tag.
    pub async fn put_file(&self, name: &str, file: &Path) -> Result<String, RemoteError> {
        let mut f = tokio::fs::File::open(file)
            .await
            .map_err(RemoteError::io(file))?;
        let len = f.metadata().await.map_err(RemoteError::io(file))?.len();
        let location = self.path(name);
        if len < MULTIPART_FROM {
            let mut buf = Vec::with_capacity(len as usize);
            f.read_to_end(&mut buf)
                .await
                .map_err(RemoteError::io(file))?;
            let r = self.store.put(&location, PutPayload::from(buf)).await?;
            return Ok(r.e_tag.unwrap_or_default());
        }
        let upload = self.store.put_multipart(&location).await?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut buf = vec![0u8; PART];
        loop {
            let n = match f.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = w.abort().await;
                    return Err(RemoteError::io(file)(e));
                }
            };
            if n == 0 {
                break;
            }
            w.wait_for_capacity(4).await?;
            w.write(&buf[..n]);
        }
        Ok(w.finish().await?.e_tag.unwrap_or_default())
    }

    fn not_found(&self, name: &str, e: object_store::Error) -> RemoteError {
        match e {
            object_store::Error::NotFound { .. } => {
                RemoteError::NotFound(format!("{}{name}", self.label))
            }
            e => e.into(),
        }
    }

    /// Downloads `name` into `dest` (a temporary name beside it, renamed into place).
    pub async fn get_to_file(&self, name: &str, dest: &Path) -> Result<String, RemoteError> {
        let got = self
            .store
            .get(&self.path(name))
            .await
            .map_err(|e| self.not_found(name, e))?;
        let tag = got.meta.e_tag.clone().unwrap_or_default();
        let dir = dest.parent().unwrap_or(Path::new("."));
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(RemoteError::io(dir))?;
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".dl-{}-{n}.tmp", std::process::id()));
        let result = async {
            let mut f = tokio::fs::File::create(&tmp)
                .await
                .map_err(RemoteError::io(&tmp))?;
            let mut stream = got.into_stream();
            while let Some(chunk) = stream.next().await {
                tokio::io::AsyncWriteExt::write_all(&mut f, &chunk?)
                    .await
                    .map_err(RemoteError::io(&tmp))?;
            }
            f.sync_all().await.map_err(RemoteError::io(&tmp))?;
            tokio::fs::rename(&tmp, dest)
                .await
                .map_err(RemoteError::io(dest))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result.map(|()| tag)
    }

    /// The object `name` as a byte stream (nothing buffered whole).
    pub async fn stream(
        &self,
        name: &str,
    ) -> Result<impl tokio::io::AsyncRead + Send + Unpin + 'static, RemoteError> {
        let got = self
            .store
            .get(&self.path(name))
            .await
            .map_err(|e| self.not_found(name, e))?;
        let s = got.into_stream().map(|r| r.map_err(std::io::Error::other));
        Ok(tokio_util::io::StreamReader::new(s))
    }

    /// Whether `name` exists.
    pub async fn exists(&self, name: &str) -> Result<bool, RemoteError> {
        match self.store.head(&self.path(name)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes `name`; a missing object is not an error.
    pub async fn delete(&self, name: &str) -> Result<(), RemoteError> {
        match self.store.delete(&self.path(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every object whose name starts with `dir` (a `/`-terminated folder name), recursively.
    pub async fn list(&self, dir: &str) -> Result<Vec<Listed>, RemoteError> {
        let base = format!("{}{dir}", self.prefix);
        let prefix = ObjPath::from(base.trim_end_matches('/'));
        let mut out = Vec::new();
        let mut s = self.store.list(Some(&prefix));
        while let Some(meta) = s.next().await {
            let meta = meta?;
            let full = meta.location.to_string();
            let Some(name) = full.strip_prefix(&self.prefix) else {
                continue;
            };
            out.push(Listed {
                name: name.to_string(),
                size: meta.size,
                tag: meta.e_tag.unwrap_or_default(),
                last_modified: meta.last_modified.timestamp(),
            });
        }
        Ok(out)
    }
}
