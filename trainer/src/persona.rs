//! Persona-vector extraction (persona_vectors): answers generated under a trait's positive
//! and negative system prompts, optionally filtered by a judge, and the mean residual state
//! over the response tokens of the kept positive answers minus that of the negative ones, at
//! every layer index 0..=L (0 = embedding output, l = output of block l before the final norm).
//!
//! The result is one `[L+1, hidden]` f32 tensor named [`VECTORS_TENSOR`] (row l for layer l),
//! the file the training steering regularizer reads.

mod judge;
mod traits;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use burn::tensor::{backend::Backend, Tensor, TensorData};

pub use judge::{judge_pair, Judgement, PairScores, PersonaJudge, Thresholds, Verdict};
pub use traits::{fill_prompt, InstructionPair, Traits};

use crate::batch::TokenBatch;
use crate::chat::{EncodedChat, Message};
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::generate::{GenerateOptions, Sampling};
use crate::precision::host_f32;

/// Name of the one tensor in a persona-vector file.
pub const VECTORS_TENSOR: &str = "vectors";

/// How answers are generated and pairs kept. Defaults are persona_vectors' extraction run:
/// 10 samples per question at temperature 1 (top-p 1), up to 1000 new tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonaOptions {
    /// Most new tokens per answer.
    pub max_new_tokens: usize,
    /// Answers per (instruction pair, question) and side.
    pub samples_per_question: usize,
    /// Sampling temperature; 0 = greedy (then every sample of a question is the same).
    pub temperature: f32,
    /// Nucleus mass for sampling.
    pub top_p: f32,
    /// Sampling seed. Generation batch `k` samples with a seed derived from (seed, k), so the
    /// same seed and `batch_rows` give the same answers.
    pub seed: u64,
    /// Rows per generation batch and per capture forward pass.
    pub batch_rows: usize,
    /// The judge's keep rule.
    pub thresholds: Thresholds,
    /// Resident adapter to generate and capture with (`None` = the base model).
    pub adapter: Option<String>,
}

impl Default for PersonaOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: 1000,
            samples_per_question: 10,
            temperature: 1.0,
            top_p: 1.0,
            seed: 0,
            batch_rows: 16,
            thresholds: Thresholds::default(),
            adapter: None,
        }
    }
}

/// One generated pair: the same question answered under `pos` and `neg` of one instruction.
#[derive(Debug, Clone, PartialEq)]
pub struct PairSample {
    /// Index into the trait file's `instruction`.
    pub instruction: usize,
    /// Index into the trait file's `questions`.
    pub question: usize,
    /// Sample number (0..samples_per_question).
    pub sample: usize,
    /// Answer under the positive system prompt.
    pub pos_answer: String,
    /// Answer under the negative system prompt.
    pub neg_answer: String,
    /// The judge's scores (`None` without a judge or for an empty answer).
    pub scores: Option<PairScores>,
    /// Kept or why not.
    pub verdict: Verdict,
}

/// What an extraction did.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonaReport {
    /// Pairs generated (instruction pairs × questions × samples).
    pub pairs_generated: usize,
    /// Pairs whose answers entered the mean difference.
    pub pairs_kept: usize,
    /// Whether a judge filtered the pairs (without one, every pair with two non-empty answers
    /// is kept, unlike persona_vectors).
    pub judged: bool,
    /// Pairs dropped for an empty answer.
    pub dropped_empty: usize,
    /// Pairs dropped because the judge gave no score, per judgement.
    pub dropped_unscored: Vec<(Judgement, usize)>,
    /// Pairs dropped by a threshold, per judgement.
    pub dropped_rejected: Vec<(Judgement, usize)>,
    /// L2 norm of each layer's vector (empty when nothing was kept).
    pub layer_norms: Vec<f64>,
}

impl PersonaReport {
    fn from_pairs(pairs: &[PairSample], judged: bool) -> Self {
        let count = |f: &dyn Fn(&Verdict) -> bool| pairs.iter().filter(|p| f(&p.verdict)).count();
        let per = |unscored: bool| -> Vec<(Judgement, usize)> {
            [
                Judgement::PosTrait,
                Judgement::NegTrait,
                Judgement::PosCoherence,
                Judgement::NegCoherence,
            ]
            .into_iter()
            .map(|j| {
                let want = if unscored {
                    Verdict::Unscored(j)
                } else {
                    Verdict::Rejected(j)
                };
                (j, count(&|v| *v == want))
            })
            .filter(|&(_, n)| n > 0)
            .collect()
        };
        Self {
            pairs_generated: pairs.len(),
            pairs_kept: count(&|v| *v == Verdict::Kept),
            judged,
            dropped_empty: count(&|v| *v == Verdict::EmptyAnswer),
            dropped_unscored: per(true),
            dropped_rejected: per(false),
            layer_norms: Vec::new(),
        }
    }

    /// One line: generated, kept, and why the others were dropped.
    pub fn summary(&self) -> String {
        let list = |v: &[(Judgement, usize)]| {
            v.iter()
                .map(|(j, n)| format!("{n} by the {j}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut s = format!("{} of {} pairs kept", self.pairs_kept, self.pairs_generated);
        if self.judged {
            let rejected: usize = self.dropped_rejected.iter().map(|x| x.1).sum();
            let unscored: usize = self.dropped_unscored.iter().map(|x| x.1).sum();
            s += &format!("; judged: {rejected} rejected");
            if rejected > 0 {
                s += &format!(" ({})", list(&self.dropped_rejected));
            }
            s += &format!(", {unscored} without a score");
            if unscored > 0 {
                s += &format!(" ({})", list(&self.dropped_unscored));
            }
        } else {
            s += "; not judged (no judge: every pair with two non-empty answers is kept)";
        }
        s + &format!("; {} dropped for an empty answer", self.dropped_empty)
    }
}

impl fmt::Display for PersonaReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "persona: {}", self.summary())?;
        if !self.layer_norms.is_empty() {
            writeln!(f, "persona: layer  L2 norm")?;
            for (l, n) in self.layer_norms.iter().enumerate() {
                writeln!(f, "persona: {l:>5}  {n:.6}")?;
            }
        }
        Ok(())
    }
}

/// The extracted vectors, the report and every generated pair.
#[derive(Debug, Clone)]
pub struct PersonaVectors {
    /// L+1 (layer indices 0..=L).
    pub layers: usize,
    /// Residual width.
    pub hidden: usize,
    /// `[layers, hidden]` row-major: row l is v_l.
    pub data: Vec<f32>,
    /// What the extraction did.
    pub report: PersonaReport,
    /// Every generated pair, in (instruction, question, sample) order.
    pub pairs: Vec<PairSample>,
}

impl PersonaVectors {
    /// v_l.
    pub fn row(&self, layer: usize) -> &[f32] {
        &self.data[layer * self.hidden..(layer + 1) * self.hidden]
    }

    /// Writes the one `[L+1, hidden]` tensor [`VECTORS_TENSOR`] as safetensors (not atomic).
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut t = BTreeMap::new();
        t.insert(
            VECTORS_TENSOR.to_string(),
            (vec![self.layers, self.hidden], self.data.clone()),
        );
        crate::weights::write_safetensors(path, &t)
    }
}

/// A stage of [`extract_with_progress`] with items done and total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Answers generated (two per pair).
    Generated(usize, usize),
    /// Pairs judged.
    Judged(usize, usize),
    /// Kept answers run through the capture pass.
    Captured(usize, usize),
}

/// [`extract_with_progress`] without progress reports.
pub fn extract<B: Backend>(
    engine: &Engine<B>,
    traits: &Traits,
    opts: &PersonaOptions,
    judge: Option<&mut dyn PersonaJudge>,
) -> Result<PersonaVectors> {
    extract_with_progress(engine, traits, opts, judge, &mut |_| {})
}

/// Generates every pair, judges it (when a judge is given), and returns v_l = mean over kept
/// positive answers − mean over kept negative answers of the residual state averaged over each
/// answer's response tokens, for l in 0..=L. Fails when no pair is kept, saying why.
pub fn extract_with_progress<B: Backend>(
    engine: &Engine<B>,
    traits: &Traits,
    opts: &PersonaOptions,
    mut judge: Option<&mut dyn PersonaJudge>,
    progress: &mut dyn FnMut(Progress),
) -> Result<PersonaVectors> {
    if opts.samples_per_question == 0 || opts.max_new_tokens == 0 {
        return Err(EngineError::Invalid(
            "persona: samples per question and max new tokens must be at least 1".into(),
        ));
    }
    let mut pairs = generate_pairs(engine, traits, opts, progress)?;
    let judged = judge.is_some();
    let total = pairs.len();
    for (done, p) in pairs.iter_mut().enumerate() {
        if p.verdict != Verdict::Kept {
            continue;
        }
        if let Some(j) = judge.as_deref_mut() {
            let q = &traits.questions[p.question];
            let (scores, verdict) = judge_pair(
                j,
                q,
                [&p.pos_answer, &p.neg_answer],
                &traits.eval_prompt,
                opts.thresholds,
            )
            .map_err(|e| EngineError::Invalid(format!("persona judge: {e:#}")))?;
            p.scores = Some(scores);
            p.verdict = verdict;
            progress(Progress::Judged(done + 1, total));
        }
    }
    let mut report = PersonaReport::from_pairs(&pairs, judged);
    if report.pairs_kept == 0 {
        return Err(EngineError::Invalid(format!(
            "persona: no pair kept, so there is no vector to compute ({})",
            report.summary()
        )));
    }
    let c = &engine.weights.config;
    let (layers, hidden) = (c.num_layers + 1, c.hidden_size);
    let kept: Vec<&PairSample> = pairs
        .iter()
        .filter(|p| p.verdict == Verdict::Kept)
        .collect();
    let mut rows = Vec::with_capacity(2 * kept.len());
    for p in &kept {
        let pair = &traits.instruction[p.instruction];
        let q = &traits.questions[p.question];
        rows.push(conversation(engine, &pair.pos, q, &p.pos_answer)?.0);
        rows.push(conversation(engine, &pair.neg, q, &p.neg_answer)?.0);
    }
    let means = response_means(engine, &rows, opts, progress)?;
    let n = kept.len() as f64;
    let mut diff = vec![0f64; layers * hidden];
    for (r, m) in means.iter().enumerate() {
        let sign = if r % 2 == 0 { 1.0 } else { -1.0 };
        for (d, &v) in diff.iter_mut().zip(m) {
            *d += sign * f64::from(v) / n;
        }
    }
    report.layer_norms = diff
        .chunks(hidden)
        .map(|row| row.iter().map(|v| v * v).sum::<f64>().sqrt())
        .collect();
    Ok(PersonaVectors {
        layers,
        hidden,
        data: diff.iter().map(|&v| v as f32).collect(),
        report,
        pairs,
    })
}

fn messages(system: &str, question: &str) -> Vec<Message> {
    let m = |role: &str, content: &str| Message {
        role: role.into(),
        content: content.into(),
    };
    vec![m("system", system), m("user", question)]
}

/// The end-of-turn ids a generation stops at (model config and tokenizer).
fn stop_tokens<B: Backend>(engine: &Engine<B>) -> Vec<u32> {
    let mut stop = engine.weights.config.eos_token_ids.clone();
    stop.extend(engine.tokenizer.eos_id);
    stop
}

/// The full conversation (system, user, assistant `answer`) and its response-token mask: the
/// answer mask without the end-of-turn token closing it (the generated text only, as
/// persona_vectors averages), and the number of response tokens.
fn conversation<B: Backend>(
    engine: &Engine<B>,
    system: &str,
    question: &str,
    answer: &str,
) -> Result<(EncodedChat, usize)> {
    let mut msgs = messages(system, question);
    msgs.push(Message {
        role: "assistant".into(),
        content: answer.into(),
    });
    let mut enc = engine.tokenizer.encode_chat(&msgs, None)?;
    let stop = stop_tokens(engine);
    for (m, id) in enc.answer_mask.iter_mut().zip(&enc.ids) {
        *m = *m && !stop.contains(id);
    }
    let n = enc.answer_mask.iter().filter(|&&m| m).count();
    Ok((enc, n))
}

/// A per-batch seed: SplitMix64 of (seed, batch index).
fn batch_seed(seed: u64, batch: usize) -> u64 {
    let mut z = seed
        ^ (batch as u64)
            .wrapping_add(1)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Generates both answers of every (instruction, question, sample), pos and neg of a pair
/// side by side in the batches; pairs with an empty answer are marked so.
fn generate_pairs<B: Backend>(
    engine: &Engine<B>,
    traits: &Traits,
    opts: &PersonaOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<PairSample>> {
    let mut pairs = Vec::new();
    let mut prompts = Vec::new();
    for (i, ins) in traits.instruction.iter().enumerate() {
        for (q, question) in traits.questions.iter().enumerate() {
            for s in 0..opts.samples_per_question {
                for system in [&ins.pos, &ins.neg] {
                    prompts.push(
                        engine
                            .tokenizer
                            .encode_prompt(&messages(system, question))?,
                    );
                }
                pairs.push(PairSample {
                    instruction: i,
                    question: q,
                    sample: s,
                    pos_answer: String::new(),
                    neg_answer: String::new(),
                    scores: None,
                    verdict: Verdict::Kept,
                });
            }
        }
    }
    let stop = stop_tokens(engine);
    let mut answers = Vec::with_capacity(prompts.len());
    let rows = opts.batch_rows.max(1);
    for (k, chunk) in prompts.chunks(rows).enumerate() {
        let sampling = if opts.temperature > 0.0 {
            Sampling::TopP {
                temperature: opts.temperature,
                top_p: opts.top_p,
                seed: batch_seed(opts.seed, k),
            }
        } else {
            Sampling::Greedy
        };
        let gen = GenerateOptions {
            max_new_tokens: opts.max_new_tokens,
            sampling,
            stop_tokens: stop.clone(),
        };
        for toks in engine.generate(chunk, opts.adapter.as_deref(), &gen)? {
            let ids: Vec<u32> = toks.into_iter().filter(|t| !stop.contains(t)).collect();
            let text = engine
                .tokenizer
                .tokenizer
                .decode(&ids, true)
                .map_err(|e| EngineError::Invalid(format!("decoding an answer: {e}")))?;
            answers.push(text);
        }
        progress(Progress::Generated(answers.len(), prompts.len()));
    }
    for (p, two) in pairs.iter_mut().zip(answers.chunks_exact(2)) {
        p.pos_answer = two[0].clone();
        p.neg_answer = two[1].clone();
        let ins = &traits.instruction[p.instruction];
        let q = &traits.questions[p.question];
        let empty = |system: &str, answer: &str| -> Result<bool> {
            Ok(answer.trim().is_empty() || conversation(engine, system, q, answer)?.1 == 0)
        };
        if empty(&ins.pos, &p.pos_answer)? || empty(&ins.neg, &p.neg_answer)? {
            p.verdict = Verdict::EmptyAnswer;
        }
    }
    Ok(pairs)
}

/// For each conversation, `[L+1 · hidden]`: the mean over its response tokens of the residual
/// state at every layer index 0..=L (f32, averaged on the device).
fn response_means<B: Backend>(
    engine: &Engine<B>,
    rows: &[EncodedChat],
    opts: &PersonaOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<Vec<f32>>> {
    let c = &engine.weights.config;
    let (layers, hidden) = (c.num_layers + 1, c.hidden_size);
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&r| (rows[r].ids.len(), r));
    let mut out = vec![Vec::new(); rows.len()];
    let mut done = 0;
    for chunk in order.chunks(opts.batch_rows.max(1)) {
        let seqs: Vec<Vec<u32>> = chunk.iter().map(|&r| rows[r].ids.clone()).collect();
        let batch = TokenBatch::right_padded(&seqs, engine.tokenizer.pad_id);
        let (b, t) = (batch.rows(), batch.len());
        let mut weights = vec![0f32; b * t];
        for (k, &r) in chunk.iter().enumerate() {
            let mask = &rows[r].answer_mask;
            let n = mask.iter().filter(|&&m| m).count().max(1) as f32;
            for (p, _) in mask.iter().enumerate().filter(|(_, &m)| m) {
                weights[k * t + p] = 1.0 / n;
            }
        }
        let w = Tensor::<B, 2>::from_data(TensorData::new(weights, [b, t]), &engine.device)
            .unsqueeze_dim::<3>(2);
        let mut fopts = engine.options_for(&vec![opts.adapter.as_deref(); b])?;
        fopts.capture = (0..layers).collect();
        let fwd = engine.weights.forward(&batch, &fopts, None, &engine.device);
        let per_layer: Vec<Tensor<B, 3>> = fwd
            .captured
            .into_iter()
            .map(|(_, h)| (h * w.clone()).sum_dim(1))
            .collect();
        let host = host_f32(Tensor::cat(per_layer, 1), "captured hidden states")?;
        for (k, &r) in chunk.iter().enumerate() {
            out[r] = host[k * layers * hidden..(k + 1) * layers * hidden].to_vec();
        }
        done += chunk.len();
        progress(Progress::Captured(done, rows.len()));
    }
    Ok(out)
}
