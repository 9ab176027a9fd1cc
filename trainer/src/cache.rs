//! Key/value cache for incremental decoding.

use burn::tensor::{backend::Backend, Tensor};

/// Per-layer keys and values `[batch, kv_heads, seq, head_dim]` plus key validity.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
    /// `[rows][cached_len]`: true for real (non-padding) keys.
    pub valid: Vec<Vec<bool>>,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for `num_layers` blocks and `rows` sequences.
    pub fn new(num_layers: usize, rows: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
            valid: vec![Vec::new(); rows],
        }
    }

    /// Cached length.
    pub fn len(&self) -> usize {
        self.valid.first().map_or(0, Vec::len)
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A one-row cache repeated `rows` times: a shared prefix that several continuations
    /// extend independently.
    pub fn repeat_rows(&self, rows: usize) -> Self {
        debug_assert!(self.valid.len() == 1, "repeat_rows takes a one-row cache");
        Self {
            layers: self
                .layers
                .iter()
                .map(|l| {
                    l.as_ref().map(|(k, v)| {
                        (k.clone().repeat_dim(0, rows), v.clone().repeat_dim(0, rows))
                    })
                })
                .collect(),
            valid: vec![self.valid.first().cloned().unwrap_or_default(); rows],
        }
    }

    pub(crate) fn extend_valid(&mut self, valid: &[Vec<bool>]) {
        for (c, v) in self.valid.iter_mut().zip(valid) {
            c.extend_from_slice(v);
        }
    }

    /// Appends new keys/values of `layer` and returns the full ones.
    pub(crate) fn append(
        &mut self,
        layer: usize,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let (k, v) = match self.layers[layer].take() {
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
            None => (k, v),
        };
        self.layers[layer] = Some((k.clone(), v.clone()));
        (k, v)
    }
}
