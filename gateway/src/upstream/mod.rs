//! Upstream mode: forwarding fine-tuning jobs to an OpenAI-compatible provider and mirroring
//! them back ([`UpstreamClient`], plugged into the pipeline as [`UpstreamExecutor`]), and the
//! transparent proxy for every other `/v1` route ([`UpstreamProxy`]). Which jobs go upstream
//! (`on_unenforceable`) is decided by [`crate::jobs::route`].

mod client;
mod error;
mod proxy;
mod seam;
mod types;
mod wire;

/// The fake provider every test suite runs against; outside this crate's own tests only
/// with the `test-upstream` feature, so the shipped binary never contains it.
#[cfg(any(test, feature = "test-upstream"))]
pub mod fake;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_monitor;
#[cfg(test)]
mod tests_proxy;

pub use client::UpstreamClient;
pub use error::{Side, UpstreamError};
pub use proxy::{forwardable, path_segments, UpstreamProxy};
pub use seam::UpstreamExecutor;
pub use types::*;
