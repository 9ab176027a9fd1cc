//! The tokenizer and chat template of a GGUF file, from its `tokenizer.*` metadata, built the
//! way transformers builds them when it loads a GGUF (`gguf_tokenizer_mapping.py`), so token
//! ids are identical:
//! - `tokenizer.ggml.model = gpt2`: byte-level BPE over `tokenizer.ggml.tokens` (a token not
//!   written in the byte alphabet is respelled into it) and `tokenizer.ggml.merges`, no
//!   continuing-subword prefix, GPT-2's byte-level pre-tokenizer without a prefix space (or,
//!   for the `tokenizer.ggml.pre` values transformers knows a split regex for, that regex
//!   followed by byte-level mapping);
//! - `tokenizer.ggml.token_type` 3 (control) → special added tokens, 4 (user-defined) →
//!   plain added tokens, both matched whole and unnormalized;
//! - end of turn and padding from `tokenizer.ggml.eos_token_id` / `padding_token_id`, the
//!   chat template from `tokenizer.chat_template`.
//!
//! Other tokenizer models (`llama` sentencepiece, …) and other pre-tokenizers are refused,
//! naming the key and value.
//!
//! One known difference from the tokenizer a model was trained with: for `smollm` transformers
//! (and so this engine) uses GPT-2's split, while SmolLM2's own `tokenizer.json` and llama.cpp
//! split digits first. Ids agree except where a run of whitespace precedes a digit
//! (`"  1"`: `Ġ Ġ 1` here, `ĠĠ 1` there); check_gguf.py pins the transformers behaviour.

use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::{GgufFile, Value};
use crate::chat::ChatTokenizer;
use crate::error::{format_err, Result};

/// `tokenizer.ggml.pre` values whose text split is GPT-2's own byte-level regex.
const GPT2_SPLIT: [&str; 4] = ["default", "gpt-2", "gpt2", "smollm"];

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// transformers' `GGUF_PRE_TOKENIZER_SPLITS` for the llama-3 and Qwen2 regexes.
fn split_regex(pre: &str) -> Option<&'static str> {
    match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "dbrx" | "smaug-bpe" => Some(LLAMA3_SPLIT),
        "qwen2" | "deepseek-r1-qwen" | "megrez" => Some(QWEN2_SPLIT),
        _ => None,
    }
}

/// GPT-2's byte → printable character table (`bytes_to_unicode`).
fn byte_alphabet() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        table[b as usize] = if printable {
            char::from(b)
        } else {
            n += 1;
            char::from_u32(255 + n).expect("valid code point")
        };
    }
    table
}

fn strings<'a>(file: &'a GgufFile, key: &str) -> Result<Vec<&'a str>> {
    let arr = file
        .get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| format_err(&file.path, format!("GGUF metadata `{key}` is missing")))?;
    arr.iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_str().ok_or_else(|| {
                format_err(
                    &file.path,
                    format!("GGUF metadata `{key}[{i}]` is not a string"),
                )
            })
        })
        .collect()
}

fn token_id(file: &GgufFile, key: &str, vocab: usize) -> Result<Option<u32>> {
    match file.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|&id| (id as usize) < vocab)
            .map(|id| Some(id as u32))
            .ok_or_else(|| {
                format_err(
                    &file.path,
                    format!("GGUF metadata `{key}` is {v:?}, not a token id below {vocab}"),
                )
            }),
    }
}

/// The HuggingFace tokenizer a GGUF file describes.
pub fn tokenizer(file: &GgufFile) -> Result<Tokenizer> {
    let path = &file.path;
    let model = file
        .get("tokenizer.ggml.model")
        .and_then(Value::as_str)
        .unwrap_or("");
    if model != "gpt2" {
        return Err(format_err(
            path,
            format!(
                "GGUF metadata `tokenizer.ggml.model` `{model}` is not supported \
                 (supported: gpt2, byte-level BPE)"
            ),
        ));
    }
    let pre = file
        .get("tokenizer.ggml.pre")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let split = split_regex(pre);
    if split.is_none() && !GPT2_SPLIT.contains(&pre) {
        return Err(format_err(
            path,
            format!("GGUF metadata `tokenizer.ggml.pre` `{pre}` is not supported"),
        ));
    }
    let tokens = strings(file, "tokenizer.ggml.tokens")?;
    let alphabet = byte_alphabet();
    let in_alphabet = |t: &str| t.chars().all(|c| alphabet.contains(&c));
    let mut vocab = Vocab::default();
    for (id, t) in tokens.iter().enumerate() {
        let spelled = if in_alphabet(t) {
            t.to_string()
        } else {
            t.bytes().map(|b| alphabet[b as usize]).collect()
        };
        vocab.insert(spelled, id as u32);
    }
    let merges = strings(file, "tokenizer.ggml.merges")?
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| {
                    format_err(
                        path,
                        format!("GGUF metadata `tokenizer.ggml.merges[{i}]` `{m}` is not a pair"),
                    )
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| format_err(path, format!("GGUF tokenizer: {e}")))?;
    let mut tok = Tokenizer::new(bpe);
    match split {
        None => {
            tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        }
        Some(regex) => {
            let split = Split::new(
                SplitPattern::Regex(regex.into()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| format_err(path, format!("GGUF tokenizer split regex: {e}")))?;
            tok.with_pre_tokenizer(Some(Sequence::new(vec![
                split.into(),
                ByteLevel::new(false, true, false).into(),
            ])));
        }
    }
    tok.with_decoder(Some(ByteLevel::default()));
    let types: Vec<i64> = match file.get("tokenizer.ggml.token_type") {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::I32(t) => Ok(i64::from(*t)),
                other => other.as_u64().map(|t| t as i64).ok_or_else(|| {
                    format_err(
                        path,
                        "GGUF metadata `tokenizer.ggml.token_type` holds a non-integer",
                    )
                }),
            })
            .collect::<Result<_>>()?,
        Some(_) => {
            return Err(format_err(
                path,
                "GGUF metadata `tokenizer.ggml.token_type` is not an array",
            ))
        }
    };
    // Control tokens not spelled in the byte alphabet are llama.cpp mislabels that transformers
    // skips (adding them would grow the vocabulary past the model's).
    let control: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(t, &ty)| ty == 3 && in_alphabet(t))
        .map(|(t, _)| AddedToken::from(t.to_string(), true).normalized(false))
        .collect();
    tok.add_special_tokens(&control);
    let user: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(t, &ty)| ty == 4 && tok.token_to_id(t).is_some())
        .map(|(t, _)| AddedToken::from(t.to_string(), false).normalized(false))
        .collect();
    tok.add_tokens(&user);
    Ok(tok)
}

/// The chat tokenizer of a GGUF file: [`tokenizer`] plus `tokenizer.chat_template` (ChatML
/// when absent), the end-of-turn token from `tokenizer.ggml.eos_token_id` and padding from
/// `tokenizer.ggml.padding_token_id`.
pub fn chat_tokenizer(file: &GgufFile) -> Result<ChatTokenizer> {
    let tok = tokenizer(file)?;
    let tokens = strings(file, "tokenizer.ggml.tokens")?;
    let text = |id: Option<u32>| id.map(|i| tokens[i as usize].to_string());
    let eos = text(token_id(file, "tokenizer.ggml.eos_token_id", tokens.len())?);
    let pad = text(token_id(
        file,
        "tokenizer.ggml.padding_token_id",
        tokens.len(),
    )?);
    let template = match file.get("tokenizer.chat_template") {
        None => None,
        Some(v) => Some(
            v.as_str()
                .ok_or_else(|| {
                    format_err(
                        &file.path,
                        "GGUF metadata `tokenizer.chat_template` is not a string",
                    )
                })?
                .to_string(),
        ),
    };
    ChatTokenizer::from_parts(tok, template, eos, pad)
}
