//! Chat completions from local models: `POST /v1/chat/completions` and `GET /v1/models` serve
//! the `[[models]]` base models and the tenant's own `ft:` models and checkpoints, generated
//! by the engine with that adapter (resident adapters kept in an LRU bounded by bytes).
//! Inference never sees inoculation prompts or steering: it uses only the adapter files.
//! In upstream mode these routes are proxied like every other route the gateway does not own.

pub mod engines;
pub mod logprobs;
pub mod names;
pub mod routes;

pub use engines::Serving;

#[cfg(test)]
mod tests;
