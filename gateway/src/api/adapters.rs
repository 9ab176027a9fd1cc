//! `GET /v1/tuneguard/jobs/{id}/adapter[?checkpoint=N]`: a locally trained job's LoRA adapter
//! as a tar of its PEFT directory (`adapter_config.json`, `adapter_model.safetensors`), for the
//! tenant that owns the job. The final adapter once the job succeeded (after a monitor
//! rollback, the checkpoint it rolled back to); checkpoint N once it is listed.
//!
//! Served from the blob the runner stored when it recorded the checkpoint or the success
//! (`local::artifact`); a job recorded before artifacts existed is served from its directory.

use super::jobs::get_job;
use crate::error::ApiError;
use crate::local::{artifact, layout};
use crate::state::AppState;
use crate::store::JobStatus;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;

use crate::auth::Caller;

/// Where the requested adapter is.
enum Source {
    Blob(String),
    Dir(std::path::PathBuf),
}

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
    let run = layout::run_dir(&layout::job_dir(&state.config.data_dir, &job.id));
    let (source, name) = match q.get("checkpoint") {
        Some(n) => {
            let step: usize = n.parse().map_err(|_| {
                ApiError::invalid("checkpoint", format!("'checkpoint' must be a step number, got '{n}'."))
            })?;
            let source = match artifact::recorded(&state.store, &job, Some(step)).await? {
                Some(key) => Source::Blob(key),
                None => {
                    let dir = run.join("checkpoints").join(format!("step-{step}"));
                    if !dir.join("state.json").is_file() {
                        return Err(ApiError::not_found("checkpoint", &format!("step-{step}")));
                    }
                    Source::Dir(dir)
                }
            };
            (source, artifact::tar_name(&job.id, Some(step)))
        }
        None if job.status == JobStatus::Succeeded => {
            let source = match artifact::recorded(&state.store, &job, None).await? {
                Some(key) => Source::Blob(key),
                None => Source::Dir(run),
            };
            (source, job.id.clone())
        }
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
    // An artifact whose blob is missing (swept, say) is served from the job directory when
    // that is still here.
    let source = match source {
        Source::Blob(key) if !state.blobs.path(&key).is_ok_and(|p| p.is_file()) => {
            tracing::warn!(job = %job.id, key = %key, "adapter artifact missing; serving the job directory");
            let run = layout::run_dir(&layout::job_dir(&state.config.data_dir, &job.id));
            Source::Dir(match q.get("checkpoint") {
                Some(n) => run.join("checkpoints").join(format!("step-{n}")),
                None => run,
            })
        }
        other => other,
    };
    let body = match source {
        Source::Blob(key) => {
            let file = state.blobs.open_read(&key).await?;
            Body::from_stream(tokio_util::io::ReaderStream::new(file))
        }
        Source::Dir(dir) => {
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
