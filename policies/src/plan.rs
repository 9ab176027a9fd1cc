//! The resolved per-job plan: what a job records and what the pipeline executes.

use crate::schema::{Inoculation, Interleave, Monitor, Regularizer, Training, Upstream};
use serde::{Deserialize, Serialize};

/// Everything a job needs from its policy, with every default filled in and file paths
/// resolved against the policy directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The policy that matched.
    pub policy: String,
    /// The policy set's version hash (sha256 hex of its canonical JSON).
    pub version: String,
    pub interleave: Interleave,
    pub regularizer: Regularizer,
    /// `None` = no inoculation prompt.
    pub inoculation: Option<Inoculation>,
    pub training: Training,
    pub monitor: Monitor,
    pub upstream: Upstream,
}

impl Plan {
    /// The plan as JSON, the shape the gateway records on a job.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}
