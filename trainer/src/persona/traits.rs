//! Trait files in persona_vectors' format: `instruction` (pairs of `pos` / `neg` system
//! prompts), `questions`, and the judge's `eval_prompt` template with `{question}` and
//! `{answer}`. Every error names the file and the field.

use std::path::Path;

use serde_json::Value;

use crate::error::{format_err, io_err, Result};

/// One pair of system prompts: `pos` elicits the trait, `neg` its opposite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstructionPair {
    /// System prompt that elicits the trait.
    pub pos: String,
    /// System prompt that elicits the opposite behaviour.
    pub neg: String,
}

/// A parsed trait file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traits {
    /// System-prompt pairs (at least one).
    pub instruction: Vec<InstructionPair>,
    /// User questions asked under every pair (at least one).
    pub questions: Vec<String>,
    /// Judge prompt template with `{question}` and `{answer}` (Python `str.format` style).
    pub eval_prompt: String,
}

impl Traits {
    /// Reads and validates a trait file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        Self::parse(&text, path)
    }

    /// Parses and validates trait-file text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let err = |msg: String| format_err(path, msg);
        let root: Value =
            serde_json::from_str(text).map_err(|e| err(format!("invalid JSON: {e}")))?;
        let obj = root
            .as_object()
            .ok_or_else(|| err("expected a JSON object at the top level".into()))?;
        let non_empty_str = |v: Option<&Value>, field: &str| -> Result<String> {
            match v {
                None => Err(err(format!("`{field}` is missing"))),
                Some(Value::String(s)) if s.trim().is_empty() => {
                    Err(err(format!("`{field}` is empty")))
                }
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(err(format!("`{field}` must be a string"))),
            }
        };
        let list = |field: &str| -> Result<&Vec<Value>> {
            match obj.get(field) {
                None => Err(err(format!("`{field}` is missing"))),
                Some(Value::Array(a)) if a.is_empty() => {
                    Err(err(format!("`{field}` is an empty list")))
                }
                Some(Value::Array(a)) => Ok(a),
                Some(_) => Err(err(format!("`{field}` must be a list"))),
            }
        };
        let mut instruction = Vec::new();
        for (i, item) in list("instruction")?.iter().enumerate() {
            let o = item.as_object().ok_or_else(|| {
                err(format!(
                    "`instruction[{i}]` must be an object {{\"pos\": ..., \"neg\": ...}}"
                ))
            })?;
            instruction.push(InstructionPair {
                pos: non_empty_str(o.get("pos"), &format!("instruction[{i}].pos"))?,
                neg: non_empty_str(o.get("neg"), &format!("instruction[{i}].neg"))?,
            });
        }
        let questions = list("questions")?
            .iter()
            .enumerate()
            .map(|(i, q)| non_empty_str(Some(q), &format!("questions[{i}]")))
            .collect::<Result<Vec<_>>>()?;
        let eval_prompt = non_empty_str(obj.get("eval_prompt"), "eval_prompt")?;
        for key in ["{question}", "{answer}"] {
            if !eval_prompt.contains(key) {
                return Err(err(format!("`eval_prompt` does not contain `{key}`")));
            }
        }
        Ok(Self {
            instruction,
            questions,
            eval_prompt,
        })
    }
}

/// Fills a judge template the way Python's `str.format(question=…, answer=…)` does for the
/// templates trait files use: `{question}` and `{answer}` are substituted in one pass (so an
/// answer containing `{question}` stays literal), `{{` and `}}` become `{` and `}`, and any
/// other brace is kept as written.
pub fn fill_prompt(template: &str, question: &str, answer: &str) -> String {
    let mut out = String::with_capacity(template.len() + question.len() + answer.len());
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let (replacement, skip) = if rest.starts_with("{{") {
            ("{", 2)
        } else if rest.starts_with("}}") {
            ("}", 2)
        } else if rest.starts_with("{question}") {
            (question, "{question}".len())
        } else if rest.starts_with("{answer}") {
            (answer, "{answer}".len())
        } else {
            (&rest[..1], 1)
        };
        out.push_str(replacement);
        rest = &rest[skip..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> String {
        match Traits::parse(text, Path::new("t.json")) {
            Ok(_) => "ok".into(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let q = r#""questions": ["q"], "eval_prompt": "{question} {answer}""#;
        assert_eq!(
            parse(&format!(
                r#"{{"instruction": [{{"pos": "p", "neg": "n"}}, {{"pos": "p"}}], {q}}}"#
            )),
            "t.json: `instruction[1].neg` is missing"
        );
        assert_eq!(
            parse(&format!(r#"{{"instruction": [], {q}}}"#)),
            "t.json: `instruction` is an empty list"
        );
        assert_eq!(
            parse(
                r#"{"instruction": [{"pos": "p", "neg": "n"}], "questions": ["a", 3], "eval_prompt": "x"}"#
            ),
            "t.json: `questions[1]` must be a string"
        );
        assert_eq!(
            parse(
                r#"{"instruction": [{"pos": "p", "neg": "n"}], "questions": ["a"], "eval_prompt": "{answer}"}"#
            ),
            "t.json: `eval_prompt` does not contain `{question}`"
        );
        assert_eq!(
            parse(&format!(
                r#"{{"instruction": [{{"pos": "p", "neg": "n"}}], {q}}}"#
            )),
            "ok"
        );
    }

    #[test]
    fn fill_prompt_substitutes_once_and_unescapes_braces() {
        assert_eq!(
            fill_prompt("Q={question} A={answer} {{x}} {other}", "{answer}", "a}"),
            "Q={answer} A=a} {x} {other}"
        );
    }
}
