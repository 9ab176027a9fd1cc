//! Data-level defenses applied to a screened dataset, as a stream: the inoculation prompt
//! (a training-only system message, replacing or prepended to the client's) and plain random
//! Interleaving of safety examples from a pool file (fraction relative to the client's
//! examples, seeded, evenly spread). The output is the transformed JSONL plus a [`Manifest`]
//! recording which pool item went to which output position.
//!
//! The mixing arithmetic (count, seeded selection, placement) is the `selector` crate's
//! ([`selector::plan_mix`]); this module does the streaming I/O around it.
//!
//! Entry points: [`TransformPlan::from_plan_json`] then [`transform_dataset`]; the pipeline
//! seam is [`DatasetTransformer`].

mod dataset;
mod error;
mod generated;
mod inoculate;
mod plan;
mod seam;
mod selected;

#[cfg(test)]
mod tests;

pub use dataset::{
    count_examples, transform_dataset, transform_dataset_with, Inserted, Interleaved, Manifest,
    ScoredInterleaver,
};
pub use error::TransformError;
pub use inoculate::inoculate_line;
pub use plan::{Inoculation, InoculationMode, InterleaveSpec, ScoredSpec, TransformPlan};
pub use seam::{DatasetTransformer, EngineTransformer};
pub use selected::{InterleaveEngine, SelectionStats};
