//! Compute precision of the base model: f32 everywhere, or bf16 weights and activations with
//! the numerically sensitive steps kept in f32 (as HuggingFace does for bf16 models).

use burn::tensor::{backend::Backend, DType, FloatDType, Tensor};

use crate::error::{EngineError, Result};

/// Dtype of the base weights and the residual stream.
///
/// With [`Precision::Bf16`] the steps HuggingFace runs in f32 stay in f32: RMSNorm's variance
/// and scaling, attention (scores, softmax and the weighted sum), the LoRA update (PEFT keeps
/// adapter weights in f32 and casts the input to them), and the logits handed to the
/// log-softmax and to sampling. Adapters are always stored in f32.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    /// f32 weights and activations (the CPU default; matches the f32 goldens within 1e-4).
    #[default]
    F32,
    /// bf16 weights and activations (the CUDA default).
    Bf16,
}

impl Precision {
    /// The burn dtype of weights and activations.
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
        }
    }
}

/// `t` in `dtype` (no copy when it already is).
pub(crate) fn cast<B: Backend, const D: usize>(t: Tensor<B, D>, dtype: DType) -> Tensor<B, D> {
    if t.dtype() == dtype {
        t
    } else {
        t.cast(FloatDType::from(dtype))
    }
}

/// `t` in f32 (no copy when it already is).
pub(crate) fn to_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, D> {
    cast(t, DType::F32)
}

/// The elements of `t` on the host as f32, whatever its dtype (`what` names them in the error).
pub(crate) fn host_f32<B: Backend, const D: usize>(
    t: Tensor<B, D>,
    what: &str,
) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| EngineError::Invalid(format!("reading {what}: {e:?}")))
}
