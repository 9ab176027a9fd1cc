//! Job directories across machines (`[storage] blobs = "s3"`): a worker on another machine
//! shares no folder with the gateway, so the job directory — the seam between worker and
//! runner (`mod.rs`) — travels through the bucket, under `jobs/<job id>/<path>`.
//!
//! - The worker **resets** its copy from the bucket when it claims the job (a job another
//!   worker trained resumes from that worker's last pushed checkpoint), then **pushes** what
//!   changed between optimizer steps and when it stops, in an order that keeps every state the
//!   bucket passes through one the runner can read: plain files first, then each checkpoint's
//!   `state.json` (a checkpoint is complete once it is there), then `outcome.json` (written
//!   last, as on disk).
//! - The runner **pulls** into a mirror of its own (`data_dir/mirror/<job id>/`, never the
//!   directory a worker of this machine writes) before each poll: new or replaced objects are
//!   downloaded (to a temporary name, renamed), files the bucket no longer has are removed.
//!
//! A worker killed between a write and its push loses only steps the runner never saw: its
//! successor re-trains them bit for bit from the last pushed checkpoint.

use crate::store::blob_remote::{Remote, RemoteError};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The bucket folder of job directories (beside `blobs/`).
pub const REMOTE_JOBS: &str = "jobs/";

/// The runner's record of what it pulled (name → the object's tag), in the mirror.
const PULLED: &str = ".pulled.json";

/// The runner's copy of a job directory when blobs are remote.
pub fn mirror_dir(data_dir: &Path, job_id: &str) -> PathBuf {
    data_dir.join("mirror").join(job_id)
}

/// The job directory the gateway's side reads (the runner's poll, adapter downloads, chat
/// serving): the workers' own with local blobs (one machine, one folder), else the mirror.
pub fn runner_dir(data_dir: &Path, blobs: &crate::store::BlobStore, job_id: &str) -> PathBuf {
    match blobs.remote() {
        None => super::layout::job_dir(data_dir, job_id),
        Some(_) => mirror_dir(data_dir, job_id),
    }
}

fn remote_dir(job_id: &str) -> String {
    format!("{REMOTE_JOBS}{job_id}/")
}

/// Whether the bucket's copy of the job's directory holds its outcome (pushed last).
pub async fn outcome_pushed(remote: &Remote, job_id: &str) -> Result<bool, RemoteError> {
    remote
        .exists(&format!("{}{}", remote_dir(job_id), super::layout::OUTCOME))
        .await
}

/// Sorts `(relative path, _)` pairs into push order ([`rank`], then by path).
fn sort_in_push_order<T>(items: &mut [(String, T)]) {
    items.sort_by(|a, b| (rank(&a.0), &a.0).cmp(&(rank(&b.0), &b.0)));
}

/// Push order: plain files, then checkpoints' `state.json`, then `outcome.json`.
fn rank(rel: &str) -> u8 {
    if rel == super::layout::OUTCOME {
        2
    } else if rel.ends_with("/state.json") {
        1
    } else {
        0
    }
}

/// Every file under `dir` by its `/`-separated relative path; names starting with `.`
/// (temporary files and directories, the mirror's own record) are not replicated.
fn walk(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), dir.to_path_buf())];
    while let Some((rel, path)) = stack.pop() {
        let entries = match std::fs::read_dir(&path) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                continue;
            }
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let ty = entry.file_type()?;
            if ty.is_dir() {
                stack.push((child, entry.path()));
            } else if ty.is_file() {
                out.push((child, entry.path()));
            }
        }
    }
    sort_in_push_order(&mut out);
    Ok(out)
}

/// A file's identity on disk between two pushes (size, modification time in ns).
fn stamp(path: &Path) -> Option<(u64, i128)> {
    let m = std::fs::metadata(path).ok()?;
    let t = m.modified().ok()?;
    let ns = match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    };
    Some((m.len(), ns))
}

/// A worker's side of one job's directory.
pub struct Pusher {
    remote: Remote,
    job_id: String,
    dir: PathBuf,
    pushed: HashMap<String, (u64, i128)>,
}

impl Pusher {
    /// Makes `dir` the bucket's copy of the job's directory (a fresh claim: whatever this
    /// machine had is dropped, the last pushed state comes down), ready to push from there.
    pub async fn claim(remote: Remote, job_id: &str, dir: &Path) -> Result<Pusher, RemoteError> {
        match tokio::fs::remove_dir_all(dir).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(RemoteError::Io {
                    path: dir.display().to_string(),
                    source,
                })
            }
        }
        let prefix = remote_dir(job_id);
        let mut pushed = HashMap::new();
        for obj in remote.list(&prefix).await? {
            let Some(rel) = obj.name.strip_prefix(&prefix) else {
                continue;
            };
            let dest = dir.join(rel);
            remote.get_to_file(&obj.name, &dest).await?;
            if let Some(s) = stamp(&dest) {
                pushed.insert(rel.to_string(), s);
            }
        }
        Ok(Pusher {
            remote,
            job_id: job_id.to_string(),
            dir: dir.to_path_buf(),
            pushed,
        })
    }

    /// Uploads every file that changed since the last push, in [`rank`] order; how many.
    pub async fn push(&mut self) -> Result<usize, RemoteError> {
        let dir = self.dir.clone();
        let files = walk(&dir).map_err(|source| RemoteError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let prefix = remote_dir(&self.job_id);
        let mut n = 0;
        for (rel, path) in files {
            let Some(now) = stamp(&path) else { continue };
            if self.pushed.get(&rel) == Some(&now) {
                continue;
            }
            match self.remote.put_file(&format!("{prefix}{rel}"), &path).await {
                Ok(_) => {}
                // Replaced or removed under us (a temporary rename): the next push takes it.
                Err(RemoteError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    continue
                }
                Err(e) => return Err(e),
            }
            self.pushed.insert(rel, now);
            n += 1;
        }
        Ok(n)
    }
}

/// Deletes the optimizer state of the job's checkpoints from the bucket (the job is terminal:
/// [`super::retention`]); how many objects went.
pub async fn prune_remote(remote: &Remote, job_id: &str) -> Result<usize, RemoteError> {
    let prefix = remote_dir(job_id);
    let suffix = format!("/{}", super::retention::OPTIMIZER_STATE);
    let mut n = 0;
    for obj in remote.list(&prefix).await? {
        let rel = obj.name.strip_prefix(&prefix).unwrap_or_default();
        if rel.starts_with("run/checkpoints/") && rel.ends_with(&suffix) {
            remote.delete(&obj.name).await?;
            n += 1;
        }
    }
    Ok(n)
}

/// The runner's side: brings `mirror` to the bucket's copy of the job's directory. Returns
/// how many files were downloaded or removed.
pub async fn pull(remote: &Remote, job_id: &str, mirror: &Path) -> Result<usize, RemoteError> {
    let prefix = remote_dir(job_id);
    let record = mirror.join(PULLED);
    let mut pulled: BTreeMap<String, String> = match tokio::fs::read(&record).await {
        Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
        Err(_) => BTreeMap::new(),
    };
    let listed = remote.list(&prefix).await?;
    let mut changed = 0;
    let mut present = std::collections::HashSet::new();
    // In push order, so a checkpoint's files land before its state.json.
    let mut objs: Vec<_> = listed
        .into_iter()
        .filter_map(|o| {
            let rel = o.name.strip_prefix(&prefix)?.to_string();
            Some((rel, o))
        })
        .collect();
    sort_in_push_order(&mut objs);
    for (rel, obj) in objs {
        present.insert(rel.clone());
        let dest = mirror.join(&rel);
        let have = pulled.get(&rel) == Some(&obj.tag)
            && tokio::fs::try_exists(&dest).await.unwrap_or(false);
        if have {
            continue;
        }
        let tag = remote.get_to_file(&obj.name, &dest).await?;
        pulled.insert(rel, tag);
        changed += 1;
    }
    let io = |source| RemoteError::Io {
        path: mirror.display().to_string(),
        source,
    };
    let local = walk(mirror).map_err(io)?;
    for (rel, path) in local {
        if !present.contains(&rel) {
            let _ = tokio::fs::remove_file(&path).await;
            pulled.remove(&rel);
            changed += 1;
        }
    }
    if changed > 0 {
        tokio::fs::create_dir_all(mirror).await.map_err(io)?;
        let tmp = mirror.join(".pulled.json.tmp");
        let body = serde_json::to_vec(&pulled).unwrap_or_default();
        tokio::fs::write(&tmp, body).await.map_err(io)?;
        tokio::fs::rename(&tmp, &record).await.map_err(io)?;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::BlobStore;

    fn remote(dir: &Path) -> Option<Remote> {
        let s3 = crate::store::s3_test_server::fresh_bucket()?;
        let blobs = BlobStore::open_s3_for_test(dir, &s3).unwrap();
        blobs.remote().cloned()
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn tree(dir: &Path) -> Vec<(String, String)> {
        walk(dir)
            .unwrap()
            .into_iter()
            .map(|(rel, p)| (rel, std::fs::read_to_string(p).unwrap()))
            .collect()
    }

    #[tokio::test]
    async fn a_terminal_jobs_optimizer_state_leaves_the_bucket_and_the_mirror_follows() {
        let tmp = tempfile::tempdir().unwrap();
        let Some(r) = remote(&tmp.path().join("blobs")) else {
            return;
        };
        let (w, mirror) = (tmp.path().join("w/jobs/j"), tmp.path().join("gw/mirror/j"));
        let mut p = Pusher::claim(r.clone(), "j", &w).await.unwrap();
        for step in [1, 2] {
            let c = w.join(format!("run/checkpoints/step-{step}"));
            write(&c.join("adapter_model.safetensors"), "A");
            write(&c.join("optimizer.safetensors"), "M");
            write(&c.join("state.json"), "{}");
        }
        // A file of that name elsewhere is not optimizer state.
        write(&w.join("optimizer.safetensors"), "other");
        assert_eq!(p.push().await.unwrap(), 7);
        assert_eq!(pull(&r, "j", &mirror).await.unwrap(), 7);
        assert_eq!(prune_remote(&r, "j").await.unwrap(), 2);
        assert_eq!(prune_remote(&r, "j").await.unwrap(), 0);
        assert_eq!(pull(&r, "j", &mirror).await.unwrap(), 2);
        let mut left: Vec<String> = tree(&mirror).into_iter().map(|(rel, _)| rel).collect();
        left.sort();
        assert_eq!(
            left,
            [
                "optimizer.safetensors",
                "run/checkpoints/step-1/adapter_model.safetensors",
                "run/checkpoints/step-1/state.json",
                "run/checkpoints/step-2/adapter_model.safetensors",
                "run/checkpoints/step-2/state.json",
            ]
        );
    }

    #[tokio::test]
    async fn a_job_directory_travels_from_worker_to_runner_and_to_the_next_worker() {
        let tmp = tempfile::tempdir().unwrap();
        let Some(r) = remote(&tmp.path().join("blobs")) else {
            return;
        };
        let (w1, w2, mirror) = (
            tmp.path().join("w1/jobs/j"),
            tmp.path().join("w2/jobs/j"),
            tmp.path().join("gw/mirror/j"),
        );
        // A stale directory on the first worker's machine is dropped at the claim.
        write(&w1.join("stale.txt"), "old");
        let mut p1 = Pusher::claim(r.clone(), "j", &w1).await.unwrap();
        assert!(!w1.exists());
        write(&w1.join("run/metrics.jsonl"), "{\"step\":1}\n");
        write(&w1.join("run/checkpoints/step-1/adapter.bin"), "A1");
        write(&w1.join("run/checkpoints/step-1/state.json"), "{}");
        write(&w1.join("run/checkpoints/.step-2.tmp/adapter.bin"), "half");
        assert_eq!(p1.push().await.unwrap(), 3);
        // Unchanged files are not sent again.
        assert_eq!(p1.push().await.unwrap(), 0);
        assert_eq!(pull(&r, "j", &mirror).await.unwrap(), 3);
        assert_eq!(tree(&mirror), tree(&w1).into_iter().collect::<Vec<_>>());
        assert_eq!(pull(&r, "j", &mirror).await.unwrap(), 0);

        // The metrics file grows; the runner gets the new version.
        write(
            &w1.join("run/metrics.jsonl"),
            "{\"step\":1}\n{\"step\":2}\n",
        );
        assert_eq!(p1.push().await.unwrap(), 1);
        assert_eq!(pull(&r, "j", &mirror).await.unwrap(), 1);
        assert!(std::fs::read_to_string(mirror.join("run/metrics.jsonl"))
            .unwrap()
            .contains("\"step\":2"));

        // Another worker takes the job over: it starts from what was pushed.
        let mut p2 = Pusher::claim(r.clone(), "j", &w2).await.unwrap();
        assert_eq!(tree(&w2), tree(&mirror));
        assert_eq!(p2.push().await.unwrap(), 0);
        write(&w2.join("outcome.json"), "{\"status\":\"succeeded\"}");
        assert_eq!(p2.push().await.unwrap(), 1);
        pull(&r, "j", &mirror).await.unwrap();
        assert_eq!(tree(&mirror), tree(&w2));
        assert!(!tree(&mirror).iter().any(|(rel, _)| rel.contains("tmp")));
    }

    #[test]
    fn checkpoints_complete_before_their_state_and_the_outcome_comes_last() {
        let tmp = tempfile::tempdir().unwrap();
        for f in [
            "outcome.json",
            "run/checkpoints/step-2/state.json",
            "run/checkpoints/step-2/adapter_model.safetensors",
            "run/metrics.jsonl",
            "resolved.json",
        ] {
            write(&tmp.path().join(f), "x");
        }
        let order: Vec<String> = walk(tmp.path()).unwrap().into_iter().map(|f| f.0).collect();
        assert_eq!(
            order,
            [
                "resolved.json",
                "run/checkpoints/step-2/adapter_model.safetensors",
                "run/metrics.jsonl",
                "run/checkpoints/step-2/state.json",
                "outcome.json"
            ]
        );
    }
}
