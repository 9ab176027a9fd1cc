//! Persona / steering vector files: one `[L+1, hidden]` f32 tensor (row l for layer index l:
//! 0 = embedding output, l = output of block l), in a safetensors file.

use std::path::Path;

use crate::config::Qwen2Config;
use crate::error::{format_err, EngineError, Result};
use crate::weights::read_safetensors;

/// Reads the vectors of `path`, checked against `model` (naming the tensor on a bad shape).
pub fn load_vectors(path: &Path, model: &Qwen2Config) -> Result<Vec<f32>> {
    let mut tensors = read_safetensors(path)?;
    if tensors.len() != 1 {
        let names: Vec<&String> = tensors.keys().collect();
        return Err(format_err(
            path,
            format!(
                "expected exactly one `[layers+1, hidden]` tensor, found {}: {names:?}",
                names.len()
            ),
        ));
    }
    let (name, t) = tensors.drain().next().expect("one tensor");
    let want = [model.num_layers + 1, model.hidden_size];
    if t.shape != want {
        return Err(EngineError::Tensor {
            path: path.to_path_buf(),
            tensor: name,
            message: format!(
                "shape {:?}, expected {want:?} (layers 0..={} × hidden {})",
                t.shape, model.num_layers, model.hidden_size
            ),
        });
    }
    if t.data.iter().any(|v| !v.is_finite()) {
        return Err(EngineError::Tensor {
            path: path.to_path_buf(),
            tensor: name,
            message: "holds a non-finite value".into(),
        });
    }
    Ok(t.data)
}
