//! Prometheus metrics, registered on a registry passed in (never global). Every label value
//! comes from a bounded set: route templates, HTTP status codes, job statuses, and reason
//! codes folded to `other` past a fixed cap.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
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
}
