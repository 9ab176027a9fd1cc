//! Token-level pieces of screening: the special-token scanner, ChatML token counting with
//! the base model's tokenizer, the estimate used without one, and tokenizer loading.

use super::value::{Content, Message};
use super::DEFAULT_SPECIAL_TOKENS;
use aho_corasick::{AhoCorasick, MatchKind};
use globset::Glob;
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// Finds chat-template special tokens (the defaults plus every added token of the
/// tokenizer) inside message text.
pub(crate) struct SpecialTokens {
    tokens: Vec<String>,
    matcher: Option<AhoCorasick>,
}

impl SpecialTokens {
    pub(crate) fn new(tokenizer: Option<&Tokenizer>) -> Self {
        let mut tokens: Vec<String> = DEFAULT_SPECIAL_TOKENS.iter().map(|s| s.to_string()).collect();
        if let Some(t) = tokenizer {
            let mut added: Vec<String> = t
                .get_added_tokens_decoder()
                .into_values()
                .map(|a| a.content)
                .filter(|c| !c.is_empty())
                .collect();
            added.sort();
            tokens.extend(added);
        }
        tokens.sort();
        tokens.dedup();
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&tokens)
            .ok();
        SpecialTokens { tokens, matcher }
    }

    /// The first special token found in `text`, if any.
    pub(crate) fn find(&self, text: &str) -> Option<&str> {
        let m = self.matcher.as_ref()?.find(text)?;
        self.tokens.get(m.pattern().as_usize()).map(String::as_str)
    }
}

/// Tokens of `<|im_start|>{role}\n{content}<|im_end|>\n` per message, with the tokenizer
/// (its added tokens recognise the markers).
pub(crate) fn chatml_token_count(
    tokenizer: &Tokenizer,
    roles: &[&str],
    messages: &[Message<'_>],
) -> Result<u32, String> {
    let mut text = String::new();
    for (role, m) in roles.iter().zip(messages) {
        text.push_str("<|im_start|>");
        text.push_str(role);
        text.push('\n');
        match &m.content {
            Some(Content::Str(s)) => text.push_str(s),
            Some(Content::Parts { texts, .. }) => texts.iter().for_each(|t| text.push_str(t)),
            _ => {}
        }
        text.push_str("<|im_end|>\n");
    }
    let enc = tokenizer.encode(text, false).map_err(|e| e.to_string())?;
    Ok(u32::try_from(enc.len()).unwrap_or(u32::MAX))
}

/// Without a tokenizer: ~4 bytes per token plus 4 template tokens per message.
pub(crate) fn estimate_tokens(messages: &[Message<'_>]) -> u32 {
    let mut bytes: usize = 0;
    for m in messages {
        bytes += match &m.content {
            Some(Content::Str(s)) => s.len(),
            Some(Content::Parts { texts, .. }) => texts.iter().map(|t| t.len()).sum(),
            _ => 0,
        };
    }
    let est = bytes.div_ceil(4) + 4 * messages.len();
    u32::try_from(est).unwrap_or(u32::MAX)
}

/// Loading a model directory's tokenizer failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot load tokenizer {path}: {reason}")]
pub struct TokenizerLoadError {
    pub path: PathBuf,
    pub reason: String,
}

/// Loads `model_dir/tokenizer.json`.
pub fn load_tokenizer(model_dir: &Path) -> Result<Tokenizer, TokenizerLoadError> {
    let path = model_dir.join("tokenizer.json");
    Tokenizer::from_file(&path).map_err(|e| TokenizerLoadError {
        reason: e.to_string(),
        path,
    })
}

/// The model directory of the first `(glob, dir)` pair whose glob matches `model`
/// (`[screening.tokenizers]` in file order). An invalid glob never matches.
pub fn tokenizer_dir_for<'a>(model: &str, pairs: &'a [(String, PathBuf)]) -> Option<&'a Path> {
    pairs.iter().find_map(|(glob, dir)| {
        let m = Glob::new(glob).ok()?.compile_matcher();
        m.is_match(model).then_some(dir.as_path())
    })
}
