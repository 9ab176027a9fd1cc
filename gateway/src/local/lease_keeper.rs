//! Holding a job's lease through long work between optimizer steps (the monitor's checkpoint
//! evaluation): a scoped thread heartbeats every third of the lease until the work returns.

use crate::ids::now_unix;
use crate::store::Store;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the keeper looks at the clock (and whether the work is done).
const TICK: Duration = Duration::from_millis(100);

#[derive(Clone)]
pub struct LeaseKeeper {
    pub store: Arc<dyn Store>,
    pub job_id: String,
    pub worker_id: String,
    pub lease_seconds: i64,
}

impl LeaseKeeper {
    /// Runs `work` while heartbeating the lease; the bool is false when the lease was lost
    /// meanwhile (another worker owns the job: discard what `work` produced).
    pub fn hold<T>(&self, work: impl FnOnce() -> T) -> (T, bool) {
        let done = AtomicBool::new(false);
        let lost = AtomicBool::new(false);
        let every = Duration::from_secs((self.lease_seconds / 3).max(1) as u64);
        let out = std::thread::scope(|s| {
            s.spawn(|| {
                let mut last = Instant::now();
                while !done.load(Ordering::SeqCst) {
                    std::thread::sleep(TICK);
                    if last.elapsed() < every {
                        continue;
                    }
                    match self.store.heartbeat_lease(
                        &self.job_id,
                        &self.worker_id,
                        now_unix(),
                        self.lease_seconds,
                    ) {
                        Ok(true) => last = Instant::now(),
                        Ok(false) => {
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(job = %self.job_id, error = %e, "heartbeat failed")
                        }
                    }
                }
            });
            let out = work();
            done.store(true, Ordering::SeqCst);
            out
        });
        (out, !lost.load(Ordering::SeqCst))
    }
}
