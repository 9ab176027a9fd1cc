//! Hot reload of the operator's policy directory. A [`PolicyWatcher`] polls the directory
//! (file names, mtimes and sizes; then a sha256 of the contents), validates a changed set with
//! the `policies` crate and publishes it on a `tokio::sync::watch` channel as an
//! `Arc<PolicyState>`. A bad edit keeps the last good set, is logged once, counted in
//! `reloads_failed` and shown in `last_error` until a good edit replaces it.
//! [`WatchPlanner`] is the job pipeline's [`Planner`] over that channel.

use crate::jobs::seams::{PlanOutcome, Planner, StepFailure, StepResult};
use policies::{JobContext, PolicyError, PolicySet};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// What the gateway currently enforces, and how reloading has gone.
#[derive(Debug, Clone)]
pub struct PolicyState {
    pub current: Arc<PolicySet>,
    /// The watched directory; `None` for the embedded default set.
    pub dir: Option<PathBuf>,
    /// The last failed reload's message, until a reload succeeds.
    pub last_error: Option<String>,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// When `current` was loaded.
    pub loaded_at: SystemTime,
}

impl PolicyState {
    /// The embedded default policy set, for a gateway with no policy directory.
    pub fn embedded() -> PolicyState {
        PolicyState {
            current: Arc::new(PolicySet::embedded()),
            dir: None,
            last_error: None,
            reloads_ok: 0,
            reloads_failed: 0,
            loaded_at: SystemTime::now(),
        }
    }

    /// For the admin endpoint: source, version, policies, reload counters and last error.
    pub fn describe(&self) -> Value {
        let loaded_at = self
            .loaded_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        json!({
            "source": if self.dir.is_some() { "dir" } else { "embedded" },
            "dir": self.dir,
            "version_hash": self.current.version(),
            "policies": self.current.snapshot()["policies"],
            "last_reload_error": self.last_error,
            "reloads_ok": self.reloads_ok,
            "reloads_failed": self.reloads_failed,
            "loaded_at": loaded_at,
        })
    }
}

/// What one poll found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollOutcome {
    Unchanged,
    Reloaded,
    Failed,
}

/// The last content a reload was attempted with: a hash of the files, or a read error.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Attempt {
    Content([u8; 32]),
    Unreadable(String),
}

type Stat = Vec<(String, Option<SystemTime>, u64)>;

/// Polls one policy directory and publishes changes.
pub struct PolicyWatcher {
    dir: PathBuf,
    tx: watch::Sender<Arc<PolicyState>>,
    last_stat: Option<Stat>,
    last_attempt: Option<Attempt>,
}

fn stat(dir: &Path) -> Option<Stat> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).ok()? {
        let entry = entry.ok()?;
        let name = entry.file_name().to_str()?.to_string();
        if name.ends_with(".toml") && !name.starts_with('.') {
            let meta = entry.metadata().ok()?;
            out.push((name, meta.modified().ok(), meta.len()));
        }
    }
    out.sort();
    Some(out)
}

fn content_hash(files: &[(String, String)]) -> [u8; 32] {
    let mut h = Sha256::new();
    for (name, text) in files {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((text.len() as u64).to_le_bytes());
        h.update(text.as_bytes());
    }
    h.finalize().into()
}

impl PolicyWatcher {
    /// Loads `dir` (a failure here is a start-up error) and returns the watcher with a
    /// receiver of the published state.
    pub fn load(
        dir: &Path,
    ) -> Result<(PolicyWatcher, watch::Receiver<Arc<PolicyState>>), PolicyError> {
        let last_stat = stat(dir);
        let files = policies::read_dir_files(dir)?;
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        let set = PolicySet::from_texts(dir, &refs)?;
        let state = PolicyState {
            current: Arc::new(set),
            dir: Some(dir.to_path_buf()),
            last_error: None,
            reloads_ok: 0,
            reloads_failed: 0,
            loaded_at: SystemTime::now(),
        };
        let (tx, rx) = watch::channel(Arc::new(state));
        let watcher = PolicyWatcher {
            dir: dir.to_path_buf(),
            tx,
            last_stat,
            last_attempt: Some(Attempt::Content(content_hash(&files))),
        };
        Ok((watcher, rx))
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<PolicyState>> {
        self.tx.subscribe()
    }

    /// Checks the directory once (blocking file I/O) and publishes a new state on a change.
    pub fn poll(&mut self) -> PollOutcome {
        let now = stat(&self.dir);
        if now.is_some() && now == self.last_stat {
            return PollOutcome::Unchanged;
        }
        self.last_stat = now;
        let (attempt, result) = match policies::read_dir_files(&self.dir) {
            Ok(files) => {
                let refs: Vec<(&str, &str)> = files
                    .iter()
                    .map(|(n, t)| (n.as_str(), t.as_str()))
                    .collect();
                let attempt = Attempt::Content(content_hash(&files));
                (attempt, PolicySet::from_texts(&self.dir, &refs))
            }
            Err(e) => (Attempt::Unreadable(e.to_string()), Err(e)),
        };
        if self.last_attempt.as_ref() == Some(&attempt) {
            return PollOutcome::Unchanged;
        }
        self.last_attempt = Some(attempt);
        let prev = self.tx.borrow().clone();
        let mut next = PolicyState::clone(&prev);
        let outcome = match result {
            Ok(set) => {
                tracing::info!(dir = %self.dir.display(), version = set.version(), policies = set.policies().len(), "policy set reloaded");
                next.current = Arc::new(set);
                next.last_error = None;
                next.reloads_ok += 1;
                next.loaded_at = SystemTime::now();
                PollOutcome::Reloaded
            }
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, kept_version = prev.current.version(), "policy reload failed; keeping the last good policy set");
                next.last_error = Some(e.to_string());
                next.reloads_failed += 1;
                PollOutcome::Failed
            }
        };
        self.tx.send_replace(Arc::new(next));
        outcome
    }

    /// Polls every `interval` until every receiver is dropped.
    pub async fn run(mut self, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.tx.closed() => return,
                _ = tick.tick() => {}
            }
            let polled = tokio::task::spawn_blocking(move || {
                let outcome = self.poll();
                (self, outcome)
            })
            .await;
            match polled {
                Ok((w, _)) => self = w,
                Err(e) => {
                    tracing::error!(error = %e, "policy watcher poll panicked; reloading stops");
                    return;
                }
            }
        }
    }
}

/// The job pipeline's planner: resolves against whatever set the watcher published last.
pub struct WatchPlanner {
    rx: watch::Receiver<Arc<PolicyState>>,
}

impl WatchPlanner {
    pub fn new(rx: watch::Receiver<Arc<PolicyState>>) -> WatchPlanner {
        WatchPlanner { rx }
    }

    /// A planner over the embedded default set (no directory, no reloads).
    pub fn embedded() -> WatchPlanner {
        let (_tx, rx) = watch::channel(Arc::new(PolicyState::embedded()));
        WatchPlanner { rx }
    }
}

impl Planner for WatchPlanner {
    fn plan(
        &self,
        tenant: &str,
        model: &str,
        metadata: &BTreeMap<String, String>,
    ) -> StepResult<PlanOutcome> {
        let state = self.rx.borrow().clone();
        let job = JobContext {
            tenant: tenant.to_string(),
            model: model.to_string(),
            metadata: metadata.clone(),
        };
        let plan = state
            .current
            .resolve(&job)
            .map_err(|e| StepFailure::new("no_matching_policy", e.to_string()))?;
        Ok(PlanOutcome {
            policy_name: plan.policy.clone(),
            version_hash: plan.version.clone(),
            plan,
            snapshot: state.current.snapshot(),
        })
    }

    fn describe(&self) -> Value {
        self.rx.borrow().describe()
    }
}

#[cfg(test)]
#[path = "policy_watch_tests.rs"]
mod tests;
