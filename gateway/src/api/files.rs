//! /v1/files: multipart create (streamed to disk, row inserted only after the blob is
//! durable), list, retrieve, delete, content.

use super::query::ListParams;
use super::wire;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::ids::{new_id, now_unix, IdKind};
use crate::state::AppState;
use crate::store::{run_blocking, BlobWriter, FileQuery, FileRecord, SortOrder};
use axum::body::Body;
use axum::extract::multipart::{Multipart, MultipartError};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

pub const PURPOSES: [&str; 6] = [
    "assistants",
    "batch",
    "fine-tune",
    "vision",
    "user_data",
    "evals",
];

/// `expires_after.seconds` of a file (OpenAI: one hour to 30 days after creation).
pub(crate) fn expires_after_seconds(seconds: Option<i64>) -> Result<i64, ApiError> {
    seconds
        .filter(|s| (3600..=2_592_000).contains(s))
        .ok_or_else(|| {
            ApiError::invalid(
                "expires_after.seconds",
                "expires_after.seconds must be an integer between 3600 and 2592000.",
            )
        })
}

pub(crate) fn multipart_err(e: MultipartError) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large(
            "file",
            "The uploaded body is larger than the configured limit.",
        )
    } else {
        ApiError::bad_request(format!("Invalid multipart body: {}", e.body_text()))
    }
}

pub(crate) fn check_purpose(purpose: &str) -> Result<(), ApiError> {
    if PURPOSES.contains(&purpose) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "purpose",
            format!(
                "'{purpose}' is not one of {} - 'purpose'",
                PURPOSES.join(", ")
            ),
        ))
    }
}

/// MIME types an upload for a JSONL purpose (fine-tune, batch) may declare: the JSONL and
/// NDJSON spellings, plain JSON and text, and the generic binary type. Anything else (text/csv,
/// application/pdf, image/png, …) is refused at create, before a byte is sent.
const JSONL_MIME_TYPES: [&str; 12] = [
    "application/jsonl",
    "application/x-jsonl",
    "application/jsonlines",
    "application/x-jsonlines",
    "application/json-lines",
    "application/ndjson",
    "application/x-ndjson",
    "text/jsonl",
    "text/x-jsonl",
    "application/json",
    "text/plain",
    "application/octet-stream",
];

/// 400 naming `mime_type` when an upload for a JSONL purpose declares a type that is not JSONL.
pub(crate) fn check_upload_mime_type(purpose: &str, mime_type: &str) -> Result<(), ApiError> {
    if !matches!(purpose, "fine-tune" | "batch") {
        return Ok(());
    }
    let base = mime_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if JSONL_MIME_TYPES.contains(&base.as_str()) {
        return Ok(());
    }
    Err(ApiError::invalid(
        "mime_type",
        format!(
            "Invalid mime_type '{mime_type}' for purpose '{purpose}': {purpose} files are JSONL \
             (use application/jsonl or text/jsonl)."
        ),
    ))
}

/// Fine-tune files get the screener's upload-time format check (400 on failure).
pub(crate) async fn quick_check(
    state: &AppState,
    writer: &mut BlobWriter,
    purpose: &str,
) -> Result<(), ApiError> {
    if purpose != "fine-tune" {
        return Ok(());
    }
    writer.flush().await?;
    state
        .seams
        .screener
        .quick_check(writer.temp_path().to_path_buf())
        .await
        .map_err(|f| {
            ApiError::invalid(f.param.as_deref().unwrap_or("file"), f.message).with_code(f.code)
        })
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    mut mp: Multipart,
) -> Result<Json<Value>, ApiError> {
    let mut purpose: Option<String> = None;
    let mut expires_seconds: Option<i64> = None;
    let mut upload: Option<(BlobWriter, String)> = None;
    let result: Result<(), ApiError> = async {
        while let Some(mut field) = mp.next_field().await.map_err(multipart_err)? {
            match field.name().unwrap_or("") {
                "file" => {
                    let filename = field.file_name().unwrap_or("file").to_string();
                    let mut w = state.blobs.create().await?;
                    while let Some(chunk) = field.chunk().await.map_err(multipart_err)? {
                        w.write(&chunk).await?;
                    }
                    if let Some((old, _)) = upload.replace((w, filename)) {
                        old.abort().await;
                    }
                }
                "purpose" => purpose = Some(field.text().await.map_err(multipart_err)?),
                "expires_after[seconds]" => {
                    let t = field.text().await.map_err(multipart_err)?;
                    expires_seconds = Some(expires_after_seconds(t.parse().ok())?);
                }
                _ => {}
            }
        }
        Ok(())
    }
    .await;
    let (mut writer, filename) = match (result, upload) {
        (Ok(()), Some(u)) => u,
        (Ok(()), None) => {
            return Err(ApiError::invalid(
                "file",
                "Missing required parameter: 'file'.",
            ))
        }
        (Err(e), u) => {
            if let Some((w, _)) = u {
                w.abort().await;
            }
            return Err(e);
        }
    };
    let checked = match purpose.as_deref() {
        None => Err(ApiError::invalid(
            "purpose",
            "Missing required parameter: 'purpose'.",
        )),
        Some(p) => match check_purpose(p) {
            Ok(()) => quick_check(&state, &mut writer, p).await,
            Err(e) => Err(e),
        },
    };
    if let Err(e) = checked {
        writer.abort().await;
        return Err(e);
    }
    let purpose = purpose.unwrap_or_default();
    state
        .metrics
        .upload_bytes
        .with_label_values(&["file"])
        .inc_by(writer.bytes());
    let id = new_id(IdKind::File);
    let blob = writer.commit(&id).await?;
    let now = now_unix();
    let rec = FileRecord {
        id: id.clone(),
        tenant: caller.tenant,
        bytes: blob.bytes,
        created_at: now,
        filename,
        purpose,
        expires_at: expires_seconds.map(|s| now + s),
        blob_key: blob.key,
    };
    let r = rec.clone();
    if let Err(e) = run_blocking(&state.store, move |s| s.insert_file(&r)).await {
        let _ = state.blobs.remove(&rec.blob_key).await;
        return Err(e.into());
    }
    Ok(Json(wire::file(&rec)))
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let p = ListParams::parse(&pairs, 10_000)?;
    let q = FileQuery {
        after: p.after,
        limit: p.limit.unwrap_or(10_000),
        order: p.order.unwrap_or(SortOrder::Desc),
        purpose: p.purpose,
    };
    let page = run_blocking(&state.store, move |s| s.list_files(&caller.tenant, &q)).await?;
    Ok(Json(wire::page(&page, wire::file)))
}

pub(crate) async fn get_file(
    state: &AppState,
    tenant: &str,
    id: &str,
) -> Result<FileRecord, ApiError> {
    let (t, i) = (tenant.to_string(), id.to_string());
    run_blocking(&state.store, move |s| s.get_file(&t, &i))
        .await?
        .ok_or_else(|| ApiError::not_found("File", id))
}

pub async fn retrieve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(wire::file(
        &get_file(&state, &caller.tenant, &id).await?,
    )))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let i = id.clone();
    let rec = run_blocking(&state.store, move |s| s.delete_file(&caller.tenant, &i))
        .await?
        .ok_or_else(|| ApiError::not_found("File", &id))?;
    if let Err(e) = state.blobs.remove(&rec.blob_key).await {
        tracing::warn!(file = %rec.id, error = %e, "blob removal failed; the startup sweep will retry");
    }
    Ok(Json(
        serde_json::json!({"id": rec.id, "object": "file", "deleted": true}),
    ))
}

pub async fn content(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let rec = get_file(&state, &caller.tenant, &id).await?;
    let file = state.blobs.open_read(&rec.blob_key).await?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, rec.bytes.to_string()),
        ],
        body,
    )
        .into_response())
}
