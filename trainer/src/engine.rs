//! [`Engine`]: a loaded model, its tokenizer and resident named adapters.

use std::path::Path;

use burn::tensor::backend::Backend;

use crate::chat::ChatTokenizer;
use crate::error::{EngineError, Result};
use crate::forward::ForwardOptions;
use crate::lora::LoraAdapter;
use crate::model::Qwen2Weights;
use crate::precision::Precision;

/// A Qwen2 model ready for scoring and generation, with named LoRA adapters resident.
#[derive(Debug)]
pub struct Engine<B: Backend> {
    /// Frozen base weights (the forward pass lives on it).
    pub weights: Qwen2Weights<B>,
    /// Tokenizer and chat template.
    pub tokenizer: ChatTokenizer,
    adapters: Vec<(String, LoraAdapter<B>)>,
    /// Device all tensors live on.
    pub device: B::Device,
}

impl<B: Backend> Engine<B> {
    /// Loads a HuggingFace Qwen2 directory (config.json, safetensors, tokenizer.json), in f32.
    pub fn load(dir: &Path, device: B::Device) -> Result<Self> {
        Self::load_with(dir, device, Precision::F32)
    }

    /// Like [`Engine::load`], with the base model computing in `precision`.
    pub fn load_with(dir: &Path, device: B::Device, precision: Precision) -> Result<Self> {
        let weights = Qwen2Weights::load_with(dir, &device, precision)?;
        let tokenizer = ChatTokenizer::load(dir)?;
        Ok(Self {
            weights,
            tokenizer,
            adapters: Vec::new(),
            device,
        })
    }

    /// Loads a PEFT adapter directory under `name` (replacing one of the same name).
    pub fn load_adapter(&mut self, name: &str, dir: &Path) -> Result<()> {
        let a = LoraAdapter::load_peft(dir, &self.weights.config, &self.device)?;
        self.insert_adapter(name, a);
        Ok(())
    }

    /// Makes `adapter` resident under `name` (replacing one of the same name).
    pub fn insert_adapter(&mut self, name: &str, adapter: LoraAdapter<B>) {
        self.adapters.retain(|(n, _)| n != name);
        self.adapters.push((name.to_string(), adapter));
    }

    /// Saves adapter `name` in PEFT format into `dir`.
    pub fn save_adapter(&self, name: &str, dir: &Path, base_model: &str) -> Result<()> {
        self.adapter(name)?.save_peft(dir, base_model)
    }

    /// The resident adapter called `name`.
    pub fn adapter(&self, name: &str) -> Result<&LoraAdapter<B>> {
        self.adapters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a)
            .ok_or_else(|| {
                EngineError::Invalid(format!(
                    "unknown adapter `{name}` (loaded: {:?})",
                    self.adapter_names()
                ))
            })
    }

    /// Names of the resident adapters, in load order.
    pub fn adapter_names(&self) -> Vec<&str> {
        self.adapters.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Forward options choosing one adapter (or the base model, `None`) per row.
    pub fn options_for(&self, per_row: &[Option<&str>]) -> Result<ForwardOptions<'_, B>> {
        let adapters = per_row
            .iter()
            .map(|n| n.map(|n| self.adapter(n)).transpose())
            .collect::<Result<Vec<_>>>()?;
        Ok(ForwardOptions {
            adapters,
            ..ForwardOptions::default()
        })
    }
}
