//! The reqwest client for an OpenAI-compatible provider: upload, create, poll, cancel.

use super::error::UpstreamError;
use super::types::*;
use super::wire::{create_body, parse_job, take_new, Page};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::{multipart, Method, RequestBuilder};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Pages fetched per list when catching up on events or checkpoints.
const MAX_PAGES: usize = 20;
const PAGE_LIMIT: usize = 100;

/// A client for one upstream (base URL such as `https://api.openai.com/v1`).
#[derive(Clone)]
pub struct UpstreamClient {
    http: reqwest::Client,
    base_url: String,
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamClient")
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl UpstreamClient {
    /// `api_key` is sent as `Authorization: Bearer …` on every call.
    pub fn new(base_url: &str, api_key: &str) -> Result<Self, UpstreamError> {
        let mut auth = HeaderValue::from_str(&format!("Bearer {api_key}")).map_err(|_| {
            UpstreamError::internal("upstream.api_key", "is not a valid header value")
        })?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| UpstreamError::internal("building the upstream client", e))?;
        Ok(UpstreamClient {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
        })
    }

    fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base_url))
    }

    async fn send_json(&self, what: &str, rb: RequestBuilder) -> Result<Value, UpstreamError> {
        let resp = rb
            .send()
            .await
            .map_err(|e| UpstreamError::unreachable(what, &e))?;
        let status = resp.status();
        let wait = super::error::retry_after(resp.headers());
        let body = resp
            .bytes()
            .await
            .map_err(|e| UpstreamError::unreachable(what, &e))?;
        if !status.is_success() {
            return Err(
                UpstreamError::from_status(what, status.as_u16(), &body).with_retry_after(wait)
            );
        }
        serde_json::from_slice(&body).map_err(|e| UpstreamError::protocol(what, e))
    }

    /// Uploads `path` as a fine-tune file (streamed, `POST /files`); returns the file id.
    pub async fn upload_file(&self, path: &Path, filename: &str) -> Result<String, UpstreamError> {
        let what = "the training file upload";
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| UpstreamError::internal(&format!("opening {}", path.display()), e))?;
        let len = file
            .metadata()
            .await
            .map_err(|e| UpstreamError::internal(&format!("reading {}", path.display()), e))?
            .len();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let part = multipart::Part::stream_with_length(body, len)
            .file_name(filename.to_string())
            .mime_str("application/jsonl")
            .map_err(|e| UpstreamError::internal(what, e))?;
        let form = multipart::Form::new()
            .text("purpose", "fine-tune")
            .part("file", part);
        let v = self
            .send_json(what, self.req(Method::POST, "/files").multipart(form))
            .await?;
        v.get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| UpstreamError::protocol(what, "no `id` in the file object"))
    }

    /// The upstream job created earlier for this gateway job, if any (metadata lookup).
    pub async fn find_job(
        &self,
        gateway_job_id: &str,
    ) -> Result<Option<(String, String)>, UpstreamError> {
        let what = "the job lookup";
        let rb = self.req(Method::GET, "/fine_tuning/jobs").query(&[
            ("limit", "10"),
            ("metadata[tuneguard_job_id]", gateway_job_id),
        ]);
        let v = self.send_json(what, rb).await?;
        let found = v.get("data").and_then(Value::as_array).and_then(|d| {
            d.iter().find(|j| {
                j.pointer("/metadata/tuneguard_job_id")
                    .and_then(Value::as_str)
                    == Some(gateway_job_id)
            })
        });
        Ok(found.and_then(|j| {
            let id = j.get("id")?.as_str()?.to_string();
            let file = j.get("training_file")?.as_str()?.to_string();
            Some((id, file))
        }))
    }

    /// Uploads the transformed dataset and creates the job upstream. If a job for
    /// `spec.gateway_job_id` already exists upstream (a retried start), it is reused.
    pub async fn start(
        &self,
        spec: &JobSpec,
        dataset: &Path,
    ) -> Result<UpstreamJobRef, UpstreamError> {
        // A provider that refuses the metadata filter (400) just has no earlier job to find.
        let earlier = match self.find_job(&spec.gateway_job_id).await {
            Ok(found) => found,
            Err(e) if e.side == super::error::Side::Downstream => None,
            Err(e) => return Err(e),
        };
        if let Some((job_id, training_file_id)) = earlier {
            return Ok(UpstreamJobRef {
                job_id,
                training_file_id,
            });
        }
        let filename = format!("{}.jsonl", spec.gateway_job_id);
        let file_id = self.upload_file(dataset, &filename).await?;
        let what = "the job creation";
        let v = self
            .send_json(
                what,
                self.req(Method::POST, "/fine_tuning/jobs")
                    .json(&create_body(spec, &file_id)),
            )
            .await?;
        let job_id = v
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| UpstreamError::protocol(what, "no `id` in the job object"))?;
        Ok(UpstreamJobRef {
            job_id: job_id.to_string(),
            training_file_id: file_id,
        })
    }

    /// The job's status plus the events and checkpoints newer than `cursor`, oldest first.
    pub async fn poll(
        &self,
        job: &UpstreamJobRef,
        cursor: &MirrorCursor,
    ) -> Result<UpstreamSnapshot, UpstreamError> {
        let id = &job.job_id;
        let v = self
            .send_json(
                "the job status",
                self.req(Method::GET, &format!("/fine_tuning/jobs/{id}")),
            )
            .await?;
        let state = parse_job(&v)?;
        let events = self
            .catch_up(
                &format!("/fine_tuning/jobs/{id}/events"),
                cursor.last_event_id.as_deref(),
            )
            .await?;
        let checkpoints = self
            .catch_up(
                &format!("/fine_tuning/jobs/{id}/checkpoints"),
                cursor.last_checkpoint_id.as_deref(),
            )
            .await?;
        let new_events = events
            .iter()
            .filter_map(super::wire::parse_event)
            .collect::<Vec<_>>();
        let new_checkpoints = checkpoints
            .iter()
            .filter_map(super::wire::parse_checkpoint)
            .collect::<Vec<_>>();
        let cursor = MirrorCursor {
            last_event_id: new_events
                .last()
                .map(|e| e.id.clone())
                .or_else(|| cursor.last_event_id.clone()),
            last_checkpoint_id: new_checkpoints
                .last()
                .map(|c| c.id.clone())
                .or_else(|| cursor.last_checkpoint_id.clone()),
        };
        Ok(UpstreamSnapshot {
            status: state.status,
            fine_tuned_model: state.fine_tuned_model,
            trained_tokens: state.trained_tokens,
            error: state.error,
            hyperparameters: state.hyperparameters,
            new_events,
            new_checkpoints,
            cursor,
        })
    }

    /// Lists newest-first pages until `seen` (or the end) and returns the newer items,
    /// oldest first.
    async fn catch_up(&self, path: &str, seen: Option<&str>) -> Result<Vec<Value>, UpstreamError> {
        let what = "the event/checkpoint listing";
        let mut collected = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut rb = self.req(Method::GET, path).query(&[("limit", PAGE_LIMIT)]);
            if let Some(a) = &after {
                rb = rb.query(&[("after", a)]);
            }
            let page = Page::parse(&self.send_json(what, rb).await?)
                .map_err(|e| UpstreamError::protocol(what, e))?;
            let (items, hit_seen) = take_new(&page.data, seen);
            collected.extend(items);
            if hit_seen || !page.has_more {
                break;
            }
            after = page.last_id();
            if after.is_none() {
                break;
            }
        }
        collected.reverse();
        Ok(collected)
    }

    /// The job's status alone (`GET /fine_tuning/jobs/{id}`).
    pub async fn status(&self, job: &UpstreamJobRef) -> Result<UpstreamStatus, UpstreamError> {
        let path = format!("/fine_tuning/jobs/{}", job.job_id);
        let v = self
            .send_json("the job status", self.req(Method::GET, &path))
            .await?;
        Ok(parse_job(&v)?.status)
    }

    /// Pauses the upstream job (`POST /fine_tuning/jobs/{id}/pause`).
    pub async fn pause(&self, job: &UpstreamJobRef) -> Result<(), UpstreamError> {
        let path = format!("/fine_tuning/jobs/{}/pause", job.job_id);
        self.send_json("the job pause", self.req(Method::POST, &path))
            .await
            .map(|_| ())
    }

    /// Resumes the paused upstream job (`POST /fine_tuning/jobs/{id}/resume`).
    pub async fn resume(&self, job: &UpstreamJobRef) -> Result<(), UpstreamError> {
        let path = format!("/fine_tuning/jobs/{}/resume", job.job_id);
        self.send_json("the job resume", self.req(Method::POST, &path))
            .await
            .map(|_| ())
    }

    /// Cancels the upstream job. An upstream answer that it is already finished is success.
    pub async fn cancel(&self, job: &UpstreamJobRef) -> Result<(), UpstreamError> {
        let path = format!("/fine_tuning/jobs/{}/cancel", job.job_id);
        match self
            .send_json("the job cancellation", self.req(Method::POST, &path))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.status == Some(400) || e.status == Some(409) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
