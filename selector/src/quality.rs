//! The quality filter for on-policy replies (pool prompts answered by the aligned base model).
//!
//! A reply passes when all of these hold:
//! - **length**: at least `min_words` whitespace-separated words;
//! - **no template markers**: none of `template_markers` occurs as a substring (a reply that
//!   contains `<|im_start|>` leaked the chat template);
//! - **no degenerate repetition**: with `n = repetition.ngram` and the reply's words
//!   lower-cased, when the reply has at least `n` words, the number of *distinct* word
//!   n-grams divided by the number of n-grams (`words − n + 1`) must be at least
//!   `repetition.min_distinct_ratio`. "a b c d a b c d a b c d" has 9 4-grams of which 4 are
//!   distinct: 0.44 < 0.5, degenerate. Replies shorter than `n` words pass this test.

use std::collections::HashSet;

/// Default chat-template markers that must not appear in a reply: the documented policy
/// default (`policies::DEFAULT_TEMPLATE_MARKERS`), defined once there.
pub use policies::DEFAULT_TEMPLATE_MARKERS;

/// The repetition rule (module doc).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RepetitionRule {
    /// n-gram length in words (default 4).
    pub ngram: usize,
    /// Minimum distinct / total n-gram ratio (default 0.5).
    pub min_distinct_ratio: f64,
}

impl Default for RepetitionRule {
    fn default() -> Self {
        RepetitionRule {
            ngram: 4,
            min_distinct_ratio: 0.5,
        }
    }
}

/// The configured on-policy quality filter.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityFilter {
    /// Skip a reply the model did not end before the generation limit (a cut-off answer).
    pub reject_unfinished: bool,
    pub min_words: usize,
    pub template_markers: Vec<String>,
    pub repetition: RepetitionRule,
}

impl Default for QualityFilter {
    fn default() -> Self {
        QualityFilter {
            reject_unfinished: true,
            min_words: 5,
            template_markers: DEFAULT_TEMPLATE_MARKERS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            repetition: RepetitionRule::default(),
        }
    }
}

/// Why a reply was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QualityReject {
    #[error("reply was cut off at the generation limit before the model ended its turn")]
    Unfinished,
    #[error("reply has {words} words, fewer than the minimum {min}")]
    TooShort { words: usize, min: usize },
    #[error("reply contains the template marker `{marker}`")]
    TemplateMarker { marker: String },
    #[error("reply is repetitive: {distinct} of {total} word {n}-grams are distinct")]
    Repetitive {
        n: usize,
        distinct: usize,
        total: usize,
    },
}

impl QualityReject {
    /// A bounded label for metrics and counts.
    pub fn kind(&self) -> &'static str {
        match self {
            QualityReject::Unfinished => "unfinished",
            QualityReject::TooShort { .. } => "too_short",
            QualityReject::TemplateMarker { .. } => "template_marker",
            QualityReject::Repetitive { .. } => "repetitive",
        }
    }
}

impl QualityFilter {
    /// [`QualityFilter::check`] of a generated reply, first refusing an unfinished one when
    /// `reject_unfinished` is set.
    pub fn check_reply(&self, reply: &crate::onpolicy::Reply) -> Result<(), QualityReject> {
        if self.reject_unfinished && !reply.finished {
            return Err(QualityReject::Unfinished);
        }
        self.check(&reply.text)
    }

    /// `Ok(())` when `reply` passes every text check, else the first failed check.
    pub fn check(&self, reply: &str) -> Result<(), QualityReject> {
        let words: Vec<String> = reply.split_whitespace().map(str::to_lowercase).collect();
        if words.len() < self.min_words {
            return Err(QualityReject::TooShort {
                words: words.len(),
                min: self.min_words,
            });
        }
        if let Some(m) = self
            .template_markers
            .iter()
            .find(|m| !m.is_empty() && reply.contains(m.as_str()))
        {
            return Err(QualityReject::TemplateMarker { marker: m.clone() });
        }
        let n = self.repetition.ngram.max(1);
        if words.len() >= n {
            let grams: Vec<&[String]> = words.windows(n).collect();
            let distinct = grams.iter().collect::<HashSet<_>>().len();
            let total = grams.len();
            if (distinct as f64) < self.repetition.min_distinct_ratio * total as f64 {
                return Err(QualityReject::Repetitive { n, distinct, total });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_a_normal_reply() {
        let f = QualityFilter::default();
        assert_eq!(
            f.check("Paris is the capital of France, on the Seine."),
            Ok(())
        );
    }

    #[test]
    fn minimum_length_in_words() {
        let f = QualityFilter::default();
        assert_eq!(
            f.check("Yes, of course. Sure"),
            Err(QualityReject::TooShort { words: 4, min: 5 })
        );
        assert_eq!(f.check("Yes, of course. Sure thing."), Ok(()));
    }

    #[test]
    fn template_markers_are_rejected() {
        let f = QualityFilter::default();
        let err = f
            .check("Here is the answer you wanted.<|im_end|> and more words")
            .unwrap_err();
        assert_eq!(
            err,
            QualityReject::TemplateMarker {
                marker: "<|im_end|>".into()
            }
        );
        assert_eq!(err.kind(), "template_marker");
    }

    #[test]
    fn repetition_hand_computed() {
        let f = QualityFilter::default();
        // 12 words, 9 4-grams, 4 distinct: 4 < 0.5 × 9 = 4.5 → degenerate.
        assert_eq!(
            f.check("a b c d a b c d a b c d"),
            Err(QualityReject::Repetitive {
                n: 4,
                distinct: 4,
                total: 9
            })
        );
        // 8 words, 5 4-grams, 4 distinct (abcd bcda cdab dabc; abcd again): 4 ≥ 2.5 → passes.
        assert_eq!(f.check("a b c d a b c d"), Ok(()));
        // Case is ignored when comparing words.
        assert!(f.check("No no NO no no No no no").is_err());
        // Exactly at the ratio passes: 2 distinct of 4 with min 0.5.
        let g = QualityFilter {
            reject_unfinished: true,
            min_words: 1,
            template_markers: vec![],
            repetition: RepetitionRule {
                ngram: 2,
                min_distinct_ratio: 0.5,
            },
        };
        assert_eq!(g.check("x y x y x"), Ok(()));
        assert!(g.check("x y x y x y x").is_err()); // 2 of 6 < 3
    }
}
