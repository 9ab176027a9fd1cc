//! Qwen2 weights as burn tensors, loaded from a HuggingFace model directory.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::{backend::Backend, Tensor, TensorData};

use crate::config::Qwen2Config;
use crate::error::{EngineError, Result};
use crate::precision::{cast, Precision};
use crate::weights::{read_model_dir, HostTensor};

/// A dense projection `y = x·W + b` with `W` stored `[in, out]` (HF stores `[out, in]`).
#[derive(Debug, Clone)]
pub struct Linear<B: Backend> {
    /// `[in, out]`.
    pub weight: Tensor<B, 2>,
    /// `[out]`.
    pub bias: Option<Tensor<B, 1>>,
}

impl<B: Backend> Linear<B> {
    /// `x: [rows, in]` → `[rows, out]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let y = x.matmul(self.weight.clone());
        match &self.bias {
            Some(b) => y + b.clone().unsqueeze_dim(0),
            None => y,
        }
    }
}

/// One decoder block's weights.
#[derive(Debug, Clone)]
pub struct Block<B: Backend> {
    pub(crate) input_norm: Tensor<B, 1>,
    pub(crate) post_norm: Tensor<B, 1>,
    // Separate GEMMs, not one fused `[hidden, q+k+v]` / `[hidden, 2·intermediate]` product:
    // narrowing a fused output leaves strided views, and every elementwise op after it
    // (RoPE, SiLU·up) then ran 5–10× slower on the CPU backend than the GEMM time it saved.
    pub(crate) q: Linear<B>,
    pub(crate) k: Linear<B>,
    pub(crate) v: Linear<B>,
    pub(crate) o: Linear<B>,
    pub(crate) gate: Linear<B>,
    pub(crate) up: Linear<B>,
    pub(crate) down: Linear<B>,
}

/// The frozen base model.
#[derive(Debug, Clone)]
pub struct Qwen2Weights<B: Backend> {
    /// Architecture.
    pub config: Qwen2Config,
    pub(crate) embed: Tensor<B, 2>,
    pub(crate) blocks: Vec<Block<B>>,
    pub(crate) norm: Tensor<B, 1>,
    /// `[hidden, vocab]`.
    pub(crate) lm_head: Tensor<B, 2>,
    /// Dtype of the weights above and of the residual stream.
    pub precision: Precision,
}

struct Loader<'a, B: Backend> {
    tensors: HashMap<String, HostTensor>,
    dir: &'a Path,
    device: &'a B::Device,
    precision: Precision,
}

impl<B: Backend> Loader<'_, B> {
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<HostTensor> {
        let t = self
            .tensors
            .remove(name)
            .ok_or_else(|| EngineError::Tensor {
                path: self.dir.to_path_buf(),
                tensor: name.to_string(),
                message: "missing from the model's safetensors".into(),
            })?;
        if t.shape != shape {
            return Err(EngineError::Tensor {
                path: t.file.clone(),
                tensor: name.to_string(),
                message: format!("shape {:?}, expected {:?} from config.json", t.shape, shape),
            });
        }
        Ok(t)
    }

    fn vector(&mut self, name: &str, n: usize) -> Result<Tensor<B, 1>> {
        let t = self.take(name, &[n])?;
        let v = Tensor::from_data(TensorData::new(t.data, [n]), self.device);
        Ok(cast(v, self.precision.dtype()))
    }

    /// Reads an HF `[out, in]` matrix and returns it as `[in, out]`.
    fn transposed(&mut self, name: &str, out: usize, inp: usize) -> Result<Tensor<B, 2>> {
        let t = self.take(name, &[out, inp])?;
        let w = host_transposed(&t.data, out, inp, self.device);
        Ok(cast(w, self.precision.dtype()))
    }

    fn linear(&mut self, prefix: &str, out: usize, inp: usize, bias: bool) -> Result<Linear<B>> {
        let weight = self.transposed(&format!("{prefix}.weight"), out, inp)?;
        let bias = if bias {
            Some(self.vector(&format!("{prefix}.bias"), out)?)
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }
}

/// Builds `[cols, rows]` from a row-major `[rows, cols]` host matrix.
pub(crate) fn host_transposed<B: Backend>(
    data: &[f32],
    rows: usize,
    cols: usize,
    device: &B::Device,
) -> Tensor<B, 2> {
    // Transpose with the backend's (optimised) kernels, then make the layout contiguous.
    let t = Tensor::<B, 2>::from_data(TensorData::new(data.to_vec(), [rows, cols]), device);
    Tensor::from_data(t.transpose().into_data(), device)
}

impl<B: Backend> Qwen2Weights<B> {
    /// Loads `config.json` and the safetensors weights of a Qwen2 model directory (f32).
    pub fn load(dir: &Path, device: &B::Device) -> Result<Self> {
        Self::load_with(dir, device, Precision::F32)
    }

    /// Like [`Qwen2Weights::load`], with the weights held in `precision`.
    pub fn load_with(dir: &Path, device: &B::Device, precision: Precision) -> Result<Self> {
        let config = Qwen2Config::load(&dir.join("config.json"))?;
        let tensors = read_model_dir(dir)?;
        let mut l = Loader::<B> {
            tensors,
            dir,
            device,
            precision,
        };
        let dtype = precision.dtype();
        let (h, i, v) = (
            config.hidden_size,
            config.intermediate_size,
            config.vocab_size,
        );
        let kv = config.num_kv_heads * config.head_dim;
        let embed_host = l.take("model.embed_tokens.weight", &[v, h])?;
        let embed = cast(
            Tensor::from_data(TensorData::new(embed_host.data.clone(), [v, h]), device),
            dtype,
        );
        let mut blocks = Vec::with_capacity(config.num_layers);
        for n in 0..config.num_layers {
            let p = format!("model.layers.{n}");
            blocks.push(Block {
                input_norm: l.vector(&format!("{p}.input_layernorm.weight"), h)?,
                post_norm: l.vector(&format!("{p}.post_attention_layernorm.weight"), h)?,
                q: l.linear(&format!("{p}.self_attn.q_proj"), h, h, true)?,
                k: l.linear(&format!("{p}.self_attn.k_proj"), kv, h, true)?,
                v: l.linear(&format!("{p}.self_attn.v_proj"), kv, h, true)?,
                o: l.linear(&format!("{p}.self_attn.o_proj"), h, h, false)?,
                gate: l.linear(&format!("{p}.mlp.gate_proj"), i, h, false)?,
                up: l.linear(&format!("{p}.mlp.up_proj"), i, h, false)?,
                down: l.linear(&format!("{p}.mlp.down_proj"), h, i, false)?,
            });
        }
        let norm = l.vector("model.norm.weight", h)?;
        let lm_head = if l.tensors.contains_key("lm_head.weight") {
            l.transposed("lm_head.weight", v, h)?
        } else {
            cast(host_transposed(&embed_host.data, v, h, device), dtype)
        };
        Ok(Self {
            config,
            embed,
            blocks,
            norm,
            lm_head,
            precision,
        })
    }
}
