//! A model's `config.json` (Qwen2 or Llama family): raw serde struct, validated into
//! [`ModelConfig`]. GGUF files build the same struct from their metadata (`crate::gguf`).

use std::path::Path;

use serde::Deserialize;

use crate::error::{format_err, read_json, Result};

#[derive(Deserialize)]
struct RawConfig {
    hidden_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    intermediate_size: Option<usize>,
    vocab_size: Option<usize>,
    rope_theta: Option<f64>,
    rope_parameters: Option<RopeParameters>,
    rms_norm_eps: Option<f64>,
    #[serde(default)]
    tie_word_embeddings: bool,
    max_position_embeddings: Option<usize>,
    eos_token_id: Option<serde_json::Value>,
    model_type: Option<String>,
    hidden_act: Option<String>,
    head_dim: Option<usize>,
    #[serde(default)]
    use_sliding_window: bool,
    /// transformers < 5 spelling of `rope_parameters` (`null` for plain RoPE).
    rope_scaling: Option<serde_json::Value>,
    /// Llama: bias on q/k/v/o (Qwen2 always has q/k/v bias and ignores the key).
    attention_bias: Option<bool>,
    /// Llama: bias on gate/up/down.
    mlp_bias: Option<bool>,
}

#[derive(Deserialize)]
struct RopeParameters {
    rope_theta: Option<f64>,
    rope_type: Option<String>,
}

/// The `model_type`s whose forward pass is the one in `forward.rs`: the same tensors and
/// maths (RMSNorm, rotate-half RoPE, grouped-query attention, SiLU-gated MLP), differing only
/// in which projections carry a bias.
const SUPPORTED_MODEL_TYPES: [&str; 2] = ["qwen2", "llama"];

/// The model family a config describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Qwen2 / Qwen2.5: bias on q, k, v; none elsewhere.
    Qwen2,
    /// Llama (SmolLM2, Llama 2/3 without scaled RoPE): biases as `attention_bias`/`mlp_bias`.
    Llama,
}

/// Validated architecture parameters of a Qwen2- or Llama-family model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Which family (`model_type`, or `general.architecture` in a GGUF file).
    pub architecture: Architecture,
    /// Bias on the q, k and v projections.
    pub qkv_bias: bool,
    /// Bias on the output projection `o_proj`.
    pub o_bias: bool,
    /// Bias on gate, up and down.
    pub mlp_bias: bool,
    /// Residual width.
    pub hidden_size: usize,
    /// Number of decoder blocks.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (GQA); divides `num_heads`.
    pub num_kv_heads: usize,
    /// `hidden_size / num_heads`.
    pub head_dim: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// RoPE base.
    pub rope_theta: f64,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Whether lm_head shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Longest supported sequence.
    pub max_position_embeddings: usize,
    /// End-of-sequence ids from config.json.
    pub eos_token_ids: Vec<u32>,
}

/// The name the engine had when it knew only Qwen2; kept for callers that still use it.
pub type Qwen2Config = ModelConfig;

impl ModelConfig {
    /// Reads and validates `config.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let raw: RawConfig = read_json(path)?;
        check_architecture(&raw, path)?;
        let architecture = match raw.model_type.as_deref() {
            Some("llama") => Architecture::Llama,
            _ => Architecture::Qwen2,
        };
        let (qkv_bias, o_bias, mlp_bias) = match architecture {
            // transformers' Qwen2 hard-codes these and ignores attention_bias / mlp_bias.
            Architecture::Qwen2 => (true, false, false),
            Architecture::Llama => {
                let attn = raw.attention_bias.unwrap_or(false);
                (attn, attn, raw.mlp_bias.unwrap_or(false))
            }
        };
        let need = |v: Option<usize>, key: &str| {
            v.filter(|n| *n > 0)
                .ok_or_else(|| format_err(path, format!("missing or zero field `{key}`")))
        };
        let hidden_size = need(raw.hidden_size, "hidden_size")?;
        let num_heads = need(raw.num_attention_heads, "num_attention_heads")?;
        let num_kv_heads = need(
            raw.num_key_value_heads.or(Some(num_heads)),
            "num_key_value_heads",
        )?;
        if hidden_size % num_heads != 0 {
            return Err(format_err(
                path,
                "`hidden_size` is not a multiple of `num_attention_heads`",
            ));
        }
        if num_heads % num_kv_heads != 0 {
            return Err(format_err(
                path,
                "`num_attention_heads` is not a multiple of `num_key_value_heads`",
            ));
        }
        if let Some(d) = raw.head_dim.filter(|&d| d != hidden_size / num_heads) {
            return Err(format_err(
                path,
                format!(
                    "`head_dim` {d} differs from hidden_size / num_attention_heads = {} \
                     (a separate head width is not supported)",
                    hidden_size / num_heads
                ),
            ));
        }
        let rope_theta = raw
            .rope_theta
            .or(raw.rope_parameters.and_then(|p| p.rope_theta))
            .unwrap_or(10000.0);
        let eos_token_ids = match raw.eos_token_id {
            Some(serde_json::Value::Number(n)) => {
                n.as_u64().map(|v| vec![v as u32]).unwrap_or_default()
            }
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_u64())
                .map(|v| v as u32)
                .collect(),
            _ => Vec::new(),
        };
        Ok(Self {
            architecture,
            qkv_bias,
            o_bias,
            mlp_bias,
            hidden_size,
            num_layers: need(raw.num_hidden_layers, "num_hidden_layers")?,
            num_heads,
            num_kv_heads,
            head_dim: hidden_size / num_heads,
            intermediate_size: need(raw.intermediate_size, "intermediate_size")?,
            vocab_size: need(raw.vocab_size, "vocab_size")?,
            rope_theta,
            rms_norm_eps: raw.rms_norm_eps.unwrap_or(1e-6),
            tie_word_embeddings: raw.tie_word_embeddings,
            max_position_embeddings: raw.max_position_embeddings.unwrap_or(32768),
            eos_token_ids,
        })
    }
}

/// Rejects configs whose forward pass differs from the one implemented here, naming the key:
/// other architectures, activations, sliding-window attention and scaled RoPE variants would
/// otherwise load and compute silently wrong numbers.
fn check_architecture(raw: &RawConfig, path: &Path) -> Result<()> {
    if let Some(t) = raw
        .model_type
        .as_deref()
        .filter(|t| !SUPPORTED_MODEL_TYPES.contains(t))
    {
        return Err(format_err(
            path,
            format!(
                "`model_type` `{t}` is not supported (supported: {})",
                SUPPORTED_MODEL_TYPES.join(", ")
            ),
        ));
    }
    if let Some(a) = raw.hidden_act.as_deref().filter(|a| *a != "silu") {
        return Err(format_err(
            path,
            format!("`hidden_act` `{a}` is not supported (Qwen2 and Llama use silu)"),
        ));
    }
    if raw.use_sliding_window {
        return Err(format_err(
            path,
            "`use_sliding_window` is true: sliding-window attention is not supported",
        ));
    }
    let legacy = match &raw.rope_scaling {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(
            v.get("rope_type")
                .or_else(|| v.get("type"))
                .and_then(|t| t.as_str())
                .unwrap_or("unknown")
                .to_string(),
        ),
    };
    if let Some(t) = legacy.filter(|t| t != "default") {
        return Err(format_err(
            path,
            format!("`rope_scaling` type `{t}` is not supported (plain RoPE only)"),
        ));
    }
    if let Some(t) = raw
        .rope_parameters
        .as_ref()
        .and_then(|p| p.rope_type.as_deref())
        .filter(|t| *t != "default")
    {
        return Err(format_err(
            path,
            format!("`rope_parameters.rope_type` `{t}` is not supported (plain RoPE only)"),
        ));
    }
    Ok(())
}
