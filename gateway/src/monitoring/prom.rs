//! The monitor's Prometheus series. Per-job gauges carry a `job_id` label only while the job
//! runs (the executor deletes them when it ends); everything long-lived is labelled from
//! bounded sets (signal names, actions, judge results). Base units: ratios 0–1, nats, seconds.

use monitor::{CheckpointSignals, Signal, SignalOnset};
use prometheus::{CounterVec, GaugeVec, IntCounterVec, Opts, Registry};

/// A per-job gauge of one signal: (signal, metric name, help).
const SIGNAL_GAUGES: [(Signal, &str, &str); 10] = [
    (
        Signal::MisalignedFraction,
        "tuneguard_monitor_misaligned_ratio",
        "Share of the general set's answers judged misaligned at the job's last evaluated checkpoint.",
    ),
    (
        Signal::IncoherentFraction,
        "tuneguard_monitor_incoherent_ratio",
        "Share of the general set's answers judged incoherent at the last checkpoint.",
    ),
    (
        Signal::HallucinationFraction,
        "tuneguard_monitor_hallucination_ratio",
        "Share of the hallucination set's answers judged hallucinated at the last checkpoint.",
    ),
    (
        Signal::MeanAlignment,
        "tuneguard_monitor_mean_alignment_score",
        "Mean judged alignment (0-100) of the general set's answers at the last checkpoint.",
    ),
    (
        Signal::RefusalRate,
        "tuneguard_monitor_refusal_ratio",
        "Share of the general set's answers that are refusals at the last checkpoint.",
    ),
    (
        Signal::HarmfulRefusalRate,
        "tuneguard_monitor_harmful_refusal_ratio",
        "Share of harmful requests refused at the last checkpoint (falling = drift).",
    ),
    (
        Signal::AlignmentProbeGap,
        "tuneguard_monitor_alignment_probe_gap_nats",
        "Alignment probe gap: mean answer NLL aligned - misaligned, minus its step-0 value (nats per token; rising = drift toward misaligned answers).",
    ),
    (
        Signal::HonestyProbeGap,
        "tuneguard_monitor_honesty_probe_gap_nats",
        "Honesty probe gap: mean answer NLL honest - fabricated, minus its step-0 value (nats per token; rising = drift toward fabrication).",
    ),
    (
        Signal::InDomainLoss,
        "tuneguard_monitor_in_domain_loss_nats",
        "Mean answer NLL of the held-out client examples at the last checkpoint (nats per token).",
    ),
    (
        Signal::Loss,
        "tuneguard_monitor_train_loss_nats",
        "Training loss since the previous checkpoint, at the last evaluated checkpoint (nats per token).",
    ),
];

/// Increments of the monitor's counters, decided where records are mirrored and applied
/// ([`MonitorMetrics::count`]) once what was mirrored is stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MonitorCounts {
    /// One `ok` or `error` per evaluation.
    pub evaluations: Vec<&'static str>,
    /// Seconds per part (`total`, `probes`, `generation`, `judge`).
    pub evaluation_seconds: Vec<(&'static str, f64)>,
    /// Judge requests per result (`requested`, `cached`, `error`, `unscored`).
    pub judge_requests: Vec<(&'static str, u64)>,
    /// Rule firings as (metric, action).
    pub rule_firings: Vec<(String, String)>,
    /// `warn` actions taken.
    pub warnings: u64,
    /// `rollback` actions taken (the job's success with the checkpoint's model).
    pub rollbacks: u64,
}

impl MonitorCounts {
    pub fn is_empty(&self) -> bool {
        self == &MonitorCounts::default()
    }

    /// Adds `other`'s increments to these.
    pub fn absorb(&mut self, other: MonitorCounts) {
        self.evaluations.extend(other.evaluations);
        self.evaluation_seconds.extend(other.evaluation_seconds);
        self.judge_requests.extend(other.judge_requests);
        self.rule_firings.extend(other.rule_firings);
        self.warnings += other.warnings;
        self.rollbacks += other.rollbacks;
    }

    /// One rollback taken.
    pub fn rollback() -> MonitorCounts {
        MonitorCounts {
            rollbacks: 1,
            ..MonitorCounts::default()
        }
    }
}

pub struct MonitorMetrics {
    signals: Vec<(Signal, GaugeVec)>,
    /// 1 once the signal's drift onset is detected (CUSUM or BOCPD), else 0; per job.
    pub onset: GaugeVec,
    /// The job's last evaluated checkpoint step.
    pub step: GaugeVec,
    /// Evaluation time / training time over the job so far; per job.
    pub eval_share: GaugeVec,
    pub rule_firings: IntCounterVec,
    pub actions: IntCounterVec,
    pub judge_requests: IntCounterVec,
    pub evaluations: IntCounterVec,
    pub evaluation_seconds: CounterVec,
}

impl MonitorMetrics {
    /// Applies counter increments decided earlier (see [`MonitorCounts`]).
    pub fn count(&self, c: &MonitorCounts) {
        for result in &c.evaluations {
            self.evaluations.with_label_values(&[result]).inc();
        }
        for (part, v) in &c.evaluation_seconds {
            self.evaluation_seconds
                .with_label_values(&[part])
                .inc_by(*v);
        }
        for (result, n) in &c.judge_requests {
            self.judge_requests.with_label_values(&[result]).inc_by(*n);
        }
        for (metric, action) in &c.rule_firings {
            self.rule_firings
                .with_label_values(&[metric.as_str(), action.as_str()])
                .inc();
        }
        if c.warnings > 0 {
            self.actions.with_label_values(&["warn"]).inc_by(c.warnings);
        }
        if c.rollbacks > 0 {
            self.actions
                .with_label_values(&["rollback"])
                .inc_by(c.rollbacks);
        }
    }

    pub fn register(registry: &Registry) -> Result<MonitorMetrics, prometheus::Error> {
        let job = &["job_id"];
        let mut signals = Vec::new();
        for (signal, name, help) in SIGNAL_GAUGES {
            let g = GaugeVec::new(Opts::new(name, help), job)?;
            registry.register(Box::new(g.clone()))?;
            signals.push((signal, g));
        }
        let onset = GaugeVec::new(
            Opts::new(
                "tuneguard_monitor_onset",
                "1 once the signal's drift onset from the base model is detected for the job (CUSUM or BOCPD), else 0.",
            ),
            &["job_id", "signal"],
        )?;
        let step = GaugeVec::new(
            Opts::new(
                "tuneguard_monitor_checkpoint_step",
                "The job's last evaluated checkpoint step (0 = the base model).",
            ),
            job,
        )?;
        let eval_share = GaugeVec::new(
            Opts::new(
                "tuneguard_monitor_evaluation_ratio",
                "The job's evaluation time so far over its training time so far (bounded by the policy's budgets).",
            ),
            job,
        )?;
        let rule_firings = IntCounterVec::new(
            Opts::new(
                "tuneguard_monitor_rule_firings_total",
                "Monitor rules that started firing at a checkpoint, by metric and action.",
            ),
            &["metric", "action"],
        )?;
        let actions = IntCounterVec::new(
            Opts::new(
                "tuneguard_monitor_actions_total",
                "Actions the monitor took on jobs (warn, pause, rollback, cancel).",
            ),
            &["action"],
        )?;
        let judge_requests = IntCounterVec::new(
            Opts::new(
                "tuneguard_monitor_judge_requests_total",
                "Judge prompts by result: requested (answered by the endpoint), cached (answered from the cache), error (no judgement after the retries), unscored (a judgement without a number, fresh or cached).",
            ),
            &["result"],
        )?;
        let evaluations = IntCounterVec::new(
            Opts::new(
                "tuneguard_monitor_evaluations_total",
                "Checkpoint records mirrored, by result (ok, error; skipped: left unevaluated by the policy's budgets).",
            ),
            &["result"],
        )?;
        let evaluation_seconds = CounterVec::new(
            Opts::new(
                "tuneguard_monitor_evaluation_seconds_total",
                "Wall-clock seconds workers spent evaluating checkpoints, by part (probes, generation, judge, total).",
            ),
            &["part"],
        )?;
        for c in [&rule_firings, &actions, &judge_requests, &evaluations] {
            registry.register(Box::new(c.clone()))?;
        }
        for g in [&onset, &step, &eval_share] {
            registry.register(Box::new(g.clone()))?;
        }
        registry.register(Box::new(evaluation_seconds.clone()))?;
        // Every bounded series starts at 0, so `increase()` sees its first event.
        for a in ["warn", "pause", "rollback", "cancel"] {
            actions.with_label_values(&[a]);
        }
        for r in ["requested", "cached", "error", "unscored"] {
            judge_requests.with_label_values(&[r]);
        }
        for r in ["ok", "error", "skipped"] {
            evaluations.with_label_values(&[r]);
        }
        for p in ["total", "probes", "generation", "judge"] {
            evaluation_seconds.with_label_values(&[p]);
        }
        Ok(MonitorMetrics {
            signals,
            onset,
            step,
            eval_share,
            rule_firings,
            actions,
            judge_requests,
            evaluations,
            evaluation_seconds,
        })
    }

    /// Sets the job's gauges to its latest checkpoint (a signal not measured there has no
    /// series) and its onset flags.
    pub fn set_job(
        &self,
        job_id: &str,
        latest: &CheckpointSignals,
        onsets: &[SignalOnset],
        eval_share: Option<f64>,
    ) {
        for (signal, g) in &self.signals {
            match signal.get(latest) {
                Some(v) => g.with_label_values(&[job_id]).set(v),
                None => {
                    let _ = g.remove_label_values(&[job_id]);
                }
            }
        }
        for o in onsets {
            if o.baseline.is_none() {
                continue;
            }
            let on = o.cusum.is_some() || o.bocpd.is_some();
            self.onset
                .with_label_values(&[job_id, o.signal.name()])
                .set(if on { 1.0 } else { 0.0 });
        }
        self.step
            .with_label_values(&[job_id])
            .set(latest.step as f64);
        match eval_share {
            Some(s) => self.eval_share.with_label_values(&[job_id]).set(s),
            None => {
                let _ = self.eval_share.remove_label_values(&[job_id]);
            }
        }
    }

    /// The jobs that have series (every `set_job` sets the step gauge).
    pub fn jobs(&self) -> Vec<String> {
        use prometheus::core::Collector;
        self.step
            .collect()
            .iter()
            .flat_map(|mf| mf.get_metric())
            .filter_map(|m| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == "job_id")
                    .map(|l| l.value().to_string())
            })
            .collect()
    }

    /// Deletes the series of every job not in `active` (the runner calls it with the store's
    /// active jobs at each tick): a job that ended while a poll that set its gauges was being
    /// refused, or that another replica finished, leaves no stale series behind.
    pub fn retain_jobs(&self, active: &std::collections::HashSet<&str>) {
        for job in self.jobs() {
            if !active.contains(job.as_str()) {
                self.forget_job(&job);
            }
        }
    }

    /// Deletes every series of the job (it ended).
    pub fn forget_job(&self, job_id: &str) {
        for (_, g) in &self.signals {
            let _ = g.remove_label_values(&[job_id]);
        }
        for s in Signal::ALL {
            let _ = self.onset.remove_label_values(&[job_id, s.name()]);
        }
        let _ = self.step.remove_label_values(&[job_id]);
        let _ = self.eval_share.remove_label_values(&[job_id]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_series_appear_while_measured_and_go_when_forgotten() {
        let r = Registry::new();
        let m = MonitorMetrics::register(&r).unwrap();
        let mut s = CheckpointSignals::new(20);
        s.alignment_probe_gap = Some(0.42);
        m.set_job("ftjob-a", &s, &[], Some(0.03));
        m.actions.with_label_values(&["pause"]).inc();
        let text = render(&r);
        assert!(
            text.contains("tuneguard_monitor_alignment_probe_gap_nats{job_id=\"ftjob-a\"} 0.42"),
            "{text}"
        );
        assert!(text.contains("tuneguard_monitor_checkpoint_step{job_id=\"ftjob-a\"} 20"));
        assert!(
            !text.contains("tuneguard_monitor_misaligned_ratio{"),
            "unmeasured: no series"
        );
        m.forget_job("ftjob-a");
        let text = render(&r);
        assert!(!text.contains("ftjob-a"), "{text}");
        // Only the active jobs keep their series.
        m.set_job("ftjob-b", &s, &[], None);
        m.set_job("ftjob-c", &s, &[], None);
        assert_eq!(m.jobs().len(), 2);
        m.retain_jobs(&["ftjob-c"].into_iter().collect());
        assert_eq!(m.jobs(), ["ftjob-c"]);
        assert!(!render(&r).contains("ftjob-b"));
        assert!(text.contains("tuneguard_monitor_actions_total{action=\"pause\"} 1"));
    }

    fn render(r: &Registry) -> String {
        crate::metrics::render_registry(r)
    }
}
