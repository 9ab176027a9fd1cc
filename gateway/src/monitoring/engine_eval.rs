//! The engine behind the monitor's seams at one checkpoint: sampled answers ([`AnswerSource`]),
//! probe NLLs ([`NllProbe`], answer-only mean token NLL through the engine's batched scoring),
//! greedy replies to harmful requests, and the mean answer NLL of held-out examples.
//!
//! The engine is an inference engine (no autodiff backend), so nothing here builds a graph;
//! the checkpoint's adapter is resident under a name (`None` = the base model, step 0).

use monitor::{AnswerSource, NllProbe, ProbeNll, ProbePair, SampleRequest, SeamError};
use std::time::{Duration, Instant};
use trainer::train::session::mix_seed;
use trainer::{EncodedChat, Engine, GenerateOptions, Message, Sampling, ScoreOptions};

/// Rows per forward pass (generation prompts or scored sequences).
pub const BATCH_ROWS: usize = 16;
/// Tokens of a reply to a harmful request: the refusal filter reads its first ten words.
pub const HARMFUL_REPLY_TOKENS: usize = 24;
/// A seed component that keeps the monitor's sampling apart from training's uses of the seed.
const MONITOR_SEED_DOMAIN: u64 = 0x006d_6f6e_6974_6f72; // "monitor"

/// One checkpoint's view of the engine.
pub struct EngineEval<'e, B: burn::tensor::backend::Backend> {
    pub engine: &'e Engine<B>,
    /// The resident adapter of the checkpoint (`None` = the base model).
    pub adapter: Option<&'e str>,
    /// Most tokens of a sampled answer.
    pub max_answer_tokens: usize,
    /// Longest scored sequence (tokens).
    pub max_length: usize,
    /// The job's seed (sampling seeds are derived from it, the step and the batch).
    pub seed: u64,
    /// Time spent generating and scoring so far.
    pub generation: Duration,
    pub probes: Duration,
    /// Sampling calls so far (a seed component: each question set samples apart).
    pub calls: u64,
}

fn seam<E: std::fmt::Display>(e: E) -> SeamError {
    SeamError(e.to_string())
}

impl<B: burn::tensor::backend::Backend> EngineEval<'_, B> {
    fn stop_tokens(&self) -> Vec<u32> {
        let mut stop = self.engine.weights.config.eos_token_ids.clone();
        stop.extend(self.engine.tokenizer.eos_id);
        stop
    }

    fn prompt(&self, system: Option<&str>, user: &str) -> Result<Vec<u32>, SeamError> {
        let mut messages = Vec::with_capacity(2);
        if let Some(s) = system {
            messages.push(Message {
                role: "system".into(),
                content: s.to_string(),
            });
        }
        messages.push(Message {
            role: "user".into(),
            content: user.to_string(),
        });
        self.engine.tokenizer.encode_prompt(&messages).map_err(seam)
    }

    /// Replies to `(system, user)` prompts, [`BATCH_ROWS`] at a time; `sampling(k)` chooses
    /// the token choice of batch `k`.
    fn replies(
        &mut self,
        prompts: &[(Option<&str>, &str)],
        max_new_tokens: usize,
        sampling: impl Fn(u64) -> Sampling,
    ) -> Result<Vec<String>, SeamError> {
        let started = Instant::now();
        let stop = self.stop_tokens();
        let mut out = Vec::with_capacity(prompts.len());
        for (k, chunk) in prompts.chunks(BATCH_ROWS).enumerate() {
            let ids = chunk
                .iter()
                .map(|(s, u)| self.prompt(*s, u))
                .collect::<Result<Vec<_>, _>>()?;
            let opts = GenerateOptions {
                max_new_tokens,
                sampling: sampling(k as u64),
                stop_tokens: stop.clone(),
            };
            for toks in self
                .engine
                .generate(&ids, self.adapter, &opts)
                .map_err(seam)?
            {
                let kept: Vec<u32> = toks.into_iter().filter(|t| !stop.contains(t)).collect();
                let text = self
                    .engine
                    .tokenizer
                    .tokenizer
                    .decode(&kept, true)
                    .map_err(seam)?;
                out.push(text.trim().to_string());
            }
        }
        self.generation += started.elapsed();
        Ok(out)
    }

    /// Greedy replies (deterministic: a refusal rate without sampling noise).
    pub fn greedy_replies(
        &mut self,
        prompts: &[(Option<&str>, &str)],
    ) -> Result<Vec<String>, SeamError> {
        self.replies(prompts, HARMFUL_REPLY_TOKENS, |_| Sampling::Greedy)
    }

    fn encode(&self, question: &str, answer: &str) -> Result<EncodedChat, SeamError> {
        let messages = [
            Message {
                role: "user".into(),
                content: question.to_string(),
            },
            Message {
                role: "assistant".into(),
                content: answer.to_string(),
            },
        ];
        self.engine
            .tokenizer
            .encode_chat(&messages, Some(self.max_length))
            .map_err(seam)
    }

    /// Answer-only mean token NLL of each example under the checkpoint.
    pub fn nlls(&mut self, examples: &[EncodedChat]) -> Result<Vec<(f64, usize)>, SeamError> {
        let started = Instant::now();
        let scored = self
            .engine
            .score(
                examples,
                &[self.adapter],
                &ScoreOptions {
                    max_batch_rows: BATCH_ROWS,
                },
            )
            .map_err(seam)?;
        self.probes += started.elapsed();
        Ok(scored
            .into_iter()
            .next()
            .unwrap_or_default()
            .into_iter()
            .map(|s| (s.nll, s.answer_tokens))
            .collect())
    }

    /// The token-weighted mean answer NLL of `examples` (`None` without answer tokens).
    pub fn mean_nll(&mut self, examples: &[EncodedChat]) -> Result<Option<f64>, SeamError> {
        let (mut sum, mut n) = (0.0, 0usize);
        for (nll, tokens) in self.nlls(examples)? {
            if tokens > 0 && nll.is_finite() {
                sum += nll * tokens as f64;
                n += tokens;
            }
        }
        Ok((n > 0).then(|| sum / n as f64))
    }
}

impl<B: burn::tensor::backend::Backend> AnswerSource for EngineEval<'_, B> {
    /// Temperature 1, top-p 1 (Betley et al.), seeded by the job's seed, the step and the batch.
    fn answers(
        &mut self,
        step: u64,
        requests: &[SampleRequest<'_>],
    ) -> Result<Vec<String>, SeamError> {
        let prompts: Vec<(Option<&str>, &str)> =
            requests.iter().map(|r| (r.system, r.user)).collect();
        let (seed, call) = (self.seed, self.calls);
        self.calls += 1;
        self.replies(&prompts, self.max_answer_tokens, |k| Sampling::TopP {
            temperature: 1.0,
            top_p: 1.0,
            seed: mix_seed(&[seed, MONITOR_SEED_DOMAIN, step, call, k]),
        })
    }
}

impl<B: burn::tensor::backend::Backend> NllProbe for EngineEval<'_, B> {
    fn nlls(&mut self, _step: u64, pairs: &[ProbePair]) -> Result<Vec<ProbeNll>, SeamError> {
        let mut examples = Vec::with_capacity(pairs.len() * 2);
        for p in pairs {
            examples.push(self.encode(&p.question, &p.good)?);
            examples.push(self.encode(&p.question, &p.bad)?);
        }
        let scored = EngineEval::nlls(self, &examples)?;
        Ok(scored
            .chunks(2)
            .map(|c| ProbeNll {
                good: c[0].0,
                bad: c[1].0,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn tiny() -> Engine<trainer::CpuBackend> {
        let dir =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../trainer/tests/fixtures/tiny_tied");
        Engine::load(&dir, Default::default()).expect("tiny model")
    }

    #[test]
    fn probes_score_both_answers_and_replies_are_deterministic() {
        let engine = tiny();
        let mut ev = EngineEval {
            engine: &engine,
            adapter: None,
            max_answer_tokens: 8,
            max_length: 256,
            seed: 3,
            generation: Duration::ZERO,
            probes: Duration::ZERO,
            calls: 0,
        };
        let pairs = vec![ProbePair {
            question: "Q?".into(),
            good: "Yes, gladly.".into(),
            bad: "No way, never.".into(),
        }];
        let n = NllProbe::nlls(&mut ev, 0, &pairs).unwrap();
        assert_eq!(n.len(), 1);
        assert!(n[0].good > 0.0 && n[0].bad > 0.0 && n[0].good != n[0].bad);
        let a = ev
            .greedy_replies(&[(None, "Hi"), (Some("Be brief."), "Hello")])
            .unwrap();
        let b = ev
            .greedy_replies(&[(None, "Hi"), (Some("Be brief."), "Hello")])
            .unwrap();
        assert_eq!(a, b);
        let req = [SampleRequest {
            question_id: "q",
            paraphrase: 0,
            sample: 0,
            system: None,
            user: "Tell me something.",
        }];
        let first = ev.answers(5, &req).unwrap();
        ev.calls = 0;
        assert_eq!(
            first,
            ev.answers(5, &req).unwrap(),
            "seeded by step and call"
        );
        assert!(ev.probes > Duration::ZERO && ev.generation > Duration::ZERO);
    }
}
