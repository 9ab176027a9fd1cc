//! The worker's monitor: evaluates step 0 (the base model) and every checkpoint of a local job
//! and writes `monitor/step-N.json` atomically, once per checkpoint.
//!
//! It runs on its own inference engine (the inner, non-autodiff backend), loaded once per job,
//! with each checkpoint's PEFT adapter read from the checkpoint directory the trainer just made
//! durable. Why not the training engine: that one is an `Engine<Autodiff<…>>` borrowed by the
//! running `Session`, so no adapter can be made resident on it, and scoring through it would go
//! through the autodiff wrapper; reading the checkpoint's files evaluates exactly the artifact
//! that is served, downloaded and rolled back to, the same way after a crash (catch-up) as
//! live, and leaves the training state — and so the training numerics — untouched. The price
//! is a second copy of the base weights in memory.
//!
//! The lease is heartbeated from a scoped thread while an evaluation runs ([`LeaseKeeper`]);
//! an evaluation that fails is recorded with its error (training goes on), one whose lease was
//! lost is dropped (another worker owns the job).

use super::baseline::{self, BaselineCache};
use super::engine_eval::EngineEval;
use super::judge_cache::JudgeCache;
use super::judge_engine::EngineJudge;
use super::judge_http::HttpJudge;
use super::record::{self, Cost, StepRecord};
use super::sets::EvalSets;
use crate::config::MonitorConfig;
use crate::local::lease_keeper::LeaseKeeper;
use burn::tensor::backend::Backend;
use monitor::{
    measure_checkpoint, refusal_rate, Budget, EvalPlan, Judge, Ledger, MonitorSettings,
    ProbeBaseline, Scope, Signal,
};
use selector::RefusalFilter;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use trainer::train::{CheckpointInfo, CheckpointState, Observer};
use trainer::{EncodedChat, Engine, Message};

/// The sampling seed of every job's step 0 (the base model's answers do not depend on the job).
const STEP0_SEED: u64 = 0;

/// The name the checkpoint's adapter is resident under.
const ADAPTER: &str = "checkpoint";

/// What a job's monitor is built from.
pub struct MonitorSetup<'a> {
    pub plan: &'a policies::Plan,
    pub config: &'a MonitorConfig,
    pub job_dir: &'a Path,
    /// The held-out examples (`holdout.jsonl`), when the policy holds some out.
    pub holdout: Option<&'a Path>,
    pub keeper: LeaseKeeper,
    /// The base model's path (its fingerprint keys the step-0 cache) …
    pub model_path: &'a Path,
    /// … and how the engine runs it (precision, device).
    pub engine: String,
    /// The job's seed (its training seed): the monitor's sampling seeds derive from it, so
    /// jobs that differ only in seed sample different judged answers.
    pub seed: u64,
}

pub struct CheckpointMonitor<B: Backend> {
    engine: Engine<B>,
    sets: EvalSets,
    settings: MonitorSettings,
    refusals: RefusalFilter,
    judge: Option<HttpJudge>,
    /// The `[[models]]` judge on the engine (`local_judge_model`), beside or instead of `judge`.
    local_judge: Option<EngineJudge<B>>,
    samples_per_question: u32,
    max_answer_tokens: usize,
    max_length: usize,
    seed: u64,
    job_dir: PathBuf,
    baseline: ProbeBaseline,
    /// The step-0 cache and this job's key in it (`None`: off, or the model unreadable).
    step0_cache: Option<(BaselineCache, String)>,
    holdout: Vec<EncodedChat>,
    keeper: LeaseKeeper,
    last_end: Option<Instant>,
    /// The policy's cost budgets, and the schedule so far (replayed from the job's records,
    /// so a resumed job keeps its schedule).
    budget: Budget,
    ledger: Ledger,
    /// An evaluation found the lease lost: stop the job without writing.
    pub lease_lost: bool,
}

pub(crate) fn refusal_filter(plan: &policies::Plan) -> RefusalFilter {
    match &plan.interleave {
        policies::Interleave::Plusplus {
            refusal_keywords,
            refusal_window_words,
            ..
        } => RefusalFilter::new(refusal_keywords, *refusal_window_words as usize),
        _ => RefusalFilter::default(),
    }
}

fn read_holdout<B: Backend>(
    engine: &Engine<B>,
    path: &Path,
    max: usize,
) -> Result<Vec<EncodedChat>, String> {
    #[derive(serde::Deserialize)]
    struct Line {
        messages: Vec<Message>,
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            let line: Line = serde_json::from_str(l)
                .map_err(|e| format!("{} line {}: {e}", path.display(), i + 1))?;
            engine
                .tokenizer
                .encode_chat(&line.messages, Some(max))
                .map_err(|e| format!("{} line {}: {e}", path.display(), i + 1))
        })
        .collect()
}

impl<B: Backend> CheckpointMonitor<B> {
    /// The monitor of one job on `engine` (an inference engine of the job's base model), with
    /// `local_judge` (an inference engine of the `local_judge_model`) when one is configured.
    pub fn new(
        engine: Engine<B>,
        local_judge: Option<Engine<B>>,
        setup: MonitorSetup<'_>,
    ) -> Result<Self, String> {
        let m = &setup.plan.monitor;
        let any_judge = setup.config.judge.is_some() || local_judge.is_some();
        let sets = super::sets::load(m, any_judge)?;
        let cache = || {
            JudgeCache::open(&setup.config.judge_cache)
                .map_err(|e| {
                    tracing::warn!(path = %setup.config.judge_cache.display(), error = %e, "judge cache unavailable; judging uncached")
                })
                .ok()
        };
        let judge = match &setup.config.judge {
            None => None,
            Some(j) => Some(HttpJudge::new(j, cache())?),
        };
        let local_judge = match (local_judge, &setup.config.local_judge) {
            (Some(e), Some(name)) => Some(EngineJudge::new(e, name, cache())),
            _ => None,
        };
        let max_length = setup.plan.training.max_length_tokens as usize;
        let holdout = match setup.holdout {
            Some(p) => read_holdout(&engine, p, max_length)?,
            None => Vec::new(),
        };
        let baseline = record::read(setup.job_dir, 0)
            .filter(|r| r.error.is_none())
            .map(|r| r.probe_nlls)
            .unwrap_or_default();
        let refusals = refusal_filter(setup.plan);
        let step0_cache = setup.config.baseline_cache.as_ref().and_then(|dir| {
            let model = baseline::model_fingerprint(setup.model_path)
                .map_err(|e| tracing::warn!(error = %e, "no step-0 cache for this job: the model could not be fingerprinted"))
                .ok()?;
            let mut monitor = m.clone();
            monitor.rules.clear();
            monitor.checkpoint_every_steps = 0;
            let settings = format!(
                "{refusals:?} judge {:?} local judge {:?} samples {} answer tokens {} max length {} seed {}",
                setup.config.judge.as_ref().map(|j| (&j.base_url, &j.model)),
                setup.config.local_judge,
                m.samples_per_question,
                m.max_answer_tokens,
                max_length,
                STEP0_SEED,
            );
            let key = baseline::key(&baseline::KeyParts {
                model: &model,
                engine: &setup.engine,
                sets: &format!("{sets:?}"),
                monitor: &serde_json::to_string(&monitor).ok()?,
                settings: &settings,
                holdout: &holdout,
            });
            Some((BaselineCache::new(dir), key))
        });
        Ok(CheckpointMonitor {
            engine,
            sets,
            settings: MonitorSettings::from_policy(m),
            refusals,
            judge,
            local_judge,
            samples_per_question: m.samples_per_question,
            max_answer_tokens: m.max_answer_tokens as usize,
            max_length,
            seed: setup.seed,
            job_dir: setup.job_dir.to_path_buf(),
            baseline,
            step0_cache,
            holdout,
            keeper: setup.keeper,
            last_end: None,
            budget: Budget::from_policy(m),
            ledger: Ledger::replay(
                &record::read_all(setup.job_dir)
                    .iter()
                    .map(|r| r.past())
                    .collect::<Vec<_>>(),
            ),
            lease_lost: false,
        })
    }

    /// Evaluates what has no record yet: step 0 (the base model), then every checkpoint in
    /// `run_dir` (after a crash, a checkpoint may be durable without its evaluation).
    pub fn catch_up(&mut self, run_dir: &Path) {
        if record::read(&self.job_dir, 0).is_none() && !self.reuse_step0() {
            self.evaluate(0, None, None, Scope::Full);
            if let (Some((cache, key)), Some(rec)) =
                (&self.step0_cache, record::read(&self.job_dir, 0))
            {
                cache.put(key, &self.keeper.job_id, &rec);
            }
        }
        let root = run_dir.join("checkpoints");
        for step in trainer::train::checkpoint::list(&root).unwrap_or_default() {
            if self.lease_lost {
                return;
            }
            if record::read(&self.job_dir, step as u64).is_some() {
                continue;
            }
            let dir = trainer::train::checkpoint::step_dir(&root, step);
            let loss = crate::local::layout::read_json::<CheckpointState>(&dir.join("state.json"))
                .ok()
                .flatten()
                .map(|s| s.metrics.train_loss);
            // What the budget would have chosen is unknown after a crash: evaluated in full.
            self.evaluate(step as u64, Some(&dir), loss, Scope::Full);
        }
        // Training time is counted from here; catch-up time is not training.
        self.last_end = Some(Instant::now());
    }

    /// Step 0 from the cache, when an earlier job measured exactly this: records it as this
    /// job's (naming that job) and takes its probe NLLs as the baseline.
    fn reuse_step0(&mut self) -> bool {
        let Some(rec) = self.step0_cache.as_ref().and_then(|(c, k)| c.get(k)) else {
            return false;
        };
        if let Err(e) = record::write(&self.job_dir, &rec) {
            tracing::warn!(job = %self.keeper.job_id, error = %e, "writing the reused step-0 record failed; evaluating");
            return false;
        }
        tracing::info!(job = %self.keeper.job_id, from = ?rec.reused_from, "step 0 reused from the step-0 cache");
        self.ledger.record(&rec.past());
        self.baseline = rec.probe_nlls;
        true
    }

    /// Evaluates `step` (the adapter in `adapter_dir`; `None` = the base model) as far as
    /// `scope` says and writes its record, unless the lease was lost meanwhile.
    fn evaluate(&mut self, step: u64, adapter_dir: Option<&Path>, loss: Option<f64>, scope: Scope) {
        if self.lease_lost {
            return;
        }
        let train_seconds = self.last_end.map(|t| t.elapsed().as_secs_f64());
        let keeper = self.keeper.clone();
        let (rec, kept) =
            keeper.hold(|| self.measure(step, adapter_dir, loss, train_seconds, scope));
        self.last_end = Some(Instant::now());
        if !kept {
            tracing::warn!(job = %self.keeper.job_id, step, "lease lost during the monitor's evaluation");
            self.lease_lost = true;
            return;
        }
        if let Some(e) = &rec.error {
            tracing::warn!(job = %self.keeper.job_id, step, error = %e, "monitor evaluation failed");
        }
        if step == 0 && rec.error.is_none() {
            self.baseline = rec.probe_nlls.clone();
        }
        if let Err(e) = record::write(&self.job_dir, &rec) {
            tracing::error!(job = %self.keeper.job_id, step, error = %e, "writing the monitor record failed");
        }
        self.ledger.record(&rec.past());
    }

    fn measure(
        &mut self,
        step: u64,
        adapter_dir: Option<&Path>,
        loss: Option<f64>,
        train_seconds: Option<f64>,
        scope: Scope,
    ) -> StepRecord {
        let started = Instant::now();
        let mut rec = StepRecord::empty(step);
        rec.signals.loss = loss;
        rec.scope = scope;
        if scope == Scope::Skipped {
            rec.cost.train_seconds = train_seconds;
            return rec;
        }
        let adapter = match adapter_dir {
            None => None,
            Some(dir) => match self.engine.load_adapter(ADAPTER, dir) {
                Ok(()) => Some(ADAPTER),
                Err(e) => {
                    rec.error = Some(format!("loading the checkpoint adapter: {e}"));
                    return rec;
                }
            },
        };
        let (generation, probes) = match self.measure_with(step, adapter, scope, &mut rec) {
            Ok(t) => t,
            Err(e) => {
                rec.error = Some(e);
                (Duration::ZERO, Duration::ZERO)
            }
        };
        self.engine.remove_adapter(ADAPTER);
        rec.signals.loss = loss;
        let eval = started.elapsed();
        rec.cost = Cost {
            eval_seconds: eval.as_secs_f64(),
            probe_seconds: probes.as_secs_f64(),
            generation_seconds: generation.as_secs_f64(),
            judge_seconds: if scope == Scope::Full
                && (self.judge.is_some() || self.local_judge.is_some())
            {
                eval.saturating_sub(generation + probes).as_secs_f64()
            } else {
                0.0
            },
            train_seconds,
        };
        rec
    }

    /// Fills `rec` (everything, or with [`Scope::Probes`] the judge-free signals only);
    /// returns (generation, probe) time.
    fn measure_with(
        &self,
        step: u64,
        adapter: Option<&str>,
        scope: Scope,
        rec: &mut StepRecord,
    ) -> Result<(Duration, Duration), String> {
        let full = scope == Scope::Full;
        let ev = |engine| EngineEval {
            engine,
            adapter,
            max_answer_tokens: self.max_answer_tokens,
            max_length: self.max_length,
            // Step 0 evaluates the base model, whatever the job: its samples are drawn with one
            // fixed seed, so identical setups share it (the step-0 cache); trained checkpoints
            // sample with the job's seed.
            seed: if step == 0 { STEP0_SEED } else { self.seed },
            generation: Duration::ZERO,
            probes: Duration::ZERO,
            calls: 0,
        };
        let mut answers = ev(&self.engine);
        let mut probe = ev(&self.engine);
        // Probe gaps need the step-0 NLLs: without a baseline (step 0 failed) they are skipped.
        let with_probes = step == 0 || self.baseline.alignment.is_some();
        let plan = EvalPlan {
            general: self.sets.general.as_ref().filter(|_| full),
            hallucination: self.sets.hallucination.as_ref().filter(|_| full),
            alignment_probes: with_probes.then_some(self.sets.alignment.as_slice()),
            honesty_probes: (step == 0 || self.baseline.honesty.is_some())
                .then_some(self.sets.honesty.as_slice()),
            samples_per_question: Some(self.samples_per_question),
        };
        let mut judges: Vec<&dyn Judge> = self.judge.iter().map(|j| j as &dyn Judge).collect();
        judges.extend(self.local_judge.iter().map(|j| j as &dyn Judge));
        let mut baseline = self.baseline.clone();
        let m = measure_checkpoint(
            step,
            &plan,
            &mut answers,
            &judges,
            &mut probe,
            &self.refusals,
            &self.settings,
            &mut baseline,
        )
        .map_err(|e| e.to_string())?;
        rec.signals = m.signals;
        if step == 0 {
            rec.probe_nlls = baseline;
        }
        rec.samples = record::worst_samples(&m.samples, record::REPORT_SAMPLES);
        if full {
            if let Some(j) = &self.judge {
                rec.judge = Some(j.take_stats());
            }
            if let Some(j) = &self.local_judge {
                rec.local_judge = Some(j.take_stats());
            }
            rec.agreement = m.agreement;
            let harmful = self.sets.harmful_prompts();
            let replies = answers.greedy_replies(&harmful).map_err(|e| e.0)?;
            rec.signals.set(
                Signal::HarmfulRefusalRate,
                refusal_rate(&replies, &self.refusals),
            );
        }
        if !self.holdout.is_empty() {
            let loss = probe.mean_nll(&self.holdout).map_err(|e| e.0)?;
            rec.signals.set(Signal::InDomainLoss, loss);
        }
        Ok((answers.generation, probe.probes + answers.probes))
    }
}

impl<B: Backend> Observer for CheckpointMonitor<B> {
    fn on_checkpoint(&mut self, c: &CheckpointInfo) {
        let train = self.last_end.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let last = c.metrics.step >= c.total_steps;
        let scope = self.ledger.choose(self.budget, train, last);
        self.evaluate(
            c.metrics.step as u64,
            Some(&c.dir),
            Some(c.metrics.train_loss),
            scope,
        );
    }
}
