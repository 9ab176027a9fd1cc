//! Upstream mode with local workers: a job whose policy says `on_unenforceable = "run_locally"`
//! for a training-time defense the provider cannot apply is trained by this gateway's workers;
//! every other job goes to the provider. Later calls follow the backend recorded in the job's
//! `exec_state` (`backend = "local"`).

use crate::jobs::seams::*;
use crate::store::JobRecord;
use crate::upstream::{enforcement, Enforcement};
use futures::future::BoxFuture;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

pub struct RoutingExecutor {
    pub upstream: Arc<dyn Executor>,
    pub local: Arc<dyn Executor>,
}

fn is_local(state: &Value) -> bool {
    state.get("backend").and_then(Value::as_str) == Some("local")
}

impl RoutingExecutor {
    fn by_state(&self, state: &Value) -> &Arc<dyn Executor> {
        if is_local(state) {
            &self.local
        } else {
            &self.upstream
        }
    }
}

impl Executor for RoutingExecutor {
    fn start(&self, job: JobRecord, dataset: PathBuf) -> BoxFuture<'static, StepResult<Value>> {
        let plan = job.pipeline.get("plan").cloned().unwrap_or(Value::Null);
        match enforcement(&plan) {
            Enforcement::RunLocally { .. } => self.local.start(job, dataset),
            _ => self.upstream.start(job, dataset),
        }
    }
    fn poll(
        &self,
        job: JobRecord,
        state: Value,
    ) -> BoxFuture<'static, StepResult<(RunState, Vec<Observation>)>> {
        self.by_state(&state).poll(job, state)
    }
    fn cancel(&self, job: JobRecord, state: Value) -> BoxFuture<'static, StepResult<()>> {
        self.by_state(&state).cancel(job, state)
    }
    fn pause(&self, job: JobRecord, state: Value) -> BoxFuture<'static, StepResult<()>> {
        self.by_state(&state).pause(job, state)
    }
    fn resume(&self, job: JobRecord, state: Value) -> BoxFuture<'static, StepResult<()>> {
        self.by_state(&state).resume(job, state)
    }
}
