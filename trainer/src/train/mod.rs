//! LoRA training on the engine's forward pass: answer-only cross-entropy normalised over the
//! accumulation window (as transformers' Trainer), KL / LDIFS / steering regularizers,
//! inoculation, global clipping and torch-exact AdamW, HF's schedules, atomic checkpoints and
//! bit-identical resume. Synchronous; the caller drives a [`Session`] step by step or with
//! [`Session::run`] and an [`Observer`] / [`Control`].

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod loss;
pub mod optim;
pub mod params;
pub mod session;
pub mod steering;

pub use checkpoint::{CheckpointMetrics, CheckpointState};
pub use config::{
    Inoculation, InoculationMode, KlDirection, KlTokens, Regularizer, Schedule, TrainConfig,
};
pub use params::HostAdapter;
pub use session::{
    CheckpointInfo, Control, Directive, Observer, Outcome, Session, SessionInputs, StepMetrics,
};
