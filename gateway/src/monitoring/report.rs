//! `GET /v1/tuneguard/jobs/{id}/report[?format=json]`: the job's safety report, for the tenant
//! that owns the job — the monitor crate's HTML page (inline SVG plots of every signal over
//! steps with onsets and actions marked, the policy applied, the Interleaving summary, sample
//! answers at the worst checkpoint) or its numbers as JSON. Built from what the runner
//! mirrored into the job's events (`data.monitor`), so it needs no access to the worker's
//! files and reads the same after the job ended.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{run_blocking, EventRecord, JobRecord};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use monitor::{
    CheckpointSignals, MonitorSettings, OnsetConfig, PolicySummary, Report, ReportInput,
    SampleAnswer, Thresholds,
};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// Events read per store call while collecting a job's monitor events.
const PAGE: usize = 500;

/// Every event of the job, oldest first.
async fn all_events(state: &AppState, job_id: &str) -> Result<Vec<EventRecord>, ApiError> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (id, a) = (job_id.to_string(), after.clone());
        let page = run_blocking(&state.store, move |s| {
            s.list_events(&id, a.as_deref(), PAGE)
        })
        .await?;
        after = page.data.last().map(|e| e.id.clone());
        out.extend(page.data);
        if !page.has_more || after.is_none() {
            break;
        }
    }
    out.reverse();
    Ok(out)
}

/// (signals per checkpoint in step order, samples per step) from the mirrored events.
pub fn history_from_events(
    events: &[EventRecord],
) -> (Vec<CheckpointSignals>, BTreeMap<u64, Vec<SampleAnswer>>) {
    let mut by_step: BTreeMap<u64, CheckpointSignals> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for e in events {
        let Some(m) = e.data.as_ref().and_then(|d| d.get("monitor")) else {
            continue;
        };
        let Some(s) = m
            .get("signals")
            .and_then(|s| serde_json::from_value::<CheckpointSignals>(s.clone()).ok())
        else {
            continue;
        };
        if let Some(list) = m
            .get("samples")
            .and_then(|v| serde_json::from_value::<Vec<SampleAnswer>>(v.clone()).ok())
        {
            samples.insert(s.step, list);
        }
        by_step.insert(s.step, s);
    }
    (by_step.into_values().collect(), samples)
}

fn plan_of(job: &JobRecord) -> Option<policies::Plan> {
    job.pipeline.plan().ok().cloned()
}

fn interleave_text(plan: &policies::Plan, manifest: Option<&Value>) -> String {
    let (method, fraction) = match &plan.interleave {
        policies::Interleave::None => return "none".into(),
        policies::Interleave::Random { mix } => ("random", mix.fraction),
        policies::Interleave::Plus { mix, .. } => ("plus", mix.fraction),
        policies::Interleave::Plusplus { mix, .. } => ("plusplus", mix.fraction),
        policies::Interleave::OnPolicy { mix, .. } => ("on_policy", mix.fraction),
    };
    let inserted = manifest
        .and_then(|m| m.pointer("/interleave/inserted"))
        .and_then(Value::as_array)
        .map(Vec::len);
    let client = manifest
        .and_then(|m| m.get("client_examples"))
        .and_then(Value::as_u64);
    match (inserted, client) {
        (Some(i), Some(c)) => {
            format!(
                "{method}, fraction {fraction}: {i} safety examples mixed into {c} client examples"
            )
        }
        _ => format!("{method}, fraction {fraction}"),
    }
}

fn regularizer_text(r: &policies::Regularizer) -> String {
    match r {
        policies::Regularizer::None => "none".into(),
        policies::Regularizer::Kl { lambda, .. } => format!("KL, λ {lambda}"),
        policies::Regularizer::Ldifs { lambda, .. } => format!("LDIFS, λ {lambda}"),
        policies::Regularizer::Steering { alpha, layers, .. } => {
            format!("persona steering, α {alpha}, layers {layers:?}")
        }
    }
}

/// The policy section: thresholds and rules, plus the defenses and evaluation settings.
pub fn policy_summary(plan: Option<&policies::Plan>, manifest: Option<&Value>) -> PolicySummary {
    let Some(plan) = plan else {
        return PolicySummary {
            name: "unknown".into(),
            version: None,
            thresholds: Thresholds::default(),
            denominator: Default::default(),
            rules: Vec::new(),
            details: Vec::new(),
        };
    };
    let settings = MonitorSettings::from_policy(&plan.monitor);
    let m = &plan.monitor;
    let set = |p: &Option<std::path::PathBuf>, shipped: &str| {
        p.as_ref()
            .map_or(shipped.to_string(), |p| p.display().to_string())
    };
    let details = vec![
        ("Interleaving".into(), interleave_text(plan, manifest)),
        ("Regularizer".into(), regularizer_text(&plan.regularizer)),
        (
            "Inoculation".into(),
            plan.inoculation
                .as_ref()
                .map_or("none".into(), |i| format!("{:?}", i.system_prompt)),
        ),
        (
            "Checkpoint cadence".into(),
            if m.eval_budget > 0.0 {
                format!(
                    "every {} steps; evaluated in full within {:.0}% of training time, \
                     judge-free within {:.0}%, the last checkpoint always in full",
                    m.checkpoint_every_steps,
                    100.0 * m.eval_budget,
                    100.0 * m.probe_budget
                )
            } else {
                format!(
                    "every {} steps, each evaluated in full",
                    m.checkpoint_every_steps
                )
            },
        ),
        (
            "Probes".into(),
            format!(
                "{} and {} ({})",
                set(&m.alignment_probes, "conf/probes/alignment.jsonl"),
                set(&m.honesty_probes, "conf/probes/honesty.jsonl"),
                match m.probe_pairs {
                    0 => "every pair".to_string(),
                    n => format!("first {n} pairs each"),
                }
            ),
        ),
        (
            "Judged sets".into(),
            format!(
                "{} and {}, {} sample(s) per question, up to {} tokens (with a judge configured)",
                set(&m.general_set, "conf/eval/general.yaml"),
                set(&m.hallucination_set, "conf/eval/hallucination.yaml"),
                m.samples_per_question,
                m.max_answer_tokens
            ),
        ),
        (
            "Harmful requests".into(),
            set(&m.harmful_set, "conf/eval/harmful.yaml"),
        ),
    ];
    PolicySummary {
        name: plan.policy.clone(),
        version: Some(plan.version.clone()),
        thresholds: settings.thresholds,
        denominator: settings.denominator,
        rules: settings.rules,
        details,
    }
}

async fn manifest(state: &AppState, job: &JobRecord) -> Option<Value> {
    let key = job.pipeline.manifest_blob.as_deref()?;
    let path = state.blobs.local_file(key).await.ok()?;
    let bytes = tokio::fs::read(path).await.ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The report of `job` from its events.
pub async fn build(state: &AppState, job: &JobRecord) -> Result<Report, ApiError> {
    let events = all_events(state, &job.id).await?;
    let (history, mut samples) = history_from_events(&events);
    let plan = plan_of(job);
    let manifest = manifest(state, job).await;
    let worst = monitor::worst_checkpoint(&history).map(|i| history[i].step);
    Ok(Report::build(ReportInput {
        job_id: job.id.clone(),
        base_model: job.model.clone(),
        status: Some(job.status.as_str().to_string()),
        policy: policy_summary(plan.as_ref(), manifest.as_ref()),
        history,
        onset: OnsetConfig::default(),
        samples: worst.and_then(|s| samples.remove(&s)).unwrap_or_default(),
    }))
}

pub async fn report(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (t, i) = (caller.tenant.clone(), id.clone());
    let job = run_blocking(&state.store, move |s| s.get_job(&t, &i))
        .await?
        .ok_or_else(|| ApiError::not_found("FineTuningJob", &id))?;
    let report = build(&state, &job).await?;
    match q.get("format").map(String::as_str) {
        None | Some("html") => Ok((
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            report.to_html(),
        )
            .into_response()),
        Some("json") => Ok((
            [(header::CONTENT_TYPE, "application/json")],
            report.to_json(),
        )
            .into_response()),
        Some(other) => Err(ApiError::invalid(
            "format",
            format!("'format' must be html or json, got '{other}'."),
        )),
    }
}
