//! Upstream mode with local workers: the run step starts each job on the backend
//! [`crate::jobs::route`] chose for it (a job whose policy says `on_unenforceable =
//! "run_locally"` for a training-time defense the provider cannot apply trains here); later
//! calls follow the backend recorded in the job's `exec_state` (`backend = "local"`).

use crate::jobs::seams::*;
use crate::store::{Backend, JobRecord};
use futures::future::BoxFuture;
use serde_json::Value;
use std::sync::Arc;

pub struct RoutingExecutor {
    pub upstream: Arc<dyn Executor>,
    pub local: Arc<dyn Executor>,
}

impl RoutingExecutor {
    fn on(&self, backend: Backend) -> &Arc<dyn Executor> {
        match backend {
            Backend::Local => &self.local,
            Backend::Upstream => &self.upstream,
        }
    }
    fn by_state(&self, state: &Value) -> &Arc<dyn Executor> {
        self.on(Backend::of_state(state))
    }
}

impl Executor for RoutingExecutor {
    fn start(&self, input: StartInput) -> BoxFuture<'static, StepResult<Value>> {
        self.on(input.backend).start(input)
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
    fn hold_paused(&self, job: JobRecord, state: Value) -> BoxFuture<'static, StepResult<bool>> {
        self.by_state(&state).hold_paused(job, state)
    }
    fn ended(&self, job: JobRecord) -> BoxFuture<'static, ()> {
        let backend = if job.pipeline.is_local() {
            Backend::Local
        } else {
            Backend::Upstream
        };
        self.on(backend).ended(job)
    }
}
