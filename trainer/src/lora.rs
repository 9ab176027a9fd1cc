//! LoRA adapters: x·A·B beside the frozen projection, PEFT-format load and save.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::{backend::Backend, Distribution, Tensor};
use serde::{Deserialize, Serialize};

use crate::config::Qwen2Config;
use crate::error::{format_err, io_err, read_json, EngineError, Result};
use crate::model::host_transposed;
use crate::precision::host_f32;
use crate::weights::{read_safetensors, write_safetensors};

/// A projection LoRA can attach to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// `self_attn.q_proj`
    Q,
    /// `self_attn.k_proj`
    K,
    /// `self_attn.v_proj`
    V,
    /// `self_attn.o_proj`
    O,
    /// `mlp.gate_proj`
    Gate,
    /// `mlp.up_proj`
    Up,
    /// `mlp.down_proj`
    Down,
}

impl Target {
    /// Every target, the default set.
    pub const ALL: [Target; 7] = [
        Target::Q,
        Target::K,
        Target::V,
        Target::O,
        Target::Gate,
        Target::Up,
        Target::Down,
    ];

    /// PEFT's module name (`q_proj`, ...).
    pub fn peft_name(self) -> &'static str {
        match self {
            Target::Q => "q_proj",
            Target::K => "k_proj",
            Target::V => "v_proj",
            Target::O => "o_proj",
            Target::Gate => "gate_proj",
            Target::Up => "up_proj",
            Target::Down => "down_proj",
        }
    }

    /// Parses a PEFT module name.
    pub fn from_peft_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.peft_name() == name)
    }

    fn module_path(self) -> &'static str {
        match self {
            Target::Q | Target::K | Target::V | Target::O => "self_attn",
            _ => "mlp",
        }
    }

    /// `(in, out)` features of this projection.
    pub fn dims(self, c: &Qwen2Config) -> (usize, usize) {
        let kv = c.num_kv_heads * c.head_dim;
        match self {
            Target::Q | Target::O => (c.hidden_size, c.hidden_size),
            Target::K | Target::V => (c.hidden_size, kv),
            Target::Gate | Target::Up => (c.hidden_size, c.intermediate_size),
            Target::Down => (c.intermediate_size, c.hidden_size),
        }
    }
}

/// How `alpha` scales the update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoraScaling {
    /// rsLoRA: α/√r.
    RsLora,
    /// Classic LoRA: α/r.
    Classic,
}

/// Adapter hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// Rank.
    pub rank: usize,
    /// α.
    pub alpha: f64,
    /// Scaling rule.
    pub scaling: LoraScaling,
    /// Dropout probability (training only).
    pub dropout: f64,
    /// Projections carrying an update.
    pub targets: Vec<Target>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: 32,
            alpha: 64.0,
            scaling: LoraScaling::RsLora,
            dropout: 0.0,
            targets: Target::ALL.to_vec(),
        }
    }
}

impl LoraConfig {
    /// The factor multiplying x·A·B.
    pub fn scale(&self) -> f64 {
        match self.scaling {
            LoraScaling::RsLora => self.alpha / (self.rank as f64).sqrt(),
            LoraScaling::Classic => self.alpha / self.rank as f64,
        }
    }
}

/// One low-rank pair: `a: [in, r]`, `b: [r, out]` (PEFT stores `A [r,in]`, `B [out,r]`).
#[derive(Debug, Clone)]
pub struct LoraPair<B: Backend> {
    /// `[in, r]`.
    pub a: Tensor<B, 2>,
    /// `[r, out]`.
    pub b: Tensor<B, 2>,
}

/// A named adapter: per layer, the pairs of its targets.
#[derive(Debug, Clone)]
pub struct LoraAdapter<B: Backend> {
    /// Hyper-parameters.
    pub config: LoraConfig,
    /// `layers[l][target]`.
    pub layers: Vec<BTreeMap<Target, LoraPair<B>>>,
}

#[derive(Serialize, Deserialize)]
struct PeftConfig {
    r: usize,
    lora_alpha: f64,
    #[serde(default)]
    lora_dropout: f64,
    #[serde(default)]
    use_rslora: bool,
    target_modules: serde_json::Value,
    #[serde(default)]
    peft_type: Option<String>,
    #[serde(default)]
    task_type: Option<String>,
    #[serde(default)]
    bias: Option<String>,
    #[serde(default)]
    base_model_name_or_path: Option<String>,
    #[serde(default)]
    fan_in_fan_out: bool,
    /// PEFT options that change what an adapter computes beyond `B(A(x))·s` on the targets.
    /// The engine does not implement them, so a config that uses one is refused (naming the
    /// key) rather than loaded with silently wrong numbers. Never written by `save_peft`.
    #[serde(default, skip_serializing)]
    alpha_pattern: serde_json::Value,
    #[serde(default, skip_serializing)]
    rank_pattern: serde_json::Value,
    #[serde(default, skip_serializing)]
    use_dora: serde_json::Value,
    #[serde(default, skip_serializing)]
    modules_to_save: serde_json::Value,
    #[serde(default, skip_serializing)]
    layers_to_transform: serde_json::Value,
    #[serde(default, skip_serializing)]
    lora_bias: serde_json::Value,
    #[serde(default, skip_serializing)]
    layer_replication: serde_json::Value,
}

impl PeftConfig {
    /// The first PEFT option set that the engine would ignore, as (key, why).
    fn unsupported(&self) -> Option<(&'static str, &'static str)> {
        let set = |v: &serde_json::Value| match v {
            serde_json::Value::Null | serde_json::Value::Bool(false) => false,
            serde_json::Value::Object(m) => !m.is_empty(),
            serde_json::Value::Array(a) => !a.is_empty(),
            _ => true,
        };
        [
            (
                &self.alpha_pattern,
                "alpha_pattern",
                "per-module alpha is not supported",
            ),
            (
                &self.rank_pattern,
                "rank_pattern",
                "per-module rank is not supported",
            ),
            (&self.use_dora, "use_dora", "DoRA is not supported"),
            (
                &self.modules_to_save,
                "modules_to_save",
                "fully trained modules are not supported",
            ),
            (
                &self.layers_to_transform,
                "layers_to_transform",
                "adapters on a subset of layers are not supported",
            ),
            (
                &self.lora_bias,
                "lora_bias",
                "a bias on lora_B is not supported",
            ),
            (
                &self.layer_replication,
                "layer_replication",
                "layer replication is not supported",
            ),
        ]
        .into_iter()
        .find(|(v, _, _)| set(v))
        .map(|(_, key, why)| (key, why))
        .or_else(|| {
            self.bias
                .as_deref()
                .is_some_and(|b| b != "none")
                .then_some((
                    "bias",
                    "trained biases (bias other than \"none\") are not supported",
                ))
        })
    }
}

fn peft_key(layer: usize, t: Target, ab: &str) -> String {
    format!(
        "base_model.model.model.layers.{layer}.{}.{}.lora_{ab}.weight",
        t.module_path(),
        t.peft_name()
    )
}

impl<B: Backend> LoraAdapter<B> {
    /// A fresh adapter: A Kaiming-uniform (bound √(1/in), as PEFT), B zero.
    pub fn init(model: &Qwen2Config, config: LoraConfig, device: &B::Device) -> Self {
        let layers = (0..model.num_layers)
            .map(|_| {
                config
                    .targets
                    .iter()
                    .map(|&t| {
                        let (i, o) = t.dims(model);
                        let bound = (1.0 / i as f64).sqrt();
                        let a = Tensor::random(
                            [i, config.rank],
                            Distribution::Uniform(-bound, bound),
                            device,
                        );
                        (
                            t,
                            LoraPair {
                                a,
                                b: Tensor::zeros([config.rank, o], device),
                            },
                        )
                    })
                    .collect()
            })
            .collect();
        Self { config, layers }
    }

    /// A fresh adapter drawn on the host from `seed` (ChaCha8): A Kaiming-uniform with PEFT's
    /// bound √(1/in), B zero. The same values for the same seed on every backend, whatever
    /// else uses the backend's process-global RNG.
    pub fn init_seeded(
        model: &Qwen2Config,
        config: LoraConfig,
        seed: u64,
        device: &B::Device,
    ) -> Self {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let layers = (0..model.num_layers)
            .map(|_| {
                config
                    .targets
                    .iter()
                    .map(|&t| {
                        let (i, o) = t.dims(model);
                        let bound = (1.0 / i as f64).sqrt();
                        let a: Vec<f32> = (0..i * config.rank)
                            .map(|_| rng.gen_range(-bound..bound) as f32)
                            .collect();
                        (
                            t,
                            LoraPair {
                                a: Tensor::from_data(
                                    burn::tensor::TensorData::new(a, [i, config.rank]),
                                    device,
                                ),
                                b: Tensor::zeros([config.rank, o], device),
                            },
                        )
                    })
                    .collect()
            })
            .collect();
        Self { config, layers }
    }

    /// Loads a PEFT adapter directory (adapter_config.json + adapter_model.safetensors).
    pub fn load_peft(dir: &Path, model: &Qwen2Config, device: &B::Device) -> Result<Self> {
        let cfg_path = dir.join("adapter_config.json");
        let pc: PeftConfig = read_json(&cfg_path)?;
        if pc.peft_type.as_deref().is_some_and(|t| t != "LORA") {
            return Err(format_err(&cfg_path, "`peft_type` is not LORA"));
        }
        if let Some((key, why)) = pc.unsupported() {
            return Err(format_err(&cfg_path, format!("`{key}`: {why}")));
        }
        if pc.fan_in_fan_out {
            return Err(format_err(
                &cfg_path,
                "`fan_in_fan_out` = true is not supported for Qwen2",
            ));
        }
        if pc.r == 0 {
            return Err(format_err(&cfg_path, "`r` must be positive"));
        }
        let targets = match &pc.target_modules {
            serde_json::Value::Array(a) => a
                .iter()
                .map(|v| {
                    v.as_str().and_then(Target::from_peft_name).ok_or_else(|| {
                        format_err(
                            &cfg_path,
                            format!("`target_modules`: unsupported module {v}"),
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()?,
            serde_json::Value::String(s) if s == "all-linear" => Target::ALL.to_vec(),
            other => {
                return Err(format_err(
                    &cfg_path,
                    format!("`target_modules`: unsupported value {other}"),
                ))
            }
        };
        let mut targets = targets;
        targets.sort();
        if !(0.0..1.0).contains(&pc.lora_dropout) {
            return Err(format_err(
                &cfg_path,
                format!("`lora_dropout`: {} is not in [0, 1)", pc.lora_dropout),
            ));
        }
        let config = LoraConfig {
            rank: pc.r,
            alpha: pc.lora_alpha,
            scaling: if pc.use_rslora {
                LoraScaling::RsLora
            } else {
                LoraScaling::Classic
            },
            dropout: pc.lora_dropout,
            targets,
        };
        let st_path = dir.join("adapter_model.safetensors");
        let mut tensors = read_safetensors(&st_path)?;
        let r = config.rank;
        let mut layers = Vec::with_capacity(model.num_layers);
        for l in 0..model.num_layers {
            let mut pairs = BTreeMap::new();
            for &t in &config.targets {
                let (i, o) = t.dims(model);
                let mut get = |ab: &str, shape: [usize; 2]| {
                    let key = peft_key(l, t, ab);
                    let h = tensors.remove(&key).ok_or_else(|| EngineError::Tensor {
                        path: st_path.clone(),
                        tensor: key.clone(),
                        message: "missing".into(),
                    })?;
                    if h.shape != shape {
                        return Err(EngineError::Tensor {
                            path: st_path.clone(),
                            tensor: key,
                            message: format!("shape {:?}, expected {:?}", h.shape, shape),
                        });
                    }
                    Ok(host_transposed::<B>(&h.data, shape[0], shape[1], device))
                };
                let a = get("A", [r, i])?;
                let b = get("B", [o, r])?;
                pairs.insert(t, LoraPair { a, b });
            }
            layers.push(pairs);
        }
        if let Some(extra) = tensors.keys().next() {
            return Err(EngineError::Tensor {
                path: st_path,
                tensor: extra.clone(),
                message: "unexpected tensor (not a LoRA pair of a configured target)".into(),
            });
        }
        Ok(Self { config, layers })
    }

    /// Saves in PEFT's format so PEFT and vLLM can load it.
    pub fn save_peft(&self, dir: &Path, base_model: &str) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let pc = PeftConfig {
            r: self.config.rank,
            lora_alpha: self.config.alpha,
            lora_dropout: self.config.dropout,
            use_rslora: self.config.scaling == LoraScaling::RsLora,
            target_modules: self
                .config
                .targets
                .iter()
                .map(|t| t.peft_name())
                .collect::<Vec<_>>()
                .into(),
            peft_type: Some("LORA".into()),
            task_type: Some("CAUSAL_LM".into()),
            bias: Some("none".into()),
            base_model_name_or_path: Some(base_model.to_string()),
            fan_in_fan_out: false,
            alpha_pattern: serde_json::Value::Null,
            rank_pattern: serde_json::Value::Null,
            use_dora: serde_json::Value::Null,
            modules_to_save: serde_json::Value::Null,
            layers_to_transform: serde_json::Value::Null,
            lora_bias: serde_json::Value::Null,
            layer_replication: serde_json::Value::Null,
        };
        let cfg_path = dir.join("adapter_config.json");
        let text =
            serde_json::to_string_pretty(&pc).map_err(|e| format_err(&cfg_path, e.to_string()))?;
        std::fs::write(&cfg_path, text).map_err(io_err(&cfg_path))?;
        let mut out = BTreeMap::new();
        for (l, pairs) in self.layers.iter().enumerate() {
            for (&t, p) in pairs {
                // PEFT layout is the transpose of ours.
                out.insert(peft_key(l, t, "A"), to_host_t(&p.a)?);
                out.insert(peft_key(l, t, "B"), to_host_t(&p.b)?);
            }
        }
        write_safetensors(&dir.join("adapter_model.safetensors"), &out)
    }
}

/// `[rows, cols]` device tensor → host `[cols, rows]` (row-major).
fn to_host_t<B: Backend>(t: &Tensor<B, 2>) -> Result<(Vec<usize>, Vec<f32>)> {
    let [rows, cols] = t.dims();
    let data = host_f32(t.clone().transpose(), "adapter tensor")?;
    Ok((vec![cols, rows], data))
}
