//! The pipeline's transform step ([`crate::jobs::seams::Transformer`]) backed by
//! [`transform_dataset`], run on the blocking pool.

use super::dataset::transform_dataset;
use super::plan::TransformPlan;
use crate::jobs::seams::{StepFailure, StepResult, TransformInput, Transformer};
use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::Value;
use std::io::BufWriter;

/// Applies inoculation and plain random Interleaving as the plan says.
pub struct DatasetTransformer;

impl Transformer for DatasetTransformer {
    fn transform(&self, input: TransformInput) -> BoxFuture<'static, StepResult<Value>> {
        async move {
            let task = tokio::task::spawn_blocking(move || run(&input));
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
}

fn run(input: &TransformInput) -> StepResult<Value> {
    let plan = TransformPlan::from_plan_json(&input.plan).map_err(to_failure)?;
    let file = std::fs::File::create(&input.dataset_out).map_err(|e| {
        StepFailure::new(
            "internal_error",
            format!("creating {}: {e}", input.dataset_out.display()),
        )
    })?;
    let mut out = BufWriter::new(file);
    let manifest = transform_dataset(&input.training_path, &plan, &mut out).map_err(to_failure)?;
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
