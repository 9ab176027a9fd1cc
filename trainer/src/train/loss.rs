//! The loss of one micro-batch: answer-only cross-entropy plus the regularizer, all fed by the
//! engine's one forward pass, each term normalised by the whole accumulation window's counts.

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};

use crate::batch::TokenBatch;
use crate::chat::EncodedChat;
use crate::error::Result;
use crate::forward::{ForwardOptions, Steering};
use crate::lora::LoraAdapter;
use crate::model::Qwen2Weights;
use crate::precision::host_f32;
use crate::train::config::{KlDirection, KlTokens};

/// The regularizer with its tensors on the device.
#[derive(Debug, Clone)]
pub enum ResolvedRegularizer<B: Backend> {
    /// Plain cross-entropy.
    None,
    /// KL toward the base model.
    Kl {
        /// λ.
        lambda: f64,
        /// Direction.
        direction: KlDirection,
        /// Positions.
        tokens: KlTokens,
    },
    /// LDIFS over these layers.
    Ldifs {
        /// λ.
        lambda: f64,
        /// Layer indices.
        layers: Vec<usize>,
    },
    /// Steering hooks of the training forward.
    Steering(Vec<Steering<B>>),
}

/// Counts over a whole accumulation window that every micro-batch divides by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowNorms {
    /// Answer tokens in the window (≥ 1).
    pub answer: f64,
    /// KL positions in the window (≥ 1).
    pub kl: f64,
    /// Examples in the window.
    pub examples: f64,
}

impl WindowNorms {
    /// The window's counts for `examples` (each at least 1, so an empty window divides by 1).
    pub fn of(examples: &[&EncodedChat], kl_tokens: Option<KlTokens>) -> Self {
        let answer: usize = examples
            .iter()
            .map(|e| crate::train::data::answer_tokens(e))
            .sum();
        let kl = match kl_tokens {
            Some(KlTokens::All) => examples.iter().map(|e| e.ids.len().saturating_sub(1)).sum(),
            _ => answer,
        };
        Self {
            answer: answer.max(1) as f64,
            kl: kl.max(1) as f64,
            examples: examples.len().max(1) as f64,
        }
    }
}

/// Host values of one micro-batch's terms (already divided by the window's counts and
/// multiplied by λ, so the window's sums are the step's terms).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MicroStats {
    /// Σ answer-token NLL / n.
    pub ce: f64,
    /// λ·Σ KL / n_KL.
    pub kl: f64,
    /// λ·Σ ‖φ_θ − φ_0‖² / E.
    pub ldifs: f64,
    /// Σ answer-token NLL (undivided).
    pub nll_sum: f64,
    /// Answer tokens whose arg-max prediction is the target.
    pub correct: usize,
    /// Answer tokens.
    pub answer_tokens: usize,
    /// Non-pad input tokens.
    pub tokens: usize,
}

/// (row, predicting position, target id, is an answer token) for each scored position.
fn picks(examples: &[&EncodedChat], t: usize, all: bool) -> Vec<(usize, usize, u32, bool)> {
    let mut out = Vec::new();
    for (r, e) in examples.iter().enumerate() {
        for p in 1..e.ids.len() {
            let answer = e.answer_mask.get(p).copied().unwrap_or(false);
            if answer || all {
                out.push((r, r * t + p - 1, e.ids[p], answer));
            }
        }
    }
    out
}

fn int_tensor<B: Backend, const D: usize>(
    v: Vec<i64>,
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D, Int> {
    Tensor::from_data(TensorData::new(v, shape), device)
}

/// `log_softmax(logits, 1)` whose normaliser is summed in chunks of 64: burn-flex sums a row
/// in one running f32 total, which over a 49k-token vocabulary drops the small terms and made
/// the loss about 1e-4 too low (see `score::row_sums`). Differentiable like the plain one.
pub fn log_softmax_rows<B: Backend>(logits: Tensor<B, 2>) -> Tensor<B, 2> {
    const CHUNK: usize = 64;
    let [n, v] = logits.dims();
    let max = logits.clone().max_dim(1).detach();
    let mut e = (logits.clone() - max.clone()).exp();
    let mut len = v;
    while len > CHUNK && len.is_multiple_of(CHUNK) {
        e = e
            .reshape([n, len / CHUNK, CHUNK])
            .sum_dim(2)
            .reshape([n, len / CHUNK]);
        len /= CHUNK;
    }
    let lse = e.sum_dim(1).log() + max;
    logits - lse
}

fn scalar(t: Tensor<impl Backend, 1>) -> Result<f64> {
    Ok(f64::from(
        host_f32(t, "loss")?.first().copied().unwrap_or(0.0),
    ))
}

/// The loss of one micro-batch under `adapter` (`training` = dropout on, steering applied) and
/// its host statistics. The returned tensor is `[1]`; call `backward` on it when the adapter is
/// tracked.
#[allow(clippy::too_many_arguments)]
pub fn micro_loss<B: Backend>(
    weights: &Qwen2Weights<B>,
    adapter: &LoraAdapter<B>,
    examples: &[&EncodedChat],
    pad_id: u32,
    reg: &ResolvedRegularizer<B>,
    norms: WindowNorms,
    training: bool,
    dropout_seed: Option<u64>,
    device: &B::Device,
) -> Result<(Tensor<B, 1>, MicroStats)> {
    let seqs: Vec<Vec<u32>> = examples.iter().map(|e| e.ids.clone()).collect();
    let batch = TokenBatch::right_padded(&seqs, pad_id);
    let (b, t) = (batch.rows(), batch.len());
    let hs = weights.config.hidden_size;
    let mut stats = MicroStats {
        tokens: seqs.iter().map(Vec::len).sum(),
        ..MicroStats::default()
    };
    let ldifs_layers = match reg {
        ResolvedRegularizer::Ldifs { layers, .. } => layers.clone(),
        _ => Vec::new(),
    };
    let opts = ForwardOptions {
        adapters: vec![Some(adapter); b],
        capture: ldifs_layers.clone(),
        steering: match reg {
            ResolvedRegularizer::Steering(s) if training => s.clone(),
            _ => Vec::new(),
        },
        response: None,
        training,
        dropout_seed,
    };
    let out = weights.forward(&batch, &opts, None, device);
    let kl = match reg {
        ResolvedRegularizer::Kl {
            lambda,
            direction,
            tokens,
        } => Some((*lambda, *direction, *tokens)),
        _ => None,
    };
    let picks = picks(examples, t, matches!(kl, Some((_, _, KlTokens::All))));
    let mut loss = Tensor::<B, 1>::zeros([1], device);
    // The reference pass (adapters off, no steering, no dropout): constants only, so it builds
    // no autodiff graph. Needed by KL and LDIFS.
    let reference = (kl.is_some() || !ldifs_layers.is_empty()).then(|| {
        let ref_opts = ForwardOptions {
            adapters: vec![None; b],
            capture: ldifs_layers.clone(),
            ..ForwardOptions::default()
        };
        weights.forward(&batch, &ref_opts, None, device)
    });
    if !picks.is_empty() {
        let n = picks.len();
        let rows = int_tensor::<B, 1>(picks.iter().map(|p| p.1 as i64).collect(), [n], device);
        let flat = out.hidden.clone().reshape([b * t, hs]);
        let logits = weights.logits_rows(flat.select(0, rows.clone()));
        let lp = log_softmax_rows(logits.clone());
        let targets = int_tensor::<B, 2>(
            picks.iter().map(|p| i64::from(p.2)).collect(),
            [n, 1],
            device,
        );
        let is_answer: Vec<f32> = picks.iter().map(|p| if p.3 { 1.0 } else { 0.0 }).collect();
        let w = Tensor::<B, 2>::from_data(TensorData::new(is_answer, [n, 1]), device);
        let nll_sum = -(lp.clone().gather(1, targets) * w).sum();
        stats.nll_sum = scalar(nll_sum.clone())?;
        stats.ce = stats.nll_sum / norms.answer;
        loss = loss + nll_sum / norms.answer;
        let argmax = logits.detach().argmax(1);
        let argmax: Vec<i64> = argmax
            .into_data()
            .convert::<i64>()
            .into_vec::<i64>()
            .unwrap_or_default();
        for (p, &a) in picks.iter().zip(&argmax) {
            if p.3 {
                stats.answer_tokens += 1;
                stats.correct += usize::from(a == i64::from(p.2));
            }
        }
        if let (Some((lambda, direction, _)), Some(reference)) = (kl, reference.as_ref()) {
            let flat0 = reference.hidden.clone().reshape([b * t, hs]);
            let lp0 = log_softmax_rows(weights.logits_rows(flat0.select(0, rows))).detach();
            let kl_sum = match direction {
                KlDirection::Forward => (lp.clone().exp() * (lp - lp0)).sum(),
                KlDirection::Reverse => (lp0.clone().exp() * (lp0 - lp)).sum(),
            };
            let term = kl_sum * (lambda / norms.kl);
            stats.kl = scalar(term.clone())?;
            loss = loss + term;
        }
    }
    if let (ResolvedRegularizer::Ldifs { lambda, .. }, Some(reference)) = (reg, reference.as_ref())
    {
        let valid: Vec<f32> = batch
            .valid
            .iter()
            .flatten()
            .map(|&v| if v { 1.0 } else { 0.0 })
            .collect();
        let mask = Tensor::<B, 3>::from_data(TensorData::new(valid, [b, t, 1]), device);
        let masked = |c: &[(usize, Tensor<B, 3>)]| -> Vec<Tensor<B, 3>> {
            c.iter().map(|(_, h)| h.clone() * mask.clone()).collect()
        };
        let (theta, zero) = (masked(&out.captured), masked(&reference.captured));
        // ‖φ‖ per example over the concatenation of its layers: [b, 1, 1].
        let norm = |xs: &[Tensor<B, 3>]| {
            xs.iter()
                .map(|x| x.clone().powi_scalar(2).sum_dim(2).sum_dim(1))
                .reduce(|a, c| a + c)
                .map(|s| s.sqrt())
        };
        if let (Some(nt), Some(n0)) = (norm(&theta), norm(&zero)) {
            let n0 = n0.detach();
            let dist = theta
                .iter()
                .zip(&zero)
                .map(|(xt, x0)| {
                    let d = xt.clone() / nt.clone() - x0.clone().detach() / n0.clone();
                    d.powi_scalar(2).sum()
                })
                .reduce(|a, c| a + c)
                .expect("at least one layer");
            let term = dist * (lambda / norms.examples);
            stats.ldifs = scalar(term.clone())?;
            loss = loss + term;
        }
    }
    Ok((loss, stats))
}
