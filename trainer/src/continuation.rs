//! log P(continuation | prefix) for many continuations of one prefix: the prefix runs once,
//! and the continuations extend copies of its KV cache in one batched pass. An engine-served
//! judge scores 0–100 this way (`monitor::judge`: every candidate number, end-of-turn token
//! included, teacher-forced after the judge prompt), where a one-token `top_logprobs` trick
//! would be wrong for tokenizers that split numbers into digits.

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};

use crate::batch::TokenBatch;
use crate::cache::KvCache;
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::score::{target_logprobs, LOGIT_ROWS};

/// Continuations per batched pass: each row holds a copy of the prefix's KV cache, so memory
/// grows with rows × prefix length.
pub const CONTINUATION_ROWS: usize = 32;

impl<B: Backend> Engine<B> {
    /// For each continuation, the sum of its tokens' log-probs, each conditioned on `prefix`
    /// and the continuation's earlier tokens, under `adapter` (`None` = base). Equal, up to
    /// f32 rounding, to scoring `prefix ++ continuation` whole (see the tests).
    pub fn continuation_logprobs(
        &self,
        prefix: &[u32],
        continuations: &[Vec<u32>],
        adapter: Option<&str>,
    ) -> Result<Vec<f64>> {
        self.validate_continuations(prefix, continuations)?;
        if continuations.is_empty() {
            return Ok(Vec::new());
        }
        // The prefix once: its cache, and the hidden state that predicts every
        // continuation's first token.
        let layers = self.weights.config.num_layers;
        let mut cache = KvCache::new(layers, 1);
        let batch = TokenBatch::right_padded(&[prefix.to_vec()], self.tokenizer.pad_id);
        let opts = self.options_for(&[adapter])?;
        let out = self
            .weights
            .forward(&batch, &opts, Some(&mut cache), &self.device);
        let hs = self.weights.config.hidden_size;
        let last = out.hidden.narrow(1, prefix.len() - 1, 1).reshape([1, hs]);
        let mut total = Vec::with_capacity(continuations.len());
        for chunk in continuations.chunks(CONTINUATION_ROWS) {
            total.extend(self.continue_chunk(
                prefix.len(),
                &cache,
                last.clone(),
                chunk,
                adapter,
            )?);
        }
        Ok(total)
    }

    fn validate_continuations(&self, prefix: &[u32], continuations: &[Vec<u32>]) -> Result<()> {
        if prefix.is_empty() {
            return Err(EngineError::Invalid("continuations: empty prefix".into()));
        }
        if let Some(i) = continuations.iter().position(Vec::is_empty) {
            return Err(EngineError::Invalid(format!(
                "continuations: continuation {i} is empty"
            )));
        }
        let vocab = self.weights.config.vocab_size as u32;
        let all = prefix.iter().chain(continuations.iter().flatten());
        if let Some(bad) = all.into_iter().find(|&&t| t >= vocab) {
            return Err(EngineError::Invalid(format!(
                "token id {bad} is outside the vocabulary ({vocab})"
            )));
        }
        Ok(())
    }

    /// log P of each continuation of `chunk` after the cached prefix (`prefix_len` tokens;
    /// `last` is its final hidden state).
    fn continue_chunk(
        &self,
        prefix_len: usize,
        cache: &KvCache<B>,
        last: Tensor<B, 2>,
        continuations: &[Vec<u32>],
        adapter: Option<&str>,
    ) -> Result<Vec<f64>> {
        let k = continuations.len();
        let hs = self.weights.config.hidden_size;
        let firsts: Vec<i64> = continuations.iter().map(|c| i64::from(c[0])).collect();
        let first = target_logprobs(
            self.weights.logits_rows(last.repeat_dim(0, k)),
            firsts,
            &self.device,
        )?;
        let mut total: Vec<f64> = first.into_iter().map(f64::from).collect();
        // The rest: each continuation's tokens but the last, fed after the prefix (right
        // padded, positions continuing the prefix's), predicting its next token.
        let t = continuations.iter().map(|c| c.len() - 1).max().unwrap_or(0);
        if t == 0 {
            return Ok(total);
        }
        let n = prefix_len;
        let mut feed = TokenBatch {
            ids: Vec::with_capacity(k),
            valid: Vec::with_capacity(k),
            positions: Vec::with_capacity(k),
        };
        for c in continuations {
            let real = c.len() - 1;
            feed.ids.push(
                (0..t)
                    .map(|j| {
                        if j < real {
                            c[j]
                        } else {
                            self.tokenizer.pad_id
                        }
                    })
                    .collect(),
            );
            feed.valid.push((0..t).map(|j| j < real).collect());
            feed.positions
                .push((0..t).map(|j| if j < real { n + j } else { 1 }).collect());
        }
        let mut shared = cache.repeat_rows(k);
        let opts = self.options_for(&vec![adapter; k])?;
        let out = self
            .weights
            .forward(&feed, &opts, Some(&mut shared), &self.device);
        let flat = out.hidden.reshape([k * t, hs]);
        // (continuation, flat row predicting its token j + 1, that token)
        let picks: Vec<(usize, usize, u32)> = continuations
            .iter()
            .enumerate()
            .flat_map(|(r, c)| (1..c.len()).map(move |j| (r, r * t + j - 1, c[j])))
            .collect();
        for chunk in picks.chunks(LOGIT_ROWS) {
            let rows: Vec<i64> = chunk.iter().map(|p| p.1 as i64).collect();
            let rows =
                Tensor::<B, 1, Int>::from_data(TensorData::new(rows, [chunk.len()]), &self.device);
            let logits = self.weights.logits_rows(flat.clone().select(0, rows));
            let targets: Vec<i64> = chunk.iter().map(|p| i64::from(p.2)).collect();
            for (p, lp) in chunk
                .iter()
                .zip(target_logprobs(logits, targets, &self.device)?)
            {
                total[p.0] += f64::from(lp);
            }
        }
        Ok(total)
    }
}
