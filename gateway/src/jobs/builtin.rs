//! Built-in seam implementations, used until (or where) the dedicated modules are wired.
//! Each is honest about what it does not do: nothing silently succeeds in their place.

use super::seams::*;
use crate::store::JobRecord;
use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Screening placeholder: accepts the file and says so in a warn event (`warning` field).
pub struct UnavailableScreener;

impl Screener for UnavailableScreener {
    fn screen(&self, _input: ScreenInput) -> BoxFuture<'static, StepResult<Value>> {
        async {
            Ok(json!({
                "warning": "content screening is not available in this build; the training file was not screened"
            }))
        }
        .boxed()
    }
    fn name(&self) -> &'static str {
        "unavailable"
    }
}

/// No operator policy: every data-level defense off, recorded as policy `none`.
pub struct NoPolicyPlanner;

impl Planner for NoPolicyPlanner {
    fn plan(&self, _t: &str, _m: &str, _md: &BTreeMap<String, String>) -> StepResult<PlanOutcome> {
        let snapshot = json!({"policies": []});
        let version_hash = hex::encode(Sha256::digest(snapshot.to_string().as_bytes()));
        Ok(PlanOutcome {
            policy_name: "none".into(),
            version_hash,
            plan: json!({"interleave": {"method": "none"}, "inoculation": null}),
            snapshot,
        })
    }
    fn describe(&self) -> Value {
        json!({"source": "builtin", "policies": [], "version_hash": null, "last_reload_error": null,
               "note": "no policy directory is wired into this gateway build; data-level defenses are off"})
    }
}

/// Local execution: not available until the local trainer lands; fails the job with
/// `local_training_unavailable`.
pub struct LocalExecutor;

fn unavailable() -> StepFailure {
    StepFailure::new(
        "local_training_unavailable",
        "Local training is not available in this gateway build; configure [upstream] to forward jobs to a provider.",
    )
}

impl Executor for LocalExecutor {
    fn start(&self, _job: JobRecord, _p: PathBuf) -> BoxFuture<'static, StepResult<Value>> {
        async { Err(unavailable()) }.boxed()
    }
    fn poll(
        &self,
        _job: JobRecord,
        _s: Value,
    ) -> BoxFuture<'static, StepResult<(RunState, Vec<Observation>)>> {
        async { Err(unavailable()) }.boxed()
    }
    fn cancel(&self, _job: JobRecord, _s: Value) -> BoxFuture<'static, StepResult<()>> {
        async { Ok(()) }.boxed()
    }
}

impl Seams {
    /// Seams without configuration: no screening (warned), no policy, the dataset transform,
    /// local execution (unavailable). Tests start from these.
    pub fn builtin() -> Seams {
        Seams {
            screener: std::sync::Arc::new(UnavailableScreener),
            planner: std::sync::Arc::new(NoPolicyPlanner),
            transformer: std::sync::Arc::new(crate::transform::DatasetTransformer),
            executor: std::sync::Arc::new(LocalExecutor),
        }
    }
}
