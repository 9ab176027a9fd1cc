//! Batched KV-cache generation: greedy or seeded temperature / top-p sampling.

use burn::tensor::backend::Backend;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::batch::TokenBatch;
use crate::cache::KvCache;
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::precision::host_f32;

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// Arg-max (lowest id on ties).
    Greedy,
    /// Softmax(logits / temperature), restricted to the smallest top-p nucleus, seeded.
    TopP {
        /// Temperature (> 0).
        temperature: f32,
        /// Nucleus mass in (0, 1].
        top_p: f32,
        /// RNG seed.
        seed: u64,
    },
}

/// Generation settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Most new tokens per prompt.
    pub max_new_tokens: usize,
    /// Token choice.
    pub sampling: Sampling,
    /// A row stops after emitting any of these (the stop token is kept in the output).
    pub stop_tokens: Vec<u32>,
}

/// Picks tokens from host logits rows.
#[derive(Debug)]
pub struct Sampler {
    sampling: Sampling,
    rng: StdRng,
}

impl Sampler {
    /// A sampler owning its seeded RNG.
    pub fn new(sampling: Sampling) -> Self {
        let seed = match sampling {
            Sampling::TopP { seed, .. } => seed,
            Sampling::Greedy => 0,
        };
        Self {
            sampling,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Chooses a token id from one row of logits.
    pub fn pick(&mut self, logits: &[f32]) -> u32 {
        let argmax = || {
            let mut best = 0usize;
            for (i, &v) in logits.iter().enumerate() {
                if v > logits[best] {
                    best = i;
                }
            }
            best as u32
        };
        let (temperature, top_p) = match self.sampling {
            Sampling::Greedy => return argmax(),
            Sampling::TopP {
                temperature, top_p, ..
            } if temperature > 0.0 => (temperature, top_p),
            Sampling::TopP { .. } => return argmax(),
        };
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut probs: Vec<(u32, f64)> = logits
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as u32, f64::from((v - max) / temperature).exp()))
            .collect();
        let total: f64 = probs.iter().map(|p| p.1).sum();
        probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut kept = 0.0;
        let mut n = 0;
        for p in &probs {
            kept += p.1 / total;
            n += 1;
            if kept >= f64::from(top_p) {
                break;
            }
        }
        let nucleus = &probs[..n.max(1)];
        let mass: f64 = nucleus.iter().map(|p| p.1).sum();
        let mut x = self.rng.gen::<f64>() * mass;
        for p in nucleus {
            if x < p.1 {
                return p.0;
            }
            x -= p.1;
        }
        nucleus[nucleus.len() - 1].0
    }
}

impl<B: Backend> Engine<B> {
    /// Continues each prompt (token ids) under `adapter` (`None` = base); returns new tokens per prompt.
    pub fn generate(
        &self,
        prompts: &[Vec<u32>],
        adapter: Option<&str>,
        opts: &GenerateOptions,
    ) -> Result<Vec<Vec<u32>>> {
        if prompts.iter().any(Vec::is_empty) {
            return Err(EngineError::Invalid("generate: empty prompt".into()));
        }
        let vocab = self.weights.config.vocab_size;
        if let Some(bad) = prompts.iter().flatten().find(|&&t| t as usize >= vocab) {
            return Err(EngineError::Invalid(format!(
                "token id {bad} is outside the vocabulary ({vocab})"
            )));
        }
        let b = prompts.len();
        let fopts = self.options_for(&vec![adapter; b])?;
        let mut cache = KvCache::new(self.weights.config.num_layers, b);
        let mut batch = TokenBatch::left_padded(prompts, self.tokenizer.pad_id);
        let mut next_pos: Vec<usize> = prompts.iter().map(Vec::len).collect();
        let mut sampler = Sampler::new(opts.sampling);
        let mut out = vec![Vec::new(); b];
        let mut done = vec![false; b];
        for _ in 0..opts.max_new_tokens {
            if b == 0 || done.iter().all(|&d| d) {
                break;
            }
            let fwd = self
                .weights
                .forward(&batch, &fopts, Some(&mut cache), &self.device);
            let last = fwd.hidden.narrow(1, batch.len() - 1, 1);
            let logits = host_f32(self.weights.logits(last), "logits")?;
            let mut step = Vec::with_capacity(b);
            for r in 0..b {
                let tok = if done[r] {
                    self.tokenizer.pad_id
                } else {
                    sampler.pick(&logits[r * vocab..(r + 1) * vocab])
                };
                if !done[r] {
                    out[r].push(tok);
                    done[r] = opts.stop_tokens.contains(&tok);
                }
                step.push(tok);
            }
            batch = TokenBatch::step(&step, &next_pos);
            next_pos.iter_mut().for_each(|p| *p += 1);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_first_maximum() {
        let mut s = Sampler::new(Sampling::Greedy);
        assert_eq!(s.pick(&[0.1, 2.0, 2.0, -1.0]), 1);
    }

    #[test]
    fn top_p_is_seeded_and_stays_in_nucleus() {
        let logits = [5.0, 4.9, -10.0, -10.0];
        let sampling = Sampling::TopP {
            temperature: 1.0,
            top_p: 0.9,
            seed: 7,
        };
        let a: Vec<u32> = {
            let mut s = Sampler::new(sampling);
            (0..50).map(|_| s.pick(&logits)).collect()
        };
        let b: Vec<u32> = {
            let mut s = Sampler::new(sampling);
            (0..50).map(|_| s.pick(&logits)).collect()
        };
        assert_eq!(a, b);
        assert!(a.iter().all(|&t| t < 2));
        assert!(a.contains(&0) && a.contains(&1));
    }
}
