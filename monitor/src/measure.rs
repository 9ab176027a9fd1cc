//! One checkpoint, end to end over the seams: answers from an [`AnswerSource`], scores from one
//! or more [`Judge`]s, probe NLLs from an [`NllProbe`], into [`CheckpointSignals`].
//!
//! The seams are what the gateway and the trainer implement: the answer source samples the
//! checkpoint (the base model at step 0, the adapter at step s; or a provider's checkpoint
//! model), the NLL probe scores the probe answers under it with the selector's scoring
//! machinery, and the judges speak HTTP or run a local model. Everything here is pure logic
//! over them.
//!
//! With several judges an answer's score is the mean of the judges that gave one
//! ([`combine_scores`]), and their pairwise [`Agreement`] on the alignment scores is reported.
//! A judge error (no judgement at all) leaves that judge's score out; an answer no judge scored
//! is unscored, and the errors are counted in [`Measurement::judge_errors`].

use crate::evalsets::{Fields, ProbePair, QuestionSet, SampleRequest};
use crate::judge::{agreement, combine_scores, Agreement, Judge, JudgeError};
use crate::report::SampleAnswer;
use crate::rules::MonitorSettings;
use crate::signals::{
    classify, general_signals, hallucination_signals, probe_gap, CheckpointSignals, JudgedAnswer,
    ProbeError, ProbeNll,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A seam failed (the message says why; the caller decides whether to retry the checkpoint).
#[derive(Debug, Clone, PartialEq, Error)]
#[error("{0}")]
pub struct SeamError(pub String);

/// Produces answers at a checkpoint.
pub trait AnswerSource {
    /// One answer per request, in order. `step` 0 is the base model. Sampling settings and
    /// seeds (e.g. from the step, question id, paraphrase and sample number) are the
    /// implementation's.
    fn answers(
        &mut self,
        step: u64,
        requests: &[SampleRequest<'_>],
    ) -> Result<Vec<String>, SeamError>;
}

/// Scores probe pairs at a checkpoint: answer-only mean token NLL of each pair's good and bad
/// answer given its question.
pub trait NllProbe {
    fn nlls(&mut self, step: u64, pairs: &[ProbePair]) -> Result<Vec<ProbeNll>, SeamError>;
}

/// What to measure at each checkpoint.
#[derive(Debug, Clone, Copy, Default)]
pub struct EvalPlan<'a> {
    pub general: Option<&'a QuestionSet>,
    pub hallucination: Option<&'a QuestionSet>,
    pub alignment_probes: Option<&'a [ProbePair]>,
    pub honesty_probes: Option<&'a [ProbePair]>,
    /// Replaces every question's `samples_per_paraphrase` when set.
    pub samples_per_question: Option<u32>,
}

/// The step-0 probe NLLs that later gaps are relative to; filled by the step-0 measurement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeBaseline {
    pub alignment: Option<Vec<ProbeNll>>,
    pub honesty: Option<Vec<ProbeNll>>,
}

#[derive(Debug, Error)]
pub enum MeasureError {
    #[error("answer source at step {step}: {source}")]
    Answers {
        step: u64,
        #[source]
        source: SeamError,
    },
    #[error("answer source at step {step} returned {got} answers for {want} requests")]
    AnswerCount { step: u64, want: usize, got: usize },
    #[error("NLL probe at step {step}: {source}")]
    Probe {
        step: u64,
        #[source]
        source: SeamError,
    },
    #[error("{kind} probe at step {step}: {source}")]
    ProbeGap {
        step: u64,
        kind: &'static str,
        #[source]
        source: ProbeError,
    },
    #[error("{kind} probe at step {step}: no step-0 baseline (measure step 0 first)")]
    NoBaseline { step: u64, kind: &'static str },
    #[error("{file}: question `{id}` has no `{prompt}` judge prompt")]
    MissingPrompt {
        file: String,
        id: String,
        prompt: &'static str,
    },
}

/// One judged answer, kept for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgedSample {
    pub set: String,
    pub question_id: String,
    pub paraphrase: usize,
    pub sample: u32,
    pub question: String,
    pub answer: String,
    pub alignment: Option<f64>,
    pub coherence: Option<f64>,
    pub hallucination: Option<f64>,
    pub refusal: bool,
    pub misaligned: bool,
}

impl From<&JudgedSample> for SampleAnswer {
    fn from(s: &JudgedSample) -> Self {
        SampleAnswer {
            question_id: s.question_id.clone(),
            question: s.question.clone(),
            answer: s.answer.clone(),
            alignment: s.alignment,
            coherence: s.coherence,
            hallucination: s.hallucination,
            misaligned: s.misaligned,
        }
    }
}

/// Agreement of two judges on one prompt kind at one checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeAgreement {
    pub prompt: String,
    pub first: String,
    pub second: String,
    pub agreement: Agreement,
}

/// Everything measured at one checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub signals: CheckpointSignals,
    pub samples: Vec<JudgedSample>,
    /// Judge calls that gave no judgement (transport or response errors).
    pub judge_errors: usize,
    /// The first judge error's message, for the event log.
    pub first_judge_error: Option<String>,
    pub agreement: Vec<JudgeAgreement>,
}

struct Scored {
    combined: Vec<Option<f64>>,
    errors: usize,
    first_error: Option<JudgeError>,
    agreement: Vec<JudgeAgreement>,
}

fn judge_all(judges: &[&dyn Judge], prompt: &'static str, prompts: &[String]) -> Scored {
    let mut per_judge: Vec<Vec<Option<f64>>> = Vec::with_capacity(judges.len());
    let mut errors = 0;
    let mut first_error = None;
    for j in judges {
        let got = j.score_all(prompts);
        per_judge.push(
            got.into_iter()
                .map(|r| {
                    r.unwrap_or_else(|e| {
                        errors += 1;
                        first_error.get_or_insert(e);
                        None
                    })
                })
                .collect(),
        );
    }
    let combined = (0..prompts.len())
        .map(|i| {
            combine_scores(
                &per_judge
                    .iter()
                    .map(|s| s.get(i).copied().flatten())
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let mut pairs = Vec::new();
    for a in 0..judges.len() {
        for b in a + 1..judges.len() {
            pairs.push(JudgeAgreement {
                prompt: prompt.to_string(),
                first: judges[a].name().to_string(),
                second: judges[b].name().to_string(),
                agreement: agreement(&per_judge[a], &per_judge[b]),
            });
        }
    }
    Scored {
        combined,
        errors,
        first_error,
        agreement: pairs,
    }
}

fn prompts_for(
    set: &QuestionSet,
    requests: &[SampleRequest<'_>],
    answers: &[String],
    prompt: &'static str,
) -> Result<Vec<String>, MeasureError> {
    requests
        .iter()
        .zip(answers)
        .map(|(r, a)| {
            let q = set.get(r.question_id).expect("requests come from the set");
            let missing = || MeasureError::MissingPrompt {
                file: set.file.clone(),
                id: q.id.clone(),
                prompt,
            };
            let template = q.judge_prompts.get(prompt).ok_or_else(missing)?;
            let fields = Fields {
                question: r.user,
                answer: a,
                reference: q.reference.as_deref(),
            };
            crate::evalsets::render_prompt(template, &fields).map_err(|_| missing())
        })
        .collect()
}

fn sample_answers<'s>(
    source: &mut dyn AnswerSource,
    step: u64,
    set: &'s QuestionSet,
    samples: Option<u32>,
) -> Result<(Vec<SampleRequest<'s>>, Vec<String>), MeasureError> {
    let requests: Vec<SampleRequest<'_>> = set
        .questions
        .iter()
        .flat_map(|q| q.requests(samples))
        .collect();
    let answers = source
        .answers(step, &requests)
        .map_err(|source| MeasureError::Answers { step, source })?;
    if answers.len() != requests.len() {
        return Err(MeasureError::AnswerCount {
            step,
            want: requests.len(),
            got: answers.len(),
        });
    }
    Ok((requests, answers))
}

fn sample_row(set: &QuestionSet, r: &SampleRequest<'_>, answer: &str) -> JudgedSample {
    JudgedSample {
        set: set.file.clone(),
        question_id: r.question_id.to_string(),
        paraphrase: r.paraphrase,
        sample: r.sample,
        question: r.user.to_string(),
        answer: answer.to_string(),
        alignment: None,
        coherence: None,
        hallucination: None,
        refusal: false,
        misaligned: false,
    }
}

/// Measure checkpoint `step` (0 = the base model; its probe NLLs become `baseline`).
#[allow(clippy::too_many_arguments)]
pub fn measure_checkpoint(
    step: u64,
    plan: &EvalPlan<'_>,
    source: &mut dyn AnswerSource,
    judges: &[&dyn Judge],
    probe: &mut dyn NllProbe,
    refusals: &selector::RefusalFilter,
    settings: &MonitorSettings,
    baseline: &mut ProbeBaseline,
) -> Result<Measurement, MeasureError> {
    let mut signals = CheckpointSignals::new(step);
    let mut samples = Vec::new();
    let mut judge_errors = 0;
    let mut first_error: Option<JudgeError> = None;
    let mut agreements = Vec::new();
    let mut absorb = |s: &mut Scored, agreements: &mut Vec<JudgeAgreement>| {
        judge_errors += s.errors;
        if first_error.is_none() {
            first_error = s.first_error.take();
        }
        agreements.append(&mut s.agreement);
    };

    if let Some(set) = plan.general {
        let (requests, answers) = sample_answers(source, step, set, plan.samples_per_question)?;
        let mut al = judge_all(
            judges,
            "aligned",
            &prompts_for(set, &requests, &answers, "aligned")?,
        );
        let mut co = judge_all(
            judges,
            "coherent",
            &prompts_for(set, &requests, &answers, "coherent")?,
        );
        absorb(&mut al, &mut agreements);
        absorb(&mut co, &mut agreements);
        let mut judged = Vec::with_capacity(answers.len());
        for (i, (r, a)) in requests.iter().zip(&answers).enumerate() {
            let j = JudgedAnswer {
                alignment: al.combined[i],
                coherence: co.combined[i],
                refusal: refusals.matched_keyword(a).is_some(),
            };
            let c = classify(&j, &settings.thresholds);
            samples.push(JudgedSample {
                alignment: j.alignment,
                coherence: j.coherence,
                refusal: j.refusal,
                misaligned: c.misaligned,
                ..sample_row(set, r, a)
            });
            judged.push(j);
        }
        signals = signals.with_general(&general_signals(
            &judged,
            &settings.thresholds,
            settings.denominator,
        ));
    }

    if let Some(set) = plan.hallucination {
        let (requests, answers) = sample_answers(source, step, set, plan.samples_per_question)?;
        let mut h = judge_all(
            judges,
            "hallucination",
            &prompts_for(set, &requests, &answers, "hallucination")?,
        );
        absorb(&mut h, &mut agreements);
        for (i, (r, a)) in requests.iter().zip(&answers).enumerate() {
            samples.push(JudgedSample {
                hallucination: h.combined[i],
                ..sample_row(set, r, a)
            });
        }
        signals =
            signals.with_hallucination(&hallucination_signals(&h.combined, &settings.thresholds));
    }

    for (kind, pairs, slot) in [
        ("alignment", plan.alignment_probes, &mut baseline.alignment),
        ("honesty", plan.honesty_probes, &mut baseline.honesty),
    ] {
        let Some(pairs) = pairs else { continue };
        let nlls = probe
            .nlls(step, pairs)
            .map_err(|source| MeasureError::Probe { step, source })?;
        if step == 0 {
            *slot = Some(nlls.clone());
        }
        let base = slot
            .as_deref()
            .ok_or(MeasureError::NoBaseline { step, kind })?;
        let gap = probe_gap(base, &nlls).map_err(|source| MeasureError::ProbeGap {
            step,
            kind,
            source,
        })?;
        let signal = if kind == "alignment" {
            crate::signals::Signal::AlignmentProbeGap
        } else {
            crate::signals::Signal::HonestyProbeGap
        };
        signals.set(signal, Some(gap));
    }

    Ok(Measurement {
        signals,
        samples,
        judge_errors,
        first_judge_error: first_error.map(|e| e.to_string()),
        agreement: agreements,
    })
}

#[cfg(test)]
#[path = "measure_tests.rs"]
mod tests;
