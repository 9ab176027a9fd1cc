//! The monitor's judge over an OpenAI-compatible chat-completions endpoint (`[monitor]` in the
//! gateway config): one completion token with `top_logprobs` 20, scored by the monitor crate's
//! aggregation (`Σ k·p_k / Σ p_k` over integer tokens 0–100, none below 0.25 mass). Requests
//! run `judge_concurrency` at a time on a private tokio runtime (the worker is synchronous);
//! connection errors, timeouts, 408, 429 and 5xx are retried with exponential backoff (or the
//! server's `retry-after`); every judgement is cached durably ([`JudgeCache`]).

use super::http_post::{self, post_json, PostError};
use super::judge_cache::JudgeCache;
use super::record::JudgeStats;
use crate::config::JudgeConfig;
use crate::persona_cmd::judge::completions_url;
use futures::StreamExt;
use monitor::judge::{score_from_top_logprobs, top_logprobs_from_chat_completion, TOP_LOGPROBS};
use monitor::{Judge, JudgeError};
use serde_json::{json, Value};
use std::cell::RefCell;

pub use super::http_post::{ATTEMPTS, BACKOFF};

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
        let key = std::env::var(&config.api_key_env).ok();
        let http = http_post::client(
            key.as_deref(),
            &config.api_key_env,
            config.timeout,
            "the judge",
        )?;
        let rt = http_post::runtime("the judge")?;
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
        let v = post_json(&self.http, &self.url, &self.body(prompt))
            .await
            .map_err(|e| match e {
                PostError::Unavailable(message) => JudgeError::Unavailable {
                    judge: self.model.clone(),
                    message,
                },
                PostError::BadResponse(message) => JudgeError::BadResponse {
                    judge: self.model.clone(),
                    message,
                },
            })?;
        let top = top_logprobs_from_chat_completion(&v, &self.model)?;
        Ok(score_from_top_logprobs(&top))
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
