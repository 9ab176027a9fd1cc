//! `GET /v1/tuneguard/jobs/{id}/adapter[?checkpoint=N]`: a locally trained job's LoRA adapter
//! as a tar of its PEFT directory (`adapter_config.json`, `adapter_model.safetensors`), for the
//! tenant that owns the job. The final adapter once the job succeeded; checkpoint N whenever
//! it has been written.

use super::jobs::get_job;
use crate::error::ApiError;
use crate::local::layout;
use crate::state::AppState;
use crate::store::JobStatus;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;

use crate::auth::Caller;

const FILES: [&str; 2] = ["adapter_config.json", "adapter_model.safetensors"];

pub async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let job = get_job(&state, &caller.tenant, &id).await?;
    let local = job
        .pipeline
        .pointer("/exec_state/backend")
        .and_then(|v| v.as_str())
        == Some("local");
    if !local {
        return Err(ApiError::invalid(
            "fine_tuning_job_id",
            format!("Job {id} was not trained by this gateway; it has no adapter to download."),
        ));
    }
    let run = layout::run_dir(&layout::job_dir(&state.config.data_dir, &job.id));
    let (dir, name) = match q.get("checkpoint") {
        Some(n) => {
            let step: usize = n.parse().map_err(|_| {
                ApiError::invalid("checkpoint", format!("'checkpoint' must be a step number, got '{n}'."))
            })?;
            let dir = run.join("checkpoints").join(format!("step-{step}"));
            if !dir.join("state.json").is_file() {
                return Err(ApiError::not_found("checkpoint", &format!("step-{step}")));
            }
            (dir, format!("{}-ckpt-step-{step}", job.id))
        }
        None if job.status == JobStatus::Succeeded => (run, job.id.clone()),
        None => {
            return Err(ApiError::invalid(
                "fine_tuning_job_id",
                format!(
                    "Job {id} is {}; its final adapter exists once it has succeeded (pass ?checkpoint=N for a checkpoint).",
                    job.status.as_str()
                ),
            ))
        }
    };
    let prefix = name.clone();
    let tar = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let mut b = tar::Builder::new(Vec::new());
        for f in FILES {
            b.append_path_with_name(dir.join(f), format!("{prefix}/{f}"))?;
        }
        b.into_inner()
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::internal(format!("reading the adapter: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.tar\""),
            ),
        ],
        Body::from(tar),
    )
        .into_response())
}
