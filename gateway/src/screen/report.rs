//! Screening results: the report of a good file and the failure of a bad one.

use serde::Serialize;

/// Why a file was rejected; a small closed set, usable as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailReason {
    NotJsonObject,
    MessagesMissing,
    MessageMissingKey,
    UnrecognizedKey,
    UnrecognizedRole,
    EmptyContent,
    NoAssistantMessage,
    InvalidWeight,
    InvalidToken,
    TooFewExamples,
    LineTooLong,
    Tokenize,
    Io,
}

impl FailReason {
    /// The metric label (`screening_rejections_total{reason=…}`).
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::NotJsonObject => "not_json_object",
            FailReason::MessagesMissing => "messages_missing",
            FailReason::MessageMissingKey => "message_missing_key",
            FailReason::UnrecognizedKey => "unrecognized_key",
            FailReason::UnrecognizedRole => "unrecognized_role",
            FailReason::EmptyContent => "empty_content",
            FailReason::NoAssistantMessage => "no_assistant_message",
            FailReason::InvalidWeight => "invalid_weight",
            FailReason::InvalidToken => "invalid_token",
            FailReason::TooFewExamples => "too_few_examples",
            FailReason::LineTooLong => "line_too_long",
            FailReason::Tokenize => "tokenize",
            FailReason::Io => "io",
        }
    }
}

/// A rejected file: `code` and `message` go into the job's `error` (param `training_file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScreenFailure {
    /// `invalid_training_file`, `invalid_n_examples` or `file_read_error`.
    pub code: &'static str,
    pub message: String,
    /// 1-based line of the offending example (None for whole-file problems).
    pub line: Option<u64>,
    pub reason: FailReason,
}

impl ScreenFailure {
    pub(crate) fn at(reason: FailReason, line: u64, example: u64, detail: String) -> Self {
        ScreenFailure {
            code: "invalid_training_file",
            message: format!("Invalid file format. Example {example} {detail} (line {line})."),
            line: Some(line),
            reason,
        }
    }

    pub(crate) fn too_few(found: usize, min: usize) -> Self {
        ScreenFailure {
            code: "invalid_n_examples",
            message: format!(
                "Training file has {found} example(s), but must have at least {min} examples"
            ),
            line: None,
            reason: FailReason::TooFewExamples,
        }
    }

    pub(crate) fn io(line: u64, e: &std::io::Error) -> Self {
        ScreenFailure {
            code: "file_read_error",
            message: format!(
                "The training file could not be read near line {}: {e}",
                line + 1
            ),
            line: Some(line + 1),
            reason: FailReason::Io,
        }
    }
}

/// Where token counts come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// The base model's tokenizer.json, ChatML rendering.
    Tokenizer,
    /// No tokenizer configured: ~4 bytes per token plus 4 per message.
    Estimate,
}

/// Statistics of a file that passed screening (recorded on the job).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScreenReport {
    pub examples: u64,
    pub bytes: u64,
    pub tokens_total: u64,
    pub tokens_p5: u32,
    pub tokens_p50: u32,
    pub tokens_p95: u32,
    pub tokens_max: u32,
    /// Examples longer than `max_length` tokens (they would be truncated in training).
    pub too_long: u64,
    pub max_length: usize,
    pub token_source: TokenSource,
}

impl ScreenReport {
    pub(crate) fn from_counts(
        mut counts: Vec<u32>,
        bytes: u64,
        too_long: u64,
        max_length: usize,
        token_source: TokenSource,
    ) -> Self {
        counts.sort_unstable();
        ScreenReport {
            examples: counts.len() as u64,
            bytes,
            tokens_total: counts.iter().map(|&c| u64::from(c)).sum(),
            tokens_p5: percentile(&counts, 5),
            tokens_p50: percentile(&counts, 50),
            tokens_p95: percentile(&counts, 95),
            tokens_max: counts.last().copied().unwrap_or(0),
            too_long,
            max_length,
            token_source,
        }
    }
}

/// Nearest-rank percentile of sorted values (0 for none).
pub(crate) fn percentile(sorted: &[u32], p: u32) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (u64::from(p) * sorted.len() as u64).div_ceil(100).max(1) as usize;
    sorted[rank.min(sorted.len()) - 1]
}
