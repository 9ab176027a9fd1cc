//! Streaming screening of chat-format fine-tuning files (one JSON object per line).
//!
//! [`screen`] reads any [`BufRead`] line by line — never the whole file — and either returns a
//! [`ScreenReport`] (examples, token statistics, too-long count) or the first
//! [`ScreenFailure`], worded like OpenAI's own file-validation errors and naming the 1-based
//! line. [`quick_check`] is the cheap upload-time test that a fine-tune upload is JSONL at all.
//! Pure logic: the caller opens the file and loads the tokenizer ([`load_tokenizer`]).

mod example;
mod line;
mod line_reader;
mod report;
mod text;
mod tokens;
mod value;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_tokens;

pub use report::{FailReason, ScreenFailure, ScreenReport, TokenSource};
pub use tokens::{load_tokenizer, TokenizerLoadError};

use example::{check_example, Checked};
use line_reader::{LineReader, NextLine};
use std::io::BufRead;
use tokenizers::Tokenizer;
use tokens::SpecialTokens;

/// The chat-template markers rejected inside content whatever the tokenizer.
pub const DEFAULT_SPECIAL_TOKENS: [&str; 3] = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"];

/// What to screen against.
#[derive(Clone, Copy)]
pub struct ScreenOptions<'a> {
    /// Fewer examples than this fails the file (OpenAI: 10).
    pub min_examples: usize,
    /// The base model's tokenizer, when its model directory is configured.
    pub tokenizer: Option<&'a Tokenizer>,
    /// The plan's max sequence length in tokens; examples longer are counted as too long.
    pub max_length: usize,
    /// A longer line fails the file (bounds memory on files without newlines).
    pub max_line_bytes: usize,
}

impl Default for ScreenOptions<'_> {
    fn default() -> Self {
        ScreenOptions {
            min_examples: 10,
            tokenizer: None,
            max_length: 2048,
            max_line_bytes: 64 << 20,
        }
    }
}

/// Screens a chat-format JSONL stream. Blank lines are skipped; example N is the N-th
/// non-blank line and messages name both.
pub fn screen(
    reader: impl BufRead,
    opts: &ScreenOptions<'_>,
) -> Result<ScreenReport, ScreenFailure> {
    let special = SpecialTokens::new(opts.tokenizer);
    let mut lines = LineReader::new(reader, opts.max_line_bytes);
    let mut counts: Vec<u32> = Vec::new();
    let mut bytes: u64 = 0;
    let mut too_long: u64 = 0;
    loop {
        let (line_no, line) = match lines.next_line() {
            Ok(NextLine::Line(n, l)) => (n, l),
            Ok(NextLine::Eof) => break,
            Ok(NextLine::TooLong(n)) => {
                return Err(ScreenFailure::at(
                    FailReason::LineTooLong,
                    n,
                    counts.len() as u64 + 1,
                    format!("line is longer than {} bytes", opts.max_line_bytes),
                ))
            }
            Err(e) => return Err(ScreenFailure::io(lines.line_no(), &e)),
        };
        bytes += line.len() as u64;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let example_no = counts.len() as u64 + 1;
        let tokens = match check_example(line, &special, opts.tokenizer) {
            Ok(Checked { tokens }) => tokens,
            Err((reason, detail)) => {
                return Err(ScreenFailure::at(reason, line_no, example_no, detail))
            }
        };
        if tokens as usize > opts.max_length {
            too_long += 1;
        }
        counts.push(tokens);
    }
    if counts.len() < opts.min_examples {
        return Err(ScreenFailure::too_few(counts.len(), opts.min_examples));
    }
    let source = if opts.tokenizer.is_some() {
        TokenSource::Tokenizer
    } else {
        TokenSource::Estimate
    };
    Ok(ScreenReport::from_counts(
        counts,
        bytes,
        too_long,
        opts.max_length,
        source,
    ))
}

/// Upload-time check that a fine-tune file is JSONL at all: the first non-blank line (or, if
/// `first_bytes` ends mid-line, its beginning) must start a JSON object, and a complete first
/// line must parse as one. Only the first line is looked at; [`screen`] does the rest later.
pub fn quick_check(first_bytes: &[u8]) -> Result<(), String> {
    let text = first_bytes
        .strip_prefix(b"\xef\xbb\xbf".as_slice())
        .unwrap_or(first_bytes);
    let start = text.iter().position(|b| !b.is_ascii_whitespace());
    let Some(start) = start else {
        return Err(
            "Invalid file format. The file is empty; expected JSONL (one JSON object per line)."
                .into(),
        );
    };
    let rest = &text[start..];
    let line_no = 1 + text[..start].iter().filter(|b| **b == b'\n').count();
    if rest[0] != b'{' {
        return Err(format!(
            "Invalid file format. Line {line_no} is not a JSON object; expected JSONL (one JSON object per line)."
        ));
    }
    if let Some(end) = memchr::memchr(b'\n', rest) {
        let first = &rest[..end];
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(first) {
            return Err(format!(
                "Invalid file format. Line {line_no} is not valid JSON: {e}; expected JSONL (one JSON object per line)."
            ));
        }
    }
    Ok(())
}
