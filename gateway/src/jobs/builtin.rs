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

/// Identity transform for plans without data-level defenses; any defense it cannot apply
/// fails the job with a stated code.
pub struct CopyTransformer;

impl Transformer for CopyTransformer {
    fn transform(&self, input: TransformInput) -> BoxFuture<'static, StepResult<Value>> {
        async move {
            let method = input
                .plan
                .pointer("/interleave/method")
                .and_then(Value::as_str)
                .unwrap_or("none")
                .to_string();
            if method != "none" {
                return Err(StepFailure::new(
                    "interleave_method_unavailable",
                    format!("Interleave method `{method}` required by the policy is not available in this gateway build."),
                ));
            }
            if !input.plan.get("inoculation").is_none_or(Value::is_null) {
                return Err(StepFailure::new(
                    "inoculation_unavailable",
                    "The policy requires an inoculation prompt, which this gateway build cannot apply.",
                ));
            }
            tokio::fs::copy(&input.training_path, &input.dataset_out)
                .await
                .map_err(|e| StepFailure::new("internal_error", format!("copying the dataset failed: {e}")))?;
            Ok(json!({"interleave": {"method": "none", "inserted": []}}))
        }
        .boxed()
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
    /// The built-in seams (see each type for what it does and does not do).
    pub fn builtin() -> Seams {
        Seams {
            screener: std::sync::Arc::new(UnavailableScreener),
            planner: std::sync::Arc::new(NoPolicyPlanner),
            transformer: std::sync::Arc::new(CopyTransformer),
            executor: std::sync::Arc::new(LocalExecutor),
        }
    }
}
