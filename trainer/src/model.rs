//! Model weights as burn tensors, loaded from a HuggingFace model directory or a GGUF file.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::{backend::Backend, Tensor, TensorData};

use crate::config::ModelConfig;
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
pub struct ModelWeights<B: Backend> {
    /// Architecture.
    pub config: ModelConfig,
    pub(crate) embed: Tensor<B, 2>,
    pub(crate) blocks: Vec<Block<B>>,
    pub(crate) norm: Tensor<B, 1>,
    /// `[hidden, vocab]`.
    pub(crate) lm_head: Tensor<B, 2>,
    /// Dtype of the weights above and of the residual stream.
    pub precision: Precision,
}

/// The name the engine had when it knew only Qwen2; kept for callers that still use it.
pub type Qwen2Weights<B> = ModelWeights<B>;

/// Where the loader takes the base model's tensors from: by HuggingFace name
/// (`model.layers.0.self_attn.q_proj.weight`), row-major f32 in HuggingFace's `[out, in]` shape.
pub(crate) trait TensorSource {
    /// Removes and returns tensor `name` (`Ok(None)` when the source has no such tensor).
    fn take(&mut self, name: &str) -> Result<Option<HostTensor>>;
    /// Whether tensor `name` is present (and not taken yet).
    fn contains(&self, name: &str) -> bool;
    /// The directory or file named in errors.
    fn origin(&self) -> &Path;
    /// What the tensors were expected in, for "missing" errors.
    fn describe(&self) -> &'static str;
    /// Tensors the forward pass did not use, when leaving them out would compute wrong numbers
    /// (checked after loading; a HuggingFace directory's extra buffers are harmless).
    fn unused(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The tensors of a HuggingFace directory's safetensors files.
struct SafetensorsSource<'a> {
    tensors: HashMap<String, HostTensor>,
    dir: &'a Path,
}

impl TensorSource for SafetensorsSource<'_> {
    fn take(&mut self, name: &str) -> Result<Option<HostTensor>> {
        Ok(self.tensors.remove(name))
    }
    fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
    fn origin(&self) -> &Path {
        self.dir
    }
    fn describe(&self) -> &'static str {
        "the model's safetensors"
    }
}

struct Loader<'a, B: Backend> {
    source: &'a mut dyn TensorSource,
    device: &'a B::Device,
    precision: Precision,
}

impl<B: Backend> Loader<'_, B> {
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<HostTensor> {
        let t = self.source.take(name)?.ok_or_else(|| EngineError::Tensor {
            path: self.source.origin().to_path_buf(),
            tensor: name.to_string(),
            message: format!("missing from {}", self.source.describe()),
        })?;
        if t.shape != shape {
            return Err(EngineError::Tensor {
                path: t.file.clone(),
                tensor: name.to_string(),
                message: format!(
                    "shape {:?}, expected {:?} from the model's config",
                    t.shape, shape
                ),
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

impl<B: Backend> ModelWeights<B> {
    /// Loads a model (f32): a HuggingFace directory (`config.json`, safetensors) or a `.gguf`
    /// file (see [`crate::gguf`]).
    pub fn load(path: &Path, device: &B::Device) -> Result<Self> {
        Self::load_with(path, device, Precision::F32)
    }

    /// Like [`ModelWeights::load`], with the weights held in `precision`.
    pub fn load_with(path: &Path, device: &B::Device, precision: Precision) -> Result<Self> {
        if path.is_file() {
            let file = crate::gguf::GgufFile::read(path)?;
            return Self::from_gguf(&file, device, precision);
        }
        let config = ModelConfig::load(&path.join("config.json"))?;
        let mut source = SafetensorsSource {
            tensors: read_model_dir(path)?,
            dir: path,
        };
        Self::from_source(config, &mut source, device, precision)
    }

    /// The weights of a parsed GGUF file (llama architecture), dequantized to f32 and held in
    /// `precision`.
    pub fn from_gguf(
        file: &crate::gguf::GgufFile,
        device: &B::Device,
        precision: Precision,
    ) -> Result<Self> {
        let (config, mut source) = crate::gguf::llama::model_source(file)?;
        Self::from_source(config, &mut source, device, precision)
    }

    /// Builds the weights from HuggingFace-named tensors laid out as `config` says.
    pub(crate) fn from_source(
        config: ModelConfig,
        source: &mut dyn TensorSource,
        device: &B::Device,
        precision: Precision,
    ) -> Result<Self> {
        let mut l = Loader::<B> {
            source,
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
        let (qkv_b, o_b, mlp_b) = (config.qkv_bias, config.o_bias, config.mlp_bias);
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
                q: l.linear(&format!("{p}.self_attn.q_proj"), h, h, qkv_b)?,
                k: l.linear(&format!("{p}.self_attn.k_proj"), kv, h, qkv_b)?,
                v: l.linear(&format!("{p}.self_attn.v_proj"), kv, h, qkv_b)?,
                o: l.linear(&format!("{p}.self_attn.o_proj"), h, h, o_b)?,
                gate: l.linear(&format!("{p}.mlp.gate_proj"), i, h, mlp_b)?,
                up: l.linear(&format!("{p}.mlp.up_proj"), i, h, mlp_b)?,
                down: l.linear(&format!("{p}.mlp.down_proj"), h, i, mlp_b)?,
            });
        }
        let norm = l.vector("model.norm.weight", h)?;
        let lm_head = if !config.tie_word_embeddings && l.source.contains("lm_head.weight") {
            l.transposed("lm_head.weight", v, h)?
        } else {
            cast(host_transposed(&embed_host.data, v, h, device), dtype)
        };
        drop(embed_host);
        if let Some(name) = l.source.unused().into_iter().next() {
            return Err(EngineError::Tensor {
                path: l.source.origin().to_path_buf(),
                tensor: name,
                message: "not used by the forward pass this engine implements (refused rather \
                          than computing different numbers)"
                    .into(),
            });
        }
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
