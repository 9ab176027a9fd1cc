//! Token-level pieces of screening: the special-token scanner, ChatML token counting with
//! the base model's tokenizer, the estimate used without one, and tokenizer loading.

use super::line::Message;
use super::text::RawText;
use super::value::Content;
use super::DEFAULT_SPECIAL_TOKENS;
use aho_corasick::{AhoCorasick, MatchKind};
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// Finds chat-template special tokens (the defaults plus every added token of the
/// tokenizer) inside message text.
pub(crate) struct SpecialTokens {
    tokens: Vec<String>,
    matcher: Option<AhoCorasick>,
    /// Some token contains `/` (which JSON may write as `\/`).
    slash: bool,
    /// Some token contains a character JSON always escapes (`"`, `\`, controls).
    escapable: bool,
}

impl SpecialTokens {
    pub(crate) fn new(tokenizer: Option<&Tokenizer>) -> Self {
        let mut tokens: Vec<String> = DEFAULT_SPECIAL_TOKENS
            .iter()
            .map(|s| s.to_string())
            .collect();
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
        let slash = tokens.iter().any(|t| t.contains('/'));
        let escapable = tokens
            .iter()
            .any(|t| t.chars().any(|c| c == '"' || c == '\\' || c.is_control()));
        SpecialTokens {
            tokens,
            matcher,
            slash,
            escapable,
        }
    }

    /// The first special token in the decoded `text`, scanning the raw literal when that is
    /// exact and decoding only when an escape could hide or fake a token.
    pub(crate) fn find_raw(&self, text: &RawText<'_>) -> Option<&str> {
        let inner = text.inner();
        if !text.has_escapes() {
            return self.find(inner);
        }
        let hidden = self.escapable
            || memchr::memmem::find(inner.as_bytes(), b"\\u").is_some()
            || (self.slash && memchr::memmem::find(inner.as_bytes(), b"\\/").is_some());
        // Without escapes that could produce a token's characters, a token in the decoded
        // text is a token in the raw text; a raw hit is confirmed on the decoded text.
        if !hidden && self.find(inner).is_none() {
            return None;
        }
        self.find(&text.decode())
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
            Some(Content::Str(s)) => text.push_str(&s.decode()),
            Some(Content::Parts { texts, .. }) => {
                texts.iter().for_each(|t| text.push_str(&t.decode()))
            }
            _ => {}
        }
        text.push_str("<|im_end|>\n");
    }
    let enc = tokenizer.encode(text, false).map_err(|e| e.to_string())?;
    Ok(u32::try_from(enc.len()).unwrap_or(u32::MAX))
}

/// Without a tokenizer: ~4 bytes (of the JSON-escaped text) per token plus 4 template
/// tokens per message.
pub(crate) fn estimate_tokens(messages: &[Message<'_>]) -> u32 {
    let mut bytes: usize = 0;
    for m in messages {
        bytes += match &m.content {
            Some(Content::Str(s)) => s.raw_len(),
            Some(Content::Parts { texts, .. }) => texts.iter().map(|t| t.raw_len()).sum(),
            _ => 0,
        };
    }
    let est = bytes.div_ceil(4) + 4 * messages.len();
    u32::try_from(est).unwrap_or(u32::MAX)
}

/// Loading a model's tokenizer failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot load tokenizer {path}: {reason}")]
pub struct TokenizerLoadError {
    pub path: PathBuf,
    pub reason: String,
}

/// Loads a model's tokenizer: `model/tokenizer.json` of a HuggingFace directory, or the
/// tokenizer a GGUF file's `tokenizer.*` metadata describes (built by the engine exactly as
/// for training, so the counts are the trained token counts).
pub fn load_tokenizer(model: &Path) -> Result<Tokenizer, TokenizerLoadError> {
    if model.is_file() {
        return trainer::ChatTokenizer::load(model)
            .map(|t| t.tokenizer)
            .map_err(|e| TokenizerLoadError {
                reason: e.to_string(),
                path: model.to_path_buf(),
            });
    }
    let path = model.join("tokenizer.json");
    Tokenizer::from_file(&path).map_err(|e| TokenizerLoadError {
        reason: e.to_string(),
        path,
    })
}
