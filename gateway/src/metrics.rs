//! Prometheus metrics, registered on a registry passed in (never global). Every label value
//! comes from a bounded set: route templates, HTTP status codes, job statuses, and reason
//! codes folded to `other` past a fixed cap.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::HashSet;
use std::sync::Mutex;

const MAX_REASONS: usize = 64;

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_latency: HistogramVec,
    pub upload_bytes: IntCounterVec,
    pub job_transitions: IntCounterVec,
    pub screening_rejections: IntCounterVec,
    pub policy_reloads: IntCounterVec,
    pub upstream_errors: IntCounterVec,
    pub proxied_requests: IntCounter,
    pub jobs: IntGaugeVec,
    reasons_seen: Mutex<HashSet<String>>,
    /// Interleaving score-cache lookups, `result` = `hit` | `miss` (one per (pool item, model)).
    pub score_cache_lookups: IntCounterVec,
    /// The checkpoint monitor's gauges and counters.
    pub monitor: crate::monitoring::prom::MonitorMetrics,
    /// Tokens trained on by local jobs (each optimizer step counted once, when mirrored).
    pub local_trained_tokens: IntCounter,
    /// Optimizer steps of local jobs (each counted once, when mirrored).
    pub local_optimizer_steps: IntCounter,
    /// Wall-clock seconds of one optimizer step of a local job, as the trainer measured it.
    pub local_step_duration: Histogram,
    /// Local jobs waiting for a worker (refreshed on each scrape).
    pub local_queue_depth: IntGauge,
    /// Seconds from a local job's creation to its first mirrored optimizer step.
    pub local_queue_wait: Histogram,
    /// Workers by `state` = `busy` (live leases) | `idle` (refreshed on each scrape).
    pub local_workers: IntGaugeVec,
    /// Jobs taken over from a worker whose lease expired: the store's running total, caught
    /// up on each scrape.
    pub local_lease_takeovers: IntCounter,
    /// Served chat completions by `model_kind` = `base` | `fine_tuned`.
    pub chat_completion_duration: HistogramVec,
    /// Tokens of served chat completions by `kind` = `prompt` | `completion`.
    pub chat_completion_tokens: IntCounterVec,
}

impl Metrics {
    pub fn new(registry: Registry) -> Result<Metrics, prometheus::Error> {
        let http_requests = IntCounterVec::new(
            Opts::new(
                "tuneguard_http_requests_total",
                "HTTP requests by route template, method and status.",
            ),
            &["route", "method", "status"],
        )?;
        let http_latency = HistogramVec::new(
            HistogramOpts::new(
                "tuneguard_http_request_duration_seconds",
                "HTTP request latency by route template.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            &["route", "method"],
        )?;
        let upload_bytes = IntCounterVec::new(
            Opts::new(
                "tuneguard_upload_bytes_total",
                "Bytes received in file uploads and upload parts.",
            ),
            &["kind"],
        )?;
        let job_transitions = IntCounterVec::new(
            Opts::new(
                "tuneguard_job_transitions_total",
                "Jobs entering each status.",
            ),
            &["status"],
        )?;
        let screening_rejections = IntCounterVec::new(
            Opts::new(
                "tuneguard_screening_rejections_total",
                "Training files rejected by screening, by reason code.",
            ),
            &["reason"],
        )?;
        let policy_reloads = IntCounterVec::new(
            Opts::new(
                "tuneguard_policy_reloads_total",
                "Policy directory reloads by result.",
            ),
            &["result"],
        )?;
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "tuneguard_upstream_errors_total",
                "Errors talking to the upstream provider, by kind.",
            ),
            &["kind"],
        )?;
        let proxied_requests = IntCounter::new(
            "tuneguard_proxied_requests_total",
            "Requests proxied to the upstream provider.",
        )?;
        let jobs = IntGaugeVec::new(
            Opts::new("tuneguard_jobs", "Fine-tuning jobs by current status."),
            &["status"],
        )?;
        registry.register(Box::new(jobs.clone()))?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_latency.clone()))?;
        registry.register(Box::new(upload_bytes.clone()))?;
        registry.register(Box::new(job_transitions.clone()))?;
        registry.register(Box::new(screening_rejections.clone()))?;
        registry.register(Box::new(policy_reloads.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(proxied_requests.clone()))?;
        let score_cache_lookups = IntCounterVec::new(
            Opts::new(
                "tuneguard_score_cache_lookups_total",
                "Interleaving score-cache lookups per (pool item, model): hit = read from the cache, miss = scored by the engine.",
            ),
            &["result"],
        )?;
        registry.register(Box::new(score_cache_lookups.clone()))?;
        let monitor = crate::monitoring::prom::MonitorMetrics::register(&registry)?;
        let local_trained_tokens = IntCounter::new(
            "tuneguard_local_trained_tokens_total",
            "Tokens local jobs trained on (non-pad tokens through the model, summed over optimizer steps as trained_tokens is).",
        )?;
        let local_optimizer_steps = IntCounter::new(
            "tuneguard_local_optimizer_steps_total",
            "Optimizer steps local jobs completed (a step a resumed job trains again is counted once).",
        )?;
        let local_step_duration = Histogram::with_opts(
            HistogramOpts::new(
                "tuneguard_local_step_duration_seconds",
                "Wall-clock time of one optimizer step of a local job, as the trainer measured it.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
                300.0,
            ]),
        )?;
        let local_queue_depth = IntGauge::new(
            "tuneguard_local_queue_depth",
            "Local jobs waiting for a worker: running on the local backend with no live lease.",
        )?;
        let local_queue_wait = Histogram::with_opts(
            HistogramOpts::new(
                "tuneguard_local_queue_wait_seconds",
                "Time from a local job's creation to its first optimizer step observed by the gateway.",
            )
            .buckets(vec![
                1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0,
                86400.0,
            ]),
        )?;
        let local_workers = IntGaugeVec::new(
            Opts::new(
                "tuneguard_local_workers",
                "Local workers by state: busy = live leases (any worker process), idle = the workers serve supervises ([local] workers) holding none.",
            ),
            &["state"],
        )?;
        let local_lease_takeovers = IntCounter::new(
            "tuneguard_local_lease_takeovers_total",
            "Local jobs a worker took over from another whose lease had expired (it died or hung), counted in the store by every process.",
        )?;
        let chat_completion_duration = HistogramVec::new(
            HistogramOpts::new(
                "tuneguard_chat_completion_duration_seconds",
                "Time to serve a chat completion from a local model (model loading and generation), by model kind.",
            )
            .buckets(vec![
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
            ]),
            &["model_kind"],
        )?;
        let chat_completion_tokens = IntCounterVec::new(
            Opts::new(
                "tuneguard_chat_completion_tokens_total",
                "Tokens of chat completions served from local models, by kind (prompt or completion).",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(local_trained_tokens.clone()))?;
        registry.register(Box::new(local_optimizer_steps.clone()))?;
        registry.register(Box::new(local_step_duration.clone()))?;
        registry.register(Box::new(local_queue_depth.clone()))?;
        registry.register(Box::new(local_queue_wait.clone()))?;
        registry.register(Box::new(local_workers.clone()))?;
        registry.register(Box::new(local_lease_takeovers.clone()))?;
        registry.register(Box::new(chat_completion_duration.clone()))?;
        registry.register(Box::new(chat_completion_tokens.clone()))?;
        // Every label value exists from the start (a zero series, not a missing one).
        for kind in ["base", "fine_tuned"] {
            chat_completion_duration.with_label_values(&[kind]);
        }
        for kind in ["prompt", "completion"] {
            chat_completion_tokens.with_label_values(&[kind]);
        }
        for state in ["busy", "idle"] {
            local_workers.with_label_values(&[state]);
        }
        Ok(Metrics {
            registry,
            http_requests,
            http_latency,
            upload_bytes,
            job_transitions,
            screening_rejections,
            policy_reloads,
            upstream_errors,
            proxied_requests,
            jobs,
            reasons_seen: Mutex::new(HashSet::new()),
            score_cache_lookups,
            monitor,
            local_trained_tokens,
            local_optimizer_steps,
            local_step_duration,
            local_queue_depth,
            local_queue_wait,
            local_workers,
            local_lease_takeovers,
            chat_completion_duration,
            chat_completion_tokens,
        })
    }

    /// Folds a reason/kind code into a bounded label value: `[a-z0-9_]{1,48}`, at most
    /// `MAX_REASONS` distinct values, anything else `other`.
    pub fn bounded(&self, code: &str) -> String {
        let ok = !code.is_empty()
            && code.len() <= 48
            && code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return "other".to_string();
        }
        let Ok(mut seen) = self.reasons_seen.lock() else {
            return "other".to_string();
        };
        if seen.contains(code) || seen.len() < MAX_REASONS {
            seen.insert(code.to_string());
            code.to_string()
        } else {
            "other".to_string()
        }
    }

    pub fn screening_rejected(&self, code: &str) {
        let label = self.bounded(code);
        self.screening_rejections
            .with_label_values(&[label.as_str()])
            .inc();
    }

    pub fn upstream_error(&self, kind: &str) {
        let label = self.bounded(kind);
        self.upstream_errors
            .with_label_values(&[label.as_str()])
            .inc();
    }

    pub fn policy_reload_ok(&self) {
        self.policy_reloads.with_label_values(&["ok"]).inc();
    }

    pub fn policy_reload_failed(&self) {
        self.policy_reloads.with_label_values(&["failed"]).inc();
    }

    /// Sets the current number of jobs per status (refreshed on each scrape).
    pub fn set_jobs(&self, counts: &[(crate::store::JobStatus, u64)]) {
        for status in crate::store::JobStatus::ALL {
            let n = counts
                .iter()
                .find(|(s, _)| *s == status)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            self.jobs
                .with_label_values(&[status.as_str()])
                .set(n as i64);
        }
    }

    pub fn job_entered(&self, status: crate::store::JobStatus) {
        self.job_transitions
            .with_label_values(&[status.as_str()])
            .inc();
    }

    /// Counts one selection's score-cache hits and misses.
    pub fn score_cache_counted(&self, hits: u64, misses: u64) {
        self.score_cache_lookups
            .with_label_values(&["hit"])
            .inc_by(hits);
        self.score_cache_lookups
            .with_label_values(&["miss"])
            .inc_by(misses);
    }

    /// Counts what one poll of a local job mirrored (called once its write is stored).
    pub fn local_progress(&self, p: &crate::jobs::seams::Progress) {
        self.local_optimizer_steps.inc_by(p.steps);
        self.local_trained_tokens.inc_by(p.tokens);
        for s in &p.step_seconds {
            self.local_step_duration.observe(*s);
        }
        if let Some(w) = p.queue_wait_seconds {
            self.local_queue_wait.observe(w);
        }
    }

    /// Sets the local queue's gauges: jobs waiting, workers busy (live leases) and idle (the
    /// `supervised` workers not holding one).
    pub fn set_local_queue(&self, queue: crate::store::LocalQueue, supervised: u64) {
        self.local_queue_depth.set(queue.waiting as i64);
        self.local_workers
            .with_label_values(&["busy"])
            .set(queue.leased as i64);
        self.local_workers
            .with_label_values(&["idle"])
            .set(supervised.saturating_sub(queue.leased) as i64);
        // The store's total only grows; the counter catches up to it (from 0 after a restart
        // it jumps to the total once, which `increase()` reads as a counter reset).
        let seen = self.local_lease_takeovers.get();
        if queue.takeovers > seen {
            self.local_lease_takeovers.inc_by(queue.takeovers - seen);
        }
    }

    /// Counts one served chat completion.
    pub fn chat_completion(&self, fine_tuned: bool, seconds: f64, prompt: u64, completion: u64) {
        let kind = if fine_tuned { "fine_tuned" } else { "base" };
        self.chat_completion_duration
            .with_label_values(&[kind])
            .observe(seconds);
        self.chat_completion_tokens
            .with_label_values(&["prompt"])
            .inc_by(prompt);
        self.chat_completion_tokens
            .with_label_values(&["completion"])
            .inc_by(completion);
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        render_registry(&self.registry)
    }
}

/// The text exposition of `registry`.
pub fn render_registry(registry: &Registry) -> String {
    let mut buf = Vec::new();
    let encoder = TextEncoder::new();
    if encoder.encode(&registry.gather(), &mut buf).is_err() {
        return String::new();
    }
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        let m = Metrics::new(Registry::new()).unwrap();
        assert_eq!(m.bounded("too_few_examples"), "too_few_examples");
        assert_eq!(m.bounded("Has Spaces"), "other");
        for i in 0..(MAX_REASONS + 10) {
            m.screening_rejected(&format!("r{i}"));
        }
        let text = m.render();
        // "too_few_examples" took one of the MAX_REASONS slots, so 11 fold into `other`
        assert!(
            text.contains("tuneguard_screening_rejections_total{reason=\"other\"} 11"),
            "{text}"
        );
        m.job_entered(crate::store::JobStatus::Failed);
        assert!(m
            .render()
            .contains("tuneguard_job_transitions_total{status=\"failed\"} 1"));
    }

    #[test]
    fn local_training_and_chat_series() {
        let m = Metrics::new(Registry::new()).unwrap();
        let zero = m.render();
        for series in [
            "tuneguard_local_optimizer_steps_total 0",
            "tuneguard_local_trained_tokens_total 0",
            "tuneguard_local_step_duration_seconds_count 0",
            "tuneguard_local_queue_wait_seconds_count 0",
            "tuneguard_chat_completion_duration_seconds_count{model_kind=\"fine_tuned\"} 0",
            "tuneguard_chat_completion_tokens_total{kind=\"prompt\"} 0",
            "tuneguard_local_workers{state=\"idle\"} 0",
            "tuneguard_local_lease_takeovers_total 0",
        ] {
            assert!(zero.contains(series), "{series} in\n{zero}");
        }
        m.local_progress(&crate::jobs::seams::Progress {
            estimated_finish: Some(1),
            steps: 3,
            tokens: 120,
            step_seconds: vec![0.5, 0.7, 0.6],
            queue_wait_seconds: Some(12.0),
        });
        m.set_local_queue(
            crate::store::LocalQueue {
                waiting: 4,
                leased: 3,
                takeovers: 2,
            },
            2,
        );
        // A scrape that reads the same total adds nothing.
        let again = crate::store::LocalQueue {
            waiting: 4,
            leased: 3,
            takeovers: 2,
        };
        m.set_local_queue(again, 2);
        m.chat_completion(true, 0.2, 10, 5);
        let text = m.render();
        for series in [
            "tuneguard_local_optimizer_steps_total 3",
            "tuneguard_local_trained_tokens_total 120",
            "tuneguard_local_step_duration_seconds_count 3",
            "tuneguard_local_queue_wait_seconds_count 1",
            "tuneguard_local_queue_depth 4",
            // An external worker holds a lease too: busy counts it, idle never goes below 0.
            "tuneguard_local_workers{state=\"busy\"} 3",
            "tuneguard_local_workers{state=\"idle\"} 0",
            "tuneguard_chat_completion_duration_seconds_count{model_kind=\"fine_tuned\"} 1",
            "tuneguard_chat_completion_duration_seconds_count{model_kind=\"base\"} 0",
            "tuneguard_chat_completion_tokens_total{kind=\"prompt\"} 10",
            "tuneguard_chat_completion_tokens_total{kind=\"completion\"} 5",
            "tuneguard_local_lease_takeovers_total 2",
        ] {
            assert!(text.contains(series), "{series} in\n{text}");
        }
    }
}
