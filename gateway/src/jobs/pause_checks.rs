//! When the runner next asks a paused job's backend whether it holds the job paused
//! ([`Executor::hold_paused`](super::seams::Executor::hold_paused)): a client's pause is
//! acknowledged when it is stored, and forwarded to the provider best effort; a forward that
//! failed, or was lost with the process, is caught by these checks. The first check waits one
//! base interval (the pause the API just forwarded lands first); each confirmation doubles the
//! wait up to [`MAX_WAIT`], a job found running again goes back to the base interval.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// The longest wait between checks of a job the backend holds paused.
pub const MAX_WAIT: Duration = Duration::from_secs(600);

#[derive(Debug, Default)]
pub struct PauseChecks {
    /// Per paused job: the current wait and when the next check is due.
    next: HashMap<String, (Duration, Instant)>,
}

impl PauseChecks {
    /// Whether `job_id`'s check is due at `now` (a job seen for the first time is scheduled
    /// one `base` later, not checked).
    pub fn due(&mut self, job_id: &str, now: Instant, base: Duration) -> bool {
        match self.next.get(job_id) {
            Some((_, at)) => *at <= now,
            None => {
                self.next.insert(job_id.to_string(), (base, now + base));
                false
            }
        }
    }

    /// Records a check's outcome: `held` (the backend holds it paused) doubles the wait, else
    /// (paused again just now, or the check failed) the base wait.
    pub fn checked(&mut self, job_id: &str, held: bool, now: Instant, base: Duration) {
        let wait = match (held, self.next.get(job_id)) {
            (true, Some((w, _))) => (*w * 2).min(MAX_WAIT).max(base),
            _ => base,
        };
        self.next.insert(job_id.to_string(), (wait, now + wait));
    }

    /// Forgets jobs no longer paused (a later pause starts afresh).
    pub fn retain(&mut self, paused: &HashSet<&str>) {
        self.next.retain(|id, _| paused.contains(id.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sight_waits_confirmations_back_off_and_a_relapse_resets() {
        let (t0, base) = (Instant::now(), Duration::from_secs(30));
        let mut c = PauseChecks::default();
        assert!(!c.due("j", t0, base), "the API's own forward lands first");
        assert!(!c.due("j", t0 + base / 2, base));
        assert!(c.due("j", t0 + base, base));
        c.checked("j", true, t0 + base, base);
        assert!(!c.due("j", t0 + base * 2, base));
        assert!(c.due("j", t0 + base * 3, base), "60 s after a confirmation");
        let mut at = t0;
        for _ in 0..10 {
            c.checked("j", true, at, base);
        }
        assert_eq!(c.next["j"].0, MAX_WAIT);
        at += Duration::from_secs(1);
        c.checked("j", false, at, base);
        assert_eq!(c.next["j"], (base, at + base));
        c.retain(&HashSet::new());
        assert!(c.next.is_empty());
    }
}
