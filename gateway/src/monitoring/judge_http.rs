//! The monitor's judge over an OpenAI-compatible chat-completions endpoint (`[monitor]` in the
//! gateway config): one completion token with `top_logprobs` 20, scored by the monitor crate's
//! aggregation (`Σ k·p_k / Σ p_k` over integer tokens 0–100, none below 0.25 mass). Requests
//! run `judge_concurrency` at a time on a private tokio runtime (the worker is synchronous);
//! connection errors, timeouts, 408, 429 and 5xx are retried with exponential backoff (or the
//! server's `retry-after`); every judgement is cached durably ([`JudgeCache`]).

use super::judge_cache::JudgeCache;
use super::record::JudgeStats;
use crate::config::JudgeConfig;
use crate::persona_cmd::judge::completions_url;
use futures::StreamExt;
use monitor::judge::{score_from_top_logprobs, top_logprobs_from_chat_completion, TOP_LOGPROBS};
use monitor::{Judge, JudgeError};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::time::Duration;

/// Attempts per judge prompt.
pub const ATTEMPTS: u32 = 4;
/// First retry delay; doubled on each further retry.
pub const BACKOFF: Duration = Duration::from_millis(250);
/// Longest `retry-after` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

pub struct HttpJudge {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    url: String,
    model: String,
    concurrency: usize,
    cache: Option<JudgeCache>,
    stats: RefCell<JudgeStats>,
}

impl HttpJudge {
    /// A judge for `config`, its key read from `config.api_key_env`, cached in `cache`.
    pub fn new(config: &JudgeConfig, cache: Option<JudgeCache>) -> Result<HttpJudge, String> {
        let mut headers = HeaderMap::new();
        if let Some(key) = std::env::var(&config.api_key_env)
            .ok()
            .filter(|k| !k.is_empty())
        {
            let mut v = HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|_| format!("{} is not a valid header value", config.api_key_env))?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(10))
            .timeout(config.timeout)
            .build()
            .map_err(|e| format!("building the judge's HTTP client: {e}"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting the judge's runtime: {e}"))?;
        Ok(HttpJudge {
            rt,
            http,
            url: completions_url(&config.base_url),
            model: config.model.clone(),
            concurrency: config.concurrency.max(1),
            cache,
            stats: RefCell::new(JudgeStats {
                model: config.model.clone(),
                ..JudgeStats::default()
            }),
        })
    }

    /// The counts since the last call (and resets them).
    pub fn take_stats(&self) -> JudgeStats {
        JudgeStats::take(&self.stats)
    }

    fn body(&self, prompt: &str) -> Value {
        json!({
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": true,
            "top_logprobs": TOP_LOGPROBS,
            "seed": 0,
        })
    }

    async fn ask(&self, prompt: &str) -> Result<Option<f64>, JudgeError> {
        let unavailable = |message: String| JudgeError::Unavailable {
            judge: self.model.clone(),
            message,
        };
        let body = self.body(prompt);
        let mut delay = BACKOFF;
        for attempt in 1..=ATTEMPTS {
            let last = attempt == ATTEMPTS;
            let resp = match self.http.post(&self.url).json(&body).send().await {
                Ok(r) => r,
                Err(e) if !last => {
                    tracing::debug!(error = %e, attempt, "judge request failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    continue;
                }
                Err(e) => {
                    return Err(unavailable(format!(
                        "{}: {e} (after {attempt} attempts)",
                        self.url
                    )))
                }
            };
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
            let text = resp.text().await.unwrap_or_default();
            if status.is_success() {
                let v: Value =
                    serde_json::from_str(&text).map_err(|e| JudgeError::BadResponse {
                        judge: self.model.clone(),
                        message: format!("not JSON ({e})"),
                    })?;
                let top = top_logprobs_from_chat_completion(&v, &self.model)?;
                return Ok(score_from_top_logprobs(&top));
            }
            let transient =
                status.as_u16() == 408 || status.as_u16() == 429 || status.is_server_error();
            if !transient || last {
                let snippet: String = text.chars().take(200).collect();
                return Err(unavailable(format!(
                    "{}: HTTP {status} after {attempt} attempt(s): {snippet}",
                    self.url
                )));
            }
            tokio::time::sleep(retry_after.unwrap_or(delay)).await;
            delay *= 2;
        }
        unreachable!("the last attempt returns")
    }
}

impl Judge for HttpJudge {
    fn name(&self) -> &str {
        &self.model
    }

    fn score(&self, prompt: &str) -> Result<Option<f64>, JudgeError> {
        self.score_all(&[prompt.to_string()])
            .pop()
            .unwrap_or(Ok(None))
    }

    fn score_all(&self, prompts: &[String]) -> Vec<Result<Option<f64>, JudgeError>> {
        let mut out: Vec<Option<Result<Option<f64>, JudgeError>>> = vec![None; prompts.len()];
        let mut todo = Vec::new();
        for (i, p) in prompts.iter().enumerate() {
            match self.cache.as_ref().map(|c| c.get(&self.model, p)) {
                Some(Ok(Some(hit))) => out[i] = Some(Ok(hit)),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "judge cache read failed");
                    todo.push(i)
                }
                _ => todo.push(i),
            }
        }
        let cached = (prompts.len() - todo.len()) as u64;
        let answers: Vec<(usize, Result<Option<f64>, JudgeError>)> = self.rt.block_on(
            futures::stream::iter(todo.iter().copied())
                .map(|i| async move { (i, self.ask(&prompts[i]).await) })
                .buffer_unordered(self.concurrency)
                .collect(),
        );
        let mut stats = self.stats.borrow_mut();
        stats.cached += cached;
        for (i, r) in answers {
            match &r {
                Ok(score) => {
                    stats.requests += 1;
                    if let Some(c) = &self.cache {
                        if let Err(e) = c.put(&self.model, &prompts[i], *score) {
                            tracing::warn!(error = %e, "judge cache write failed");
                        }
                    }
                }
                Err(e) => {
                    stats.errors += 1;
                    stats.first_error.get_or_insert_with(|| e.to_string());
                }
            }
            out[i] = Some(r);
        }
        let out: Vec<Result<Option<f64>, JudgeError>> =
            out.into_iter().map(|r| r.unwrap_or(Ok(None))).collect();
        stats.unscored += out.iter().filter(|r| matches!(r, Ok(None))).count() as u64;
        out
    }
}

#[cfg(test)]
#[path = "judge_http_tests.rs"]
mod tests;
