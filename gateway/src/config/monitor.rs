//! `[monitor]`: the judge that scores checkpoint answers of local jobs (an OpenAI-compatible
//! chat-completions endpoint with logprobs) and where its durable cache lives. What is
//! evaluated and what drift does is the policy's `[monitor]`; without a judge only the
//! judge-free signals are measured.
//!
//! ```toml
//! [monitor]
//! judge_base_url = "https://api.openai.com/v1"   # or the full …/chat/completions endpoint
//! judge_model = "gpt-4.1-mini"
//! judge_api_key_env = "TUNEGUARD_JUDGE_API_KEY"  # the key is read from this variable
//! judge_concurrency = 4                          # requests in flight per worker
//! judge_timeout_seconds = 60                     # per request; failures retry with backoff
//! judge_cache = "./data/judge_cache.sqlite"      # default: <storage.data_dir>/judge_cache.sqlite
//! local_judge_model = "smollm2-135m-instruct"     # a [[models]] model judging on the engine
//! reuse_baseline = true                          # share step 0 between identical jobs
//! baseline_cache = "./data/monitor_baselines"    # default: <storage.data_dir>/monitor_baselines
//! upstream_checkpoints = true                    # evaluate upstream jobs' checkpoint models
//! upstream_concurrency = 4                       # provider completions in flight per job
//! ```
//!
//! `upstream_checkpoints` is off by default: each checkpoint of an upstream job then costs
//! provider completions (every harmful request once, and with a judge every question ×
//! `samples_per_question`), billed to the gateway's upstream key.

use super::{invalid, ConfigError};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMonitor {
    judge_base_url: Option<String>,
    judge_model: Option<String>,
    judge_api_key_env: Option<String>,
    judge_concurrency: Option<usize>,
    judge_timeout_seconds: Option<u64>,
    judge_cache: Option<PathBuf>,
    local_judge_model: Option<String>,
    reuse_baseline: Option<bool>,
    baseline_cache: Option<PathBuf>,
    upstream_checkpoints: Option<bool>,
    upstream_concurrency: Option<usize>,
}

/// The judge endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeConfig {
    /// Base URL (`…/v1`) or the full `/chat/completions` endpoint, without a trailing `/`.
    pub base_url: String,
    pub model: String,
    /// The environment variable holding the API key (unset or empty: no `Authorization`).
    pub api_key_env: String,
    pub concurrency: usize,
    pub timeout: Duration,
}

/// Validated `[monitor]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorConfig {
    /// `None`: no judge; judged signals are not measured.
    pub judge: Option<JudgeConfig>,
    /// The judge cache (SQLite), keyed by judge model and filled-in prompt.
    pub judge_cache: PathBuf,
    /// `local_judge_model`: a model of `[[models]]` that judges on this gateway's engine
    /// (`monitoring::judge_engine`), alone or beside the endpoint (then both judge, their
    /// scores are averaged and their agreement recorded).
    pub local_judge: Option<String>,
    /// The step-0 cache's directory (`monitoring::baseline`); `None` with
    /// `reuse_baseline = false`: every job evaluates the base model itself.
    pub baseline_cache: Option<PathBuf>,
    /// Upstream jobs: evaluate the provider's checkpoint models through its chat completions
    /// (`monitoring::upstream`).
    pub upstream_checkpoints: bool,
    /// Provider completions in flight per evaluation.
    pub upstream_concurrency: usize,
}

/// Default `judge_api_key_env` (the variable `tuneguard persona` reads too).
pub const DEFAULT_JUDGE_API_KEY_ENV: &str = "TUNEGUARD_JUDGE_API_KEY";

impl MonitorConfig {
    /// No judge; the cache in `data_dir`.
    pub fn without_judge(data_dir: &Path) -> Self {
        MonitorConfig {
            judge: None,
            judge_cache: data_dir.join("judge_cache.sqlite"),
            local_judge: None,
            baseline_cache: Some(data_dir.join("monitor_baselines")),
            upstream_checkpoints: false,
            upstream_concurrency: 4,
        }
    }
}

pub(super) fn validate(raw: RawMonitor, data_dir: &Path) -> Result<MonitorConfig, ConfigError> {
    let judge_cache = raw
        .judge_cache
        .unwrap_or_else(|| data_dir.join("judge_cache.sqlite"));
    let judge = match (raw.judge_base_url, raw.judge_model) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(invalid(
                "monitor.judge_model",
                "required with monitor.judge_base_url",
            ))
        }
        (None, Some(_)) => {
            return Err(invalid(
                "monitor.judge_base_url",
                "required with monitor.judge_model",
            ))
        }
        (Some(url), Some(model)) => {
            let url = url.trim_end_matches('/').to_string();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(
                    "monitor.judge_base_url",
                    "must start with http:// or https://",
                ));
            }
            if model.trim().is_empty() {
                return Err(invalid("monitor.judge_model", "must not be empty"));
            }
            let concurrency = match raw.judge_concurrency {
                Some(0) => {
                    return Err(invalid(
                        "monitor.judge_concurrency",
                        "must be greater than 0",
                    ))
                }
                Some(n) => n,
                None => 4,
            };
            let timeout = match raw.judge_timeout_seconds {
                Some(0) => {
                    return Err(invalid(
                        "monitor.judge_timeout_seconds",
                        "must be greater than 0",
                    ))
                }
                Some(s) => Duration::from_secs(s),
                None => Duration::from_secs(60),
            };
            Some(JudgeConfig {
                base_url: url,
                model,
                api_key_env: raw
                    .judge_api_key_env
                    .unwrap_or_else(|| DEFAULT_JUDGE_API_KEY_ENV.to_string()),
                concurrency,
                timeout,
            })
        }
    };
    let local_judge = match raw.local_judge_model {
        Some(m) if m.trim().is_empty() => {
            return Err(invalid("monitor.local_judge_model", "must not be empty"))
        }
        other => other,
    };
    if raw.reuse_baseline == Some(false) && raw.baseline_cache.is_some() {
        return Err(invalid(
            "monitor.baseline_cache",
            "set while monitor.reuse_baseline = false; remove one of the two",
        ));
    }
    let baseline_cache = match raw.reuse_baseline {
        Some(false) => None,
        _ => Some(
            raw.baseline_cache
                .unwrap_or_else(|| data_dir.join("monitor_baselines")),
        ),
    };
    let upstream_concurrency = match raw.upstream_concurrency {
        Some(0) => {
            return Err(invalid(
                "monitor.upstream_concurrency",
                "must be greater than 0",
            ))
        }
        Some(n) => n,
        None => 4,
    };
    Ok(MonitorConfig {
        judge,
        judge_cache,
        local_judge,
        baseline_cache,
        upstream_checkpoints: raw.upstream_checkpoints.unwrap_or(false),
        upstream_concurrency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(url: Option<&str>, model: Option<&str>) -> RawMonitor {
        RawMonitor {
            judge_base_url: url.map(str::to_string),
            judge_model: model.map(str::to_string),
            ..RawMonitor::default()
        }
    }

    #[test]
    fn a_judge_needs_url_and_model_and_gets_defaults() {
        let d = Path::new("/data");
        let none = validate(raw(None, None), d).unwrap();
        assert_eq!(none, MonitorConfig::without_judge(d));
        let j = validate(raw(Some("http://127.0.0.1:9/v1/"), Some("judge")), d)
            .unwrap()
            .judge
            .unwrap();
        assert_eq!(j.base_url, "http://127.0.0.1:9/v1");
        assert_eq!((j.concurrency, j.timeout.as_secs()), (4, 60));
        assert_eq!(j.api_key_env, DEFAULT_JUDGE_API_KEY_ENV);
        let e = validate(raw(Some("http://x"), None), d).unwrap_err();
        assert!(e.to_string().contains("monitor.judge_model"), "{e}");
        let e = validate(raw(Some("ftp://x"), Some("m")), d).unwrap_err();
        assert!(e.to_string().contains("monitor.judge_base_url"), "{e}");
    }

    #[test]
    fn upstream_monitoring_is_opt_in_and_needs_a_positive_concurrency() {
        let d = Path::new("/data");
        let on = RawMonitor {
            upstream_checkpoints: Some(true),
            upstream_concurrency: Some(8),
            ..RawMonitor::default()
        };
        let c = validate(on, d).unwrap();
        assert!(c.upstream_checkpoints && c.upstream_concurrency == 8);
        let zero = RawMonitor {
            upstream_concurrency: Some(0),
            ..RawMonitor::default()
        };
        let e = validate(zero, d).unwrap_err();
        assert!(
            e.to_string().contains("monitor.upstream_concurrency"),
            "{e}"
        );
    }
}
