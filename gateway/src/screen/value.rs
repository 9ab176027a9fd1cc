//! Borrowed, allocation-light values of a training line for serde_json: keys borrow from
//! the line unless escaped, message text stays raw ([`RawText`]), and values the checks do
//! not read are skipped.

use super::text::{borrow_raw, RawText};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// An object key, borrowed from the line unless escaped.
pub(crate) struct Key<'a>(pub Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// A JSON value reduced to what the checks need.
#[derive(Debug)]
pub(crate) enum Scalar<'a> {
    Str(Cow<'a, str>),
    Num(f64),
    Null,
    /// bool, array or object.
    Other(&'static str),
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Num(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Num(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::Num(v as f64))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Other("a boolean"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
        while s.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other("an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
        while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other("an object"))
    }
}

/// Message content: a string, null, or an array of content parts (text parts kept), with
/// strings as undecoded [`RawText`].
#[derive(Debug)]
pub(crate) enum Content<'a> {
    Str(RawText<'a>),
    Null,
    /// Texts of the `{"type":"text","text":…}` parts; `parts` counts all parts.
    Parts {
        texts: Vec<RawText<'a>>,
        parts: usize,
    },
    Other(&'static str),
}

impl<'de> Deserialize<'de> for Content<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = borrow_raw(d)?;
        if let Some(t) = RawText::from_raw(raw) {
            return Ok(Content::Str(t));
        }
        Ok(match raw.get().as_bytes().first() {
            Some(b'n') => Content::Null,
            Some(b'[') => {
                let parts: Vec<Part<'de>> =
                    serde_json::from_str(raw.get()).map_err(de::Error::custom)?;
                let n = parts.len();
                Content::Parts {
                    texts: parts.into_iter().filter_map(|p| p.text).collect(),
                    parts: n,
                }
            }
            Some(b'{') => Content::Other("an object"),
            Some(b't' | b'f') => Content::Other("a boolean"),
            _ => Content::Other("a number"),
        })
    }
}

/// One content part; only a text part's `text` is kept.
struct Part<'a> {
    text: Option<RawText<'a>>,
}

impl<'de> Deserialize<'de> for Part<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Part<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a content part")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut text = None;
                while let Some(k) = m.next_key::<Key<'de>>()? {
                    if k.0 == "text" {
                        text = RawText::from_raw(m.next_value::<RawSeed<'de>>()?.0);
                    } else {
                        m.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Part { text })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Part { text: None })
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Part { text: None })
            }
        }
        d.deserialize_any(V)
    }
}

/// A borrowed raw value as a `Deserialize` type (for `next_value`).
struct RawSeed<'a>(&'a serde_json::value::RawValue);

impl<'de> Deserialize<'de> for RawSeed<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        borrow_raw(d).map(RawSeed)
    }
}
