//! The burn engine: a Qwen2- or Llama-family model (HuggingFace directory or GGUF file) with
//! LoRA adapters, answer-only NLL scoring,
//! KV-cache generation, hidden-state capture and steering hooks, and LoRA training ([`train`]).

pub mod batch;
pub mod cache;
pub mod chat;
pub mod cli;
pub mod config;
pub mod continuation;
pub mod engine;
pub mod error;
pub mod forward;
pub mod generate;
pub mod gguf;
pub mod lora;
pub mod model;
pub mod persona;
pub mod precision;
pub mod score;
pub mod train;
pub mod weights;

pub use batch::TokenBatch;
pub use chat::{ChatTokenizer, EncodedChat, Message};
pub use config::{Architecture, ModelConfig, Qwen2Config};
pub use engine::Engine;
pub use error::{EngineError, Result};
pub use forward::{ForwardOptions, ForwardOutput, SteerPositions, Steering};
pub use generate::{GenerateOptions, Sampler, Sampling};
pub use lora::{LoraAdapter, LoraConfig, LoraScaling, Target};
pub use model::{ModelWeights, Qwen2Weights};
pub use precision::Precision;
pub use score::{Score, ScoreOptions};

/// The CPU backend (burn `flex`).
pub type CpuBackend = burn::backend::Flex;
