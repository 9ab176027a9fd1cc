//! Log-probabilities of generated tokens and their top alternatives, by teacher forcing the
//! completion once more through the engine's forward pass (the same numbers `score` gives).

use burn::tensor::{Int, Tensor, TensorData};
use trainer::{CpuBackend, Engine, TokenBatch};

/// Per completion token: (its log-prob, the `top` most likely (token, log-prob), best first).
pub type TokenLogprobs = Vec<(f32, Vec<(u32, f32)>)>;

/// Log-probs of `completion` after `prompt` under `adapter` (`None` = base).
pub fn completion_logprobs(
    engine: &Engine<CpuBackend>,
    adapter: Option<&str>,
    prompt: &[u32],
    completion: &[u32],
    top: usize,
) -> trainer::Result<TokenLogprobs> {
    if completion.is_empty() {
        return Ok(Vec::new());
    }
    let seq: Vec<u32> = prompt.iter().chain(completion).copied().collect();
    let batch = TokenBatch::right_padded(std::slice::from_ref(&seq), engine.tokenizer.pad_id);
    let opts = engine.options_for(&[adapter])?;
    let out = engine.weights.forward(&batch, &opts, None, &engine.device);
    let hs = engine.weights.config.hidden_size;
    let t = seq.len();
    // Positions prompt_len-1 .. t-2 predict the completion tokens.
    let rows: Vec<i64> = (prompt.len() - 1..t - 1).map(|p| p as i64).collect();
    let n = rows.len();
    let idx = Tensor::<CpuBackend, 1, Int>::from_data(TensorData::new(rows, [n]), &engine.device);
    let logits = engine
        .weights
        .logits_rows(out.hidden.reshape([t, hs]).select(0, idx));
    let vocab = engine.weights.config.vocab_size;
    let host: Vec<f32> = logits
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| trainer::EngineError::Invalid(format!("reading logits: {e:?}")))?;
    let mut out = Vec::with_capacity(n);
    for (i, &tok) in completion.iter().enumerate() {
        let row = &host[i * vocab..(i + 1) * vocab];
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = max
            + row
                .iter()
                .map(|&x| ((x - max) as f64).exp())
                .sum::<f64>()
                .ln() as f32;
        let mut best: Vec<(u32, f32)> = Vec::with_capacity(top + 1);
        if top > 0 {
            for (id, &x) in row.iter().enumerate() {
                if best.len() < top || x > best[best.len() - 1].1 {
                    let pos = best.partition_point(|b| b.1 >= x);
                    best.insert(pos, (id as u32, x));
                    best.truncate(top);
                }
            }
        }
        out.push((
            row[tok as usize] - lse,
            best.into_iter().map(|(id, x)| (id, x - lse)).collect(),
        ));
    }
    Ok(out)
}
