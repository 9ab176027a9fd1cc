//! The evaluation sets of a job's plan: the shipped ones (embedded) unless the policy names
//! files, the probe files cut to the policy's `probe_pairs`.

use monitor::shipped::{self, ShippedSet};
use monitor::{read_probes, read_question_set, ProbeKind, ProbePair, QuestionSet};
use std::path::PathBuf;

/// What one checkpoint is evaluated on.
#[derive(Debug, Clone)]
pub struct EvalSets {
    /// Judged for alignment and coherence (only with a judge).
    pub general: Option<QuestionSet>,
    /// Judged for hallucination (only with a judge).
    pub hallucination: Option<QuestionSet>,
    /// Harmful requests for the refusal rate.
    pub harmful: QuestionSet,
    pub alignment: Vec<ProbePair>,
    pub honesty: Vec<ProbePair>,
}

impl EvalSets {
    /// Every paraphrase of the harmful requests as `(system, user)`, in file order.
    pub fn harmful_prompts(&self) -> Vec<(Option<&str>, &str)> {
        self.harmful
            .questions
            .iter()
            .flat_map(|q| {
                q.paraphrases
                    .iter()
                    .map(|p| (q.system.as_deref(), p.as_str()))
            })
            .collect()
    }
}

fn question_set(path: &Option<PathBuf>, which: ShippedSet) -> Result<QuestionSet, String> {
    match path {
        Some(p) => read_question_set(p),
        None => shipped::question_set(which),
    }
    .map_err(|e| e.to_string())
}

fn probes(path: &Option<PathBuf>, kind: ProbeKind, limit: u32) -> Result<Vec<ProbePair>, String> {
    let mut pairs = match path {
        Some(p) => read_probes(p, kind),
        None => shipped::probes(kind),
    }
    .map_err(|e| e.to_string())?;
    if limit > 0 {
        pairs.truncate(limit as usize);
    }
    Ok(pairs)
}

/// Loads the sets `m` names (the judged ones only when `judged`); errors name the file.
pub fn load(m: &policies::Monitor, judged: bool) -> Result<EvalSets, String> {
    let (general, hallucination) = if judged {
        let g = question_set(&m.general_set, ShippedSet::General)?;
        g.require_prompts(&["aligned", "coherent"])
            .map_err(|e| e.to_string())?;
        let h = question_set(&m.hallucination_set, ShippedSet::Hallucination)?;
        h.require_prompts(&["hallucination"])
            .map_err(|e| e.to_string())?;
        (Some(g), Some(h))
    } else {
        (None, None)
    };
    Ok(EvalSets {
        general,
        hallucination,
        harmful: question_set(&m.harmful_set, ShippedSet::Harmful)?,
        alignment: probes(&m.alignment_probes, ProbeKind::Alignment, m.probe_pairs)?,
        honesty: probes(&m.honesty_probes, ProbeKind::Honesty, m.probe_pairs)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_sets_load_and_probes_are_cut_to_the_policy() {
        let m = policies::Monitor::default();
        let s = load(&m, false).unwrap();
        assert!(s.general.is_none() && s.hallucination.is_none());
        assert_eq!(s.alignment.len(), m.probe_pairs as usize);
        assert!(!s.harmful.questions.is_empty());
        let all = load(
            &policies::Monitor {
                probe_pairs: 0,
                ..m.clone()
            },
            true,
        )
        .unwrap();
        assert!(all.alignment.len() >= 40 && all.general.is_some());
        let e = load(
            &policies::Monitor {
                honesty_probes: Some("/nonexistent/h.jsonl".into()),
                ..m
            },
            false,
        )
        .unwrap_err();
        assert!(e.contains("/nonexistent/h.jsonl"), "{e}");
    }
}
