//! Qwen2 `config.json`: raw serde struct, validated into [`Qwen2Config`].

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
}

#[derive(Deserialize)]
struct RopeParameters {
    rope_theta: Option<f64>,
}

/// Validated Qwen2 architecture parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Qwen2Config {
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

impl Qwen2Config {
    /// Reads and validates `config.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let raw: RawConfig = read_json(path)?;
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
