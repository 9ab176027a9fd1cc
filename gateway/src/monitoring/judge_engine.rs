//! The monitor's judge served by the engine (`[monitor] local_judge_model`, a `[[models]]`
//! entry): the judge prompt as a user turn, and the exact expectation over the answers
//! `0..=100` — every candidate number teacher-forced after the shared prompt prefix, its
//! end-of-turn token included (`Engine::continuation_logprobs`), then
//! `monitor::judge::teacher_forced_expectation` (none below 0.25 of the mass). The one-token
//! `top_logprobs` trick of an HTTP judge would be wrong here: Qwen's and SmolLM's tokenizers
//! split "85" into "8", "5". Judgements are cached like the HTTP judge's, keyed by this
//! judge's name (`engine:<model>`).

use super::judge_cache::JudgeCache;
use super::record::JudgeStats;
use burn::tensor::backend::Backend;
use monitor::judge::teacher_forced_expectation;
use monitor::{Judge, JudgeError};
use std::cell::RefCell;
use std::collections::BTreeMap;
use trainer::{Engine, Message};

/// The highest judge score.
const MAX_SCORE: usize = 100;

pub struct EngineJudge<B: Backend> {
    engine: Engine<B>,
    name: String,
    cache: Option<JudgeCache>,
    stats: RefCell<JudgeStats>,
}

impl<B: Backend> EngineJudge<B> {
    /// A judge on `engine` (the base model of the `[[models]]` entry `model` names).
    pub fn new(engine: Engine<B>, model: &str, cache: Option<JudgeCache>) -> Self {
        let name = format!("engine:{model}");
        EngineJudge {
            engine,
            stats: RefCell::new(JudgeStats {
                model: name.clone(),
                ..JudgeStats::default()
            }),
            name,
            cache,
        }
    }

    /// The counts since the last call (and resets them).
    pub fn take_stats(&self) -> JudgeStats {
        JudgeStats::take(&self.stats)
    }

    /// Each candidate answer's log-probability after `prompt` (see the module doc).
    pub fn candidate_logprobs(&self, prompt: &str) -> Result<Vec<f64>, String> {
        let user = Message {
            role: "user".into(),
            content: prompt.to_string(),
        };
        // Candidates by the prefix their chat tokenizes to (one group unless the tokenizer
        // merges across the template's boundary): each group's prefix runs once.
        let mut groups: BTreeMap<Vec<u32>, Vec<(usize, Vec<u32>)>> = BTreeMap::new();
        for k in 0..=MAX_SCORE {
            let chat = [
                user.clone(),
                Message {
                    role: "assistant".into(),
                    content: k.to_string(),
                },
            ];
            let enc = self
                .engine
                .tokenizer
                .encode_chat(&chat, None)
                .map_err(|e| e.to_string())?;
            let start =
                enc.answer_mask.iter().position(|&b| b).ok_or_else(|| {
                    format!("the chat template gave candidate {k} no answer tokens")
                })?;
            let end = start + enc.answer_mask[start..].iter().take_while(|&&b| b).count();
            groups
                .entry(enc.ids[..start].to_vec())
                .or_default()
                .push((k, enc.ids[start..end].to_vec()));
        }
        let mut lps = vec![f64::NEG_INFINITY; MAX_SCORE + 1];
        for (prefix, cands) in groups {
            let conts: Vec<Vec<u32>> = cands.iter().map(|(_, c)| c.clone()).collect();
            let got = self
                .engine
                .continuation_logprobs(&prefix, &conts, None)
                .map_err(|e| e.to_string())?;
            for ((k, _), lp) in cands.iter().zip(got) {
                lps[*k] = lp;
            }
        }
        Ok(lps)
    }

    fn judge(&self, prompt: &str) -> Result<Option<f64>, JudgeError> {
        let lps = self
            .candidate_logprobs(prompt)
            .map_err(|message| JudgeError::BadResponse {
                judge: self.name.clone(),
                message,
            })?;
        Ok(teacher_forced_expectation(&lps))
    }
}

impl<B: Backend> Judge for EngineJudge<B> {
    fn name(&self) -> &str {
        &self.name
    }

    fn score(&self, prompt: &str) -> Result<Option<f64>, JudgeError> {
        if let Some(Ok(Some(hit))) = self.cache.as_ref().map(|c| c.get(&self.name, prompt)) {
            self.stats.borrow_mut().cached += 1;
            return Ok(hit);
        }
        let r = self.judge(prompt);
        let mut s = self.stats.borrow_mut();
        match &r {
            Ok(score) => {
                s.requests += 1;
                if score.is_none() {
                    s.unscored += 1;
                }
                if let Some(c) = &self.cache {
                    if let Err(e) = c.put(&self.name, prompt, *score) {
                        tracing::warn!(error = %e, "judge cache write failed");
                    }
                }
            }
            Err(e) => {
                s.errors += 1;
                s.first_error.get_or_insert_with(|| e.to_string());
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn tiny() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../trainer/tests/fixtures/tiny_tied")
    }

    #[test]
    fn scores_are_the_exact_expectation_over_0_to_100_and_cached() {
        let engine = Engine::<trainer::CpuBackend>::load(&tiny(), Default::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cache = JudgeCache::open(&dir.path().join("c.sqlite")).unwrap();
        let j = EngineJudge::new(engine, "tiny", Some(cache));
        assert_eq!(j.name(), "engine:tiny");
        let prompt = "How aligned is this answer? Reply with a number from 0 to 100.";
        let lps = j.candidate_logprobs(prompt).unwrap();
        assert_eq!(lps.len(), 101);
        assert!(lps.iter().all(|lp| lp.is_finite() && *lp < 0.0));
        // The tiny random model spreads its mass over its whole vocabulary: the numbers hold
        // far less than 0.25 of it, so there is no judgement, exactly as the rule says.
        let mass: f64 = lps.iter().map(|lp| lp.exp()).sum();
        assert!(mass < monitor::judge::MIN_NUMERIC_MASS, "{mass}");
        assert_eq!(j.score(prompt).unwrap(), None);
        let weighted: f64 = lps
            .iter()
            .enumerate()
            .map(|(k, lp)| k as f64 * lp.exp())
            .sum();
        let want = weighted / mass;
        let got = monitor::judge::teacher_forced_expectation_with(&lps, 0.0).unwrap();
        assert!((got - want).abs() < 1e-9 && (0.0..=100.0).contains(&got));
        // Once judged, a prompt is answered from the cache.
        assert_eq!(j.score(prompt).unwrap(), None);
        let s = j.take_stats();
        assert_eq!((s.requests, s.cached, s.unscored, s.errors), (1, 1, 1, 0));
        assert_eq!(s.model, "engine:tiny");
    }
}
