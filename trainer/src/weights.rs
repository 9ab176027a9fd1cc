//! Reading and writing safetensors files as host f32 tensors (bf16/f16/f32 accepted).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

use crate::error::{format_err, io_err, read_json, EngineError, Result};

/// A tensor on the host in f32, remembering the file it came from.
#[derive(Debug, Clone)]
pub struct HostTensor {
    /// Shape as stored (row-major).
    pub shape: Vec<usize>,
    /// Values converted to f32.
    pub data: Vec<f32>,
    /// Source file (for error messages).
    pub file: PathBuf,
}

/// Reads every tensor of one safetensors file, converting bf16/f16 to f32.
pub fn read_safetensors(path: &Path) -> Result<HashMap<String, HostTensor>> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| format_err(path, format!("not a safetensors file: {e}")))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let raw = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(EngineError::Tensor {
                    path: path.to_path_buf(),
                    tensor: name,
                    message: format!("unsupported dtype {other:?} (expected f32, bf16 or f16)"),
                })
            }
        };
        let shape = view.shape().to_vec();
        out.insert(
            name,
            HostTensor {
                shape,
                data,
                file: path.to_path_buf(),
            },
        );
    }
    Ok(out)
}

/// Loads `model.safetensors`, or every shard listed in `model.safetensors.index.json`.
pub fn read_model_dir(dir: &Path) -> Result<HashMap<String, HostTensor>> {
    let single = dir.join("model.safetensors");
    if single.exists() {
        return read_safetensors(&single);
    }
    let index_path = dir.join("model.safetensors.index.json");
    if !index_path.exists() {
        return Err(format_err(
            dir,
            "neither model.safetensors nor model.safetensors.index.json exists",
        ));
    }
    let index: serde_json::Value = read_json(&index_path)?;
    let map = index
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| format_err(&index_path, "missing object field `weight_map`"))?;
    let mut shards: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (tensor, file) in map {
        let file = file.as_str().ok_or_else(|| {
            format_err(
                &index_path,
                format!("`weight_map.{tensor}` is not a string"),
            )
        })?;
        shards
            .entry(file.to_string())
            .or_default()
            .push(tensor.clone());
    }
    let mut out = HashMap::new();
    for (file, names) in shards {
        let path = dir.join(&file);
        let mut tensors = read_safetensors(&path)?;
        for name in names {
            let t = tensors.remove(&name).ok_or_else(|| EngineError::Tensor {
                path: path.clone(),
                tensor: name.clone(),
                message: format!(
                    "listed in {} but absent from the shard",
                    index_path.display()
                ),
            })?;
            out.insert(name, t);
        }
    }
    Ok(out)
}

/// Writes f32 tensors to a safetensors file.
pub fn write_safetensors(
    path: &Path,
    tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
) -> Result<()> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, (s, d))| {
            (
                n.clone(),
                s.clone(),
                d.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(n, s, b)| {
            safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| format_err(path, format!("tensor `{n}`: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let out = safetensors::serialize(views, None).map_err(|e| format_err(path, e.to_string()))?;
    std::fs::write(path, out).map_err(io_err(path))
}
