//! `GET /v1/tuneguard/jobs/{id}/adapter[?checkpoint=N]`: a locally trained job's LoRA adapter
//! as a tar of its PEFT directory (`adapter_config.json`, `adapter_model.safetensors`), for the
//! tenant that owns the job. The final adapter once the job succeeded (after a monitor
//! rollback, the checkpoint it rolled back to); checkpoint N once it is listed.
//!
//! Served from the worker's job directory when it is on this machine, else from the blob the
//! runner stored when it recorded the checkpoint or the success (`local::artifact::locate`).

use super::jobs::get_job;
use crate::error::ApiError;
use crate::local::artifact::{self, AdapterSource};
use crate::local::{jobfiles, layout};
use crate::state::AppState;
use crate::store::JobStatus;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;

use crate::auth::Caller;

pub async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let job = get_job(&state, &caller.tenant, &id).await?;
    if !job.pipeline.is_local() {
        return Err(ApiError::invalid(
            "fine_tuning_job_id",
            format!("Job {id} was not trained by this gateway; it has no adapter to download."),
        ));
    }
    let run = layout::run_dir(&jobfiles::runner_dir(
        &state.config.data_dir,
        &state.blobs,
        &job.id,
    ));
    let step = match q.get("checkpoint") {
        Some(n) => Some(n.parse::<usize>().map_err(|_| {
            ApiError::invalid("checkpoint", format!("'checkpoint' must be a step number, got '{n}'."))
        })?),
        None if job.status == JobStatus::Succeeded => None,
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
    let name = artifact::tar_name(&job.id, step);
    let source = artifact::locate(&state.store, &state.blobs, &job, &run, step)
        .await?
        .ok_or_else(|| match step {
            Some(s) => ApiError::not_found("checkpoint", &format!("step-{s}")),
            None => ApiError::internal(format!("Job {id} succeeded but its adapter is missing.")),
        })?;
    let body = match source {
        AdapterSource::Blob(key) => {
            let file = state.blobs.open_read(&key).await?;
            Body::from_stream(tokio_util::io::ReaderStream::new(file))
        }
        AdapterSource::Dir(dir) => {
            let prefix = name.clone();
            let tar = tokio::task::spawn_blocking(move || artifact::adapter_tar(&dir, &prefix))
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?
                .map_err(|e| ApiError::internal(format!("reading the adapter: {e}")))?;
            Body::from(tar)
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.tar\""),
            ),
        ],
        body,
    )
        .into_response())
}
