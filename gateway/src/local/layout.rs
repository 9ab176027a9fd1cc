//! Where a local job's files live, and the names OpenAI gives its models. Pure.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file a worker writes last in a job's directory: how the run ended.
pub const OUTCOME: &str = "outcome.json";

/// `data_dir/jobs/<job id>`.
pub fn job_dir(data_dir: &Path, job_id: &str) -> PathBuf {
    data_dir.join("jobs").join(job_id)
}

/// The trainer's `--out` inside a job directory.
pub fn run_dir(job_dir: &Path) -> PathBuf {
    job_dir.join("run")
}

/// `ft:{model}:{organization}:{suffix}:{short id}`, as OpenAI forms it (an empty suffix leaves
/// the field empty). The short id is the job id without its `ftjob-` prefix.
pub fn fine_tuned_model(
    model: &str,
    organization: &str,
    suffix: Option<&str>,
    job_id: &str,
) -> String {
    let short = job_id.strip_prefix("ftjob-").unwrap_or(job_id);
    format!("ft:{model}:{organization}:{}:{short}", suffix.unwrap_or(""))
}

/// A checkpoint's model name: the fine-tuned name plus `:ckpt-step-{N}`.
pub fn checkpoint_model(fine_tuned: &str, step: usize) -> String {
    format!("{fine_tuned}:ckpt-step-{step}")
}

/// How a worker's run of a job ended (`outcome.json`, written atomically and last).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Succeeded { steps: usize },
    Failed { code: String, message: String },
}

/// The hyperparameters a worker resolved for the job (`resolved.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resolved {
    pub n_epochs: usize,
    /// OpenAI's batch size: micro-batch × accumulation.
    pub batch_size: usize,
    pub learning_rate_multiplier: f64,
    pub total_steps: usize,
}

/// Writes `value` as JSON to `path` atomically (temp file, fsync, rename, fsync dir).
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    // A name of its own per write: two writers of one path (two workers sharing a cache
    // entry) must not interleave their bytes in one temp file; the last rename wins whole.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id(),
        WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Reads a JSON file written by [`write_json_atomic`]; `None` when absent.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_openai() {
        let n = fine_tuned_model("tiny-qwen", "acme", Some("v1"), "ftjob-abc123");
        assert_eq!(n, "ft:tiny-qwen:acme:v1:abc123");
        assert_eq!(
            checkpoint_model(&n, 10),
            "ft:tiny-qwen:acme:v1:abc123:ckpt-step-10"
        );
        assert_eq!(fine_tuned_model("m", "o", None, "ftjob-x"), "ft:m:o::x");
    }
}
