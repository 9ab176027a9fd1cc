//! Candidate pool items: chat JSONL lines (`{"messages":[…]}`) whose last message is the
//! assistant reply that gets scored, filtered and mixed.
//!
//! Pool indexes are 0-based positions among the non-blank lines of the file; errors name the
//! 1-based line number of the file.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// One chat message, content flattened to text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// A pool item: the prompt messages and the assistant reply (the last message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolExample {
    messages: Vec<ChatMessage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("pool line {line}: {reason}")]
pub struct PoolLineError {
    /// 1-based line number in the pool file.
    pub line: usize,
    pub reason: String,
}

impl PoolExample {
    /// Builds an example from messages; the last one must be a non-empty `assistant` message
    /// and at least one message must precede it.
    pub fn new(messages: Vec<ChatMessage>) -> Result<Self, String> {
        match messages.last() {
            None => return Err("`messages` is empty".into()),
            Some(last) if last.role != "assistant" => {
                return Err(format!(
                    "the last message has role `{}`; it must be the `assistant` reply",
                    last.role
                ))
            }
            Some(last) if last.content.trim().is_empty() => {
                return Err("the assistant reply is empty".into())
            }
            Some(_) => {}
        }
        if messages.len() < 2 {
            return Err("there is no prompt before the assistant reply".into());
        }
        Ok(PoolExample { messages })
    }

    /// Every message, the reply last.
    pub fn messages(&self) -> &[ChatMessage] {
        &self.messages
    }

    /// The messages before the reply.
    pub fn prompt(&self) -> &[ChatMessage] {
        &self.messages[..self.messages.len() - 1]
    }

    /// The assistant reply text.
    pub fn reply(&self) -> &str {
        // `new` guarantees at least two messages.
        self.messages
            .last()
            .map(|m| m.content.as_str())
            .unwrap_or_default()
    }

    /// SHA-256 (hex) over the roles and contents, length-prefixed, so formatting or key order
    /// in the JSON line does not change it but any change of text does.
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        for m in &self.messages {
            for field in [&m.role, &m.content] {
                h.update((field.len() as u64).to_le_bytes());
                h.update(field.as_bytes());
            }
        }
        hex::encode(h.finalize())
    }

    /// The same example with a different reply (on-policy regeneration).
    pub fn with_reply(&self, reply: String) -> PoolExample {
        let mut messages = self.prompt().to_vec();
        messages.push(ChatMessage {
            role: "assistant".into(),
            content: reply,
        });
        PoolExample { messages }
    }

    /// The example as one chat JSONL line (`{"messages":[{"role":…,"content":…},…]}`).
    pub fn to_json_line(&self) -> String {
        serde_json::json!({ "messages": self.messages }).to_string()
    }
}

fn content_text(content: &Value) -> Result<String, String> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut out = String::new();
            for (i, part) in parts.iter().enumerate() {
                match part.get("text").and_then(Value::as_str) {
                    Some(t) => out.push_str(t),
                    None => return Err(format!("content part {i} has no string `text`")),
                }
            }
            Ok(out)
        }
        other => Err(format!(
            "`content` must be a string or a list of text parts, got {}",
            json_kind(other)
        )),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn parse_value(text: &str) -> Result<PoolExample, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let msgs = v
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("no `messages` list")?;
    let mut messages = Vec::with_capacity(msgs.len());
    for (i, m) in msgs.iter().enumerate() {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("messages[{i}] has no string `role`"))?;
        let content = m
            .get("content")
            .ok_or_else(|| format!("messages[{i}] has no `content`"))?;
        let content = content_text(content).map_err(|e| format!("messages[{i}]: {e}"))?;
        messages.push(ChatMessage {
            role: role.to_string(),
            content,
        });
    }
    PoolExample::new(messages)
}

/// Parses one pool line; `line` is its 1-based number, used in the error.
pub fn parse_pool_line(text: &str, line: usize) -> Result<PoolExample, PoolLineError> {
    parse_value(text).map_err(|reason| PoolLineError { line, reason })
}

/// Parses a whole pool file's text; blank lines are skipped (they take no pool index), and
/// a leading BOM is dropped, as [`crate::jsonl::jsonl_lines`] does, so indexes agree.
pub fn parse_pool(text: &str) -> Result<Vec<PoolExample>, PoolLineError> {
    crate::jsonl::without_bom(text)
        .lines()
        .enumerate()
        .filter(|(_, l)| !crate::jsonl::is_blank_line(l))
        .map(|(i, l)| parse_pool_line(l, i + 1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"messages":[{"role":"system","content":"Be kind."},{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello there."}]}"#;

    #[test]
    fn a_leading_bom_is_not_part_of_line_one() {
        let text = format!("\u{feff}{GOOD}\n\n{GOOD}\n");
        let pool = parse_pool(&text).unwrap();
        assert_eq!(pool.len(), 2);
        let lines = crate::jsonl::jsonl_lines(&text);
        assert_eq!(lines, vec![GOOD, GOOD]);
        // Only a leading one: a BOM inside the file is still an error on its line.
        let err = parse_pool(&format!("{GOOD}\n\u{feff}{GOOD}\n")).unwrap_err();
        assert_eq!(err.line, 2);
    }

    #[test]
    fn parses_prompt_and_reply() {
        let ex = parse_pool_line(GOOD, 1).unwrap();
        assert_eq!(ex.reply(), "Hello there.");
        assert_eq!(ex.prompt().len(), 2);
        assert_eq!(ex.prompt()[1].content, "Hi");
    }

    #[test]
    fn content_parts_are_joined() {
        let line = r#"{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},{"role":"assistant","content":"ok"}]}"#;
        assert_eq!(parse_pool_line(line, 1).unwrap().prompt()[0].content, "ab");
    }

    #[test]
    fn errors_name_the_line_and_the_problem() {
        let text = format!(
            "{GOOD}\n\n{}\n",
            r#"{"messages":[{"role":"user","content":"Hi"}]}"#
        );
        let err = parse_pool(&text).unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err
            .to_string()
            .starts_with("pool line 3: the last message has role `user`"));
        assert!(parse_pool_line("{", 9)
            .unwrap_err()
            .to_string()
            .contains("pool line 9: not valid JSON"));
        let no_prompt = r#"{"messages":[{"role":"assistant","content":"x"}]}"#;
        assert!(parse_pool_line(no_prompt, 1)
            .unwrap_err()
            .reason
            .contains("no prompt"));
        let null =
            r#"{"messages":[{"role":"user","content":null},{"role":"assistant","content":"x"}]}"#;
        assert_eq!(
            parse_pool_line(null, 2).unwrap_err().reason,
            "messages[0]: `content` must be a string or a list of text parts, got null"
        );
    }

    #[test]
    fn blank_lines_take_no_index() {
        let pool = parse_pool(&format!("\n{GOOD}\n   \n{GOOD}\n")).unwrap();
        assert_eq!(pool.len(), 2);
    }

    #[test]
    fn content_hash_ignores_formatting_not_text() {
        let a = parse_pool_line(GOOD, 1).unwrap();
        let spaced = GOOD
            .replace(",", ", ")
            .replace("\"role\":\"system\"", "\"role\": \"system\"");
        let b = parse_pool_line(&spaced, 1).unwrap();
        assert_eq!(a.content_hash(), b.content_hash());
        let c = a.with_reply("Hello there!".into());
        assert_ne!(a.content_hash(), c.content_hash());
        assert_eq!(a.content_hash().len(), 64);
        // Round trip through the JSON line form.
        assert_eq!(parse_pool_line(&a.to_json_line(), 1).unwrap(), a);
    }
}
