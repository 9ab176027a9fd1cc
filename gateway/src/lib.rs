//! tuneguard gateway: the OpenAI-compatible API, auth and tenants, durable store, job
//! pipeline, metrics and server. See ARCHITECTURE.md for the code map.
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod ids;
pub mod jobs;
pub mod local;
pub mod metrics;
pub mod monitoring;
pub mod persona_cmd;
pub mod policy_watch;
pub mod screen;
pub mod serve;
pub mod server;
pub mod serving;
pub mod state;
pub mod stop_flag;
pub mod store;
pub mod sweep;
#[cfg(test)]
pub(crate) mod testutil;
pub mod training;
pub mod transform;
pub mod upstream;
