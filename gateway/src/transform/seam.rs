//! The pipeline's transform step ([`crate::jobs::seams::Transformer`]) backed by
//! [`transform_dataset_with`], run on the blocking pool: [`DatasetTransformer`] without an
//! engine (plus / plusplus / on_policy fail with `interleave_method_unavailable`),
//! [`EngineTransformer`] with the `[interleave]` configuration.

use super::dataset::{transform_dataset, transform_dataset_with};
use super::plan::TransformPlan;
use super::selected::InterleaveEngine;
use crate::jobs::seams::{StepFailure, StepResult, TransformInput, Transformer};
use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::Value;
use std::io::BufWriter;
use std::sync::Arc;

/// Applies inoculation and plain random Interleaving as the plan says.
pub struct DatasetTransformer;

impl Transformer for DatasetTransformer {
    fn transform(&self, input: TransformInput) -> BoxFuture<'static, StepResult<Value>> {
        spawn(input, None)
    }
}

/// Applies inoculation and every Interleaving method, engine-backed ones included.
pub struct EngineTransformer {
    engine: Arc<InterleaveEngine>,
}

impl EngineTransformer {
    pub fn new(engine: InterleaveEngine) -> Self {
        EngineTransformer {
            engine: Arc::new(engine),
        }
    }
}

impl Transformer for EngineTransformer {
    fn transform(&self, input: TransformInput) -> BoxFuture<'static, StepResult<Value>> {
        spawn(input, Some(Arc::clone(&self.engine)))
    }
}

fn spawn(
    input: TransformInput,
    engine: Option<Arc<InterleaveEngine>>,
) -> BoxFuture<'static, StepResult<Value>> {
    async move {
        let task = tokio::task::spawn_blocking(move || run(&input, engine.as_deref()));
        match task.await {
            Ok(r) => r,
            Err(e) => Err(StepFailure::new(
                "internal_error",
                format!("the transform task failed: {e}"),
            )),
        }
    }
    .boxed()
}

fn run(input: &TransformInput, engine: Option<&InterleaveEngine>) -> StepResult<Value> {
    let plan = TransformPlan::from_plan(&input.plan);
    let file = std::fs::File::create(&input.dataset_out).map_err(|e| {
        StepFailure::new(
            "internal_error",
            format!("creating {}: {e}", input.dataset_out.display()),
        )
    })?;
    let mut out = BufWriter::new(file);
    let manifest = match engine {
        None => transform_dataset(&input.training_path, &plan, &mut out),
        Some(engine) => {
            let mut scratch = input.dataset_out.clone().into_os_string();
            scratch.push(".scored.jsonl");
            let scratch = std::path::PathBuf::from(scratch);
            transform_dataset_with(&input.training_path, &plan, &mut out, &mut |spec, n| {
                engine.interleave(&input.job.model, spec, n, &scratch)
            })
        }
    }
    .map_err(to_failure)?;
    let file = out
        .into_inner()
        .map_err(|e| StepFailure::new("internal_error", format!("writing the dataset: {e}")))?;
    file.sync_all()
        .map_err(|e| StepFailure::new("internal_error", format!("syncing the dataset: {e}")))?;
    serde_json::to_value(&manifest)
        .map_err(|e| StepFailure::new("internal_error", format!("encoding the manifest: {e}")))
}

fn to_failure(e: super::TransformError) -> StepFailure {
    let f = StepFailure::new(e.code(), e.to_string());
    match e {
        super::TransformError::BadClientLine { .. } => f.param("training_file"),
        _ => f,
    }
}
