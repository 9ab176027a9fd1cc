//! Borrowed views of a training line's structure: the line object, its `messages` list and
//! each message (fields the checks read, plus the first unrecognised key). Values of another
//! JSON kind than expected are kept as that kind's name, for the error message.

use super::value::{Content, Key, Scalar};
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// Visitor methods for the scalar kinds, each answering `$ctor("<kind>")`.
macro_rules! other_scalars {
    ($ctor:expr) => {
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok($ctor("a string"))
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($ctor("a number"))
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($ctor("a number"))
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($ctor("a number"))
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($ctor("a boolean"))
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($ctor("null"))
        }
    };
}

/// One message: the fields the checks read, plus the first key outside OpenAI's set
/// (role, content, name, function_call, weight, tool_calls, tool_call_id).
#[derive(Debug, Default)]
pub(crate) struct Message<'a> {
    pub role: Option<Scalar<'a>>,
    pub content: Option<Content<'a>>,
    pub weight: Option<Scalar<'a>>,
    pub has_calls: bool,
    pub unknown_key: Option<Cow<'a, str>>,
    /// Not a JSON object at all (its kind).
    pub not_object: Option<&'static str>,
}

fn not_object(kind: &'static str) -> Message<'static> {
    Message {
        not_object: Some(kind),
        ..Message::default()
    }
}

impl<'de> Deserialize<'de> for Message<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Message<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a message object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut msg = Message::default();
                while let Some(k) = m.next_key::<Key<'de>>()? {
                    match k.0.as_ref() {
                        "role" => msg.role = Some(m.next_value()?),
                        "content" => msg.content = Some(m.next_value()?),
                        "weight" => msg.weight = Some(m.next_value()?),
                        "function_call" | "tool_calls" => {
                            let v: Scalar<'de> = m.next_value()?;
                            msg.has_calls |= !matches!(v, Scalar::Null);
                        }
                        "name" | "tool_call_id" => {
                            m.next_value::<IgnoredAny>()?;
                        }
                        _ => {
                            m.next_value::<IgnoredAny>()?;
                            if msg.unknown_key.is_none() {
                                msg.unknown_key = Some(k.0);
                            }
                        }
                    }
                }
                Ok(msg)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(not_object("an array"))
            }
            other_scalars!(not_object);
        }
        d.deserialize_any(V)
    }
}

/// The `messages` field: an array of messages, or something else (its kind).
pub(crate) enum Messages<'a> {
    List(Vec<Message<'a>>),
    NotArray(&'static str),
}

impl<'de> Deserialize<'de> for Messages<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Messages<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of messages")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::with_capacity(s.size_hint().unwrap_or(4));
                while let Some(m) = s.next_element::<Message<'de>>()? {
                    v.push(m);
                }
                Ok(Messages::List(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Messages::NotArray("an object"))
            }
            other_scalars!(Messages::NotArray);
        }
        d.deserialize_any(V)
    }
}

/// A whole line: an object whose `messages` is kept (other top-level keys such as `tools`
/// are skipped), or not an object.
pub(crate) enum Line<'a> {
    Object(Option<Messages<'a>>),
    NotObject(&'static str),
}

impl<'de> Deserialize<'de> for Line<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Line<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut messages = None;
                while let Some(k) = m.next_key::<Key<'de>>()? {
                    if k.0 == "messages" {
                        messages = Some(m.next_value()?);
                    } else {
                        m.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Line::Object(messages))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Line::NotObject("an array"))
            }
            other_scalars!(Line::NotObject);
        }
        d.deserialize_any(V)
    }
}
