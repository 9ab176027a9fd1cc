//! Which checkpoints are evaluated, and how much: the cost-bounded cadence.
//!
//! A full evaluation (sampled answers, judging, harmful-request replies, probes) is a fixed
//! amount of work, while the training between two checkpoints can be anything from a few
//! short chats to many long batches. So the monitor does not evaluate every checkpoint by
//! default: it keeps each tier's cost under a share of the training time (`[monitor]
//! eval_budget`, `probe_budget`). At a checkpoint the full evaluation runs when the training
//! time since the last full evaluation, times `eval_budget`, covers what the last full
//! evaluation cost; else the judge-free tier (probe gaps, in-domain loss) runs when the
//! training since the last probe, times `probe_budget`, covers the last probe cost; else the
//! checkpoint is recorded with its training loss only. A tier whose cost is not known yet
//! runs (that measures it). The job's last checkpoint — the model the client receives — is
//! always evaluated in full. A budget of 0 evaluates every checkpoint in full.
//!
//! The decision depends only on the job's records so far and the training time just spent,
//! so a resumed job (a new worker, after a pause or a crash) continues the same schedule.

use serde::{Deserialize, Serialize};

/// How much of a checkpoint was evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Everything: sampled answers, judges, harmful replies, probes, in-domain loss.
    #[default]
    Full,
    /// The judge-free tier only: probe gaps and the in-domain loss.
    Probes,
    /// Nothing beyond the training loss (both budgets were spent).
    Skipped,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Full => "full",
            Scope::Probes => "probes",
            Scope::Skipped => "skipped",
        }
    }
}

/// The two budgets, as shares of training time (0 = evaluate every checkpoint in full).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Budget {
    /// Full evaluations' time over training time.
    pub eval: f64,
    /// Judge-free evaluations' time over training time.
    pub probes: f64,
}

impl Budget {
    pub fn from_policy(m: &policies::Monitor) -> Self {
        Budget {
            eval: m.eval_budget,
            probes: m.probe_budget,
        }
    }
}

/// What an earlier checkpoint's record says about the schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Past {
    pub scope: Scope,
    /// Training seconds before it (since the previous record); `None` when unknown (step 0,
    /// the first checkpoint after a restart).
    pub train_seconds: Option<f64>,
    /// The whole evaluation's seconds.
    pub eval_seconds: f64,
    /// Its judge-free part's seconds (probes and in-domain loss).
    pub probe_seconds: f64,
    /// The evaluation failed (its cost says nothing about the next one).
    pub failed: bool,
}

/// The schedule's state after a job's records.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Ledger {
    /// Training seconds since the last full evaluation …
    pub since_full: f64,
    /// … and since the last full or judge-free one.
    pub since_probes: f64,
    /// The last successful full evaluation's seconds.
    pub full_cost: Option<f64>,
    /// The last successful judge-free part's seconds.
    pub probe_cost: Option<f64>,
}

impl Ledger {
    /// The state after `records`, in step order.
    pub fn replay(records: &[Past]) -> Self {
        let mut l = Ledger::default();
        for p in records {
            l.record(p);
        }
        l
    }

    /// Takes one more record into account.
    pub fn record(&mut self, p: &Past) {
        let t = p.train_seconds.filter(|t| t.is_finite() && *t > 0.0);
        self.since_full += t.unwrap_or(0.0);
        self.since_probes += t.unwrap_or(0.0);
        match p.scope {
            Scope::Full => {
                self.since_full = 0.0;
                self.since_probes = 0.0;
                if !p.failed {
                    self.full_cost = Some(p.eval_seconds.max(0.0));
                    self.probe_cost = Some(p.probe_seconds.max(0.0));
                }
            }
            Scope::Probes => {
                self.since_probes = 0.0;
                if !p.failed {
                    self.probe_cost = Some(p.probe_seconds.max(0.0));
                }
            }
            Scope::Skipped => {}
        }
    }

    /// The scope of the next checkpoint, after `train_seconds` more of training; `last` when
    /// it is the job's final checkpoint.
    pub fn choose(&self, budget: Budget, train_seconds: f64, last: bool) -> Scope {
        if last || budget.eval <= 0.0 {
            return Scope::Full;
        }
        let t = if train_seconds.is_finite() {
            train_seconds.max(0.0)
        } else {
            0.0
        };
        let affords = |since: f64, share: f64, cost: Option<f64>| match cost {
            None => true,
            Some(c) => (since + t) * share >= c,
        };
        if affords(self.since_full, budget.eval, self.full_cost) {
            Scope::Full
        } else if budget.probes > 0.0 && affords(self.since_probes, budget.probes, self.probe_cost)
        {
            Scope::Probes
        } else {
            Scope::Skipped
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn past(scope: Scope, train: Option<f64>, eval: f64, probes: f64) -> Past {
        Past {
            scope,
            train_seconds: train,
            eval_seconds: eval,
            probe_seconds: probes,
            failed: false,
        }
    }

    const B: Budget = Budget {
        eval: 0.15,
        probes: 0.02,
    };

    #[test]
    fn zero_budget_and_the_last_checkpoint_are_always_full() {
        let l = Ledger::replay(&[past(Scope::Full, None, 100.0, 1.0)]);
        let none = Budget::default();
        assert_eq!(l.choose(none, 0.0, false), Scope::Full);
        assert_eq!(l.choose(B, 0.0, true), Scope::Full);
        assert_eq!(l.choose(B, 0.0, false), Scope::Skipped);
    }

    #[test]
    fn an_unknown_cost_is_measured() {
        assert_eq!(Ledger::default().choose(B, 0.0, false), Scope::Full);
        // Step 0 failed: its time says nothing.
        let mut failed = past(Scope::Full, None, 0.5, 0.1);
        failed.failed = true;
        assert_eq!(Ledger::replay(&[failed]).choose(B, 0.0, false), Scope::Full);
    }

    #[test]
    fn each_tier_runs_once_training_covers_its_cost_at_its_share() {
        // Full costs 15 s (probes 1 s of it): full needs 100 s of training, probes 50 s.
        let step0 = past(Scope::Full, None, 15.0, 1.0);
        let l = Ledger::replay(&[step0]);
        assert_eq!(l.choose(B, 49.0, false), Scope::Skipped);
        assert_eq!(l.choose(B, 50.0, false), Scope::Probes);
        assert_eq!(l.choose(B, 100.0, false), Scope::Full);
        // Time accumulates over skipped checkpoints, and a probe evaluation resets only its
        // own tier.
        let l = Ledger::replay(&[
            step0,
            past(Scope::Skipped, Some(30.0), 0.0, 0.0),
            past(Scope::Probes, Some(30.0), 1.0, 1.0),
        ]);
        assert_eq!((l.since_full, l.since_probes), (60.0, 0.0));
        assert_eq!(l.choose(B, 39.0, false), Scope::Skipped);
        assert_eq!(l.choose(B, 40.0, false), Scope::Full);
        // The latest cost is the estimate.
        let l = Ledger::replay(&[step0, past(Scope::Full, Some(100.0), 30.0, 2.0)]);
        assert_eq!(l.full_cost, Some(30.0));
        assert_eq!(l.choose(B, 150.0, false), Scope::Probes);
        assert_eq!(l.choose(B, 200.0, false), Scope::Full);
    }

    #[test]
    fn over_a_long_job_each_tier_stays_within_its_share() {
        // 10 s of training per checkpoint, full 12 s, probes 0.3 s of it.
        let mut records = vec![past(Scope::Full, None, 12.0, 0.3)];
        let (mut train, mut full, mut probes) = (0.0, 0.0, 0.0);
        for _ in 0..1000 {
            let l = Ledger::replay(&records);
            let scope = l.choose(B, 10.0, false);
            let (e, p) = match scope {
                Scope::Full => (12.0, 0.3),
                Scope::Probes => (0.3, 0.3),
                Scope::Skipped => (0.0, 0.0),
            };
            train += 10.0;
            match scope {
                Scope::Full => full += e,
                Scope::Probes => probes += e,
                Scope::Skipped => {}
            }
            records.push(past(scope, Some(10.0), e, p));
        }
        assert!(
            full / train <= 0.15 && full / train > 0.13,
            "{}",
            full / train
        );
        assert!(probes / train <= 0.02 && probes > 0.0, "{}", probes / train);
    }
}
