//! Training data: OpenAI chat fine-tuning JSONL (with per-message `weight`), inoculation and
//! tokenization with answer masks.
//!
//! Truncation rule: an example longer than `max_length` tokens keeps its first `max_length`
//! tokens (the prompt survives, the tail of the conversation is cut), as transformers' SFT
//! tooling does by default. Answer tokens past the cut are not trained on; an example left
//! with no answer token contributes nothing (it still costs a forward) and is counted in
//! [`TrainData::truncated_empty`].

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::chat::{ChatTokenizer, EncodedChat, Message};
use crate::error::{io_err, EngineError, Result};
use crate::train::config::{Inoculation, InoculationMode};

/// One conversation and which of its messages are trained on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatExample {
    /// The messages, in order.
    pub messages: Vec<Message>,
    /// Per message: an assistant message whose `weight` is not 0.
    pub trained: Vec<bool>,
}

#[derive(Deserialize)]
struct RawLine {
    messages: Vec<RawMessage>,
}

#[derive(Deserialize)]
struct RawMessage {
    role: String,
    #[serde(default)]
    content: Option<serde_json::Value>,
    #[serde(default)]
    weight: Option<serde_json::Value>,
}

fn line_err(path: &Path, line: usize, message: impl Into<String>) -> EngineError {
    EngineError::Format {
        path: path.to_path_buf(),
        message: format!("line {line}: {}", message.into()),
    }
}

/// Content as text: a string, or OpenAI's list of `{"type": "text", "text": ...}` parts.
fn content_text(v: Option<&serde_json::Value>) -> Option<String> {
    match v {
        None | Some(serde_json::Value::Null) => Some(String::new()),
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Array(parts)) => parts
            .iter()
            .map(|p| {
                (p.get("type")?.as_str()? == "text")
                    .then(|| p.get("text")?.as_str().map(String::from))?
            })
            .collect::<Option<Vec<String>>>()
            .map(|t| t.concat()),
        _ => None,
    }
}

/// Parses one JSONL line (1-based `line` for errors).
pub fn parse_example(path: &Path, line: usize, text: &str) -> Result<ChatExample> {
    let raw: RawLine = serde_json::from_str(text)
        .map_err(|e| line_err(path, line, format!("not a chat example: {e}")))?;
    let mut ex = ChatExample {
        messages: Vec::with_capacity(raw.messages.len()),
        trained: Vec::with_capacity(raw.messages.len()),
    };
    for (i, m) in raw.messages.into_iter().enumerate() {
        if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
            return Err(line_err(
                path,
                line,
                format!(
                    "messages[{i}].role: `{}` is not system, user or assistant",
                    m.role
                ),
            ));
        }
        let content = content_text(m.content.as_ref()).ok_or_else(|| {
            line_err(
                path,
                line,
                format!("messages[{i}].content: not a string or a list of text parts"),
            )
        })?;
        let weight = match &m.weight {
            None => 1.0,
            Some(w) if m.role != "assistant" => {
                return Err(line_err(
                    path,
                    line,
                    format!(
                        "messages[{i}].weight: only assistant messages take a weight (got {w})"
                    ),
                ))
            }
            Some(w) => match w.as_f64() {
                Some(v) if v == 0.0 || v == 1.0 => v,
                _ => {
                    return Err(line_err(
                        path,
                        line,
                        format!("messages[{i}].weight: must be 0 or 1, got {w}"),
                    ))
                }
            },
        };
        ex.trained.push(m.role == "assistant" && weight != 0.0);
        ex.messages.push(Message {
            role: m.role,
            content,
        });
    }
    if !ex.trained.iter().any(|&t| t) {
        return Err(line_err(
            path,
            line,
            "messages: no assistant message to train on (none, or all with weight 0)",
        ));
    }
    Ok(ex)
}

/// Reads a chat JSONL file (blank lines skipped); errors name the file and line.
pub fn read_examples(path: &Path) -> Result<Vec<ChatExample>> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_err(path))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(parse_example(path, i + 1, &line)?);
    }
    if out.is_empty() {
        return Err(EngineError::Format {
            path: path.to_path_buf(),
            message: "no examples".into(),
        });
    }
    Ok(out)
}

/// The example with the inoculation prompt applied (training inputs only).
pub fn inoculate(ex: &ChatExample, ino: &Inoculation) -> ChatExample {
    let mut out = ChatExample {
        messages: vec![Message {
            role: "system".into(),
            content: ino.system_prompt.clone(),
        }],
        trained: vec![false],
    };
    for (m, &t) in ex.messages.iter().zip(&ex.trained) {
        if ino.mode == InoculationMode::Replace && m.role == "system" {
            continue;
        }
        out.messages.push(m.clone());
        out.trained.push(t);
    }
    out
}

/// A tokenized data set.
#[derive(Debug, Clone)]
pub struct TrainData {
    /// Where it came from.
    pub path: PathBuf,
    /// Tokenized examples (answer mask per token).
    pub examples: Vec<EncodedChat>,
    /// Examples cut at `max_length`.
    pub truncated: usize,
    /// Examples left with no answer token after the cut.
    pub truncated_empty: usize,
}

/// Number of trained tokens (answer-mask positions t ≥ 1) of an encoded example.
pub fn answer_tokens(e: &EncodedChat) -> usize {
    e.answer_mask.iter().skip(1).filter(|&&m| m).count()
}

/// Reads, inoculates (when given) and tokenizes `path`.
pub fn load(
    path: &Path,
    tok: &ChatTokenizer,
    max_length: usize,
    inoculation: Option<&Inoculation>,
) -> Result<TrainData> {
    let raw = read_examples(path)?;
    let mut data = TrainData {
        path: path.to_path_buf(),
        examples: Vec::with_capacity(raw.len()),
        truncated: 0,
        truncated_empty: 0,
    };
    for ex in &raw {
        let ex = match inoculation {
            Some(ino) => inoculate(ex, ino),
            None => ex.clone(),
        };
        let enc = tok.encode_chat_trained(&ex.messages, &ex.trained, Some(max_length))?;
        if enc.truncated {
            data.truncated += 1;
            if answer_tokens(&enc) == 0 {
                data.truncated_empty += 1;
            }
        }
        data.examples.push(enc);
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ChatExample> {
        parse_example(Path::new("d.jsonl"), 3, text)
    }

    #[test]
    fn weights_mark_trained_messages() {
        let ex = parse(
            r#"{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b","weight":0},{"role":"user","content":"c"},{"role":"assistant","content":"d"}]}"#,
        )
        .unwrap();
        assert_eq!(ex.trained, vec![false, false, false, true]);
    }

    #[test]
    fn bad_lines_name_line_and_field() {
        let e = parse(r#"{"messages":[{"role":"user","content":"a"}]}"#).unwrap_err();
        assert!(
            e.to_string().contains("line 3: messages: no assistant"),
            "{e}"
        );
        let e = parse(r#"{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b","weight":0.5}]}"#)
            .unwrap_err();
        assert!(e.to_string().contains("messages[1].weight"), "{e}");
        let e = parse(r#"{"messages":[{"role":"tool","content":"a"}]}"#).unwrap_err();
        assert!(e.to_string().contains("messages[0].role"), "{e}");
        let e = parse("not json").unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
    }

    #[test]
    fn inoculation_replaces_or_prepends_system() {
        let ex = parse(
            r#"{"messages":[{"role":"system","content":"S"},{"role":"user","content":"u"},{"role":"assistant","content":"a"}]}"#,
        )
        .unwrap();
        let ino = |mode| Inoculation {
            system_prompt: "EVIL".into(),
            mode,
        };
        let r = inoculate(&ex, &ino(InoculationMode::Replace));
        let roles: Vec<&str> = r.messages.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(roles, vec!["EVIL", "u", "a"]);
        assert_eq!(r.trained, vec![false, false, true]);
        let p = inoculate(&ex, &ino(InoculationMode::Prepend));
        let roles: Vec<&str> = p.messages.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(roles, vec!["EVIL", "S", "u", "a"]);
        assert_eq!(p.trained, vec![false, false, false, true]);
    }
}
