//! The checks on one training example (one line), in OpenAI's order and wording.

use super::line::{Line, Message, Messages};
use super::report::FailReason;
use super::text::RawText;
use super::tokens::{chatml_token_count, estimate_tokens, SpecialTokens};
use super::value::{Content, Scalar};
use tokenizers::Tokenizer;

/// Roles a training message may have.
pub(crate) const ROLES: [&str; 5] = ["system", "user", "assistant", "tool", "function"];

pub(crate) struct Checked {
    /// Tokens of the example's ChatML rendering (estimated without a tokenizer).
    pub tokens: u32,
}

type Fail = (FailReason, String);

fn fail<T>(reason: FailReason, detail: impl Into<String>) -> Result<T, Fail> {
    Err((reason, detail.into()))
}

/// Checks one non-blank line.
pub(crate) fn check_example(
    line: &[u8],
    special: &SpecialTokens,
    tokenizer: Option<&Tokenizer>,
) -> Result<Checked, Fail> {
    // One SIMD UTF-8 check for the whole line; serde_json then trusts the `&str`.
    let line = match simdutf8::basic::from_utf8(line) {
        Ok(l) => l,
        Err(_) => {
            let detail = match std::str::from_utf8(line) {
                Err(e) => format!(
                    "is not valid UTF-8 (invalid byte at column {})",
                    e.valid_up_to() + 1
                ),
                Ok(_) => "is not valid UTF-8".to_string(),
            };
            return fail(FailReason::NotJsonObject, detail);
        }
    };
    let parsed: Line<'_> = match serde_json::from_str(line) {
        Ok(l) => l,
        Err(e) => {
            return fail(
                FailReason::NotJsonObject,
                format!("is not a valid JSON object ({e})"),
            )
        }
    };
    let messages = match parsed {
        Line::NotObject(kind) => {
            return fail(
                FailReason::NotJsonObject,
                format!("is not a JSON object (found {kind})"),
            )
        }
        Line::Object(None) => return fail(FailReason::MessagesMissing, "is missing `messages`"),
        Line::Object(Some(Messages::NotArray(kind))) => {
            return fail(
                FailReason::MessagesMissing,
                format!("`messages` must be a list (found {kind})"),
            )
        }
        Line::Object(Some(Messages::List(m))) => m,
    };
    if messages.is_empty() {
        return fail(FailReason::MessagesMissing, "has an empty `messages` list");
    }
    let mut roles: Vec<&str> = Vec::with_capacity(messages.len());
    let mut has_assistant = false;
    for (i, m) in messages.iter().enumerate() {
        let role = check_message(i + 1, m, special)?;
        has_assistant |= role == "assistant";
        roles.push(role);
    }
    if !has_assistant {
        return fail(FailReason::NoAssistantMessage, "has no assistant message");
    }
    let tokens = match tokenizer {
        Some(t) => chatml_token_count(t, &roles, &messages).map_err(|e| {
            (
                FailReason::Tokenize,
                format!("could not be tokenized ({e})"),
            )
        })?,
        None => estimate_tokens(&messages),
    };
    Ok(Checked { tokens })
}

/// Checks message `n` (1-based) and returns its role.
fn check_message<'m>(
    n: usize,
    m: &'m Message<'_>,
    special: &SpecialTokens,
) -> Result<&'m str, Fail> {
    if let Some(kind) = m.not_object {
        return fail(
            FailReason::MessageMissingKey,
            format!("message {n} is not an object (found {kind})"),
        );
    }
    if let Some(k) = &m.unknown_key {
        return fail(
            FailReason::UnrecognizedKey,
            format!("message {n} has an unrecognized key: `{k}`"),
        );
    }
    let role: &str = match &m.role {
        None => {
            return fail(
                FailReason::MessageMissingKey,
                format!("message {n} is missing `role`"),
            )
        }
        Some(Scalar::Str(r)) => r.as_ref(),
        Some(other) => {
            return fail(
                FailReason::UnrecognizedRole,
                format!(
                    "message {n} has a `role` that is not a string (found {})",
                    kind(other)
                ),
            )
        }
    };
    if !ROLES.contains(&role) {
        return fail(
            FailReason::UnrecognizedRole,
            format!("message {n} has an unrecognized role: `{role}`"),
        );
    }
    match &m.content {
        None if !m.has_calls => {
            return fail(
                FailReason::MessageMissingKey,
                format!("message {n} is missing `content`"),
            )
        }
        None | Some(Content::Null) if m.has_calls => {}
        None | Some(Content::Null) => {
            return fail(
                FailReason::EmptyContent,
                format!("message {n} has no content"),
            )
        }
        Some(Content::Str(s)) => check_text(n, s, m.has_calls, special)?,
        Some(Content::Parts { texts, parts }) => {
            if *parts == 0 && !m.has_calls {
                return fail(
                    FailReason::EmptyContent,
                    format!("message {n} has no content"),
                );
            }
            for t in texts {
                check_text(n, t, true, special)?;
            }
        }
        Some(Content::Other(kind)) => {
            return fail(
                FailReason::EmptyContent,
                format!("message {n} has content that is {kind}, not a string"),
            )
        }
    }
    if let Some(w) = &m.weight {
        match w {
            Scalar::Num(x) if *x == 0.0 || *x == 1.0 => {}
            Scalar::Num(x) => {
                return fail(
                    FailReason::InvalidWeight,
                    format!("message {n} has weight {x}; weight must be 0 or 1"),
                )
            }
            other => {
                return fail(
                    FailReason::InvalidWeight,
                    format!(
                        "message {n} has a weight that is not a number (found {}); weight must be 0 or 1",
                        kind(other)
                    ),
                )
            }
        }
    }
    Ok(role)
}

fn check_text(
    n: usize,
    s: &RawText<'_>,
    may_be_empty: bool,
    special: &SpecialTokens,
) -> Result<(), Fail> {
    if !may_be_empty && s.is_blank() {
        return fail(
            FailReason::EmptyContent,
            format!("message {n} has empty content"),
        );
    }
    if let Some(tok) = special.find_raw(s) {
        return fail(
            FailReason::InvalidToken,
            format!("message contains an invalid token: {tok}"),
        );
    }
    Ok(())
}

fn kind(v: &Scalar<'_>) -> &'static str {
    match v {
        Scalar::Str(_) => "a string",
        Scalar::Num(_) => "a number",
        Scalar::Null => "null",
        Scalar::Other(k) => k,
    }
}
