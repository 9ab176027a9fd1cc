//! A llama-architecture GGUF file as the engine's [`ModelConfig`] and HuggingFace-named
//! tensors: the config from the `llama.*` metadata keys, llama.cpp's tensor names mapped back
//! to transformers' (`blk.3.attn_q.weight` → `model.layers.3.self_attn.q_proj.weight`), and the
//! row permutation llama.cpp's converter applies to `attn_q` / `attn_k` reversed.

use std::collections::HashMap;
use std::path::Path;

use super::{tensor_err, GgufFile, TensorInfo, Value};
use crate::config::{Architecture, ModelConfig};
use crate::error::{format_err, Result};
use crate::model::TensorSource;
use crate::weights::HostTensor;

/// Metadata value `key` of `file`, as a positive integer.
fn need_usize(file: &GgufFile, key: &str) -> Result<usize> {
    let v = file
        .get(key)
        .ok_or_else(|| format_err(&file.path, format!("GGUF metadata `{key}` is missing")))?;
    v.as_u64()
        .filter(|&n| n > 0)
        .map(|n| n as usize)
        .ok_or_else(|| {
            format_err(
                &file.path,
                format!("GGUF metadata `{key}` is {v:?}, expected a positive integer"),
            )
        })
}

fn opt_usize(file: &GgufFile, key: &str) -> Result<Option<usize>> {
    if file.get(key).is_none() {
        return Ok(None);
    }
    need_usize(file, key).map(Some)
}

fn opt_f64(file: &GgufFile, key: &str) -> Result<Option<f64>> {
    match file.get(key) {
        None => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| {
            format_err(
                &file.path,
                format!("GGUF metadata `{key}` is {v:?}, expected a number"),
            )
        }),
    }
}

/// The number of entries of `tokenizer.ggml.tokens` (the vocabulary size).
fn token_count(file: &GgufFile) -> Result<usize> {
    file.get("tokenizer.ggml.tokens")
        .and_then(Value::as_array)
        .map(<[Value]>::len)
        .ok_or_else(|| {
            format_err(
                &file.path,
                "GGUF metadata `tokenizer.ggml.tokens` is missing or not an array",
            )
        })
}

/// The model config of a llama-architecture GGUF file.
///
/// Anything that would make the forward pass differ from the one implemented here (another
/// architecture, experts, scaled RoPE, a head width or rotary width other than
/// `embedding_length / head_count`) is refused, naming the key.
pub fn config(file: &GgufFile) -> Result<ModelConfig> {
    let path = &file.path;
    let arch = file
        .get("general.architecture")
        .and_then(Value::as_str)
        .unwrap_or("");
    if arch != "llama" {
        return Err(format_err(
            path,
            format!(
                "GGUF metadata `general.architecture` `{arch}` is not supported (supported: llama)"
            ),
        ));
    }
    let hidden_size = need_usize(file, "llama.embedding_length")?;
    let num_heads = need_usize(file, "llama.attention.head_count")?;
    let num_kv_heads = match file.get("llama.attention.head_count_kv") {
        Some(Value::Array(_)) => {
            return Err(format_err(
                path,
                "GGUF metadata `llama.attention.head_count_kv`: per-layer head counts are not supported",
            ))
        }
        Some(_) => need_usize(file, "llama.attention.head_count_kv")?,
        None => num_heads,
    };
    if !hidden_size.is_multiple_of(num_heads) || !num_heads.is_multiple_of(num_kv_heads) {
        return Err(format_err(
            path,
            format!(
                "GGUF metadata: `llama.embedding_length` {hidden_size}, `llama.attention.head_count` \
                 {num_heads} and `llama.attention.head_count_kv` {num_kv_heads} do not divide"
            ),
        ));
    }
    let head_dim = hidden_size / num_heads;
    for key in [
        "llama.rope.dimension_count",
        "llama.attention.key_length",
        "llama.attention.value_length",
    ] {
        if let Some(d) = opt_usize(file, key)?.filter(|&d| d != head_dim) {
            return Err(format_err(
                path,
                format!("GGUF metadata `{key}` is {d}, not embedding_length / head_count = {head_dim} (not supported)"),
            ));
        }
    }
    if let Some(n) = opt_usize(file, "llama.expert_count").ok().flatten() {
        return Err(format_err(
            path,
            format!(
                "GGUF metadata `llama.expert_count` is {n}: mixture-of-experts is not supported"
            ),
        ));
    }
    if let Some(t) = file
        .get("llama.rope.scaling.type")
        .map(|v| v.as_str().unwrap_or("?"))
        .filter(|t| *t != "none")
    {
        return Err(format_err(
            path,
            format!(
                "GGUF metadata `llama.rope.scaling.type` `{t}` is not supported (plain RoPE only)"
            ),
        ));
    }
    let vocab_size = token_count(file)?;
    if let Some(v) = opt_usize(file, "llama.vocab_size")?.filter(|&v| v != vocab_size) {
        return Err(format_err(
            path,
            format!(
                "GGUF metadata `llama.vocab_size` is {v} but `tokenizer.ggml.tokens` has {vocab_size} entries"
            ),
        ));
    }
    let has = |name: &str| file.tensor(name).is_some();
    Ok(ModelConfig {
        architecture: Architecture::Llama,
        qkv_bias: has("blk.0.attn_q.bias"),
        o_bias: has("blk.0.attn_output.bias"),
        mlp_bias: has("blk.0.ffn_gate.bias"),
        hidden_size,
        num_layers: need_usize(file, "llama.block_count")?,
        num_heads,
        num_kv_heads,
        head_dim,
        intermediate_size: need_usize(file, "llama.feed_forward_length")?,
        vocab_size,
        rope_theta: opt_f64(file, "llama.rope.freq_base")?.unwrap_or(10000.0),
        rms_norm_eps: opt_f64(file, "llama.attention.layer_norm_rms_epsilon")?.unwrap_or(1e-5),
        tie_word_embeddings: !has("output.weight"),
        max_position_embeddings: opt_usize(file, "llama.context_length")?.unwrap_or(2048),
        eos_token_ids: opt_usize(file, "tokenizer.ggml.eos_token_id")?
            .map(|id| vec![id as u32])
            .unwrap_or_default(),
    })
}

/// How a GGUF tensor becomes a HuggingFace one.
#[derive(Debug, Clone, Copy)]
enum Layout {
    AsIs,
    /// Undo llama.cpp's q/k row permutation with this many heads.
    Unpermute(usize),
}

/// The llama.cpp name → (HuggingFace name, layout) table for `layers` blocks.
fn hf_name(gguf: &str, c: &ModelConfig) -> Option<(String, Layout)> {
    let top = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(t) = top {
        return Some((t.to_string(), Layout::AsIs));
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (n, rest) = rest.split_once('.')?;
    let n: usize = n.parse().ok().filter(|&n| n < c.num_layers)?;
    let (module, kind) = rest.rsplit_once('.')?;
    if kind != "weight" && kind != "bias" {
        return None;
    }
    let (hf, layout) = match module {
        "attn_norm" if kind == "weight" => ("input_layernorm", Layout::AsIs),
        "ffn_norm" if kind == "weight" => ("post_attention_layernorm", Layout::AsIs),
        "attn_q" => ("self_attn.q_proj", Layout::Unpermute(c.num_heads)),
        "attn_k" => ("self_attn.k_proj", Layout::Unpermute(c.num_kv_heads)),
        "attn_v" => ("self_attn.v_proj", Layout::AsIs),
        "attn_output" => ("self_attn.o_proj", Layout::AsIs),
        "ffn_gate" => ("mlp.gate_proj", Layout::AsIs),
        "ffn_up" => ("mlp.up_proj", Layout::AsIs),
        "ffn_down" => ("mlp.down_proj", Layout::AsIs),
        _ => return None,
    };
    Some((format!("model.layers.{n}.{hf}.{kind}"), layout))
}

/// Reverses llama.cpp's `permute`: its converter stores q/k rows as
/// `w.reshape(n_head, 2, rows/n_head/2, in).swapaxes(1, 2)`, so here
/// `w.reshape(n_head, rows/n_head/2, 2, in).swapaxes(1, 2).reshape(rows, in)`:
/// output row `h·hd + s·hd/2 + i` is stored row `h·hd + 2i + s`. Biases are `[rows, 1]`.
pub fn unpermute_rows(w: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
    let hd = rows / n_head;
    let half = hd / 2;
    let mut out = vec![0.0f32; w.len()];
    for h in 0..n_head {
        for s in 0..2 {
            for i in 0..half {
                let dst = (h * hd + s * half + i) * cols;
                let src = (h * hd + 2 * i + s) * cols;
                out[dst..dst + cols].copy_from_slice(&w[src..src + cols]);
            }
        }
    }
    out
}

/// The tensors of a GGUF file under HuggingFace names, dequantized when taken.
pub(crate) struct GgufSource<'a> {
    file: &'a GgufFile,
    /// HuggingFace name → (GGUF tensor, layout), for tensors not taken yet.
    map: HashMap<String, (&'a TensorInfo, Layout)>,
}

impl TensorSource for GgufSource<'_> {
    fn take(&mut self, name: &str) -> Result<Option<HostTensor>> {
        let Some((info, layout)) = self.map.remove(name) else {
            return Ok(None);
        };
        let mut data = self.file.dequantize(info)?;
        let shape = info.shape();
        if let Layout::Unpermute(n_head) = layout {
            let rows = shape[0];
            let cols = shape.get(1).copied().unwrap_or(1);
            if shape.len() > 2 || n_head == 0 || !rows.is_multiple_of(2 * n_head) {
                return Err(tensor_err(
                    &self.file.path,
                    &info.name,
                    format!("shape {shape:?} cannot be split into {n_head} rotary heads"),
                ));
            }
            data = unpermute_rows(&data, rows, cols, n_head);
        }
        Ok(Some(HostTensor {
            shape,
            data,
            file: self.file.path.clone(),
        }))
    }

    fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    fn origin(&self) -> &Path {
        &self.file.path
    }

    fn describe(&self) -> &'static str {
        "the GGUF file"
    }

    fn unused(&self) -> Vec<String> {
        let mut v: Vec<String> = self.map.values().map(|(t, _)| t.name.clone()).collect();
        v.sort();
        v
    }
}

/// The config of a llama GGUF file and its tensors under HuggingFace names. A tensor the
/// llama forward pass has no place for (`rope_freqs.weight`, expert weights, …) is refused,
/// naming it.
pub(crate) fn model_source(file: &GgufFile) -> Result<(ModelConfig, GgufSource<'_>)> {
    let config = config(file)?;
    let mut map = HashMap::new();
    for t in &file.tensors {
        let (hf, layout) = hf_name(&t.name, &config).ok_or_else(|| {
            tensor_err(
                &file.path,
                &t.name,
                "not part of the llama forward pass this engine implements (refused rather \
                 than computing different numbers)",
            )
        })?;
        map.insert(hf, (t, layout));
    }
    Ok((config, GgufSource { file, map }))
}

#[cfg(test)]
mod tests {
    use super::unpermute_rows;

    /// llama.cpp's `permute` (convert_hf_to_gguf.py), for checking the inverse.
    fn permute(w: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
        let hd = rows / n_head;
        let half = hd / 2;
        let mut out = vec![0.0; w.len()];
        // reshape(n_head, 2, half, cols).swapaxes(1, 2): out[h, i, s] = w[h, s, i]
        for h in 0..n_head {
            for i in 0..half {
                for s in 0..2 {
                    let dst = (h * hd + i * 2 + s) * cols;
                    let src = (h * hd + s * half + i) * cols;
                    out[dst..dst + cols].copy_from_slice(&w[src..src + cols]);
                }
            }
        }
        out
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        let (rows, cols, heads) = (24, 3, 3);
        let w: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
        assert_eq!(
            unpermute_rows(&permute(&w, rows, cols, heads), rows, cols, heads),
            w
        );
        // Head 0 of a head_dim-4 tensor: stored rows [0, 2, 1, 3] of the original.
        let p = permute(&w[..8 * cols], 8, cols, 2);
        assert_eq!(&p[cols..2 * cols], &w[2 * cols..3 * cols]);
    }
}
