//! `POST /v1/chat/completions` and `GET /v1/models` for local models, in OpenAI's shapes
//! (non-streamed, and SSE chunks ending in `data: [DONE]` with an optional usage chunk).

use super::logprobs::completion_logprobs;
use super::names::parse_fine_tuned;
use crate::api::proxied_models::model_not_found;
use crate::config::ModelEntry;
use crate::error::ApiError;
use crate::ids::{new_id, now_unix, IdKind};
use crate::local::artifact::{self, AdapterSource};
use crate::local::{jobfiles, layout};
use crate::state::AppState;
use crate::store::{run_blocking, JobStatus};
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::path::PathBuf;
use trainer::{GenerateOptions, Message, Sampling};

use crate::auth::Caller;

/// What a request's `model` resolves to.
struct Target {
    entry: ModelEntry,
    adapter: Option<PathBuf>,
}

async fn resolve(state: &AppState, tenant: &str, model: &str) -> Result<Target, ApiError> {
    let Some(ft) = parse_fine_tuned(model) else {
        let entry = state
            .config
            .models
            .model_for(model)
            .cloned()
            .ok_or_else(|| model_not_found(model))?;
        return Ok(Target {
            entry,
            adapter: None,
        });
    };
    let (t, id) = (tenant.to_string(), ft.job_id.clone());
    let job = run_blocking(&state.store, move |s| s.get_job(&t, &id))
        .await?
        .ok_or_else(|| model_not_found(model))?;
    let name = layout::fine_tuned_model(&job.model, &job.tenant, job.suffix.as_deref(), &job.id);
    let same = match ft.checkpoint {
        None => name == model,
        Some(n) => layout::checkpoint_model(&name, n) == model,
    };
    if !same {
        return Err(model_not_found(model));
    }
    if ft.checkpoint.is_none() && job.status != JobStatus::Succeeded {
        return Err(model_not_found(model));
    }
    if ft.checkpoint.is_some() {
        // Not a checkpoint after the one a monitor rollback finished the job with.
        let (t, m) = (tenant.to_string(), model.to_string());
        if !run_blocking(&state.store, move |s| s.model_listed(&t, &m)).await? {
            return Err(model_not_found(model));
        }
    }
    let run = layout::run_dir(&jobfiles::runner_dir(
        &state.config.data_dir,
        &state.blobs,
        &job.id,
    ));
    let dir = match artifact::locate(&state.store, &state.blobs, &job, &run, ft.checkpoint).await? {
        None => return Err(model_not_found(model)),
        Some(AdapterSource::Dir(dir)) => dir,
        Some(AdapterSource::Blob(key)) => {
            // The worker's directory is not here: the adapter's artifact, unpacked once.
            let (blobs, cache) = (state.blobs.clone(), state.config.data_dir.join("adapters"));
            let cap = state.config.storage.adapter_cache_bytes;
            tokio::task::spawn_blocking(move || artifact::materialize(&blobs, &key, &cache, cap))
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?
                .map_err(|e| ApiError::internal(format!("unpacking the adapter: {e}")))?
        }
    };
    let entry = state
        .config
        .models
        .model_for(&job.model)
        .cloned()
        .ok_or_else(|| model_not_found(model))?;
    Ok(Target {
        entry,
        adapter: Some(dir),
    })
}

/// The validated request.
struct Request {
    model: String,
    messages: Vec<Message>,
    max_tokens: usize,
    temperature: f32,
    top_p: f32,
    n: usize,
    stop: Vec<String>,
    seed: Option<u64>,
    stream: bool,
    include_usage: bool,
    logprobs: bool,
    top_logprobs: usize,
}

fn num(body: &Value, key: &str, lo: f64, hi: f64) -> Result<Option<f64>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(x) if (lo..=hi).contains(&x) => Ok(Some(x)),
            _ => Err(ApiError::invalid(
                key,
                format!("'{key}' must be a number between {lo} and {hi}, got {v}."),
            )),
        },
    }
}

fn content_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => parts
            .iter()
            .map(|p| {
                (p.get("type")?.as_str()? == "text")
                    .then(|| p.get("text")?.as_str().map(String::from))?
            })
            .collect::<Option<Vec<_>>>()
            .map(|t| t.concat()),
        _ => None,
    }
}

fn parse(body: &Value) -> Result<Request, ApiError> {
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("model", "'model' is required."))?
        .to_string();
    let raw = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::invalid("messages", "'messages' must be a non-empty array."))?;
    let mut messages = Vec::with_capacity(raw.len());
    for (i, m) in raw.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        let role = match role {
            "system" | "developer" => "system",
            "user" | "assistant" => role,
            other => {
                return Err(ApiError::invalid(
                    format!("messages[{i}].role"),
                    format!(
                        "Invalid value '{other}': expected system, developer, user or assistant."
                    ),
                ))
            }
        };
        let content = m.get("content").and_then(content_text).ok_or_else(|| {
            ApiError::invalid(
                format!("messages[{i}].content"),
                "'content' must be a string or a list of text parts.",
            )
        })?;
        messages.push(Message {
            role: role.into(),
            content,
        });
    }
    let max_tokens = num(body, "max_completion_tokens", 1.0, 32768.0)?
        .or(num(body, "max_tokens", 1.0, 32768.0)?)
        .unwrap_or(256.0) as usize;
    let stop = match body.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if a.len() <= 4 && a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(|s| s.as_str().map(String::from))
            .collect(),
        Some(_) => {
            return Err(ApiError::invalid(
                "stop",
                "'stop' must be a string or a list of at most 4 strings.",
            ))
        }
    };
    let logprobs = body
        .get("logprobs")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let top_logprobs = num(body, "top_logprobs", 0.0, 20.0)?.unwrap_or(0.0) as usize;
    if top_logprobs > 0 && !logprobs {
        return Err(ApiError::invalid(
            "top_logprobs",
            "'top_logprobs' needs 'logprobs' to be true.",
        ));
    }
    Ok(Request {
        model,
        messages,
        max_tokens,
        temperature: num(body, "temperature", 0.0, 2.0)?.unwrap_or(1.0) as f32,
        top_p: num(body, "top_p", 0.0, 1.0)?.unwrap_or(1.0) as f32,
        n: num(body, "n", 1.0, 16.0)?.unwrap_or(1.0) as usize,
        stop,
        seed: body.get("seed").and_then(Value::as_u64),
        stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
        include_usage: body
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        logprobs,
        top_logprobs,
    })
}

/// One generated choice.
struct Choice {
    text: String,
    finish: &'static str,
    tokens: usize,
    logprobs: Option<Value>,
}

fn token_entry(tok: &tokenizers::Tokenizer, id: u32, lp: f32) -> Value {
    let text = tok.decode(&[id], false).unwrap_or_default();
    json!({"token": text, "logprob": lp, "bytes": text.as_bytes()})
}

fn generate(
    state: &AppState,
    target: Target,
    req: &Request,
) -> Result<(Vec<Choice>, usize), ApiError> {
    if let Some(message) = target.entry.missing_model(&req.model) {
        return Err(ApiError::unavailable(message)
            .with_code("model_not_available")
            .with_param("model"));
    }
    let loaded = state
        .serving
        .engine(&target.entry)
        .map_err(|e| ApiError::unavailable(format!("The model failed to load: {e}")))?;
    let mut loaded = loaded
        .lock()
        .map_err(|_| ApiError::internal("engine lock poisoned"))?;
    let adapter = match &target.adapter {
        Some(dir) => Some(
            loaded
                .adapter(dir)
                .map_err(|e| ApiError::unavailable(format!("The adapter failed to load: {e}")))?,
        ),
        None => None,
    };
    let engine = &loaded.engine;
    let prompt = engine
        .tokenizer
        .encode_prompt(&req.messages)
        .map_err(|e| ApiError::invalid("messages", e.to_string()))?;
    let sampling = if req.temperature > 0.0 {
        Sampling::TopP {
            temperature: req.temperature,
            top_p: req.top_p.max(1e-6),
            seed: req.seed.unwrap_or_else(rand::random),
        }
    } else {
        Sampling::Greedy
    };
    let mut stop_tokens = engine.weights.config.eos_token_ids.clone();
    stop_tokens.extend(engine.tokenizer.eos_id);
    let opts = GenerateOptions {
        max_new_tokens: req.max_tokens,
        sampling,
        stop_tokens: stop_tokens.clone(),
    };
    let outs = engine
        .generate(&vec![prompt.clone(); req.n], adapter.as_deref(), &opts)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let tok = &engine.tokenizer.tokenizer;
    let mut choices = Vec::with_capacity(outs.len());
    for toks in outs {
        let ended = toks.last().is_some_and(|t| stop_tokens.contains(t));
        let mut ids: Vec<u32> = toks
            .iter()
            .copied()
            .filter(|t| !stop_tokens.contains(t))
            .collect();
        let mut text = tok
            .decode(&ids, true)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let mut finish = if ended { "stop" } else { "length" };
        if let Some(cut) = req.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
            text.truncate(cut);
            finish = "stop";
            // Keep the tokens whose text lies before the cut.
            while !ids.is_empty()
                && tok
                    .decode(&ids, true)
                    .map(|t| t.len() > cut)
                    .unwrap_or(false)
            {
                ids.pop();
            }
        }
        let logprobs = if req.logprobs {
            let lps =
                completion_logprobs(engine, adapter.as_deref(), &prompt, &ids, req.top_logprobs)
                    .map_err(|e| ApiError::internal(e.to_string()))?;
            Some(
                json!({"content": ids.iter().zip(lps).map(|(&id, (lp, top))| {
                let mut e = token_entry(tok, id, lp);
                e["top_logprobs"] = top.iter().map(|&(t, l)| token_entry(tok, t, l)).collect();
                e
            }).collect::<Vec<_>>(), "refusal": null}),
            )
        } else {
            None
        };
        choices.push(Choice {
            text,
            finish,
            tokens: toks.len(),
            logprobs,
        });
    }
    Ok((choices, prompt.len()))
}

pub async fn chat_completions(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(crate::api::json_rejection)?;
    let req = parse(&body)?;
    let started = std::time::Instant::now();
    let target = resolve(&state, &caller.tenant, &req.model).await?;
    let fine_tuned = target.adapter.is_some();
    let st = state.clone();
    let (choices, req) =
        tokio::task::spawn_blocking(move || generate(&st, target, &req).map(|c| (c, req)))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))??;
    let (choices, prompt_tokens) = choices;
    let completion_tokens: usize = choices.iter().map(|c| c.tokens).sum();
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    });
    state.metrics.chat_completion(
        fine_tuned,
        started.elapsed().as_secs_f64(),
        prompt_tokens as u64,
        completion_tokens as u64,
    );
    let id = new_id(IdKind::ChatCompletion);
    let created = now_unix();
    if !req.stream {
        return Ok(Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": req.model,
            "system_fingerprint": null,
            "choices": choices.iter().enumerate().map(|(i, c)| json!({
                "index": i,
                "message": {"role": "assistant", "content": c.text, "refusal": null},
                "logprobs": c.logprobs,
                "finish_reason": c.finish,
            })).collect::<Vec<_>>(),
            "usage": usage,
        }))
        .into_response());
    }
    let chunk = |choices: Value, usage: Value| {
        let mut c = json!({
            "id": id, "object": "chat.completion.chunk", "created": created,
            "model": req.model, "system_fingerprint": null, "choices": choices,
        });
        if req.include_usage {
            c["usage"] = usage;
        }
        format!("data: {c}\n\n")
    };
    let mut out = String::new();
    for (i, c) in choices.iter().enumerate() {
        out += &chunk(
            json!([{"index": i, "delta": {"role": "assistant", "content": "", "refusal": null}, "logprobs": null, "finish_reason": null}]),
            Value::Null,
        );
        if !c.text.is_empty() {
            out += &chunk(
                json!([{"index": i, "delta": {"content": c.text}, "logprobs": c.logprobs, "finish_reason": null}]),
                Value::Null,
            );
        }
        out += &chunk(
            json!([{"index": i, "delta": {}, "logprobs": null, "finish_reason": c.finish}]),
            Value::Null,
        );
    }
    if req.include_usage {
        out += &chunk(json!([]), usage);
    }
    out += "data: [DONE]\n\n";
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from(out),
    )
        .into_response())
}

/// `GET /v1/models`: the base models `[[models]]` names literally (not by a glob) and the caller's
/// succeeded local `ft:` models with their checkpoints.
pub async fn models(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let mut data: Vec<Value> = state
        .config
        .models
        .entries
        .iter()
        .flat_map(|e| &e.globs)
        .filter(|g| !g.contains(['*', '?', '[', '{']))
        .map(|g| json!({"id": g, "object": "model", "created": 0, "owned_by": "tuneguard"}))
        .collect();
    let tenant = caller.tenant.clone();
    let jobs = run_blocking(&state.store, move |s| {
        s.list_jobs(
            &tenant,
            &crate::store::JobQuery {
                after: None,
                limit: 1000,
                metadata: Default::default(),
            },
        )
    })
    .await?;
    for j in jobs.data {
        if !j.pipeline.is_local() {
            continue;
        }
        if let (Some(name), Some(at)) = (&j.fine_tuned_model, j.finished_at) {
            data.push(json!({"id": name, "object": "model", "created": at, "owned_by": format!("org-{}", j.tenant)}));
        }
    }
    Ok(Json(json!({"object": "list", "data": data})))
}
