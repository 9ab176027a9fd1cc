//! Answer-only NLL scoring: per-token log-probs via a chunked f32 log-softmax.

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};

use crate::batch::TokenBatch;
use crate::chat::EncodedChat;
use crate::engine::Engine;
use crate::error::{EngineError, Result};

/// Scored positions per log-softmax chunk (bounds the `[rows, vocab]` logits buffer).
pub const LOGIT_ROWS: usize = 1024;

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
        let want: Vec<Vec<bool>> = seqs.iter().map(|s| vec![true; s.len()]).collect();
        self.masked_token_logprobs(seqs, adapters, &want)
    }

    /// Like [`Engine::token_logprobs`] but only for tokens `t >= 1` with `want[row][t]`
    /// (e.g. the answer mask); logits are computed for those positions only.
    pub fn masked_token_logprobs(
        &self,
        seqs: &[Vec<u32>],
        adapters: &[Option<&str>],
        want: &[Vec<bool>],
    ) -> Result<Vec<Vec<f32>>> {
        if seqs.len() != adapters.len() || seqs.len() != want.len() {
            return Err(EngineError::Invalid(format!(
                "{} sequences but {} adapter choices and {} masks",
                seqs.len(),
                adapters.len(),
                want.len()
            )));
        }
        let vocab = self.weights.config.vocab_size as u32;
        if let Some(bad) = seqs.iter().flatten().find(|&&t| t >= vocab) {
            return Err(EngineError::Invalid(format!(
                "token id {bad} is outside the vocabulary ({vocab})"
            )));
        }
        let batch = TokenBatch::right_padded(seqs, self.tokenizer.pad_id);
        let (b, t) = (batch.rows(), batch.len());
        // (row, flat index of the predicting position, target id)
        let picks: Vec<(usize, usize, u32)> = seqs
            .iter()
            .enumerate()
            .flat_map(|(r, s)| {
                (1..s.len())
                    .filter(move |&p| want[r].get(p).copied().unwrap_or(false))
                    .map(move |p| (r, r * t + p - 1, s[p]))
            })
            .collect();
        let mut lp = vec![Vec::new(); b];
        if picks.is_empty() {
            return Ok(lp);
        }
        let opts = self.options_for(adapters)?;
        let out = self.weights.forward(&batch, &opts, None, &self.device);
        let flat = out.hidden.reshape([b * t, self.weights.config.hidden_size]);
        for chunk in picks.chunks(LOGIT_ROWS) {
            let n = chunk.len();
            let rows: Vec<i64> = chunk.iter().map(|c| c.1 as i64).collect();
            let rows = Tensor::<B, 1, Int>::from_data(TensorData::new(rows, [n]), &self.device);
            let logits = self.weights.logits_rows(flat.clone().select(0, rows));
            let targets: Vec<i64> = chunk.iter().map(|c| i64::from(c.2)).collect();
            let targets =
                Tensor::<B, 2, Int>::from_data(TensorData::new(targets, [n, 1]), &self.device);
            // log p = x_target − (max + log Σ exp(x − max)), in f32, without materialising log-softmax.
            let max = logits.clone().max_dim(1);
            let lse = (logits.clone() - max.clone()).exp().sum_dim(1).log() + max;
            let picked = (logits.gather(1, targets) - lse)
                .into_data()
                .convert::<f32>();
            let vals = picked
                .into_vec::<f32>()
                .map_err(|e| EngineError::Invalid(format!("reading log-probs: {e:?}")))?;
            for (c, v) in chunk.iter().zip(vals) {
                lp[c.0].push(v);
            }
        }
        Ok(lp)
    }

    /// Scores every example under every model (`None` = base) in shared batched passes.
    ///
    /// Returns `[model][example]`. Rows are grouped by model and bucketed by length, so passes
    /// rarely mix adapters and padding stays small.
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
        // By model, then length: passes hold one model's rows (except at group edges), which
        // skips the per-adapter row gather; padding stays as small as sorting by length alone.
        rows.sort_by_key(|&(m, e)| (m, examples[e].ids.len(), e));
        let mut out: Vec<Vec<Option<Score>>> = vec![vec![None; examples.len()]; models.len()];
        for chunk in rows.chunks(opts.max_batch_rows.max(1)) {
            let seqs: Vec<Vec<u32>> = chunk
                .iter()
                .map(|&(_, e)| examples[e].ids.clone())
                .collect();
            let choice: Vec<Option<&str>> = chunk.iter().map(|&(m, _)| models[m]).collect();
            let masks: Vec<Vec<bool>> = chunk
                .iter()
                .map(|&(_, e)| examples[e].answer_mask.clone())
                .collect();
            let lps = self.masked_token_logprobs(&seqs, &choice, &masks)?;
            for (&(m, e), lp) in chunk.iter().zip(lps) {
                out[m][e] = Some(mean_nll(lp));
            }
        }
        Ok(out
            .into_iter()
            .map(|r| r.into_iter().flatten().collect())
            .collect())
    }
}

fn mean_nll(token_logprobs: Vec<f32>) -> Score {
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

/// Mean NLL over answer positions; `logprobs[t-1]` scores token `t`.
pub fn answer_score(mask: &[bool], logprobs: &[f32]) -> Score {
    mean_nll(
        mask.iter()
            .skip(1)
            .zip(logprobs)
            .filter(|(m, _)| **m)
            .map(|(_, &l)| l)
            .collect(),
    )
}
