//! The one forward pass every feature goes through: scoring, generation, capture, steering.

use burn::tensor::{activation, backend::Backend, IndexingUpdateOp, Int, Tensor, TensorData};

use crate::batch::TokenBatch;
use crate::cache::KvCache;
use crate::lora::{LoraAdapter, Target};
use crate::model::{Block, Linear, Qwen2Weights};

/// Which positions a steering vector is added at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SteerPositions {
    /// Every position.
    All,
    /// Positions whose `response` flag is false.
    Prompt,
    /// Positions whose `response` flag is true.
    Response,
}

/// Additive hook `h_l ← h_l + α·v` at the output of block `layer` (1-based; 0 = embeddings).
#[derive(Debug, Clone)]
pub struct Steering<B: Backend> {
    /// Block whose output is steered (1..=num_layers; 0 steers the embeddings).
    pub layer: usize,
    /// `[hidden]`.
    pub vector: Tensor<B, 1>,
    /// α.
    pub alpha: f32,
    /// Where it applies.
    pub positions: SteerPositions,
}

/// Options of one forward pass.
#[derive(Debug, Clone)]
pub struct ForwardOptions<'a, B: Backend> {
    /// Adapter per row (`None` = base model, adapters off).
    pub adapters: Vec<Option<&'a LoraAdapter<B>>>,
    /// Residual states to return: 0 = embeddings, l = output of block l.
    pub capture: Vec<usize>,
    /// Steering hooks.
    pub steering: Vec<Steering<B>>,
    /// Per row and position: true for response tokens (used by steering masks).
    pub response: Option<Vec<Vec<bool>>>,
}

impl<B: Backend> Default for ForwardOptions<'_, B> {
    fn default() -> Self {
        Self {
            adapters: Vec::new(),
            capture: Vec::new(),
            steering: Vec::new(),
            response: None,
        }
    }
}

/// Result of a forward pass.
#[derive(Debug, Clone)]
pub struct ForwardOutput<B: Backend> {
    /// Final-normed hidden states `[batch, seq, hidden]` (feed to [`Qwen2Weights::logits`]).
    pub hidden: Tensor<B, 3>,
    /// `(layer, [batch, seq, hidden])` for each requested layer, before the final norm.
    pub captured: Vec<(usize, Tensor<B, 3>)>,
}

/// The token rows (of the flattened `[batch·seq, …]` activations) using each distinct adapter.
/// The LoRA update is computed for those rows only and added back in place, so K adapters in
/// one batch cost one LoRA product per token, not K.
struct AdapterGroup<'a, B: Backend> {
    adapter: &'a LoraAdapter<B>,
    scale: f32,
    /// `None` when every row uses this adapter.
    token_rows: Option<Tensor<B, 1, Int>>,
}

fn rms_norm<B: Backend>(x: Tensor<B, 3>, w: &Tensor<B, 1>, eps: f64) -> Tensor<B, 3> {
    let var = x.clone().powi_scalar(2).mean_dim(2);
    x * (var + eps).sqrt().recip() * w.clone().unsqueeze_dim::<2>(0).unsqueeze_dim::<3>(0)
}

fn rotate_half<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let d = x.dims()[3];
    let x1 = x.clone().narrow(3, 0, d / 2);
    let x2 = x.narrow(3, d / 2, d - d / 2);
    Tensor::cat(vec![x2.neg(), x1], 3)
}

impl<B: Backend> Qwen2Weights<B> {
    /// RoPE tables `[batch, 1, seq, head_dim]` for the given positions (rotate_half layout).
    fn rope(&self, positions: &[Vec<usize>], device: &B::Device) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let d = self.config.head_dim;
        let theta = self.config.rope_theta as f32;
        let inv: Vec<f32> = (0..d / 2)
            .map(|i| 1.0 / theta.powf((2 * i) as f32 / d as f32))
            .collect();
        let (b, t) = (positions.len(), positions.first().map_or(0, Vec::len));
        let mut cos = Vec::with_capacity(b * t * d);
        let mut sin = Vec::with_capacity(b * t * d);
        for row in positions {
            for &p in row {
                // rotate_half layout: the frequency table repeats for both halves.
                for f in inv.iter().chain(&inv) {
                    let a = p as f32 * f;
                    cos.push(a.cos());
                    sin.push(a.sin());
                }
            }
        }
        let mk = |v: Vec<f32>| {
            Tensor::<B, 3>::from_data(TensorData::new(v, [b, t, d]), device).unsqueeze_dim(1)
        };
        (mk(cos), mk(sin))
    }

    /// `lin(x)` split into `parts` (target, width) along the output, each with its LoRA updates.
    fn proj_split<const N: usize>(
        &self,
        lin: &Linear<B>,
        parts: [(Target, usize); N],
        layer: usize,
        x: Tensor<B, 2>,
        groups: &[AdapterGroup<'_, B>],
    ) -> [Tensor<B, 2>; N] {
        let y = lin.forward(x.clone());
        let mut offset = 0;
        parts.map(|(target, width)| {
            let yi = y.clone().narrow(1, offset, width);
            offset += width;
            self.add_lora(target, layer, x.clone(), yi, groups)
        })
    }

    fn add_lora(
        &self,
        target: Target,
        layer: usize,
        x: Tensor<B, 2>,
        mut y: Tensor<B, 2>,
        groups: &[AdapterGroup<'_, B>],
    ) -> Tensor<B, 2> {
        for g in groups {
            let Some(pair) = g.adapter.layers.get(layer).and_then(|p| p.get(&target)) else {
                continue;
            };
            y = match &g.token_rows {
                None => y + x.clone().matmul(pair.a.clone()).matmul(pair.b.clone()) * g.scale,
                Some(idx) => {
                    let xs = x.clone().select(0, idx.clone());
                    let delta = xs.matmul(pair.a.clone()).matmul(pair.b.clone()) * g.scale;
                    y.select_assign(0, idx.clone(), delta, IndexingUpdateOp::Add)
                }
            };
        }
        y
    }

    fn proj(
        &self,
        lin: &Linear<B>,
        target: Target,
        layer: usize,
        x: Tensor<B, 2>,
        groups: &[AdapterGroup<'_, B>],
    ) -> Tensor<B, 2> {
        let y = lin.forward(x.clone());
        self.add_lora(target, layer, x, y, groups)
    }

    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        l: usize,
        blk: &Block<B>,
        h: Tensor<B, 3>,
        cos: &Tensor<B, 4>,
        sin: &Tensor<B, 4>,
        mask: &Tensor<B, 4>,
        groups: &[AdapterGroup<'_, B>],
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let c = &self.config;
        let [b, t, hs] = h.dims();
        let (nh, nkv, hd) = (c.num_heads, c.num_kv_heads, c.head_dim);
        let x = rms_norm(h.clone(), &blk.input_norm, c.rms_norm_eps).reshape([b * t, hs]);
        let kv = nkv * hd;
        let [q, k, v] = self.proj_split(
            &blk.qkv,
            [(Target::Q, hs), (Target::K, kv), (Target::V, kv)],
            l,
            x,
            groups,
        );
        let heads = |y: Tensor<B, 2>, n: usize| y.reshape([b, t, n, hd]).swap_dims(1, 2);
        let (q, k, v) = (heads(q, nh), heads(k, nkv), heads(v, nkv));
        let q = q.clone() * cos.clone() + rotate_half(q) * sin.clone();
        let k = k.clone() * cos.clone() + rotate_half(k) * sin.clone();
        let (k, v) = match cache {
            Some(cache) => cache.append(l, k, v),
            None => (k, v),
        };
        let tk = k.dims()[2];
        let rep = nh / nkv;
        let expand = |x: Tensor<B, 4>| {
            if rep == 1 {
                x
            } else {
                x.unsqueeze_dim::<5>(2)
                    .repeat_dim(2, rep)
                    .reshape([b, nh, tk, hd])
            }
        };
        let (k, v) = (expand(k), expand(v));
        let scores = q.matmul(k.swap_dims(2, 3)) * (1.0 / (hd as f64).sqrt()) + mask.clone();
        let probs = activation::softmax(scores, 3);
        let attn = probs.matmul(v).swap_dims(1, 2).reshape([b * t, nh * hd]);
        let h = h + self
            .proj(&blk.o, Target::O, l, attn, groups)
            .reshape([b, t, hs]);
        let x = rms_norm(h.clone(), &blk.post_norm, c.rms_norm_eps).reshape([b * t, hs]);
        let i = c.intermediate_size;
        let [gate, up] = self.proj_split(
            &blk.gate_up,
            [(Target::Gate, i), (Target::Up, i)],
            l,
            x,
            groups,
        );
        let gate = activation::silu(gate);
        h + self
            .proj(&blk.down, Target::Down, l, gate * up, groups)
            .reshape([b, t, hs])
    }

    /// Runs the model over `batch` (appending to `cache` when given).
    ///
    /// `batch.ids: [b, t]`; returns final-normed hidden states `[b, t, hidden]`.
    pub fn forward(
        &self,
        batch: &TokenBatch,
        opts: &ForwardOptions<'_, B>,
        mut cache: Option<&mut KvCache<B>>,
        device: &B::Device,
    ) -> ForwardOutput<B> {
        let (b, t) = (batch.rows(), batch.len());
        let hs = self.config.hidden_size;
        let ids: Vec<i64> = batch.ids.iter().flatten().map(|&i| i64::from(i)).collect();
        let ids = Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [b * t]), device);
        let mut h = self.embed.clone().select(0, ids).reshape([b, t, hs]);
        let past_valid: Vec<Vec<bool>> = cache
            .as_ref()
            .map(|c| c.valid.clone())
            .unwrap_or_else(|| vec![Vec::new(); b]);
        let mask = attention_mask::<B>(&past_valid, &batch.valid, device);
        if let Some(c) = cache.as_deref_mut() {
            c.extend_valid(&batch.valid);
        }
        let (cos, sin) = self.rope(&batch.positions, device);
        let groups = adapter_groups(&opts.adapters, b, t, device);
        let steer_masks: Vec<Option<Tensor<B, 3>>> = opts
            .steering
            .iter()
            .map(|s| steer_mask(s.positions, opts.response.as_deref(), b, t, device))
            .collect();
        let mut captured = Vec::new();
        for l in 0..=self.config.num_layers {
            if l > 0 {
                h = self.block(
                    l - 1,
                    &self.blocks[l - 1],
                    h,
                    &cos,
                    &sin,
                    &mask,
                    &groups,
                    cache.as_deref_mut(),
                );
            }
            for (s, m) in opts.steering.iter().zip(&steer_masks) {
                if s.layer == l {
                    let add =
                        s.vector.clone().unsqueeze_dim::<2>(0).unsqueeze_dim::<3>(0) * s.alpha;
                    h = match m {
                        Some(m) => h + add * m.clone(),
                        None => h + add,
                    };
                }
            }
            if opts.capture.contains(&l) {
                captured.push((l, h.clone()));
            }
        }
        let hidden = rms_norm(h, &self.norm, self.config.rms_norm_eps);
        ForwardOutput { hidden, captured }
    }

    /// `hidden: [rows, hidden]` → logits `[rows, vocab]`.
    pub fn logits_rows(&self, hidden: Tensor<B, 2>) -> Tensor<B, 2> {
        hidden.matmul(self.lm_head.clone())
    }

    /// `hidden: [b, t, hidden]` → logits `[b, t, vocab]`.
    pub fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, t, hs] = hidden.dims();
        hidden
            .reshape([b * t, hs])
            .matmul(self.lm_head.clone())
            .reshape([b, t, self.config.vocab_size])
    }
}

/// Additive mask `[b, 1, t, past+t]`: 0 where allowed, -1e30 where masked (causal + padding).
fn attention_mask<B: Backend>(
    past: &[Vec<bool>],
    valid: &[Vec<bool>],
    device: &B::Device,
) -> Tensor<B, 4> {
    let b = valid.len();
    let t = valid.first().map_or(0, Vec::len);
    let p = past.first().map_or(0, Vec::len);
    let tk = p + t;
    let mut m = vec![0.0f32; b * t * tk];
    for r in 0..b {
        for q in 0..t {
            for k in 0..tk {
                let ok = k <= p + q && if k < p { past[r][k] } else { valid[r][k - p] };
                if !ok {
                    m[(r * t + q) * tk + k] = -1e30;
                }
            }
        }
    }
    Tensor::<B, 3>::from_data(TensorData::new(m, [b, t, tk]), device).unsqueeze_dim(1)
}

fn adapter_groups<'a, B: Backend>(
    adapters: &[Option<&'a LoraAdapter<B>>],
    b: usize,
    t: usize,
    device: &B::Device,
) -> Vec<AdapterGroup<'a, B>> {
    let mut groups: Vec<AdapterGroup<'a, B>> = Vec::new();
    let mut seen: Vec<*const LoraAdapter<B>> = Vec::new();
    for a in adapters.iter().flatten() {
        let ptr: *const LoraAdapter<B> = *a;
        if seen.contains(&ptr) {
            continue;
        }
        seen.push(ptr);
        let rows: Vec<usize> = (0..b)
            .filter(|&r| {
                adapters
                    .get(r)
                    .copied()
                    .flatten()
                    .is_some_and(|x| std::ptr::eq(x, *a))
            })
            .collect();
        let token_rows = (rows.len() < b).then(|| {
            let idx: Vec<i64> = rows
                .iter()
                .flat_map(|&r| (r * t..(r + 1) * t).map(|i| i as i64))
                .collect();
            let n = idx.len();
            Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [n]), device)
        });
        groups.push(AdapterGroup {
            adapter: a,
            scale: a.config.scale() as f32,
            token_rows,
        });
    }
    groups
}

fn steer_mask<B: Backend>(
    pos: SteerPositions,
    response: Option<&[Vec<bool>]>,
    b: usize,
    t: usize,
    device: &B::Device,
) -> Option<Tensor<B, 3>> {
    let want = match pos {
        SteerPositions::All => return None,
        SteerPositions::Response => true,
        SteerPositions::Prompt => false,
    };
    let m: Vec<f32> = (0..b)
        .flat_map(|r| (0..t).map(move |q| (r, q)))
        .map(|(r, q)| {
            let is_resp = response
                .and_then(|x| x.get(r))
                .and_then(|x| x.get(q))
                .copied()
                .unwrap_or(false);
            if is_resp == want {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    Some(Tensor::<B, 2>::from_data(TensorData::new(m, [b, t]), device).unsqueeze_dim(2))
}
