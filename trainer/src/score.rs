//! Answer-only NLL scoring: per-token log-probs via a chunked f32 log-softmax.

use burn::tensor::{activation, backend::Backend, Int, Tensor, TensorData};

use crate::batch::TokenBatch;
use crate::chat::EncodedChat;
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::precision::host_f32;

/// Scored positions per log-softmax chunk (bounds the `[rows, vocab]` logits buffer).
pub const LOGIT_ROWS: usize = 1024;

/// Below this target probability a log-prob is recomputed with the exact log-sum-exp
/// (well above f32's smallest normal, 1.2e-38, so `ln p` never sees a subnormal).
const TINY_PROB: f32 = 1e-30;

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
            let vals = target_logprobs(logits, targets, &self.device)?;
            for (c, v) in chunk.iter().zip(vals) {
                lp[c.0].push(v);
            }
        }
        Ok(lp)
    }

    /// Scores every example under every model (`None` = base) in shared batched passes.
    ///
    /// Returns `[model][example]`. Rows are grouped by model and sorted by length, then cut
    /// into [`passes`], so passes rarely mix adapters and padding stays small.
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
        let lens: Vec<usize> = rows.iter().map(|&(_, e)| examples[e].ids.len()).collect();
        for range in passes(&lens, opts.max_batch_rows) {
            let chunk = &rows[range];
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

/// Most padding a forward pass may carry: a row joins the pass only while the pass's padded
/// size (rows × its longest row) stays within this factor of its real tokens. Rows are
/// length-sorted before, so this mostly splits off the few much longer rows that would
/// otherwise pad every short row of their pass to their length: on CPU, where one row
/// already fills the GEMMs, ten general chats scored 1.8× faster this way (BENCHMARKS.md, "A real model").
pub const MAX_PAD_RATIO: f64 = 1.25;

/// The forward passes over rows of token lengths `lens` (in pass order): consecutive runs of at
/// most `max_rows` rows whose padding stays within [`MAX_PAD_RATIO`].
pub fn passes(lens: &[usize], max_rows: usize) -> Vec<std::ops::Range<usize>> {
    let max_rows = max_rows.max(1);
    let mut out = Vec::new();
    let (mut start, mut longest, mut real) = (0usize, 0usize, 0usize);
    for (i, &len) in lens.iter().enumerate() {
        let rows = i - start;
        if rows > 0 {
            let padded = (rows + 1) * longest.max(len);
            let full = rows == max_rows;
            if full || padded as f64 > MAX_PAD_RATIO * (real + len) as f64 {
                out.push(start..i);
                (start, longest, real) = (i, 0, 0);
            }
        }
        longest = longest.max(len);
        real += len;
    }
    if start < lens.len() {
        out.push(start..lens.len());
    }
    out
}

/// `log softmax(logits)[r, targets[r]]` for each row, in f32.
///
/// Fast path: the backend's fused softmax (one cache-hot pass per row on the CPU backend,
/// where the broadcast `logits − max` of an unfused log-softmax alone costs as much as a
/// sixth of the model) and `ln p` of the target on the host, exact to f32 rounding while p
/// is a normal float. The fused softmax sums its denominator in one f32 accumulator, which
/// over a wide vocabulary drops the small terms (on SmolLM2's 49k vocabulary every NLL came
/// out ~1e-4 too low): its rows are summed again with [`row_sums`] and `ln p` is corrected by
/// that total's log. Rows whose target probability is below [`TINY_PROB`] are redone with
/// the max-shifted log-sum-exp, so very unlikely tokens still get their exact log-prob.
pub fn target_logprobs<B: Backend>(
    logits: Tensor<B, 2>,
    targets: Vec<i64>,
    device: &B::Device,
) -> Result<Vec<f32>> {
    let n = targets.len();
    let idx = |v: Vec<i64>| {
        let n = v.len();
        Tensor::<B, 2, Int>::from_data(TensorData::new(v, [n, 1]), device)
    };
    let softmax = activation::softmax(logits.clone(), 1);
    let totals = row_sums(softmax.clone())?;
    let probs = host_f32(softmax.gather(1, idx(targets.clone())), "log-probs")?;
    let mut out: Vec<f32> = probs
        .iter()
        .zip(&totals)
        .map(|(&p, &z)| (f64::from(p).ln() - z.ln()) as f32)
        .collect();
    let tiny: Vec<usize> = (0..n)
        .filter(|&r| probs[r].is_nan() || probs[r] < TINY_PROB)
        .collect();
    if !tiny.is_empty() {
        let rows: Vec<i64> = tiny.iter().map(|&r| r as i64).collect();
        let rows = Tensor::<B, 1, Int>::from_data(TensorData::new(rows, [tiny.len()]), device);
        let sub = logits.select(0, rows);
        let max = sub.clone().max_dim(1);
        let sums = row_sums((sub.clone() - max.clone()).exp())?;
        let log_sums: Vec<f32> = sums.iter().map(|z| z.ln() as f32).collect();
        let lse =
            Tensor::<B, 2>::from_data(TensorData::new(log_sums, [tiny.len(), 1]), device) + max;
        let t = idx(tiny.iter().map(|&r| targets[r]).collect());
        let exact = host_f32(sub.gather(1, t) - lse, "log-probs")?;
        for (&r, v) in tiny.iter().zip(exact) {
            out[r] = v;
        }
    }
    Ok(out)
}

/// Row sums of `x: [rows, cols]` (non-negative terms) in f64: chunks of at most
/// [`SUM_CHUNK`] elements are summed on the device, the chunk totals on the host. A single f32
/// accumulator over a 49k-wide row loses every term below half an ulp of the running total.
pub(crate) fn row_sums<B: Backend>(x: Tensor<B, 2>) -> Result<Vec<f64>> {
    let [rows, cols] = x.dims();
    let chunk = sum_chunk(cols);
    let k = cols / chunk;
    let partial = host_f32(
        x.reshape([rows, k, chunk]).sum_dim(2).reshape([rows, k]),
        "row sums",
    )?;
    Ok(partial
        .chunks(k.max(1))
        .map(|c| c.iter().copied().map(f64::from).sum())
        .collect())
}

/// Largest number of terms one f32 accumulator sums in [`row_sums`].
const SUM_CHUNK: usize = 64;

/// The largest divisor of `n` not above [`SUM_CHUNK`].
fn sum_chunk(n: usize) -> usize {
    (1..=SUM_CHUNK.min(n))
        .rev()
        .find(|&d| n.is_multiple_of(d))
        .unwrap_or(1)
}

/// Mean NLL of the given token log-probs (NaN with 0 tokens), summed in f64.
pub fn mean_nll(token_logprobs: Vec<f32>) -> Score {
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

#[cfg(test)]
mod tests {
    use burn::tensor::{Tensor, TensorData};

    use super::target_logprobs;
    use crate::CpuBackend;

    #[test]
    fn target_logprobs_are_exact_for_likely_and_vanishingly_unlikely_tokens() {
        let device = Default::default();
        // Row 0: an ordinary distribution; row 1: the target sits 200 nats below the max, so
        // its softmax probability underflows to 0 and the exact log-sum-exp path must answer.
        let logits = vec![1.0f32, 2.0, 0.5, -1.0, 0.0, 0.0, 0.0, -200.0];
        let t =
            Tensor::<CpuBackend, 2>::from_data(TensorData::new(logits.clone(), [2, 4]), &device);
        let got = target_logprobs(t, vec![1, 3], &device).expect("log-probs");
        let exact = |row: &[f32], k: usize| {
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = m + row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
            (row[k] as f64 - lse) as f32
        };
        assert!((got[0] - exact(&logits[..4], 1)).abs() < 1e-6, "{got:?}");
        assert!((got[1] - exact(&logits[4..], 3)).abs() < 1e-4, "{got:?}");
        assert!(got[1] < -190.0);
    }

    #[test]
    fn wide_rows_keep_their_small_terms() {
        // One logit 16 nats above 49,151 equal ones: each small term is 1.1e-7 of the total,
        // below half an f32 ulp of a running sum near 1, so one accumulator loses all of them
        // (5.5e-3 of the total). The exact log-prob of the big one is −ln(1 + 49151·e^−16).
        let device = Default::default();
        let v = 49152;
        let mut logits = vec![0.0f32; v];
        logits[7] = 16.0;
        let t = Tensor::<CpuBackend, 2>::from_data(TensorData::new(logits, [1, v]), &device);
        let got = target_logprobs(t, vec![7], &device).expect("log-probs")[0];
        let exact = -(1.0 + 49151.0 * (-16.0f64).exp()).ln();
        assert!((f64::from(got) - exact).abs() < 1e-6, "{got} vs {exact}");
        assert_eq!(super::sum_chunk(49152), 64);
        assert_eq!(super::sum_chunk(151_936), 64);
        assert_eq!(super::sum_chunk(320), 64);
        assert_eq!(super::sum_chunk(7), 7);
        assert_eq!(super::sum_chunk(67), 1);
    }
}

#[cfg(test)]
mod pass_tests {
    use super::passes;

    #[test]
    fn a_much_longer_row_gets_its_own_pass_and_equal_rows_share_up_to_the_limit() {
        // Nine short chats and one long one: without the padding bound all ten share a pass
        // padded to 300 tokens (3,000 positions for 960 real tokens).
        let lens = [30, 35, 60, 75, 80, 90, 95, 100, 110, 300];
        let p = passes(&lens, 16);
        assert_eq!(p.last().unwrap().clone(), 9..10, "{p:?}");
        for r in &p {
            let longest = lens[r.clone()].iter().max().unwrap();
            let real: usize = lens[r.clone()].iter().sum();
            assert!(
                (r.len() * longest) as f64 <= 1.25 * real as f64 || r.len() == 1,
                "{r:?}"
            );
        }
        assert_eq!(passes(&[64; 40], 16), vec![0..16, 16..32, 32..40]);
        assert_eq!(
            passes(&[64; 3], 0),
            vec![0..1, 1..2, 2..3],
            "at least one row a pass"
        );
        assert!(passes(&[], 16).is_empty());
        // Every row in exactly one pass, in order.
        let flat: Vec<usize> = p.into_iter().flatten().collect();
        assert_eq!(flat, (0..lens.len()).collect::<Vec<_>>());
    }
}
