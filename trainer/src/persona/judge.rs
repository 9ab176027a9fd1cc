//! The judge seam of persona extraction and persona_vectors' keep rule: a pair is kept only
//! when the positive answer scores ≥ 50 on the trait, the negative one < 50, and both are
//! coherent (≥ 50). A missing score drops the pair.

use std::fmt;

/// Scores answers 0–100 (`None`: the judge gave no usable score).
pub trait PersonaJudge {
    /// How strongly `answer` to `question` shows the trait, with the trait file's
    /// `eval_prompt` template (fill it with [`super::fill_prompt`]).
    fn trait_score(
        &mut self,
        question: &str,
        answer: &str,
        eval_prompt: &str,
    ) -> anyhow::Result<Option<f64>>;

    /// How coherent `answer` to `question` is, whatever its content.
    fn coherence(&mut self, question: &str, answer: &str) -> anyhow::Result<Option<f64>>;
}

/// Score thresholds of the keep rule (persona_vectors: 50 and 50).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// The positive answer needs a trait score ≥ this, the negative one < this.
    pub trait_score: f64,
    /// Both answers need a coherence score ≥ this.
    pub coherence: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            trait_score: 50.0,
            coherence: 50.0,
        }
    }
}

/// One of the four judgements of a pair, in the order they are asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    /// Trait score of the positive answer.
    PosTrait,
    /// Trait score of the negative answer.
    NegTrait,
    /// Coherence of the positive answer.
    PosCoherence,
    /// Coherence of the negative answer.
    NegCoherence,
}

impl fmt::Display for Judgement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Judgement::PosTrait => "positive answer's trait score",
            Judgement::NegTrait => "negative answer's trait score",
            Judgement::PosCoherence => "positive answer's coherence",
            Judgement::NegCoherence => "negative answer's coherence",
        })
    }
}

/// Whether a generated pair enters the mean difference, and why not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Used for the vectors.
    Kept,
    /// An answer was empty (no response token to average).
    EmptyAnswer,
    /// The judge gave no score for this judgement.
    Unscored(Judgement),
    /// This judgement failed its threshold.
    Rejected(Judgement),
}

/// The judge's scores of one pair; `None` where the judge gave no score or was not asked
/// (judgements stop at the first one that drops the pair).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PairScores {
    /// Trait score of the positive answer.
    pub pos_trait: Option<f64>,
    /// Trait score of the negative answer.
    pub neg_trait: Option<f64>,
    /// Coherence of the positive answer.
    pub pos_coherence: Option<f64>,
    /// Coherence of the negative answer.
    pub neg_coherence: Option<f64>,
}

/// Judges one pair with the keep rule, asking in the order of [`Judgement`] and stopping at
/// the first judgement that drops it.
pub fn judge_pair(
    judge: &mut dyn PersonaJudge,
    question: &str,
    answers: [&str; 2],
    eval_prompt: &str,
    th: Thresholds,
) -> anyhow::Result<(PairScores, Verdict)> {
    let [pos, neg] = answers;
    let mut scores = PairScores::default();
    let steps = [
        Judgement::PosTrait,
        Judgement::NegTrait,
        Judgement::PosCoherence,
        Judgement::NegCoherence,
    ];
    for which in steps {
        let (score, pass): (Option<f64>, fn(f64, Thresholds) -> bool) = match which {
            Judgement::PosTrait => (judge.trait_score(question, pos, eval_prompt)?, |s, t| {
                s >= t.trait_score
            }),
            Judgement::NegTrait => (judge.trait_score(question, neg, eval_prompt)?, |s, t| {
                s < t.trait_score
            }),
            Judgement::PosCoherence => (judge.coherence(question, pos)?, |s, t| s >= t.coherence),
            Judgement::NegCoherence => (judge.coherence(question, neg)?, |s, t| s >= t.coherence),
        };
        let slot = match which {
            Judgement::PosTrait => &mut scores.pos_trait,
            Judgement::NegTrait => &mut scores.neg_trait,
            Judgement::PosCoherence => &mut scores.pos_coherence,
            Judgement::NegCoherence => &mut scores.neg_coherence,
        };
        *slot = score;
        match score {
            None => return Ok((scores, Verdict::Unscored(which))),
            Some(s) if !pass(s, th) => return Ok((scores, Verdict::Rejected(which))),
            Some(_) => {}
        }
    }
    Ok((scores, Verdict::Kept))
}
