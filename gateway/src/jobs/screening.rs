//! The [`Screener`] seam backed by `crate::screen`: streams the committed training (and
//! validation) file through the chat-format checks on the blocking pool, with the base
//! model's tokenizer when `[screening.tokenizers]` names its directory.

use super::seams::*;
use crate::config::ScreeningConfig;
use crate::screen::{self, ScreenOptions};
use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::{json, Value};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// Bytes read for the upload-time format check.
const QUICK_CHECK_BYTES: u64 = 64 * 1024;
/// Read buffer for streaming screening.
const READ_BUFFER_BYTES: usize = 1 << 20;
/// Max example length used for the too-long count: paper Table 6 (the plan is resolved after
/// screening, so its own max length cannot be used here).
pub const SCREEN_MAX_LENGTH: usize = 2048;

pub struct StreamingScreener {
    config: ScreeningConfig,
}

impl StreamingScreener {
    pub fn new(config: ScreeningConfig) -> Self {
        StreamingScreener { config }
    }
}

fn screen_file(path: &Path, param: &str, opts: &ScreenOptions<'_>) -> StepResult<Value> {
    let file = std::fs::File::open(path).map_err(|e| {
        StepFailure::new(
            "file_read_error",
            format!("The {param} could not be opened: {e}"),
        )
        .param(param)
    })?;
    let reader = BufReader::with_capacity(READ_BUFFER_BYTES, file);
    match screen::screen(reader, opts) {
        Ok(report) => Ok(serde_json::to_value(&report).unwrap_or(Value::Null)),
        Err(f) => Err(StepFailure::new(f.code, f.message)
            .param(param)
            .reason(f.reason.as_str())),
    }
}

fn run(config: &ScreeningConfig, input: &ScreenInput) -> StepResult<Value> {
    let tokenizer = match screen::tokenizer_dir_for(&input.job.model, &config.tokenizers) {
        Some(dir) => Some(screen::load_tokenizer(dir).map_err(|e| {
            StepFailure::new(
                "tokenizer_unavailable",
                format!(
                    "The tokenizer for model {} could not be loaded: {e}",
                    input.job.model
                ),
            )
            .param("model")
        })?),
        None => None,
    };
    let opts = ScreenOptions {
        min_examples: config.min_examples,
        tokenizer: tokenizer.as_ref(),
        max_length: SCREEN_MAX_LENGTH,
        ..ScreenOptions::default()
    };
    let training = screen_file(&input.training_path, "training_file", &opts)?;
    let validation = match &input.validation_path {
        Some(p) => Some(screen_file(
            p,
            "validation_file",
            &ScreenOptions {
                min_examples: 1,
                ..opts
            },
        )?),
        None => None,
    };
    Ok(json!({"training_file": training, "validation_file": validation}))
}

impl Screener for StreamingScreener {
    fn screen(&self, input: ScreenInput) -> BoxFuture<'static, StepResult<Value>> {
        let config = self.config.clone();
        async move {
            tokio::task::spawn_blocking(move || run(&config, &input))
                .await
                .unwrap_or_else(|e| {
                    Err(StepFailure::new(
                        "internal_error",
                        format!("screening task failed: {e}"),
                    ))
                })
        }
        .boxed()
    }

    fn name(&self) -> &'static str {
        "screen"
    }

    fn quick_check(&self, path: PathBuf) -> BoxFuture<'static, StepResult<()>> {
        async move {
            tokio::task::spawn_blocking(move || {
                let mut head = Vec::new();
                std::fs::File::open(&path)
                    .and_then(|f| f.take(QUICK_CHECK_BYTES).read_to_end(&mut head))
                    .map_err(|e| {
                        StepFailure::new(
                            "file_read_error",
                            format!("The upload could not be read: {e}"),
                        )
                    })?;
                screen::quick_check(&head)
                    .map_err(|m| StepFailure::new("invalid_file_format", m).param("file"))
            })
            .await
            .unwrap_or_else(|e| {
                Err(StepFailure::new(
                    "internal_error",
                    format!("check task failed: {e}"),
                ))
            })
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ScreeningConfig {
        ScreeningConfig {
            min_examples: 2,
            tokenizers: vec![],
        }
    }

    #[tokio::test]
    async fn quick_check_refuses_non_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "a,b,c\n1,2,3\n").unwrap();
        let s = StreamingScreener::new(cfg());
        let e = s.quick_check(p.clone()).await.unwrap_err();
        assert_eq!(e.code, "invalid_file_format");
        assert_eq!(e.param.as_deref(), Some("file"));
        std::fs::write(&p, "{\"messages\": []}\n").unwrap();
        assert!(s.quick_check(p).await.is_ok());
    }
}
