//! Wrappers that count upstream traffic and failures on the gateway's metrics: every failed
//! executor call is `upstream_errors{kind=<code>}` (bounded), every proxied request
//! `proxied_requests`, and a 5xx answer from the proxy `upstream_errors{kind="proxy_5xx"}`.

use super::seams::*;
use crate::metrics::Metrics;
use crate::store::JobRecord;
use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::Value;
use std::sync::Arc;

pub struct MeteredExecutor {
    pub inner: Arc<dyn Executor>,
    pub metrics: Arc<Metrics>,
}

fn count<T: Send + 'static>(
    metrics: Arc<Metrics>,
    fut: BoxFuture<'static, StepResult<T>>,
) -> BoxFuture<'static, StepResult<T>> {
    async move {
        let r = fut.await;
        if let Err(f) = &r {
            metrics.upstream_error(&f.code);
        }
        r
    }
    .boxed()
}

impl Executor for MeteredExecutor {
    fn start(&self, input: StartInput) -> BoxFuture<'static, StepResult<Value>> {
        count(self.metrics.clone(), self.inner.start(input))
    }
    fn poll(
        &self,
        job: JobRecord,
        state: Value,
    ) -> BoxFuture<'static, StepResult<(RunState, Vec<Observation>)>> {
        count(self.metrics.clone(), self.inner.poll(job, state))
    }
    fn cancel(&self, job: JobRecord, state: Value) -> BoxFuture<'static, StepResult<()>> {
        count(self.metrics.clone(), self.inner.cancel(job, state))
    }
    fn pause(&self, job: JobRecord, state: Value) -> BoxFuture<'static, StepResult<()>> {
        count(self.metrics.clone(), self.inner.pause(job, state))
    }
    fn resume(&self, job: JobRecord, state: Value) -> BoxFuture<'static, StepResult<()>> {
        count(self.metrics.clone(), self.inner.resume(job, state))
    }
    fn hold_paused(&self, job: JobRecord, state: Value) -> BoxFuture<'static, StepResult<bool>> {
        count(self.metrics.clone(), self.inner.hold_paused(job, state))
    }
    fn ended(&self, job: JobRecord) -> BoxFuture<'static, ()> {
        self.inner.ended(job)
    }
}

pub struct MeteredProxy {
    pub inner: Arc<dyn Proxy>,
    pub metrics: Arc<Metrics>,
}

impl Proxy for MeteredProxy {
    fn forward(&self, req: axum::extract::Request) -> BoxFuture<'static, axum::response::Response> {
        let metrics = self.metrics.clone();
        let fut = self.inner.forward(req);
        async move {
            metrics.proxied_requests.inc();
            let resp = fut.await;
            if resp.status().is_server_error() {
                metrics.upstream_error("proxy_5xx");
            }
            resp
        }
        .boxed()
    }
}
