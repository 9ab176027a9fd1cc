//! The trainer's burn engine behind the [`NllScorer`] seam (feature `engine`).
//!
//! Each call tokenizes its requests with the model's chat template (answer mask = assistant
//! content + its end-of-turn token, cut to `max_len`), orders the rows ([`RowOrder`]) and runs
//! them `max_batch_rows` rows per forward pass, each row under its own adapter (base =
//! adapters off).
//!
//! [`RowOrder::ByAdapter`] (default) keeps rows of one model together: measured on CPU with
//! base + 3 rank-32 adapters, mixing models inside a pass ([`RowOrder::Mixed`]) runs at 0.86×
//! of grouped passes, the cost of gathering each adapter's rows and adding its update back
//! (see BENCHMARKS.md, "Selector").

use crate::cache::CachedNll;
use crate::cli::EngineOptions;
use crate::scoring::{NllRequest, NllScorer};
use burn::tensor::backend::Backend;
use trainer::score::{mean_nll, passes};
use trainer::{Engine, EngineError, Message};

/// How rows are grouped into forward passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RowOrder {
    /// By model, then by length: passes hold one model's rows (except at group edges).
    #[default]
    ByAdapter,
    /// By length only: base and adapter rows share passes.
    Mixed,
}

/// A loaded engine with the pool-scoring settings.
pub struct EngineScorer<B: Backend> {
    engine: Engine<B>,
    max_len: usize,
    max_batch_rows: usize,
    order: RowOrder,
}

impl<B: Backend> EngineScorer<B> {
    /// Loads the base model and every adapter of `opts` onto `device`.
    pub fn load(
        opts: &EngineOptions,
        max_batch_rows: usize,
        device: B::Device,
    ) -> Result<Self, EngineError> {
        let mut engine = Engine::load(&opts.model_dir, device)?;
        for (name, dir) in &opts.adapters {
            engine.load_adapter(name, dir)?;
        }
        Ok(Self::new(engine, opts.max_length, max_batch_rows))
    }

    /// Wraps an already loaded engine (adapters resident under the names requests use).
    pub fn new(engine: Engine<B>, max_len: usize, max_batch_rows: usize) -> Self {
        EngineScorer {
            engine,
            max_len,
            max_batch_rows: max_batch_rows.max(1),
            order: RowOrder::default(),
        }
    }

    /// Sets how rows are grouped into passes.
    pub fn with_row_order(mut self, order: RowOrder) -> Self {
        self.order = order;
        self
    }

    /// The wrapped engine.
    pub fn engine(&self) -> &Engine<B> {
        &self.engine
    }
}

impl<B: Backend> NllScorer for EngineScorer<B> {
    fn score_batch(
        &mut self,
        requests: &[NllRequest<'_>],
    ) -> Result<Vec<CachedNll>, Box<dyn std::error::Error + Send + Sync>> {
        let mut encoded = Vec::with_capacity(requests.len());
        for r in requests {
            let messages: Vec<Message> = r
                .example
                .messages()
                .iter()
                .map(|m| Message {
                    role: m.role.clone(),
                    content: m.content.clone(),
                })
                .collect();
            encoded.push(
                self.engine
                    .tokenizer
                    .encode_chat(&messages, Some(self.max_len))?,
            );
        }
        let mut order: Vec<usize> = (0..requests.len()).collect();
        match self.order {
            RowOrder::ByAdapter => {
                order.sort_by_key(|&i| (requests[i].adapter, encoded[i].ids.len(), i))
            }
            RowOrder::Mixed => order.sort_by_key(|&i| (encoded[i].ids.len(), i)),
        }
        let mut out = vec![
            CachedNll {
                nll: 0.0,
                tokens: 0
            };
            requests.len()
        ];
        let lens: Vec<usize> = order.iter().map(|&i| encoded[i].ids.len()).collect();
        for range in passes(&lens, self.max_batch_rows) {
            let chunk = &order[range];
            let seqs: Vec<Vec<u32>> = chunk.iter().map(|&i| encoded[i].ids.clone()).collect();
            let adapters: Vec<Option<&str>> = chunk.iter().map(|&i| requests[i].adapter).collect();
            // Logits only at answer positions: the vocabulary projection is the largest GEMM.
            let masks: Vec<Vec<bool>> = chunk
                .iter()
                .map(|&i| encoded[i].answer_mask.clone())
                .collect();
            let lps = self
                .engine
                .masked_token_logprobs(&seqs, &adapters, &masks)?;
            for (&i, lp) in chunk.iter().zip(lps) {
                let s = mean_nll(lp);
                // A NaN or infinite NLL means the weights are broken (a diverged adapter):
                // no score built on it means anything, and a placeholder would be cached.
                if s.answer_tokens > 0 && !s.nll.is_finite() {
                    return Err(format!(
                        "model `{}` gives a non-finite NLL ({}) on a pool example; its weights \
                         produce NaN or infinite log-probs (a diverged adapter?)",
                        requests[i].adapter.unwrap_or("base"),
                        s.nll
                    )
                    .into());
                }
                out[i] = if s.answer_tokens == 0 {
                    CachedNll {
                        nll: 0.0,
                        tokens: 0,
                    }
                } else {
                    CachedNll {
                        nll: s.nll,
                        tokens: u32::try_from(s.answer_tokens).unwrap_or(u32::MAX),
                    }
                };
            }
        }
        Ok(out)
    }
}
