//! The refusal filter of Interleaving++ (seed 004 §3.2): an example is a refusal when a
//! refusal keyword occurs within the first words of its reply.
//!
//! Precisely:
//! 1. The reply is split on whitespace; only the first `window_words` (default 10) pieces are
//!    looked at — the 11th word never counts.
//! 2. Each piece is normalised: lower-cased, curly apostrophes (’ ‘ ʼ) become `'`, and it is
//!    cut into tokens at every character that is neither alphanumeric nor an apostrophe
//!    (so `Sorry,` → `sorry`, `*sorry*` → `sorry`, `sorry—I` → `sorry`, `i`); apostrophes at
//!    the ends of a token are dropped (`'cannot'` → `cannot`).
//! 3. A keyword (normalised the same way, possibly several words such as `as an ai`) matches
//!    when its tokens occur consecutively, whole, in that token sequence. Whole-token means
//!    `sorry` does not match `sorrow`.

/// Default refusal keywords (seed 004 §3.2 plus `unable` and both apostrophes of `can't`).
pub const DEFAULT_REFUSAL_KEYWORDS: [&str; 6] = policies::DEFAULT_REFUSAL_KEYWORDS;

/// How many leading words of the reply are inspected, by default.
pub const DEFAULT_WINDOW_WORDS: usize = policies::DEFAULT_REFUSAL_WINDOW_WORDS as usize;

/// The configured refusal filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalFilter {
    keywords: Vec<Vec<String>>,
    window_words: usize,
}

impl Default for RefusalFilter {
    fn default() -> Self {
        RefusalFilter::new(DEFAULT_REFUSAL_KEYWORDS, DEFAULT_WINDOW_WORDS)
    }
}

impl RefusalFilter {
    /// A filter over `keywords` looking at the first `window_words` words. Keywords that
    /// normalise to nothing (e.g. `"--"`) are dropped; a policy file refuses them when read.
    pub fn new<I, S>(keywords: I, window_words: usize) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut kws: Vec<Vec<String>> = Vec::new();
        for k in keywords {
            let toks: Vec<String> = k
                .as_ref()
                .split_whitespace()
                .flat_map(policies::refusal_tokens)
                .collect();
            if !toks.is_empty() && !kws.contains(&toks) {
                kws.push(toks);
            }
        }
        RefusalFilter {
            keywords: kws,
            window_words,
        }
    }

    /// The keyword that makes `reply` a refusal, if any (normalised, words joined by a space).
    pub fn matched_keyword(&self, reply: &str) -> Option<String> {
        let toks: Vec<String> = reply
            .split_whitespace()
            .take(self.window_words)
            .flat_map(policies::refusal_tokens)
            .collect();
        self.keywords
            .iter()
            .find(|kw| toks.windows(kw.len()).any(|w| w == kw.as_slice()))
            .map(|kw| kw.join(" "))
    }

    /// Whether `reply` is a refusal.
    pub fn is_refusal(&self, reply: &str) -> bool {
        self.matched_keyword(reply).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_says(reply: &str) -> bool {
        RefusalFilter::default().is_refusal(reply)
    }

    #[test]
    fn default_keywords_case_and_punctuation() {
        assert!(default_says("I'm sorry, but I can't help with that."));
        assert!(default_says("SORRY! That is not possible."));
        assert!(default_says("I apologize for the confusion."));
        assert!(default_says("I cannot do that."));
        assert!(default_says("We are Unable to comply."));
        assert!(default_says("(sorry) here goes"));
        assert!(default_says("Well—sorry—no."));
        assert!(default_says("\"Cannot\" is my answer."));
        assert!(!default_says("Sure! Here is a recipe for pancakes."));
        // Whole tokens only.
        assert!(!default_says("Sorrowful songs are sad."));
        assert!(!default_says("The cannoteer is a made-up word."));
    }

    #[test]
    fn curly_and_straight_apostrophes() {
        assert!(default_says("I can’t help with that."));
        assert!(default_says("I can't help with that."));
        assert!(default_says("I CAN‘T help with that."));
        // A list holding only the curly form still matches the straight one.
        let f = RefusalFilter::new(["can’t"], 10);
        assert!(f.is_refusal("I can't."));
        assert_eq!(f.matched_keyword("I can't."), Some("can't".into()));
    }

    #[test]
    fn eleventh_word_does_not_count() {
        let ten = "one two three four five six seven eight nine";
        assert!(default_says(&format!("{ten} sorry")), "10th word counts");
        assert!(
            !default_says(&format!("{ten} ten sorry")),
            "11th word does not"
        );
        // Punctuation glued to a word does not create extra words.
        assert!(default_says("a, b, c, d, e, f, g, h, i, sorry."));
        let narrow = RefusalFilter::new(["sorry"], 2);
        assert!(narrow.is_refusal("Oh sorry"));
        assert!(!narrow.is_refusal("Oh no sorry"));
    }

    #[test]
    fn configurable_multi_word_keywords() {
        let f = RefusalFilter::new(["As an AI", "  ", "--"], 10);
        assert!(f.is_refusal("Well, as an AI, I do not have opinions."));
        assert!(!f.is_refusal("An AI as such is software."));
        assert!(
            !f.is_refusal("I'm sorry."),
            "custom list replaces the defaults"
        );
        assert_eq!(f.matched_keyword("as an ai"), Some("as an ai".into()));
    }
}
