//! Answer-only NLL scoring: per-token log-probs via a chunked f32 log-softmax.

use burn::tensor::{activation, backend::Backend, Int, Tensor, TensorData};

use crate::batch::TokenBatch;
use crate::chat::EncodedChat;
use crate::engine::Engine;
use crate::error::{EngineError, Result};

/// Positions per log-softmax chunk (bounds the `[b, chunk, vocab]` logits buffer).
pub const LOGIT_CHUNK: usize = 256;

/// Score of one example under one model.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// Mean answer-token NLL (nats); NaN when the example has no answer token.
    pub nll: f64,
    /// Number of answer tokens scored.
    pub answer_tokens: usize,
    /// log P of each answer token, in order.
    pub token_logprobs: Vec<f32>,
}

/// How to batch scoring work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScoreOptions {
    /// Rows (example × model pairs) per forward pass.
    pub max_batch_rows: usize,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        Self { max_batch_rows: 16 }
    }
}

impl<B: Backend> Engine<B> {
    /// log P(ids[t] | ids[..t]) for t in 1..len, per row, each row under its own adapter.
    pub fn token_logprobs(
        &self,
        seqs: &[Vec<u32>],
        adapters: &[Option<&str>],
    ) -> Result<Vec<Vec<f32>>> {
        if seqs.len() != adapters.len() {
            return Err(EngineError::Invalid(format!(
                "{} sequences but {} adapter choices",
                seqs.len(),
                adapters.len()
            )));
        }
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let vocab = self.weights.config.vocab_size as u32;
        if let Some(bad) = seqs.iter().flatten().find(|&&t| t >= vocab) {
            return Err(EngineError::Invalid(format!(
                "token id {bad} is outside the vocabulary ({vocab})"
            )));
        }
        let batch = TokenBatch::right_padded(seqs, self.tokenizer.pad_id);
        let opts = self.options_for(adapters)?;
        let out = self.weights.forward(&batch, &opts, None, &self.device);
        let (b, t) = (batch.rows(), batch.len());
        let mut lp = vec![Vec::with_capacity(t); b];
        let mut start = 0;
        while start + 1 < t {
            let n = LOGIT_CHUNK.min(t - 1 - start);
            let h = out.hidden.clone().narrow(1, start, n);
            let logp = activation::log_softmax(self.weights.logits(h), 2);
            let targets: Vec<i64> = batch
                .ids
                .iter()
                .flat_map(|r| r[start + 1..start + 1 + n].iter().map(|&i| i64::from(i)))
                .collect();
            let idx =
                Tensor::<B, 2, Int>::from_data(TensorData::new(targets, [b, n]), &self.device)
                    .unsqueeze_dim::<3>(2);
            let picked = logp.gather(2, idx).into_data().convert::<f32>();
            let vals = picked
                .into_vec::<f32>()
                .map_err(|e| EngineError::Invalid(format!("reading log-probs: {e:?}")))?;
            for (r, row) in lp.iter_mut().enumerate() {
                row.extend_from_slice(&vals[r * n..(r + 1) * n]);
            }
            start += n;
        }
        for (row, s) in lp.iter_mut().zip(seqs) {
            row.truncate(s.len().saturating_sub(1));
        }
        Ok(lp)
    }

    /// Scores every example under every model (`None` = base) in shared batched passes.
    ///
    /// Returns `[model][example]`. Rows are bucketed by length so padding stays small.
    pub fn score(
        &self,
        examples: &[EncodedChat],
        models: &[Option<&str>],
        opts: &ScoreOptions,
    ) -> Result<Vec<Vec<Score>>> {
        for m in models.iter().flatten() {
            self.adapter(m)?;
        }
        let mut rows: Vec<(usize, usize)> = (0..models.len())
            .flat_map(|m| (0..examples.len()).map(move |e| (m, e)))
            .collect();
        rows.sort_by_key(|&(m, e)| (examples[e].ids.len(), m, e));
        let mut out: Vec<Vec<Option<Score>>> = vec![vec![None; examples.len()]; models.len()];
        for chunk in rows.chunks(opts.max_batch_rows.max(1)) {
            let seqs: Vec<Vec<u32>> = chunk
                .iter()
                .map(|&(_, e)| examples[e].ids.clone())
                .collect();
            let choice: Vec<Option<&str>> = chunk.iter().map(|&(m, _)| models[m]).collect();
            let lps = self.token_logprobs(&seqs, &choice)?;
            for (&(m, e), lp) in chunk.iter().zip(lps) {
                out[m][e] = Some(answer_score(&examples[e].answer_mask, &lp));
            }
        }
        Ok(out
            .into_iter()
            .map(|r| r.into_iter().flatten().collect())
            .collect())
    }
}

/// Mean NLL over answer positions; `logprobs[t-1]` scores token `t`.
pub fn answer_score(mask: &[bool], logprobs: &[f32]) -> Score {
    let token_logprobs: Vec<f32> = mask
        .iter()
        .skip(1)
        .zip(logprobs)
        .filter(|(m, _)| **m)
        .map(|(_, &l)| l)
        .collect();
    let n = token_logprobs.len();
    let nll = if n == 0 {
        f64::NAN
    } else {
        -token_logprobs.iter().map(|&l| f64::from(l)).sum::<f64>() / n as f64
    };
    Score {
        nll,
        answer_tokens: n,
        token_logprobs,
    }
}
