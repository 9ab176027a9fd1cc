//! The trained LoRA parameters as host f32 buffers in a fixed order, and their conversion to
//! device adapters (tracked for training, constant for evaluation).

use burn::tensor::{backend::Backend, Tensor, TensorData};

use crate::config::Qwen2Config;
use crate::error::{EngineError, Result};
use crate::lora::{LoraAdapter, LoraConfig, LoraPair, Target};
use crate::precision::host_f32;

/// Which tensor a parameter is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamKey {
    /// Decoder block (0-based).
    pub layer: usize,
    /// Projection.
    pub target: Target,
    /// `false` = A `[in, r]`, `true` = B `[r, out]`.
    pub is_b: bool,
}

impl ParamKey {
    /// A stable name (used in the optimizer file and in errors).
    pub fn name(&self) -> String {
        format!(
            "layers.{}.{}.lora_{}",
            self.layer,
            self.target.peft_name(),
            if self.is_b { "B" } else { "A" }
        )
    }
}

/// LoRA parameters on the host, in the order layer → target (sorted) → A, B.
#[derive(Debug, Clone, PartialEq)]
pub struct HostAdapter {
    /// Adapter shape.
    pub config: LoraConfig,
    /// Which tensor each buffer is.
    pub keys: Vec<ParamKey>,
    /// `[rows, cols]` of each buffer (our layout: A `[in, r]`, B `[r, out]`).
    pub shapes: Vec<[usize; 2]>,
    /// Row-major data.
    pub data: Vec<Vec<f32>>,
}

impl HostAdapter {
    /// Reads a device adapter back to the host.
    pub fn from_adapter<B: Backend>(a: &LoraAdapter<B>) -> Result<Self> {
        let mut out = Self {
            config: a.config.clone(),
            keys: Vec::new(),
            shapes: Vec::new(),
            data: Vec::new(),
        };
        for (layer, pairs) in a.layers.iter().enumerate() {
            for (&target, pair) in pairs {
                for (is_b, t) in [(false, &pair.a), (true, &pair.b)] {
                    out.keys.push(ParamKey {
                        layer,
                        target,
                        is_b,
                    });
                    out.shapes.push(t.dims());
                    out.data.push(host_f32(t.clone(), "adapter tensor")?);
                }
            }
        }
        Ok(out)
    }

    /// A device adapter over these values; `track` makes each tensor a leaf that receives a
    /// gradient (on an autodiff backend).
    pub fn to_adapter<B: Backend>(
        &self,
        num_layers: usize,
        track: bool,
        device: &B::Device,
    ) -> LoraAdapter<B> {
        let mut layers: Vec<std::collections::BTreeMap<Target, LoraPair<B>>> =
            (0..num_layers).map(|_| Default::default()).collect();
        let tensor = |i: usize| {
            let t = Tensor::<B, 2>::from_data(
                TensorData::new(self.data[i].clone(), self.shapes[i]),
                device,
            );
            if track {
                t.require_grad()
            } else {
                t
            }
        };
        for i in (0..self.keys.len()).step_by(2) {
            let k = self.keys[i];
            layers[k.layer].insert(
                k.target,
                LoraPair {
                    a: tensor(i),
                    b: tensor(i + 1),
                },
            );
        }
        LoraAdapter {
            config: self.config.clone(),
            layers,
        }
    }

    /// Element count of each buffer.
    pub fn sizes(&self) -> impl Iterator<Item = usize> + '_ {
        self.data.iter().map(Vec::len)
    }

    /// Checks that this adapter fits `model` (every target's shape), naming the tensor.
    pub fn check_fits(&self, model: &Qwen2Config) -> Result<()> {
        for (k, s) in self.keys.iter().zip(&self.shapes) {
            let (i, o) = k.target.dims(model);
            let want = if k.is_b {
                [self.config.rank, o]
            } else {
                [i, self.config.rank]
            };
            if *s != want || k.layer >= model.num_layers {
                return Err(EngineError::Invalid(format!(
                    "adapter tensor `{}`: shape {s:?} does not fit the model (expected {want:?})",
                    k.name()
                )));
            }
        }
        Ok(())
    }
}
