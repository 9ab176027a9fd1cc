//! /v1/uploads: create, parts (each streamed to its own durable blob), complete (parts
//! concatenated in `part_ids` order into a new file, optional md5), cancel, expiry.

use super::files::{
    check_purpose, check_upload_mime_type, expires_after_seconds, multipart_err, quick_check,
};
use super::{json_rejection, wire};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::ids::{new_id, now_unix, IdKind};
use crate::state::AppState;
use crate::store::{run_blocking, FileRecord, PartRecord, UploadRecord, UploadStatus};
use axum::extract::multipart::Multipart;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;
use tokio::io::AsyncReadExt;

#[derive(Deserialize)]
pub struct CreateBody {
    bytes: Option<i64>,
    filename: Option<String>,
    mime_type: Option<String>,
    purpose: Option<String>,
    /// `{"anchor": "created_at", "seconds": N}`: when the completed file expires.
    expires_after: Option<Value>,
}

/// The file expiry an upload asks for, checked as OpenAI does (anchor `created_at`,
/// seconds between one hour and 30 days).
fn file_expiry(v: Option<&Value>) -> Result<Option<i64>, ApiError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let Some(obj) = v.as_object() else {
        return Err(ApiError::invalid(
            "expires_after",
            "expires_after must be an object with 'anchor' and 'seconds'.",
        ));
    };
    if obj.get("anchor").and_then(Value::as_str) != Some("created_at") {
        return Err(ApiError::invalid(
            "expires_after.anchor",
            "expires_after.anchor must be 'created_at'.",
        ));
    }
    expires_after_seconds(obj.get("seconds").and_then(Value::as_i64)).map(Some)
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<CreateBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(b) = body.map_err(json_rejection)?;
    let max = state.config.limits.upload_max_bytes;
    let bytes = b
        .bytes
        .ok_or_else(|| ApiError::invalid("bytes", "Missing required parameter: 'bytes'."))?;
    if bytes <= 0 || bytes as u64 > max {
        return Err(ApiError::invalid(
            "bytes",
            format!("'bytes' must be between 1 and {max}."),
        ));
    }
    let filename = b
        .filename
        .filter(|f| !f.is_empty())
        .ok_or_else(|| ApiError::invalid("filename", "Missing required parameter: 'filename'."))?;
    let mime_type = b.mime_type.filter(|m| !m.is_empty()).ok_or_else(|| {
        ApiError::invalid("mime_type", "Missing required parameter: 'mime_type'.")
    })?;
    let purpose = b
        .purpose
        .ok_or_else(|| ApiError::invalid("purpose", "Missing required parameter: 'purpose'."))?;
    check_purpose(&purpose)?;
    check_upload_mime_type(&purpose, &mime_type)?;
    let file_expires_after = file_expiry(b.expires_after.as_ref())?;
    let now = now_unix();
    let rec = UploadRecord {
        id: new_id(IdKind::Upload),
        tenant: caller.tenant,
        bytes: bytes as u64,
        created_at: now,
        expires_at: now + state.config.limits.upload_expiry_seconds,
        filename,
        mime_type,
        purpose,
        status: UploadStatus::Pending,
        file_id: None,
        file_expires_after,
        completed_part_ids: None,
    };
    let r = rec.clone();
    run_blocking(&state.store, move |s| s.insert_upload(&r)).await?;
    Ok(Json(wire::upload(&rec, None)))
}

/// The caller's upload in any state (a pending one past its expiry is expired on the spot
/// and refused).
async fn caller_upload(state: &AppState, tenant: &str, id: &str) -> Result<UploadRecord, ApiError> {
    let (t, i) = (tenant.to_string(), id.to_string());
    let u = run_blocking(&state.store, move |s| s.get_upload(&t, &i))
        .await?
        .ok_or_else(|| ApiError::not_found("Upload", id))?;
    if u.status == UploadStatus::Pending && u.expires_at <= now_unix() {
        crate::sweep::expire_uploads(state).await?;
        return Err(ApiError::invalid(
            "upload_id",
            format!("Upload {id} has expired."),
        ));
    }
    Ok(u)
}

/// The caller's upload, still pending and unexpired (expiring it on the spot if due).
async fn pending_upload(
    state: &AppState,
    tenant: &str,
    id: &str,
) -> Result<UploadRecord, ApiError> {
    require_pending(caller_upload(state, tenant, id).await?)
}

/// `u` if it is still pending, else the error naming its state.
fn require_pending(u: UploadRecord) -> Result<UploadRecord, ApiError> {
    if u.status != UploadStatus::Pending {
        return Err(ApiError::invalid(
            "upload_id",
            format!("Upload {} is already {}.", u.id, u.status.as_str()),
        ));
    }
    Ok(u)
}

pub async fn add_part(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    mut mp: Multipart,
) -> Result<Json<Value>, ApiError> {
    let upload = pending_upload(&state, &caller.tenant, &id).await?;
    let uid = upload.id.clone();
    let parts = run_blocking(&state.store, move |s| s.list_parts(&uid)).await?;
    // A part is at most the per-part limit and never more than the whole upload. Parts the
    // client will not name in `complete` (a retried part whose reply was lost) still count
    // towards a ceiling of twice the declared size, so retries fit but the disk is bounded;
    // `complete` checks the named parts against `bytes` exactly.
    let stored: u64 = parts.iter().map(|p| p.bytes).sum();
    let room = upload.bytes.saturating_mul(2).saturating_sub(stored);
    let max = state
        .config
        .limits
        .upload_part_max_bytes
        .min(upload.bytes)
        .min(room);
    while let Some(mut field) = mp.next_field().await.map_err(multipart_err)? {
        if field.name() != Some("data") {
            continue;
        }
        let mut w = state.blobs.create().await?;
        loop {
            let chunk = match field.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    w.abort().await;
                    return Err(multipart_err(e));
                }
            };
            if w.bytes() + chunk.len() as u64 > max {
                w.abort().await;
                return Err(ApiError::too_large(
                    "data",
                    format!(
                        "This part exceeds the limit of {max} bytes: parts are at most {} bytes, no larger than the upload's {} bytes, and all parts received may total at most twice that ({stored} bytes so far).",
                        state.config.limits.upload_part_max_bytes, upload.bytes
                    ),
                ));
            }
            if let Err(e) = w.write(&chunk).await {
                w.abort().await;
                return Err(e.into());
            }
        }
        state
            .metrics
            .upload_bytes
            .with_label_values(&["part"])
            .inc_by(w.bytes());
        let part_id = new_id(IdKind::Part);
        let blob = w.commit(&part_id).await?;
        let rec = PartRecord {
            id: part_id,
            upload_id: upload.id.clone(),
            created_at: now_unix(),
            bytes: blob.bytes,
            blob_key: blob.key,
        };
        let r = rec.clone();
        run_blocking(&state.store, move |s| s.insert_part(&r)).await?;
        return Ok(Json(wire::part(&rec)));
    }
    Err(ApiError::invalid(
        "data",
        "Missing required parameter: 'data'.",
    ))
}

#[derive(Deserialize)]
pub struct CompleteBody {
    part_ids: Option<Vec<String>>,
    md5: Option<String>,
}

pub async fn complete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<CompleteBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(b) = body.map_err(json_rejection)?;
    let part_ids = b
        .part_ids
        .ok_or_else(|| ApiError::invalid("part_ids", "Missing required parameter: 'part_ids'."))?;
    let upload = caller_upload(&state, &caller.tenant, &id).await?;
    // A retried `complete` (the SDK retries a POST whose reply was lost) with the same parts
    // gets the completed upload again instead of an error for the client's own success.
    if upload.status == UploadStatus::Completed
        && upload.completed_part_ids.as_ref() == Some(&part_ids)
    {
        let file = match upload.file_id.clone() {
            Some(fid) => {
                let t = caller.tenant.clone();
                run_blocking(&state.store, move |s| s.get_file(&t, &fid)).await?
            }
            None => None,
        };
        return Ok(Json(wire::upload(&upload, file.as_ref())));
    }
    let upload = require_pending(upload)?;
    let uid = upload.id.clone();
    let parts = run_blocking(&state.store, move |s| s.list_parts(&uid)).await?;
    let mut ordered = Vec::with_capacity(part_ids.len());
    for (i, pid) in part_ids.iter().enumerate() {
        let p = parts.iter().find(|p| &p.id == pid).ok_or_else(|| {
            ApiError::invalid(
                format!("part_ids[{i}]"),
                format!("Part {pid} does not belong to upload {id}."),
            )
        })?;
        if ordered.iter().any(|o: &&PartRecord| o.id == p.id) {
            return Err(ApiError::invalid(
                format!("part_ids[{i}]"),
                format!("Part {pid} is listed twice."),
            ));
        }
        ordered.push(p);
    }
    let total: u64 = ordered.iter().map(|p| p.bytes).sum();
    if total != upload.bytes {
        return Err(ApiError::invalid(
            "part_ids",
            format!(
                "The parts add up to {total} bytes but the upload was created with bytes={}.",
                upload.bytes
            ),
        ));
    }
    let mut w = state.blobs.create().await?;
    let mut buf = vec![0u8; 1 << 20];
    for p in &ordered {
        let mut f = match state.blobs.open_read(&p.blob_key).await {
            Ok(f) => f,
            Err(e) => {
                w.abort().await;
                return Err(e.into());
            }
        };
        loop {
            let n = match f.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    w.abort().await;
                    return Err(ApiError::internal(format!("reading part {}: {e}", p.id)));
                }
            };
            if n == 0 {
                break;
            }
            if let Err(e) = w.write(&buf[..n]).await {
                w.abort().await;
                return Err(e.into());
            }
        }
    }
    if let Err(e) = quick_check(&state, &mut w, &upload.purpose).await {
        w.abort().await;
        return Err(e);
    }
    let file_id = new_id(IdKind::File);
    let blob = w.commit(&file_id).await?;
    if let Some(expected) = b.md5.as_deref().filter(|m| !m.is_empty()) {
        if !expected.eq_ignore_ascii_case(&blob.md5_hex) {
            let _ = state.blobs.remove(&blob.key).await;
            return Err(ApiError::invalid(
                "md5",
                format!(
                    "md5 mismatch: expected {expected}, the parts hash to {}.",
                    blob.md5_hex
                ),
            ));
        }
    }
    let created_at = now_unix();
    let file = FileRecord {
        id: file_id,
        tenant: caller.tenant.clone(),
        bytes: blob.bytes,
        created_at,
        filename: upload.filename.clone(),
        purpose: upload.purpose.clone(),
        expires_at: upload.file_expires_after.map(|s| created_at + s),
        blob_key: blob.key.clone(),
    };
    let (f, uid, ids) = (file.clone(), upload.id.clone(), part_ids.clone());
    let done = run_blocking(&state.store, move |s| {
        s.finish_upload(&uid, UploadStatus::Completed, Some((&f, &ids)))
    })
    .await?;
    if !done {
        let _ = state.blobs.remove(&blob.key).await;
        return Err(ApiError::invalid(
            "upload_id",
            format!("Upload {id} is no longer pending."),
        ));
    }
    crate::sweep::drop_parts(&state, &upload.id).await;
    let mut u = upload;
    u.status = UploadStatus::Completed;
    u.file_id = Some(file.id.clone());
    u.completed_part_ids = Some(part_ids);
    Ok(Json(wire::upload(&u, Some(&file))))
}

pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let upload = caller_upload(&state, &caller.tenant, &id).await?;
    if upload.status == UploadStatus::Cancelled {
        return Ok(Json(wire::upload(&upload, None))); // a retried cancel: already done
    }
    let upload = require_pending(upload)?;
    let uid = upload.id.clone();
    let done = run_blocking(&state.store, move |s| {
        s.finish_upload(&uid, UploadStatus::Cancelled, None)
    })
    .await?;
    if !done {
        return Err(ApiError::invalid(
            "upload_id",
            format!("Upload {id} is no longer pending."),
        ));
    }
    crate::sweep::drop_parts(&state, &upload.id).await;
    let mut u = upload;
    u.status = UploadStatus::Cancelled;
    Ok(Json(wire::upload(&u, None)))
}
