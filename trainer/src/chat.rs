//! Chat template rendering (minijinja) and tokenization with answer masks.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::error::{format_err, read_json, EngineError, Result};

/// Qwen ChatML, used when the model ships no `chat_template`.
pub const CHATML_TEMPLATE: &str = "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// Text.
    pub content: String,
}

/// A tokenized conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedChat {
    /// Token ids, as transformers' `apply_chat_template(tokenize=True)`.
    pub ids: Vec<u32>,
    /// True for assistant content tokens and the `<|im_end|>` closing them.
    pub answer_mask: Vec<bool>,
    /// Whether the sequence was cut at `max_len` (from the right).
    pub truncated: bool,
}

/// Tokenizer plus chat template of a model (HuggingFace directory or GGUF file).
#[derive(Debug, Clone)]
pub struct ChatTokenizer {
    /// The HF tokenizer.
    pub tokenizer: Tokenizer,
    env: minijinja::Environment<'static>,
    eos_token: String,
    /// Padding id (`pad_token`, else `<|endoftext|>`, else 0).
    pub pad_id: u32,
    /// End-of-turn id (`eos_token`).
    pub eos_id: Option<u32>,
}

const TEMPLATE_NAME: &str = "chat_template";

/// Compiles the template once, with transformers' Jinja settings and Python string methods.
fn template_env(template: String) -> Result<minijinja::Environment<'static>> {
    let mut env = minijinja::Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                msg,
            ))
        },
    );
    env.add_template_owned(TEMPLATE_NAME, template)
        .map_err(|e| EngineError::Template(e.to_string()))?;
    Ok(env)
}

#[derive(Deserialize, Default)]
struct TokenizerConfig {
    chat_template: Option<serde_json::Value>,
    eos_token: Option<serde_json::Value>,
    pad_token: Option<serde_json::Value>,
}

fn token_text(v: &Option<serde_json::Value>) -> Option<String> {
    match v {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Object(o)) => {
            o.get("content").and_then(|c| c.as_str()).map(String::from)
        }
        _ => None,
    }
}

impl ChatTokenizer {
    /// Loads the tokenizer of a model: a HuggingFace directory's tokenizer.json,
    /// tokenizer_config.json and chat_template.jinja (when present), or a GGUF file's
    /// `tokenizer.*` metadata (see [`crate::gguf::tokenizer`]).
    pub fn load(path: &Path) -> Result<Self> {
        if path.is_file() {
            let file = crate::gguf::GgufFile::read_metadata(path)?;
            return crate::gguf::tokenizer::chat_tokenizer(&file);
        }
        let dir = path;
        let tok_path = dir.join("tokenizer.json");
        let tokenizer =
            Tokenizer::from_file(&tok_path).map_err(|e| format_err(&tok_path, e.to_string()))?;
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg: TokenizerConfig = if cfg_path.exists() {
            read_json(&cfg_path)?
        } else {
            TokenizerConfig::default()
        };
        let jinja = dir.join("chat_template.jinja");
        let template = match &cfg.chat_template {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            _ if jinja.exists() => {
                Some(std::fs::read_to_string(&jinja).map_err(crate::error::io_err(&jinja))?)
            }
            _ => None,
        };
        Self::from_parts(
            tokenizer,
            template,
            token_text(&cfg.eos_token),
            token_text(&cfg.pad_token),
        )
    }

    /// A chat tokenizer from its parts: the chat template (ChatML when `None`), the end-of-turn
    /// token (`<|im_end|>` when `None`) and the padding token (`<|endoftext|>` when `None`;
    /// id 0 when the vocabulary has neither).
    pub fn from_parts(
        tokenizer: Tokenizer,
        template: Option<String>,
        eos_token: Option<String>,
        pad_token: Option<String>,
    ) -> Result<Self> {
        let template = template.unwrap_or_else(|| CHATML_TEMPLATE.to_string());
        let eos_token = eos_token.unwrap_or_else(|| "<|im_end|>".into());
        let pad_token = pad_token.unwrap_or_else(|| "<|endoftext|>".into());
        let pad_id = tokenizer.token_to_id(&pad_token).unwrap_or(0);
        let eos_id = tokenizer.token_to_id(&eos_token);
        Ok(Self {
            tokenizer,
            env: template_env(template)?,
            eos_token,
            pad_id,
            eos_id,
        })
    }

    /// Renders the chat template to text (Jinja with trim_blocks/lstrip_blocks, as transformers).
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let tmpl = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| EngineError::Template(e.to_string()))?;
        tmpl.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            eos_token => self.eos_token.clone(),
            bos_token => "",
        })
        .map_err(|e| EngineError::Template(e.to_string()))
    }

    fn encode_text(&self, text: &str) -> Result<tokenizers::Encoding> {
        self.tokenizer
            .encode(text, false)
            .map_err(|e| EngineError::Invalid(format!("tokenizer: {e}")))
    }

    /// Token ids of the conversation followed by the assistant header (for generation).
    pub fn encode_prompt(&self, messages: &[Message]) -> Result<Vec<u32>> {
        let text = self.render(messages, true)?;
        Ok(self.encode_text(&text)?.get_ids().to_vec())
    }

    /// Tokenizes a full conversation with its answer mask, cut to `max_len` tokens when given.
    pub fn encode_chat(&self, messages: &[Message], max_len: Option<usize>) -> Result<EncodedChat> {
        self.encode_chat_trained(messages, &vec![true; messages.len()], max_len)
    }

    /// Like [`ChatTokenizer::encode_chat`], with the answer mask covering only the assistant
    /// messages whose `trained[i]` is true (OpenAI's per-message `weight`: 0 = not trained on).
    pub fn encode_chat_trained(
        &self,
        messages: &[Message],
        trained: &[bool],
        max_len: Option<usize>,
    ) -> Result<EncodedChat> {
        let text = self.render(messages, false)?;
        let mut spans = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            if m.role != "assistant" || !trained.get(i).copied().unwrap_or(true) {
                continue;
            }
            let prefix = self.render(&messages[..i], true)?;
            let start = prefix.len();
            let rest = text.get(start..).filter(|_| text.starts_with(&prefix));
            let Some(rest) = rest.filter(|r| r.starts_with(&m.content)) else {
                return Err(EngineError::Template(format!(
                    "message {i}: the template does not render the assistant content right after the generation prompt"
                )));
            };
            let mut end = start + m.content.len();
            if rest[m.content.len()..].starts_with(&self.eos_token) {
                end += self.eos_token.len();
            }
            spans.push((start, end));
        }
        let enc = self.encode_text(&text)?;
        let mut ids = enc.get_ids().to_vec();
        let mut answer_mask: Vec<bool> = enc
            .get_offsets()
            .iter()
            .map(|&(s, e)| spans.iter().any(|&(a, b)| s < b && e > a))
            .collect();
        let truncated = max_len.is_some_and(|m| ids.len() > m);
        if let Some(m) = max_len {
            ids.truncate(m);
            answer_mask.truncate(m);
        }
        Ok(EncodedChat {
            ids,
            answer_mask,
            truncated,
        })
    }
}
