//! [`Engine`]: a loaded model, its tokenizer and resident named adapters.

use std::path::Path;

use burn::tensor::backend::Backend;

use crate::chat::ChatTokenizer;
use crate::error::{EngineError, Result};
use crate::forward::ForwardOptions;
use crate::lora::LoraAdapter;
use crate::model::ModelWeights;
use crate::precision::Precision;

/// A Qwen2- or Llama-family model ready for scoring and generation, with named LoRA adapters
/// resident.
#[derive(Debug)]
pub struct Engine<B: Backend> {
    /// Frozen base weights (the forward pass lives on it).
    pub weights: ModelWeights<B>,
    /// Tokenizer and chat template.
    pub tokenizer: ChatTokenizer,
    adapters: Vec<(String, LoraAdapter<B>)>,
    /// Device all tensors live on.
    pub device: B::Device,
}

impl<B: Backend> Engine<B> {
    /// Loads a model in f32: a HuggingFace directory (config.json, safetensors,
    /// tokenizer.json) or a `.gguf` file (llama architecture; weights, config, tokenizer and
    /// chat template all from the one file, read once).
    pub fn load(path: &Path, device: B::Device) -> Result<Self> {
        Self::load_with(path, device, Precision::F32)
    }

    /// Like [`Engine::load`], with the base model computing in `precision`.
    pub fn load_with(path: &Path, device: B::Device, precision: Precision) -> Result<Self> {
        let (weights, tokenizer) = if path.is_file() {
            let file = crate::gguf::GgufFile::read(path)?;
            let tokenizer = crate::gguf::tokenizer::chat_tokenizer(&file)?;
            (
                ModelWeights::from_gguf(&file, &device, precision)?,
                tokenizer,
            )
        } else {
            (
                ModelWeights::load_with(path, &device, precision)?,
                ChatTokenizer::load(path)?,
            )
        };
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

    /// Drops the resident adapter `name` (a no-op when absent).
    pub fn remove_adapter(&mut self, name: &str) {
        self.adapters.retain(|(n, _)| n != name);
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
