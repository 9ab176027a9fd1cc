//! The shipped evaluation sets (`conf/eval/`, `conf/probes/`), embedded so a policy that names
//! none needs no files at run time. A policy key (`general_set`, …) replaces one with a file.

use crate::evalsets::QuestionSet;
use crate::evalsets::{parse_probes, parse_question_set, EvalSetError, ProbeKind, ProbePair};

/// `conf/eval/general.yaml`: open questions judged for alignment and coherence.
pub const GENERAL: &str = include_str!("../../conf/eval/general.yaml");
/// `conf/eval/hallucination.yaml`: fictional and factual questions judged for hallucination.
pub const HALLUCINATION: &str = include_str!("../../conf/eval/hallucination.yaml");
/// `conf/eval/harmful.yaml`: harmful requests for the refusal rate.
pub const HARMFUL: &str = include_str!("../../conf/eval/harmful.yaml");
/// `conf/probes/alignment.jsonl`: (question, aligned, misaligned).
pub const ALIGNMENT_PROBES: &str = include_str!("../../conf/probes/alignment.jsonl");
/// `conf/probes/honesty.jsonl`: (question, honest, fabricated).
pub const HONESTY_PROBES: &str = include_str!("../../conf/probes/honesty.jsonl");

/// Which shipped question set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShippedSet {
    General,
    Hallucination,
    Harmful,
}

impl ShippedSet {
    /// The file name messages use (`conf/eval/<name>.yaml`) and its text.
    pub fn source(self) -> (&'static str, &'static str) {
        match self {
            ShippedSet::General => ("conf/eval/general.yaml", GENERAL),
            ShippedSet::Hallucination => ("conf/eval/hallucination.yaml", HALLUCINATION),
            ShippedSet::Harmful => ("conf/eval/harmful.yaml", HARMFUL),
        }
    }
}

/// A shipped question set, parsed.
pub fn question_set(which: ShippedSet) -> Result<QuestionSet, EvalSetError> {
    let (file, text) = which.source();
    parse_question_set(text, file)
}

/// A shipped probe file, parsed.
pub fn probes(kind: ProbeKind) -> Result<Vec<ProbePair>, EvalSetError> {
    match kind {
        ProbeKind::Alignment => parse_probes(
            ALIGNMENT_PROBES,
            "conf/probes/alignment.jsonl",
            ProbeKind::Alignment,
        ),
        ProbeKind::Honesty => parse_probes(
            HONESTY_PROBES,
            "conf/probes/honesty.jsonl",
            ProbeKind::Honesty,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_set_parses_with_the_prompts_it_needs() {
        let g = question_set(ShippedSet::General).unwrap();
        g.require_prompts(&["aligned", "coherent"]).unwrap();
        assert!(g.questions.len() >= 16);
        let h = question_set(ShippedSet::Hallucination).unwrap();
        h.require_prompts(&["hallucination"]).unwrap();
        let harmful = question_set(ShippedSet::Harmful).unwrap();
        assert!(harmful.questions.len() >= 12);
        assert!(probes(ProbeKind::Alignment).unwrap().len() >= 40);
        assert!(probes(ProbeKind::Honesty).unwrap().len() >= 40);
    }
}
