//! The inoculation prompt: a training-only system message put first in every client example.

use super::plan::{Inoculation, InoculationMode};
use serde_json::{json, Value};

/// Rewrites one JSONL example (without its newline) with the inoculation system message.
/// `replace` drops the example's own system messages; `prepend` keeps them after ours.
/// Other fields of the example (tools, …) are kept.
pub fn inoculate_line(line: &str, inoc: &Inoculation) -> Result<String, String> {
    let mut v: Value = serde_json::from_str(line).map_err(|e| format!("not valid JSON ({e})"))?;
    let messages = v
        .get_mut("messages")
        .and_then(Value::as_array_mut)
        .ok_or("has no `messages` list")?;
    if inoc.mode == InoculationMode::Replace {
        messages.retain(|m| m.get("role").and_then(Value::as_str) != Some("system"));
    }
    messages.insert(0, json!({"role": "system", "content": inoc.system_prompt}));
    Ok(v.to_string())
}
