//! Built-in seam implementations, used until (or where) the dedicated modules are wired.
//! Each is honest about what it does not do: nothing silently succeeds in their place.

use super::seams::*;
use crate::store::JobRecord;
use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::{json, Value};

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
    fn start(&self, _input: StartInput) -> BoxFuture<'static, StepResult<Value>> {
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
    /// Seams without configuration: no screening (warned), the embedded default policy, the dataset transform,
    /// local execution (unavailable). Tests start from these.
    pub fn builtin() -> Seams {
        Seams {
            screener: std::sync::Arc::new(UnavailableScreener),
            planner: std::sync::Arc::new(crate::policy_watch::WatchPlanner::embedded()),
            transformer: std::sync::Arc::new(crate::transform::DatasetTransformer),
            executor: std::sync::Arc::new(LocalExecutor),
            mode: crate::config::ExecutionMode::Local,
        }
    }
}
