//! Checks that a PEFT LoRA adapter directory fits a base model directory (feature `cli`),
//! before any weights are loaded: every `lora_A` / `lora_B` tensor's shape must match the
//! projection it adapts under the model's `config.json`, and its layer must exist.
//! An adapter trained for another base model (other hidden size, layer count, heads…) is
//! rejected with the first mismatching tensor named.

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
#[error("adapter `{adapter}` ({dir}): {message}")]
pub struct CompatError {
    pub adapter: String,
    pub dir: PathBuf,
    pub message: String,
}

/// The projection sizes that LoRA targets, from a Qwen2-style `config.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelDims {
    pub hidden: usize,
    pub intermediate: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub layers: usize,
}

#[derive(Deserialize)]
struct RawDims {
    hidden_size: usize,
    intermediate_size: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    num_hidden_layers: usize,
}

impl ModelDims {
    /// Reads `dir/config.json`, or (feature `engine`) a GGUF file's metadata.
    pub fn load(dir: &Path) -> Result<ModelDims, String> {
        if dir.is_file() {
            return Self::load_gguf(dir);
        }
        let path = dir.join("config.json");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let raw: RawDims =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if raw.num_attention_heads == 0 {
            return Err(format!("{}: num_attention_heads is 0", path.display()));
        }
        Ok(ModelDims {
            hidden: raw.hidden_size,
            intermediate: raw.intermediate_size,
            heads: raw.num_attention_heads,
            kv_heads: raw.num_key_value_heads.unwrap_or(raw.num_attention_heads),
            head_dim: raw
                .head_dim
                .unwrap_or(raw.hidden_size / raw.num_attention_heads),
            layers: raw.num_hidden_layers,
        })
    }

    #[cfg(feature = "engine")]
    fn load_gguf(path: &Path) -> Result<ModelDims, String> {
        let file = trainer::gguf::GgufFile::read_metadata(path).map_err(|e| e.to_string())?;
        let c = trainer::gguf::llama::config(&file).map_err(|e| e.to_string())?;
        Ok(ModelDims {
            hidden: c.hidden_size,
            intermediate: c.intermediate_size,
            heads: c.num_heads,
            kv_heads: c.num_kv_heads,
            head_dim: c.head_dim,
            layers: c.num_layers,
        })
    }

    #[cfg(not(feature = "engine"))]
    fn load_gguf(path: &Path) -> Result<ModelDims, String> {
        Err(format!(
            "{}: a GGUF model needs the `engine` feature to be read",
            path.display()
        ))
    }

    /// (in, out) of a target module, when it is one this check knows.
    fn in_out(&self, module: &str) -> Option<(usize, usize)> {
        let q = self.heads * self.head_dim;
        let kv = self.kv_heads * self.head_dim;
        Some(match module {
            "q_proj" => (self.hidden, q),
            "k_proj" | "v_proj" => (self.hidden, kv),
            "o_proj" => (q, self.hidden),
            "gate_proj" | "up_proj" => (self.hidden, self.intermediate),
            "down_proj" => (self.intermediate, self.hidden),
            _ => return None,
        })
    }
}

/// Tensor name → shape from a safetensors file's header (the data is not read).
pub fn safetensors_shapes(path: &Path) -> Result<BTreeMap<String, Vec<usize>>, String> {
    let err = |m: String| format!("{}: {m}", path.display());
    let mut f = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|e| err(format!("header length: {e}")))?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        return Err(err(format!("header of {len} bytes is implausibly large")));
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header)
        .map_err(|e| err(format!("header: {e}")))?;
    let v: BTreeMap<String, Value> =
        serde_json::from_slice(&header).map_err(|e| err(format!("header is not JSON: {e}")))?;
    let mut out = BTreeMap::new();
    for (name, info) in v {
        if name == "__metadata__" {
            continue;
        }
        let shape = info
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|s| {
                s.iter()
                    .map(|d| d.as_u64().map(|d| d as usize))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| err(format!("tensor `{name}` has no valid shape")))?;
        out.insert(name, shape);
    }
    Ok(out)
}

/// `(layer, module, is_a)` of a PEFT LoRA tensor name such as
/// `base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight`.
fn parse_lora_name(name: &str) -> Option<(usize, &str, bool)> {
    let (path, is_a) = match (name.find(".lora_A"), name.find(".lora_B")) {
        (Some(i), _) => (&name[..i], true),
        (None, Some(i)) => (&name[..i], false),
        (None, None) => return None,
    };
    let module = path.rsplit('.').next()?;
    let after = path.split("layers.").nth(1)?;
    let layer = after.split('.').next()?.parse().ok()?;
    Some((layer, module, is_a))
}

/// Checks adapter `name` in `dir` against the model `dims`.
pub fn check_adapter(name: &str, dir: &Path, dims: &ModelDims) -> Result<(), CompatError> {
    let fail = |message: String| CompatError {
        adapter: name.to_string(),
        dir: dir.to_path_buf(),
        message,
    };
    let cfg = dir.join("adapter_config.json");
    if !cfg.is_file() {
        return Err(fail(
            "adapter_config.json not found (is this a PEFT adapter directory?)".into(),
        ));
    }
    let shapes = safetensors_shapes(&dir.join("adapter_model.safetensors")).map_err(fail)?;
    let mut seen = 0;
    for (tensor, shape) in &shapes {
        let Some((layer, module, is_a)) = parse_lora_name(tensor) else {
            continue;
        };
        seen += 1;
        if layer >= dims.layers {
            return Err(fail(format!(
                "was made for another base model: `{tensor}` is for layer {layer} but the model has {} layers",
                dims.layers
            )));
        }
        let Some((inp, out)) = dims.in_out(module) else {
            continue;
        };
        let (want, got, what) = if is_a {
            (inp, shape.get(1).copied(), "input")
        } else {
            (out, shape.first().copied(), "output")
        };
        if shape.len() != 2 || got != Some(want) {
            return Err(fail(format!(
                "was made for another base model: `{tensor}` has shape {shape:?} but the model's {module} {what} size is {want}"
            )));
        }
    }
    if seen == 0 {
        return Err(fail(
            "adapter_model.safetensors holds no lora_A/lora_B tensors".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "compat_tests.rs"]
pub(crate) mod tests;
