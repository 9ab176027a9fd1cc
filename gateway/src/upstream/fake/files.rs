//! `/v1/files`: multipart create, list (newest first), retrieve, content.

use super::jobs::page;
use super::state::{now, UpFile};
use super::v1::error;
use super::FakeUpstream;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::collections::HashMap;

pub(super) async fn create(State(f): State<FakeUpstream>, mut mp: Multipart) -> Response {
    let (mut purpose, mut content, mut name) = (None, None, "file".to_string());
    while let Ok(Some(field)) = mp.next_field().await {
        match field.name() {
            Some("purpose") => purpose = field.text().await.ok(),
            Some("file") => {
                if let Some(n) = field.file_name() {
                    name = n.to_string();
                }
                content = field.bytes().await.ok().map(|b| b.to_vec());
            }
            _ => {}
        }
    }
    let (Some(purpose), Some(content)) = (purpose, content) else {
        return error(
            StatusCode::BAD_REQUEST,
            "file and purpose are required",
            Some("file"),
        );
    };
    let meta = f.with(|s| {
        let meta = json!({"id": format!("file-up{}", s.files.len()), "object": "file",
            "bytes": content.len(), "created_at": now(), "filename": name, "purpose": purpose,
            "status": "processed"});
        s.files.push(UpFile {
            meta: meta.clone(),
            content,
        });
        meta
    });
    Json(meta).into_response()
}

pub(super) async fn list(
    State(f): State<FakeUpstream>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let metas = f.with(|s| s.files.iter().rev().map(|x| x.meta.clone()).collect());
    Json(page(metas, &q)).into_response()
}

fn missing(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        &format!("No such File object: {id}"),
        Some("id"),
    )
}

pub(super) async fn retrieve(State(f): State<FakeUpstream>, Path(id): Path<String>) -> Response {
    match f.with(|s| s.file(&id).map(|x| x.meta.clone())) {
        Some(meta) => Json(meta).into_response(),
        None => missing(&id),
    }
}

pub(super) async fn content(State(f): State<FakeUpstream>, Path(id): Path<String>) -> Response {
    match f.with(|s| s.file(&id).map(|x| x.content.clone())) {
        Some(bytes) => ([("content-type", "application/octet-stream")], bytes).into_response(),
        None => missing(&id),
    }
}
