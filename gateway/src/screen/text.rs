//! Message text kept as the raw JSON string literal (quotes and escapes included), borrowed
//! from the line: the hot loop checks it without decoding, and decodes only when it must
//! (escapes that could hide a special token, a possibly blank string, token counting).

use serde::de::{Deserialize, Deserializer, Error as _};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// A JSON string literal, e.g. `"a\nb"` (validated UTF-8 and JSON by serde_json).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawText<'a>(&'a str);

impl<'a> RawText<'a> {
    /// `raw` when it is a JSON string literal.
    pub(crate) fn from_raw(raw: &'a RawValue) -> Option<Self> {
        let s = raw.get();
        (s.len() >= 2 && s.starts_with('"') && s.ends_with('"')).then_some(RawText(s))
    }

    /// The bytes between the quotes, escapes undecoded.
    pub(crate) fn inner(&self) -> &'a str {
        &self.0[1..self.0.len() - 1]
    }

    pub(crate) fn has_escapes(&self) -> bool {
        memchr::memchr(b'\\', self.inner().as_bytes()).is_some()
    }

    /// The decoded string (borrowed when there are no escapes).
    pub(crate) fn decode(&self) -> Cow<'a, str> {
        if !self.has_escapes() {
            return Cow::Borrowed(self.inner());
        }
        // A literal serde_json already validated always decodes.
        serde_json::from_str::<String>(self.0)
            .map(Cow::Owned)
            .unwrap_or(Cow::Borrowed(""))
    }

    /// Whether the decoded string is empty or only whitespace.
    pub(crate) fn is_blank(&self) -> bool {
        let inner = self.inner();
        if !self.has_escapes() {
            return inner.trim().is_empty();
        }
        // Any byte that can neither be whitespace nor part of an escape means "not blank".
        let maybe_blank = inner.bytes().all(|b| {
            matches!(b, b' ' | b'\\' | b'n' | b't' | b'r' | b'u' | b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F')
                || b >= 0x80
        });
        maybe_blank && self.decode().trim().is_empty()
    }

    /// Length of the raw literal's content in bytes (escapes count as written).
    pub(crate) fn raw_len(&self) -> usize {
        self.inner().len()
    }
}

/// Deserializes a `&RawValue` borrowed from the input (the line).
pub(crate) fn borrow_raw<'de, D: Deserializer<'de>>(d: D) -> Result<&'de RawValue, D::Error> {
    <&'de RawValue>::deserialize(d).map_err(|e| D::Error::custom(e.to_string()))
}
