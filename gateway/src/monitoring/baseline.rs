//! The step-0 cache: the base model's evaluation, shared by every job that would measure the
//! same thing.
//!
//! Step 0 evaluates the base model with adapters off, so it is a function of the base weights,
//! how they are run (precision, device), the evaluation sets, the measurement settings, the
//! job's seed (sampling) and its held-out examples — not of the training data or the defense.
//! Jobs that agree on all of these (the usual case: one model, one policy, many clients) would
//! each pay the same evaluation again; with the cache the first pays it and the others reuse
//! its record, marked with the job it came from (`StepRecord::reused_from`).
//!
//! The key is the SHA-256 over every input above, length-prefixed, plus [`FORMAT`]; the
//! entry is one JSON file per key, written atomically, local to the worker's machine (losing
//! it costs only time). An evaluation that failed, or whose judge failed on some prompt, is
//! never stored: it would pin a partial baseline on later jobs.

use super::record::StepRecord;
use crate::local::layout;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// Bump when what step 0 measures, or how, changes (a new signal, another NLL definition):
/// older entries then miss instead of answering for a different measurement.
pub const FORMAT: &str = "tuneguard-step0-v1";

/// Everything the step-0 record depends on, gathered by the monitor.
pub struct KeyParts<'a> {
    /// [`model_fingerprint`] of the base model.
    pub model: &'a str,
    /// How the engine runs it (precision, device): numerics differ between them.
    pub engine: &'a str,
    /// The loaded evaluation sets (`Debug` of `EvalSets`: every question, paraphrase, judge
    /// prompt and probe pair; maps in it are ordered).
    pub sets: &'a str,
    /// The policy's `[monitor]` without `rules` and cadence (they do not change a
    /// measurement), as JSON.
    pub monitor: &'a str,
    /// Refusal filter, judges, lengths and seed (`Debug`).
    pub settings: &'a str,
    /// The held-out examples as tokens and answer masks.
    pub holdout: &'a [trainer::EncodedChat],
}

/// The cache key (hex SHA-256) of `parts`.
pub fn key(parts: &KeyParts<'_>) -> String {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(FORMAT.as_bytes());
    field(parts.model.as_bytes());
    field(parts.engine.as_bytes());
    field(parts.sets.as_bytes());
    field(parts.monitor.as_bytes());
    field(parts.settings.as_bytes());
    field(&(parts.holdout.len() as u64).to_le_bytes());
    for chat in parts.holdout {
        let ids: Vec<u8> = chat.ids.iter().flat_map(|i| i.to_le_bytes()).collect();
        field(&ids);
        let mask: Vec<u8> = chat.answer_mask.iter().map(|&m| m as u8).collect();
        field(&mask);
    }
    hex::encode(h.finalize())
}

/// One cached step-0 evaluation.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    /// The job that measured it.
    job_id: String,
    record: StepRecord,
}

/// The cache directory of one worker machine.
#[derive(Debug, Clone)]
pub struct BaselineCache {
    dir: PathBuf,
}

impl BaselineCache {
    pub fn new(dir: &Path) -> Self {
        BaselineCache {
            dir: dir.to_path_buf(),
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// The step-0 record stored under `key`, marked as reused from the job that measured it
    /// (its cost is that job's, so a reader can tell what the reuse saved). An unreadable
    /// entry is a miss.
    pub fn get(&self, key: &str) -> Option<StepRecord> {
        let entry: Entry = match layout::read_json(&self.path(key)) {
            Ok(e) => e?,
            Err(e) => {
                tracing::warn!(key, error = %e, "unreadable step-0 cache entry; evaluating again");
                return None;
            }
        };
        let mut rec = entry.record;
        if rec.step != 0 || rec.error.is_some() {
            return None;
        }
        rec.reused_from = Some(entry.job_id);
        // This job asked no judge anything: every judgement it carries is a reused one.
        for j in [&mut rec.judge, &mut rec.local_judge].into_iter().flatten() {
            j.cached += j.requests;
            j.requests = 0;
        }
        Some(rec)
    }

    /// Stores `rec` (job `job_id`'s step 0) under `key`, when it is a complete measurement.
    pub fn put(&self, key: &str, job_id: &str, rec: &StepRecord) {
        if !storable(rec) {
            return;
        }
        let entry = Entry {
            job_id: job_id.to_string(),
            record: StepRecord {
                reused_from: None,
                ..rec.clone()
            },
        };
        if let Err(e) = layout::write_json_atomic(&self.path(key), &entry) {
            tracing::warn!(key, error = %e, "writing the step-0 cache failed; later jobs evaluate again");
        }
    }
}

/// Only a whole measurement is shared: no error, no judge prompt left unanswered.
pub fn storable(rec: &StepRecord) -> bool {
    rec.step == 0
        && rec.error.is_none()
        && rec.reused_from.is_none()
        && rec.judge.as_ref().is_none_or(|j| j.errors == 0)
        && rec.local_judge.as_ref().is_none_or(|j| j.errors == 0)
}

/// The base model's content fingerprint (the selector's: files' names, lengths and bytes),
/// computed once per file version in this process — hashing a large model on every job
/// would cost more than it saves.
pub fn model_fingerprint(path: &Path) -> Result<String, String> {
    static MEMO: Mutex<Option<HashMap<String, String>>> = Mutex::new(None);
    let id = stat_id(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(fp) = MEMO
        .lock()
        .ok()
        .and_then(|m| m.as_ref().and_then(|m| m.get(&id).cloned()))
    {
        return Ok(fp);
    }
    let fp = selector::fingerprint::model_fingerprint(path).map_err(|e| e.to_string())?;
    if let Ok(mut m) = MEMO.lock() {
        m.get_or_insert_with(HashMap::new).insert(id, fp.clone());
    }
    Ok(fp)
}

/// The path with the name, length and modification time of its file (or of every file in
/// its directory): a changed or replaced file changes it, so the memo never answers stale.
fn stat_id(path: &Path) -> std::io::Result<String> {
    let stat = |p: &Path| -> std::io::Result<(u64, SystemTime)> {
        let m = std::fs::metadata(p)?;
        Ok((m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)))
    };
    let mut files = Vec::new();
    if path.is_dir() {
        for e in std::fs::read_dir(path)? {
            let e = e?;
            files.push((
                e.file_name().to_string_lossy().into_owned(),
                stat(&e.path())?,
            ));
        }
        files.sort();
    } else {
        files.push((String::new(), stat(path)?));
    }
    Ok(format!("{}\n{files:?}", path.display()))
}

#[cfg(test)]
#[path = "baseline_tests.rs"]
mod tests;
