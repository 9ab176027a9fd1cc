//! What the runner measures of a local job's training as it mirrors the job directory: new
//! lines of `metrics.jsonl` read from where the previous poll stopped ([`MetricsTail`]), and
//! the pace of the worker's current session, from which `estimated_finish` is computed
//! ([`Pace`], [`estimate_finish`]). Both live in the executor's poll cursor, so they survive a
//! gateway restart and advance only when the poll's write is stored.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// The trainer's per-step metrics file in the run directory.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// A metrics line is a few hundred bytes; a "last line" longer than this is not one.
const MAX_LINE: u64 = 1 << 20;

/// How far `metrics.jsonl` has been read: the bytes before `offset` are complete lines. The
/// last of them (`last_start..offset`) is remembered by its digest: when the file no longer
/// holds that line there, the trainer rewrote the file (a resume keeps only the lines up to
/// its checkpoint and appends the steps it trains again), and it is read again from the start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsTail {
    pub offset: u64,
    pub last_start: u64,
    /// sha256 (hex) of the bytes `last_start..offset`, newline included.
    pub last_sha256: String,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whether `f` still holds `tail`'s last line where it was read.
fn still_there(f: &mut File, tail: &MetricsTail) -> bool {
    let Some(len) = tail.offset.checked_sub(tail.last_start) else {
        return false;
    };
    if len == 0 || len > MAX_LINE || f.seek(SeekFrom::Start(tail.last_start)).is_err() {
        return false;
    }
    let mut line = vec![0u8; len as usize];
    f.read_exact(&mut line).is_ok() && sha256_hex(&line) == tail.last_sha256
}

/// The complete lines of `run/metrics.jsonl` after `tail` (every line when the file was
/// rewritten since), parsed (a line that is not JSON is skipped), and the tail after them. A
/// last line still being written (no newline yet) is left for the next poll. No file: none.
pub fn read_new_lines(run: &Path, tail: &MetricsTail) -> (Vec<Value>, MetricsTail) {
    let Ok(mut f) = File::open(run.join(METRICS_FILE)) else {
        return (Vec::new(), tail.clone());
    };
    let (start, base) = if tail.offset > 0 && still_there(&mut f, tail) {
        (tail.offset, tail.clone())
    } else {
        (0, MetricsTail::default())
    };
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_err() || f.read_to_end(&mut buf).is_err() {
        return (Vec::new(), base);
    }
    let Some(end) = buf.iter().rposition(|b| *b == b'\n') else {
        return (Vec::new(), base);
    };
    let complete = &buf[..=end];
    let last_start = complete[..end]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let lines = complete[..end]
        .split(|b| *b == b'\n')
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect();
    let next = MetricsTail {
        offset: start + end as u64 + 1,
        last_start: start + last_start as u64,
        last_sha256: sha256_hex(&complete[last_start..]),
    };
    (lines, next)
}

/// Every parsed line of `run/metrics.jsonl` up to `tail` (the lines mirrored so far: the
/// result CSV and `trained_tokens` hold the steps the events do, even while a worker that a
/// rollback stopped may still append one).
pub fn read_lines_to(run: &Path, tail: &MetricsTail) -> Vec<Value> {
    let Ok(f) = File::open(run.join(METRICS_FILE)) else {
        return Vec::new();
    };
    let mut buf = Vec::new();
    if f.take(tail.offset).read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    buf.split(|b| *b == b'\n')
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect()
}

/// Wall-clock seconds of one step as the trainer measured it (`tokens / tokens_per_second`),
/// when the line has both.
pub fn step_seconds(line: &Value) -> Option<f64> {
    let tokens = line.get("tokens").and_then(Value::as_f64)?;
    let rate = line.get("tokens_per_second").and_then(Value::as_f64)?;
    let s = tokens / rate;
    (tokens > 0.0 && rate > 0.0 && s.is_finite()).then_some(s)
}

/// The pace of one worker session of a job: when the runner first and last saw new steps.
/// Observation times are the runner's (the trainer's lines carry no wall-clock time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pace {
    /// The worker session measured (its lease: worker and claim time). Another session — the
    /// job resumed after a pause, or taken over after a crash — starts a new measurement.
    pub session: Option<String>,
    /// (unix seconds, step) of the first poll of this session that saw a new step.
    pub first: (f64, usize),
    /// (unix seconds, step) of the latest such poll.
    pub last: (f64, usize),
}

impl Pace {
    /// Records a poll at `now` in `session` that has mirrored up to `step` (`new_steps`: it
    /// saw steps it had not mirrored before). A session change drops the old measurement.
    pub fn observe(
        pace: &mut Option<Pace>,
        session: Option<String>,
        now: f64,
        step: usize,
        new_steps: bool,
    ) {
        if pace.as_ref().is_some_and(|p| p.session != session) {
            *pace = None;
        }
        if !new_steps {
            return;
        }
        match pace {
            Some(p) => p.last = (now, step),
            None => {
                *pace = Some(Pace {
                    session,
                    first: (now, step),
                    last: (now, step),
                })
            }
        }
    }

    /// [`estimate_finish`] for this pace.
    pub fn estimate(&self, now: f64, total_steps: usize) -> Option<i64> {
        estimate_finish(now, self.first, self.last, total_steps)
    }
}

/// `estimated_finish` (unix seconds, rounded up): `now` + the steps left after `last` × the
/// mean seconds per step between `first` and `last` ((unix seconds, step) pairs of one worker
/// session). `None` until a step is measured (`last` is past `first` in steps and in time).
pub fn estimate_finish(
    now: f64,
    first: (f64, usize),
    last: (f64, usize),
    total_steps: usize,
) -> Option<i64> {
    let steps = last.1.checked_sub(first.1).filter(|n| *n > 0)?;
    let seconds = last.0 - first.0;
    if !seconds.is_finite() || seconds <= 0.0 || !now.is_finite() {
        return None;
    }
    let left = total_steps.saturating_sub(last.1);
    let finish = now + left as f64 * (seconds / steps as f64);
    Some(finish.ceil() as i64)
}

/// The current time in unix seconds, with the fraction.
pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::Write;

    #[test]
    fn estimate_is_now_plus_the_steps_left_at_the_measured_pace() {
        // 10 steps in 20 s: 2 s a step; 90 left after step 10.
        assert_eq!(
            estimate_finish(1_000.0, (100.0, 0), (120.0, 10), 100),
            Some(1_180)
        );
        // Only the steps between the two observations count, not those before `first`.
        assert_eq!(
            estimate_finish(1_000.0, (100.0, 40), (110.0, 50), 100),
            Some(1_050)
        );
        // Rounded up; the last step done: now.
        assert_eq!(estimate_finish(1_000.5, (0.0, 0), (3.0, 2), 3), Some(1_002));
        assert_eq!(estimate_finish(1_000.0, (0.0, 0), (3.0, 3), 3), Some(1_000));
        assert_eq!(
            estimate_finish(1_000.0, (0.0, 0), (3.0, 5), 3),
            Some(1_000),
            "past the total: nothing left"
        );
    }

    #[test]
    fn no_estimate_before_a_step_is_measured() {
        assert_eq!(estimate_finish(1_000.0, (5.0, 3), (5.0, 3), 10), None);
        assert_eq!(estimate_finish(1_000.0, (5.0, 3), (9.0, 3), 10), None);
        assert_eq!(
            estimate_finish(1_000.0, (5.0, 3), (5.0, 6), 10),
            None,
            "no time passed"
        );
        assert_eq!(estimate_finish(1_000.0, (9.0, 3), (5.0, 6), 10), None);
        assert_eq!(estimate_finish(f64::NAN, (0.0, 0), (1.0, 1), 10), None);
    }

    #[test]
    fn pace_restarts_with_each_worker_session() {
        let mut pace = None;
        let s1 = Some("w1@100".to_string());
        Pace::observe(&mut pace, s1.clone(), 10.0, 0, false);
        assert_eq!(pace, None, "no step yet");
        Pace::observe(&mut pace, s1.clone(), 20.0, 5, true);
        Pace::observe(&mut pace, s1.clone(), 25.0, 5, false);
        Pace::observe(&mut pace, s1.clone(), 30.0, 10, true);
        let p = pace.clone().unwrap();
        assert_eq!((p.first, p.last), ((20.0, 5), (30.0, 10)));
        assert_eq!(p.estimate(30.0, 20), Some(50));
        // Paused: no lease; resumed by another worker: measured afresh from its first steps.
        Pace::observe(&mut pace, None, 40.0, 10, false);
        assert_eq!(pace, None);
        let s2 = Some("w2@50".to_string());
        Pace::observe(&mut pace, s2.clone(), 50.0, 12, true);
        assert_eq!(pace.as_ref().unwrap().estimate(50.0, 20), None);
        Pace::observe(&mut pace, s2, 51.0, 14, true);
        assert_eq!(pace.unwrap().estimate(51.0, 20), Some(54));
    }

    fn line(step: usize, tokens_per_second: f64) -> String {
        format!(
            "{}\n",
            json!({"step": step, "total_steps": 9, "tokens": 40, "tokens_per_second": tokens_per_second})
        )
    }

    fn steps(lines: &[Value]) -> Vec<u64> {
        lines.iter().map(|l| l["step"].as_u64().unwrap()).collect()
    }

    #[test]
    fn new_lines_are_read_from_the_last_offset_and_a_partial_line_waits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METRICS_FILE);
        let (none, tail) = read_new_lines(dir.path(), &MetricsTail::default());
        assert!(
            none.is_empty() && tail == MetricsTail::default(),
            "no file yet"
        );
        let mut f = File::create(&path).unwrap();
        f.write_all((line(1, 10.0) + &line(2, 20.0)).as_bytes())
            .unwrap();
        let partial = line(3, 30.0);
        let (head, rest) = partial.split_at(partial.len() - 4);
        f.write_all(head.as_bytes()).unwrap();
        let (first, t1) = read_new_lines(dir.path(), &MetricsTail::default());
        assert_eq!(steps(&first), [1, 2]);
        assert_eq!(
            t1.offset as usize,
            line(1, 10.0).len() + line(2, 20.0).len()
        );
        assert_eq!(t1.last_start as usize, line(1, 10.0).len());
        let (again, t2) = read_new_lines(dir.path(), &t1);
        assert!(again.is_empty(), "the partial line is not consumed");
        assert_eq!(t2, t1);
        f.write_all(rest.as_bytes()).unwrap();
        f.write_all(b"not json\n").unwrap();
        let (next, t3) = read_new_lines(dir.path(), &t1);
        assert_eq!(steps(&next), [3], "a line that is not JSON is skipped");
        assert_eq!(t3.offset, std::fs::metadata(&path).unwrap().len());
        assert_eq!(steps(&read_lines_to(dir.path(), &t3)), [1, 2, 3]);
        assert_eq!(steps(&read_lines_to(dir.path(), &t1)), [1, 2]);
        assert_eq!(step_seconds(&next[0]), Some(40.0 / 30.0));
        assert_eq!(step_seconds(&json!({"tokens": 4})), None);
    }

    #[test]
    fn a_rewritten_file_is_read_again_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METRICS_FILE);
        let original: String = (1..=4).map(|s| line(s, 10.0)).collect();
        std::fs::write(&path, &original).unwrap();
        let (all, tail) = read_new_lines(dir.path(), &MetricsTail::default());
        assert_eq!(steps(&all), [1, 2, 3, 4]);
        // A resume from the checkpoint of step 2: lines 1-2 kept, 3.. trained again (the
        // timings differ, so the bytes do), and one more.
        let kept: String = (1..=2).map(|s| line(s, 10.0)).collect();
        let again: String = (3..=5).map(|s| line(s, 12.5)).collect();
        std::fs::write(&path, kept.clone() + &again).unwrap();
        let (read, t) = read_new_lines(dir.path(), &tail);
        assert_eq!(steps(&read), [1, 2, 3, 4, 5], "read from the start");
        // Shorter than what was read: from the start too.
        std::fs::write(&path, &kept).unwrap();
        let (read, _) = read_new_lines(dir.path(), &t);
        assert_eq!(steps(&read), [1, 2]);
        // Unchanged up to the tail: only what follows.
        std::fs::write(&path, original.clone() + &line(5, 10.0)).unwrap();
        let (read, _) = read_new_lines(dir.path(), &tail);
        assert_eq!(steps(&read), [5]);
    }
}
