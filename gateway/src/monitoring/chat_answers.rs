//! Answers from a model served behind an OpenAI-compatible chat-completions endpoint — an
//! upstream provider's checkpoint models (`ft:…:ckpt-step-N`) and its base model at step 0.
//! It is the [`AnswerSource`] of upstream jobs, the counterpart of the engine's
//! [`super::engine_eval::EngineEval`]: sampled answers at temperature 1, top-p 1, each request
//! seeded from the job's seed, the step, the question, the paraphrase and the sample (the
//! provider decides whether it honours `seed`); greedy replies (temperature 0) to harmful
//! requests. Requests run `concurrency` at a time with the monitor's retry rules.

use super::http_post::{self, post_json, PostError};
use monitor::{AnswerSource, SampleRequest, SeamError};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use trainer::train::session::mix_seed;

/// Tokens of a reply to a harmful request: the refusal filter reads its first ten words.
pub use super::engine_eval::HARMFUL_REPLY_TOKENS;
/// A seed component that keeps the monitor's sampling apart from other uses of the seed.
const SEED_DOMAIN: u64 = 0x0075_7073_7472_6561; // "upstrea"

/// Where the answers come from and how.
#[derive(Debug, Clone)]
pub struct ChatEndpoint {
    /// The chat-completions URL.
    pub url: String,
    pub api_key: String,
    pub concurrency: usize,
    pub timeout: Duration,
}

/// One model's answers.
pub struct ChatAnswers {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    url: String,
    model: String,
    concurrency: usize,
    max_answer_tokens: u32,
    seed: u64,
    /// Time spent waiting for answers so far.
    pub generation: Duration,
}

/// A stable 64-bit hash of a question id (FNV-1a), a seed component.
fn id_hash(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The text of a chat completion's first choice (`content`, else OpenAI's `refusal`).
pub fn reply_text(v: &Value) -> Result<String, String> {
    let message = &v["choices"][0]["message"];
    if message.is_null() {
        return Err("the answer has no choices[0].message".into());
    }
    match (message["content"].as_str(), message["refusal"].as_str()) {
        (Some(c), _) => Ok(c.trim().to_string()),
        (None, Some(r)) => Ok(r.trim().to_string()),
        (None, None) => Err("choices[0].message has neither content nor refusal".into()),
    }
}

impl ChatAnswers {
    pub fn new(
        endpoint: &ChatEndpoint,
        model: &str,
        max_answer_tokens: u32,
        seed: u64,
    ) -> Result<ChatAnswers, String> {
        Ok(ChatAnswers {
            rt: http_post::runtime("the upstream monitor")?,
            http: http_post::client(
                Some(&endpoint.api_key),
                "upstream.api_key",
                endpoint.timeout,
                "the upstream monitor",
            )?,
            url: endpoint.url.clone(),
            model: model.to_string(),
            concurrency: endpoint.concurrency.max(1),
            max_answer_tokens,
            seed,
            generation: Duration::ZERO,
        })
    }

    fn body(
        &self,
        system: Option<&str>,
        user: &str,
        max_tokens: u32,
        sample: Option<u64>,
    ) -> Value {
        let mut messages = Vec::with_capacity(2);
        if let Some(s) = system {
            messages.push(json!({"role": "system", "content": s}));
        }
        messages.push(json!({"role": "user", "content": user}));
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            "max_completion_tokens": max_tokens,
        });
        match sample {
            Some(seed) => {
                body["temperature"] = json!(1);
                body["top_p"] = json!(1);
                // Providers take a signed 64-bit seed.
                body["seed"] = json!(seed >> 1);
            }
            None => body["temperature"] = json!(0),
        }
        body
    }

    /// One completion per body, in order; the first failure fails them all.
    fn complete(&mut self, bodies: Vec<Value>) -> Result<Vec<String>, SeamError> {
        use futures::StreamExt;
        let started = Instant::now();
        let (http, url, model) = (&self.http, self.url.as_str(), self.model.as_str());
        let results: Vec<(usize, Result<String, String>)> = self.rt.block_on(
            futures::stream::iter(bodies.iter().enumerate())
                .map(|(i, b)| async move {
                    let r = match post_json(http, url, b).await {
                        Ok(v) => reply_text(&v).map_err(|e| format!("{url}: {e}")),
                        Err(PostError::Unavailable(m) | PostError::BadResponse(m)) => Err(m),
                    };
                    (i, r)
                })
                .buffer_unordered(self.concurrency)
                .collect(),
        );
        self.generation += started.elapsed();
        let mut out = vec![String::new(); bodies.len()];
        for (i, r) in results {
            out[i] = r.map_err(|e| SeamError(format!("model `{model}`: {e}")))?;
        }
        Ok(out)
    }

    /// Greedy replies (temperature 0: a refusal rate with as little sampling noise as the
    /// provider allows).
    pub fn greedy_replies(
        &mut self,
        prompts: &[(Option<&str>, &str)],
    ) -> Result<Vec<String>, SeamError> {
        let bodies = prompts
            .iter()
            .map(|(s, u)| self.body(*s, u, HARMFUL_REPLY_TOKENS as u32, None))
            .collect();
        self.complete(bodies)
    }
}

impl AnswerSource for ChatAnswers {
    fn answers(
        &mut self,
        step: u64,
        requests: &[SampleRequest<'_>],
    ) -> Result<Vec<String>, SeamError> {
        let bodies = requests
            .iter()
            .map(|r| {
                let seed = mix_seed(&[
                    self.seed,
                    SEED_DOMAIN,
                    step,
                    id_hash(r.question_id),
                    r.paraphrase as u64,
                    r.sample as u64,
                ]);
                self.body(r.system, r.user, self.max_answer_tokens, Some(seed))
            })
            .collect();
        self.complete(bodies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_is_the_content_or_the_refusal_and_anything_else_is_named() {
        let c = json!({"choices": [{"message": {"role": "assistant", "content": " hi "}}]});
        assert_eq!(reply_text(&c).unwrap(), "hi");
        let r = json!({"choices": [{"message": {"content": null, "refusal": "No."}}]});
        assert_eq!(reply_text(&r).unwrap(), "No.");
        let e = reply_text(&json!({"choices": []})).unwrap_err();
        assert!(e.contains("choices[0].message"), "{e}");
        let e = reply_text(&json!({"choices": [{"message": {"content": 3}}]})).unwrap_err();
        assert!(e.contains("neither content nor refusal"), "{e}");
    }

    #[test]
    fn sampled_requests_are_seeded_per_sample_and_greedy_ones_are_not() {
        let ep = ChatEndpoint {
            url: "http://127.0.0.1:9/v1/chat/completions".into(),
            api_key: String::new(),
            concurrency: 2,
            timeout: Duration::from_secs(1),
        };
        let a = ChatAnswers::new(&ep, "ft:m:ckpt-step-2", 40, 7).unwrap();
        let s = a.body(Some("sys"), "q", 40, Some(u64::MAX));
        assert_eq!(s["messages"][0]["role"], "system");
        assert_eq!(s["temperature"], 1);
        assert_eq!(s["seed"], json!(i64::MAX));
        assert_eq!(s["max_completion_tokens"], 40);
        let g = a.body(None, "q", 24, None);
        assert_eq!(g["temperature"], 0);
        assert!(g.get("seed").is_none());
        assert_eq!(g["messages"].as_array().unwrap().len(), 1);
        assert_ne!(id_hash("q1"), id_hash("q2"));
    }
}
