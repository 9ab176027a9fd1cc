//! The one forward pass every feature goes through: scoring, generation, capture, steering.

use burn::tensor::{
    activation, backend::Backend, module, ops::AttentionModuleOptions, Distribution,
    IndexingUpdateOp, Int, Tensor, TensorData,
};

use crate::batch::TokenBatch;
use crate::cache::KvCache;
use crate::lora::{LoraAdapter, Target};
use crate::model::{Block, Linear, ModelWeights};
use crate::precision::{cast, to_f32};

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
    /// Training forward: apply each adapter's `lora_dropout` to the LoRA input, as PEFT does in
    /// train mode (`B(A(dropout(x)))·s`). Masks come from the backend's RNG (`B::seed`).
    /// Scoring, generation and capture leave this off.
    pub training: bool,
    /// Seeds the training forward's dropout masks, drawn on the host per (layer, projection)
    /// from this seed: the same masks whatever else uses the backend's process-global RNG
    /// (bit-identical resume, concurrent sessions). `None` draws from the backend RNG.
    pub dropout_seed: Option<u64>,
}

impl<B: Backend> Default for ForwardOptions<'_, B> {
    fn default() -> Self {
        Self {
            adapters: Vec::new(),
            capture: Vec::new(),
            steering: Vec::new(),
            response: None,
            training: false,
            dropout_seed: None,
        }
    }
}

/// Result of a forward pass.
#[derive(Debug, Clone)]
pub struct ForwardOutput<B: Backend> {
    /// Final-normed hidden states `[batch, seq, hidden]` in the model's precision (feed to
    /// [`ModelWeights::logits`]).
    pub hidden: Tensor<B, 3>,
    /// `(layer, [batch, seq, hidden])` for each requested layer, before the final norm, in f32.
    pub captured: Vec<(usize, Tensor<B, 3>)>,
}

/// The token rows (of the flattened `[batch·seq, …]` activations) using each distinct adapter.
/// The LoRA update is computed for those rows only and added back in place, so K adapters in
/// one batch cost one LoRA product per token, not K.
struct AdapterGroup<'a, B: Backend> {
    adapter: &'a LoraAdapter<B>,
    scale: f32,
    /// Seed of host-drawn dropout masks (see [`ForwardOptions::dropout_seed`]).
    dropout_seed: Option<u64>,
    /// Dropout probability on the LoRA input (0 outside training).
    dropout: f64,
    /// `None` when every row uses this adapter.
    token_rows: Option<Tensor<B, 1, Int>>,
}

/// HF's Qwen2RMSNorm: normalise in f32, cast back, then scale by the weight.
fn rms_norm<B: Backend>(x: Tensor<B, 3>, w: &Tensor<B, 1>, eps: f64) -> Tensor<B, 3> {
    let dtype = x.dtype();
    let x = to_f32(x);
    let var = x.clone().powi_scalar(2).mean_dim(2);
    let normed = cast(x * (var + eps).sqrt().recip(), dtype);
    normed * w.clone().unsqueeze_dim::<2>(0).unsqueeze_dim::<3>(0)
}

/// RoPE for one forward pass, laid out for the `[rows·heads, head_dim]` view of a projection.
///
/// `rotate_half(x)` is `x·R` with `R` a signed permutation, so it runs as a GEMM on contiguous
/// data instead of narrow/neg/cat on strided views; every product with `R` has exactly one
/// non-zero term, so the result is bit-identical to the slicing form.
struct Rope<B: Backend> {
    rot: Tensor<B, 2>,
    /// `(cos, sin)` `[rows·heads, head_dim]` for the query heads and the KV heads.
    q: (Tensor<B, 2>, Tensor<B, 2>),
    k: (Tensor<B, 2>, Tensor<B, 2>),
}

impl<B: Backend> Rope<B> {
    /// `x: [rows, heads·head_dim]` → rotated `[rows·heads, head_dim]`.
    fn apply(&self, x: Tensor<B, 2>, table: &(Tensor<B, 2>, Tensor<B, 2>)) -> Tensor<B, 2> {
        let d = self.rot.dims()[0];
        let [rows, width] = x.dims();
        let x = x.reshape([rows * width / d, d]);
        x.clone() * table.0.clone() + x.matmul(self.rot.clone()) * table.1.clone()
    }
}

/// `R` with `x·R = cat(−x[d/2..], x[..d/2])`.
fn rotate_half_matrix(d: usize) -> Vec<f32> {
    let h = d / 2;
    let mut r = vec![0.0f32; d * d];
    for j in 0..d {
        if j < h {
            r[(j + h) * d + j] = -1.0;
        } else {
            r[(j - h) * d + j] = 1.0;
        }
    }
    r
}

impl<B: Backend> ModelWeights<B> {
    /// RoPE tables for the given positions (rotate_half layout), repeated per head; computed
    /// in f32 and cast to the model's precision, as HF does.
    fn rope(&self, positions: &[Vec<usize>], device: &B::Device) -> Rope<B> {
        let c = &self.config;
        let dtype = self.precision.dtype();
        let d = c.head_dim;
        let theta = c.rope_theta as f32;
        let inv: Vec<f32> = (0..d / 2)
            .map(|i| 1.0 / theta.powf((2 * i) as f32 / d as f32))
            .collect();
        // One `[head_dim]` row per token (the frequency table repeats for both halves), computed
        // once and repeated per head for the query and the KV tables.
        let (mut cos, mut sin) = (Vec::new(), Vec::new());
        for &p in positions.iter().flatten() {
            for f in inv.iter().chain(&inv) {
                let a = p as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        let tokens = cos.len() / d.max(1);
        let table = |heads: usize| {
            let per_head = |v: &[f32]| -> Vec<f32> {
                v.chunks(d)
                    .flat_map(|row| std::iter::repeat_n(row, heads).flatten().copied())
                    .collect()
            };
            let mk = |v: Vec<f32>| {
                cast(
                    Tensor::<B, 2>::from_data(TensorData::new(v, [tokens * heads, d]), device),
                    dtype,
                )
            };
            (mk(per_head(&cos)), mk(per_head(&sin)))
        };
        Rope {
            rot: cast(
                Tensor::from_data(TensorData::new(rotate_half_matrix(d), [d, d]), device),
                dtype,
            ),
            q: table(c.num_heads),
            k: table(c.num_kv_heads),
        }
    }

    fn add_lora(
        &self,
        target: Target,
        layer: usize,
        x: Tensor<B, 2>,
        mut y: Tensor<B, 2>,
        groups: &[AdapterGroup<'_, B>],
    ) -> Tensor<B, 2> {
        // Adapters are f32: like PEFT, cast the input to them and the update back.
        let dtype = y.dtype();
        for g in groups {
            let Some(pair) = g.adapter.layers.get(layer).and_then(|p| p.get(&target)) else {
                continue;
            };
            let delta = |xs: Tensor<B, 2>| {
                let xs = match g.dropout_seed {
                    Some(seed) if g.dropout > 0.0 => {
                        seeded_dropout(to_f32(xs), g.dropout, seed ^ mask_stream(layer, target))
                    }
                    _ => lora_dropout(to_f32(xs), g.dropout),
                };
                cast(
                    xs.matmul(pair.a.clone()).matmul(pair.b.clone()) * g.scale,
                    dtype,
                )
            };
            y = match &g.token_rows {
                None => y + delta(x.clone()),
                Some(idx) => {
                    let d = delta(x.clone().select(0, idx.clone()));
                    y.select_assign(0, idx.clone(), d, IndexingUpdateOp::Add)
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

    /// One decoder block. `mask` is the additive attention mask `[b, 1, rep·t, tk]` for the
    /// grouped-query layout (the `[b, 1, t, tk]` mask repeated once per query head of a group).
    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        l: usize,
        blk: &Block<B>,
        h: Tensor<B, 3>,
        rope: &Rope<B>,
        mask: &Tensor<B, 4>,
        groups: &[AdapterGroup<'_, B>],
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let c = &self.config;
        let [b, t, hs] = h.dims();
        let (nh, nkv, hd) = (c.num_heads, c.num_kv_heads, c.head_dim);
        let rep = nh / nkv;
        let x = rms_norm(h.clone(), &blk.input_norm, c.rms_norm_eps).reshape([b * t, hs]);
        let q = self.proj(&blk.q, Target::Q, l, x.clone(), groups);
        let k = self.proj(&blk.k, Target::K, l, x.clone(), groups);
        let v = self.proj(&blk.v, Target::V, l, x, groups);
        let q = rope.apply(q, &rope.q);
        let k = rope.apply(k, &rope.k);
        let kv_heads = |y: Tensor<B, 2>| y.reshape([b, t, nkv, hd]).swap_dims(1, 2);
        let (k, v) = (kv_heads(k), kv_heads(v));
        let (k, v) = match cache {
            Some(cache) => cache.append(l, k, v),
            None => (k, v),
        };
        // Grouped-query attention without copying K/V per query head: the `rep` query heads
        // sharing KV head j (HF's repeat_kv order, heads j·rep..(j+1)·rep) become one
        // `[rep·t, hd]` block against that head's keys.
        let q = q
            .reshape([b, t, nkv, rep, hd])
            .permute([0, 2, 3, 1, 4])
            .reshape([b, nkv, rep * t, hd]);
        // Scores, softmax and the weighted sum in f32 (HF's eager path upcasts the softmax).
        let dtype = q.dtype();
        let attn = module::attention(
            to_f32(q),
            to_f32(k),
            to_f32(v),
            None,
            Some(mask.clone()),
            AttentionModuleOptions {
                scale: Some(1.0 / (hd as f64).sqrt()),
                softcap: None,
                is_causal: false,
            },
        )
        .reshape([b, nkv, rep, t, hd])
        .permute([0, 3, 1, 2, 4])
        .reshape([b * t, nh * hd]);
        let attn = cast(attn, dtype);
        let h = h + self
            .proj(&blk.o, Target::O, l, attn, groups)
            .reshape([b, t, hs]);
        let x = rms_norm(h.clone(), &blk.post_norm, c.rms_norm_eps).reshape([b * t, hs]);
        let gate = self.proj(&blk.gate, Target::Gate, l, x.clone(), groups);
        let up = self.proj(&blk.up, Target::Up, l, x, groups);
        let act = activation::silu(gate) * up;
        h + self
            .proj(&blk.down, Target::Down, l, act, groups)
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
        let rep = self.config.num_heads / self.config.num_kv_heads;
        let mask = attention_mask::<B>(&past_valid, &batch.valid, device).repeat_dim(2, rep);
        if let Some(c) = cache.as_deref_mut() {
            c.extend_valid(&batch.valid);
        }
        let rope = self.rope(&batch.positions, device);
        let mut groups = adapter_groups(&opts.adapters, opts.training, b, t, device);
        for (i, g) in groups.iter_mut().enumerate() {
            g.dropout_seed = opts
                .dropout_seed
                .map(|s| s.wrapping_add((i as u64).wrapping_mul(0xA24B_AED4_963E_E407)));
        }
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
                    &rope,
                    &mask,
                    &groups,
                    cache.as_deref_mut(),
                );
            }
            for (s, m) in opts.steering.iter().zip(&steer_masks) {
                if s.layer == l {
                    let add = to_f32(s.vector.clone())
                        .unsqueeze_dim::<2>(0)
                        .unsqueeze_dim::<3>(0)
                        * s.alpha;
                    let add = match m {
                        Some(m) => add * m.clone(),
                        None => add,
                    };
                    let dtype = h.dtype();
                    h = h + cast(add, dtype);
                }
            }
            if opts.capture.contains(&l) {
                captured.push((l, to_f32(h.clone())));
            }
        }
        let hidden = rms_norm(h, &self.norm, self.config.rms_norm_eps);
        ForwardOutput { hidden, captured }
    }

    /// `hidden: [rows, hidden]` → logits `[rows, vocab]`, in f32.
    pub fn logits_rows(&self, hidden: Tensor<B, 2>) -> Tensor<B, 2> {
        to_f32(hidden.matmul(self.lm_head.clone()))
    }

    /// `hidden: [b, t, hidden]` → logits `[b, t, vocab]`, in f32.
    pub fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, t, hs] = hidden.dims();
        self.logits_rows(hidden.reshape([b * t, hs]))
            .reshape([b, t, self.config.vocab_size])
    }
}

/// Inverted dropout: zero each element with probability `p`, scale the survivors by 1/(1−p).
pub(crate) fn lora_dropout<B: Backend>(x: Tensor<B, 2>, p: f64) -> Tensor<B, 2> {
    if p <= 0.0 {
        return x;
    }
    let keep = Tensor::<B, 2>::random(x.shape(), Distribution::Bernoulli(1.0 - p), &x.device());
    x * keep * (1.0 / (1.0 - p))
}

/// A stream id per (layer, projection), mixed into a dropout seed.
fn mask_stream(layer: usize, target: Target) -> u64 {
    let t = Target::ALL.iter().position(|&x| x == target).unwrap_or(0) as u64;
    let mut x = (layer as u64) << 8 | t;
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Inverted dropout with a mask drawn on the host from `seed` (ChaCha8): the same mask for
/// the same seed on every backend and whatever else uses the backend's RNG.
pub(crate) fn seeded_dropout<B: Backend>(x: Tensor<B, 2>, p: f64, seed: u64) -> Tensor<B, 2> {
    use rand::{Rng, SeedableRng};
    let dims = x.dims();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let scale = (1.0 / (1.0 - p)) as f32;
    let mask: Vec<f32> = (0..dims[0] * dims[1])
        .map(|_| if rng.gen::<f64>() < p { 0.0 } else { scale })
        .collect();
    let device = x.device();
    x * Tensor::<B, 2>::from_data(TensorData::new(mask, dims), &device)
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
    training: bool,
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
            dropout: if training { a.config.dropout } else { 0.0 },
            dropout_seed: None,
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

#[cfg(test)]
mod tests {
    use burn::tensor::{backend::Backend, Tensor};

    use super::lora_dropout;
    use crate::CpuBackend;

    #[test]
    fn lora_dropout_zeroes_p_of_the_inputs_and_rescales_the_rest() {
        let device = Default::default();
        CpuBackend::seed(&device, 3);
        let x = Tensor::<CpuBackend, 2>::ones([200, 500], &device);
        let y: Vec<f32> = lora_dropout(x.clone(), 0.25)
            .into_data()
            .into_vec()
            .expect("f32");
        let kept = 1.0 / 0.75;
        assert!(y.iter().all(|&v| v == 0.0 || (v - kept).abs() < 1e-6));
        let zeros = y.iter().filter(|&&v| v == 0.0).count() as f64 / y.len() as f64;
        assert!((zeros - 0.25).abs() < 0.01, "dropped fraction {zeros}");
        let mean = y.iter().map(|&v| f64::from(v)).sum::<f64>() / y.len() as f64;
        assert!(
            (mean - 1.0).abs() < 0.02,
            "inverted dropout keeps the mean: {mean}"
        );
        let same: Vec<f32> = lora_dropout(x, 0.0).into_data().into_vec().expect("f32");
        assert!(same.iter().all(|&v| v == 1.0));
    }

    #[test]
    fn seeded_dropout_is_reproducible_and_ignores_the_backend_rng() {
        use super::seeded_dropout;
        let device = Default::default();
        let x = Tensor::<CpuBackend, 2>::ones([64, 64], &device);
        let a: Vec<f32> = seeded_dropout(x.clone(), 0.25, 7)
            .into_data()
            .into_vec()
            .unwrap();
        <CpuBackend as burn::tensor::backend::Backend>::seed(&device, 99);
        let _ =
            Tensor::<CpuBackend, 2>::random([8, 8], burn::tensor::Distribution::Default, &device);
        let b: Vec<f32> = seeded_dropout(x.clone(), 0.25, 7)
            .into_data()
            .into_vec()
            .unwrap();
        assert_eq!(a, b);
        let c: Vec<f32> = seeded_dropout(x, 0.25, 8).into_data().into_vec().unwrap();
        assert_ne!(a, c);
        let zeros = a.iter().filter(|&&v| v == 0.0).count() as f64 / a.len() as f64;
        assert!((zeros - 0.25).abs() < 0.03, "{zeros}");
        assert!(a.iter().all(|&v| v == 0.0 || (v - 4.0 / 3.0).abs() < 1e-6));
    }
}
