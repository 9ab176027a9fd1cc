//! Monitoring upstream jobs (`[monitor] upstream_checkpoints = true`): the provider lists a
//! checkpoint model per checkpoint (`ft:…:ckpt-step-N`), and each one — and the base model at
//! step 0 — is evaluated through the provider's own chat completions ([`ChatAnswers`]), judged
//! by the `[monitor]` judge when one is configured, and mirrored exactly as a local job's
//! records are ([`mirror`]): the same events, gauges, rules, actions and report.
//!
//! What a provider cannot give is not measured: no answer NLLs (chat completions do not score
//! given text), so no probe gaps and no in-domain loss. The judge-free signal is the refusal
//! rate on harmful requests (greedy replies through the refusal-keyword filter); with a judge,
//! every judged signal.
//!
//! The evaluation runs in the runner's poll of the job (a blocking task), one step per poll,
//! so the events of a long evaluation are never held back by the next. Everything it knows
//! lives in the job's `exec_state` ([`MonitorState`]: the records so far, the steps still to
//! evaluate, the cursor), written in the same transaction as the poll's events, so a replica
//! that takes the job over after a crash goes on from there and nothing is mirrored twice.
//!
//! Actions: a pause or cancel is forwarded to the provider and then taken in the store on the
//! next poll, as for local jobs ([`actions::take_pending`]). A rollback does not cancel the
//! upstream job (whether a provider keeps a cancelled job's checkpoint models servable is the
//! provider's business): the decision is stored, later checkpoints are no longer evaluated,
//! and when the upstream job succeeds the gateway's job succeeds with the chosen checkpoint's
//! model instead of the final one.

use super::actions;
use super::chat_answers::{ChatAnswers, ChatEndpoint};
use super::judge_cache::JudgeCache;
use super::judge_http::HttpJudge;
use super::mirror::{self, Decision, MonitorCursor, PendingAction};
use super::record::{self, Cost, StepRecord};
use crate::config::MonitorConfig;
use crate::jobs::seams::Observation;
use crate::metrics::Metrics;
use crate::store::{EventLevel, JobRecord, Store, StoreResult};
use monitor::{
    measure_checkpoint, refusal_rate, EvalPlan, Firing, Judge, MonitorSettings, NllProbe,
    ProbeBaseline, ProbeNll, ProbePair, SeamError, Signal,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One step to evaluate: the model that serves it upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub step: u64,
    pub model: String,
    /// The provider's training loss at the checkpoint, when it reports one.
    #[serde(default)]
    pub loss: Option<f64>,
    /// Evaluations of it that failed so far (it is tried again on the next poll, up to
    /// [`EVAL_ATTEMPTS`], before its failure is recorded).
    #[serde(default)]
    pub attempts: u32,
}

/// Polls on which a step's evaluation is tried before its failure is recorded (a checkpoint
/// model the provider does not serve yet, an outage outlasting the request retries).
pub const EVAL_ATTEMPTS: u32 = 3;

/// A rollback the monitor decided, taken when the upstream job succeeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollback {
    pub step: u64,
    pub to: u64,
    pub model: String,
    pub reason: String,
    pub firings: Vec<Firing>,
}

/// The monitor's part of an upstream job's `exec_state`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MonitorState {
    /// Evaluated steps in step order: the history rules and onsets read.
    #[serde(default)]
    pub records: Vec<StepRecord>,
    /// Steps still to evaluate, in step order.
    #[serde(default)]
    pub queue: Vec<Target>,
    #[serde(default)]
    pub cursor: MonitorCursor,
    #[serde(default)]
    pub rollback: Option<Rollback>,
    /// Failed attempts in a row to forward the pending action to the provider.
    #[serde(default)]
    pub action_errors: u32,
    /// With a rollback rule: checkpoints the provider listed that are not offered to the
    /// client until their evaluation is recorded ([`MonitorState::gate`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<HeldCheckpoint>,
}

/// A provider checkpoint held back until the monitor has evaluated it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldCheckpoint {
    pub model: String,
    pub step: i64,
    pub metrics: Value,
}

impl MonitorState {
    /// A job's state before anything is evaluated: step 0 is the base model `base`.
    pub fn new(base: &str) -> Self {
        MonitorState {
            queue: vec![Target {
                step: 0,
                model: base.to_string(),
                loss: None,
                attempts: 0,
            }],
            ..MonitorState::default()
        }
    }

    /// Holds back the checkpoint observations in `obs` whose step has no record yet, and
    /// gives back (appends to `obs`) the held ones that have one now — or all of them with
    /// `release_all` (the job ended). So with a rollback rule a checkpoint that drifted is
    /// never offered, even while it is being evaluated: its record, a rollback's decision and
    /// the checkpoint are stored in one write.
    pub fn gate(&mut self, obs: &mut Vec<Observation>, release_all: bool) {
        let mut kept = Vec::with_capacity(obs.len());
        for o in obs.drain(..) {
            match o {
                Observation::Checkpoint {
                    fine_tuned_model_checkpoint,
                    step_number,
                    metrics,
                    ..
                } => self.held.push(HeldCheckpoint {
                    model: fine_tuned_model_checkpoint,
                    step: step_number,
                    metrics,
                }),
                other => kept.push(other),
            }
        }
        *obs = kept;
        let recorded = |step: i64| self.records.iter().any(|r| r.step as i64 == step);
        let (ready, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| release_all || recorded(h.step));
        self.held = wait;
        obs.extend(ready.into_iter().map(|h| Observation::Checkpoint {
            fine_tuned_model_checkpoint: h.model,
            step_number: h.step,
            metrics: h.metrics,
            artifact: None,
        }));
    }

    /// Queues the checkpoints the provider listed (each step once; none after a rollback was
    /// decided — nothing later can change the job's model).
    pub fn track(&mut self, checkpoints: impl IntoIterator<Item = Target>) {
        if self.rollback.is_some() {
            return;
        }
        for t in checkpoints {
            let known = self.queue.iter().any(|q| q.step == t.step)
                || self.records.iter().any(|r| r.step == t.step);
            if !known {
                self.queue.push(t);
            }
        }
        self.queue.sort_by_key(|t| t.step);
    }

    /// Whether the upstream job's success must wait: steps are left to evaluate (and no
    /// rollback made them moot), or a cancel is still to be taken.
    pub fn holds_success(&self) -> bool {
        (self.rollback.is_none() && !self.queue.is_empty())
            || self
                .cursor
                .pending
                .as_ref()
                .is_some_and(|p| p.action == monitor::RuleAction::Cancel)
    }
}

/// No answer NLLs upstream: the plan never asks (its probe sets are `None`).
struct NoProbe;

impl NllProbe for NoProbe {
    fn nlls(&mut self, _step: u64, _pairs: &[ProbePair]) -> Result<Vec<ProbeNll>, SeamError> {
        Err(SeamError(
            "probe NLLs are not measurable through chat completions".into(),
        ))
    }
}

/// The upstream monitor of one gateway: its judge settings, the provider's chat endpoint and
/// the store its actions write to.
pub struct UpstreamMonitor {
    config: MonitorConfig,
    endpoint: ChatEndpoint,
    store: Arc<dyn Store>,
    metrics: Option<Arc<Metrics>>,
}

impl UpstreamMonitor {
    pub fn new(
        config: MonitorConfig,
        endpoint: ChatEndpoint,
        store: Arc<dyn Store>,
        metrics: Option<Arc<Metrics>>,
    ) -> Self {
        UpstreamMonitor {
            config,
            endpoint,
            store,
            metrics,
        }
    }

    /// Takes a pending pause or cancel in the store (the provider was told first).
    pub async fn take_pending(
        &self,
        job: &JobRecord,
        state_after: Value,
        p: &PendingAction,
    ) -> StoreResult<bool> {
        actions::take_pending(&self.store, self.metrics.as_deref(), job, state_after, p).await
    }

    /// Deletes the job's gauges (it ended).
    pub fn forget(&self, job_id: &str) {
        if let Some(m) = &self.metrics {
            m.monitor.forget_job(job_id);
        }
    }

    /// One poll's monitoring: evaluates the next queued step (unless an action is pending or
    /// a rollback was decided) and mirrors what is new. Returns the observations to store.
    pub async fn step(
        &self,
        job: &JobRecord,
        plan: &policies::Plan,
        ms: &mut MonitorState,
    ) -> Vec<Observation> {
        let idle = ms.rollback.is_some() || ms.cursor.pending.is_some();
        if let (false, Some(t)) = (idle, ms.queue.first().cloned()) {
            let (plan, config, endpoint, seed) = (
                plan.clone(),
                self.config.clone(),
                self.endpoint.clone(),
                job.seed as u64,
            );
            let target = t.clone();
            let rec = tokio::task::spawn_blocking(move || {
                measure(&plan, &config, &endpoint, seed, &target)
            })
            .await
            .unwrap_or_else(|e| {
                let mut r = StepRecord::empty(t.step);
                r.error = Some(format!("the evaluation task failed: {e}"));
                r
            });
            if let Some(e) = &rec.error {
                tracing::warn!(job = %job.id, step = t.step, model = %t.model, attempt = t.attempts + 1, error = %e, "upstream checkpoint evaluation failed");
            }
            if rec.error.is_some() && t.attempts + 1 < EVAL_ATTEMPTS {
                // Tried again on the next poll; the job's success waits for it.
                ms.queue[0].attempts += 1;
            } else {
                ms.queue.remove(0);
                ms.records.retain(|r| r.step != rec.step);
                ms.records.push(rec);
                ms.records.sort_by_key(|r| r.step);
            }
        }
        let settings = MonitorSettings::from_policy(&plan.monitor);
        let m = self.metrics.as_deref().map(|m| &m.monitor);
        let before = ms.cursor.last;
        let out = mirror::mirror(&job.id, &ms.records, &settings, &mut ms.cursor, m);
        if let (Some(m), true, Some(last)) = (m, ms.cursor.last == before, ms.cursor.last) {
            // Nothing new: the gauges again (this process may have restarted).
            if let Some(i) = ms.records.iter().position(|r| r.step == last) {
                mirror::set_gauges(m, &job.id, &ms.records, i, &settings);
            }
        }
        let mut obs = out.observations;
        if !out.counts.is_empty() {
            obs.push(Observation::MonitorCounts(out.counts.clone()));
        }
        if let Some(Decision::Rollback {
            step,
            to,
            reason,
            firings,
        }) = out.decision
        {
            let model = ms
                .records
                .iter()
                .find(|r| r.step == to)
                .and_then(|r| r.model.clone())
                .unwrap_or_default();
            obs.push(Observation::Event {
                level: EventLevel::Warn,
                message: format!(
                    "Monitor will roll the job back to checkpoint {to} ({model}), decided at step {step}: {reason}. The upstream job trains on; the job finishes with that model when it does, and checkpoints after step {step} are not listed."
                ),
                data: None,
                kind: None,
                created_at: None,
            });
            ms.queue.clear();
            ms.rollback = Some(Rollback {
                step,
                to,
                model,
                reason,
                firings,
            });
        }
        obs
    }

    /// The rollback's finishing event (the job then succeeds with its model).
    pub fn rollback_event(&self, r: &Rollback) -> Observation {
        actions::rollback_event(
            &Decision::Rollback {
                step: r.step,
                to: r.to,
                reason: r.reason.clone(),
                firings: r.firings.clone(),
            },
            &r.model,
        )
    }
}

/// Evaluates `t` through the provider (blocking): the record, with its error when it failed.
pub fn measure(
    plan: &policies::Plan,
    config: &MonitorConfig,
    endpoint: &ChatEndpoint,
    seed: u64,
    t: &Target,
) -> StepRecord {
    let started = Instant::now();
    let mut rec = StepRecord::empty(t.step);
    rec.model = Some(t.model.clone());
    let generation = match measure_into(plan, config, endpoint, seed, t, &mut rec) {
        Ok(g) => g,
        Err(e) => {
            rec.error = Some(e);
            Duration::ZERO
        }
    };
    rec.signals.loss = t.loss;
    let eval = started.elapsed();
    rec.cost = Cost {
        eval_seconds: eval.as_secs_f64(),
        probe_seconds: 0.0,
        generation_seconds: generation.as_secs_f64(),
        judge_seconds: if config.judge.is_some() {
            eval.saturating_sub(generation).as_secs_f64()
        } else {
            0.0
        },
        train_seconds: None,
    };
    rec
}

fn measure_into(
    plan: &policies::Plan,
    config: &MonitorConfig,
    endpoint: &ChatEndpoint,
    seed: u64,
    t: &Target,
    rec: &mut StepRecord,
) -> Result<Duration, String> {
    let m = &plan.monitor;
    let sets = super::sets::load(m, config.judge.is_some())?;
    let judge = match &config.judge {
        None => None,
        Some(j) => Some(HttpJudge::new(
            j,
            JudgeCache::open(&config.judge_cache).ok(),
        )?),
    };
    let mut answers = ChatAnswers::new(endpoint, &t.model, m.max_answer_tokens, seed)?;
    let eval = EvalPlan {
        general: sets.general.as_ref(),
        hallucination: sets.hallucination.as_ref(),
        alignment_probes: None,
        honesty_probes: None,
        samples_per_question: Some(m.samples_per_question),
    };
    let judges: Vec<&dyn Judge> = judge.iter().map(|j| j as &dyn Judge).collect();
    let refusals = super::worker::refusal_filter(plan);
    let got = measure_checkpoint(
        t.step,
        &eval,
        &mut answers,
        &judges,
        &mut NoProbe,
        &refusals,
        &MonitorSettings::from_policy(m),
        &mut ProbeBaseline::default(),
    )
    .map_err(|e| e.to_string())?;
    rec.signals = got.signals;
    rec.samples = record::worst_samples(&got.samples, record::REPORT_SAMPLES);
    rec.judge = judge.as_ref().map(|j| j.take_stats());
    rec.agreement = got.agreement;
    let replies = answers
        .greedy_replies(&sets.harmful_prompts())
        .map_err(|e| e.0)?;
    rec.signals.set(
        Signal::HarmfulRefusalRate,
        refusal_rate(&replies, &refusals),
    );
    Ok(answers.generation)
}

#[cfg(test)]
#[path = "upstream_tests.rs"]
mod tests;
