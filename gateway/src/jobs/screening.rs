//! The [`Screener`] seam backed by `crate::screen`: streams the committed training (and
//! validation) file through the chat-format checks on the blocking pool, with the base
//! model's tokenizer when a `[[models]]` entry serves the job's model (a HuggingFace
//! directory's tokenizer.json or a GGUF file's tokenizer). An entry whose model is not in
//! place fails the job with `model_not_available` and the entry's hint.

use super::seams::*;
use crate::config::{ModelRegistry, ScreeningConfig};
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

pub struct StreamingScreener {
    config: ScreeningConfig,
    models: ModelRegistry,
}

impl StreamingScreener {
    pub fn new(config: ScreeningConfig, models: ModelRegistry) -> Self {
        StreamingScreener { config, models }
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

fn run(config: &ScreeningConfig, models: &ModelRegistry, input: &ScreenInput) -> StepResult<Value> {
    let model = &input.job.model;
    let tokenizer = match models.model_for(model) {
        Some(entry) => {
            if let Some(message) = entry.missing_model(model) {
                return Err(StepFailure::new("model_not_available", message).param("model"));
            }
            Some(screen::load_tokenizer(&entry.path).map_err(|e| {
                StepFailure::new(
                    "tokenizer_unavailable",
                    format!("The tokenizer for model {model} could not be loaded: {e}"),
                )
                .param("model")
            })?)
        }
        None => None,
    };
    let opts = ScreenOptions {
        min_examples: config.min_examples,
        tokenizer: tokenizer.as_ref(),
        max_length: input.max_length,
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
    let mut stats = json!({"training_file": training, "validation_file": validation});
    if let Some(w) = too_long_warning(&stats, input.max_length) {
        stats["warning"] = Value::String(w);
    }
    Ok(stats)
}

/// The warning event for examples longer than the plan's max length (they get truncated).
fn too_long_warning(stats: &Value, max_length: usize) -> Option<String> {
    let count = |file: &str| {
        stats
            .pointer(&format!("/{file}/too_long"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let parts: Vec<String> = ["training_file", "validation_file"]
        .into_iter()
        .filter(|k| count(k) > 0)
        .map(|k| format!("{} in the {k}", count(k)))
        .collect();
    if parts.is_empty() {
        return None;
    }
    Some(format!(
        "Examples longer than the plan's max length of {max_length} tokens \
         (training.max_length_tokens) will be truncated: {}.",
        parts.join(" and ")
    ))
}

impl Screener for StreamingScreener {
    fn screen(&self, input: ScreenInput) -> BoxFuture<'static, StepResult<Value>> {
        let (config, models) = (self.config.clone(), self.models.clone());
        async move {
            tokio::task::spawn_blocking(move || run(&config, &models, &input))
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
        ScreeningConfig { min_examples: 2 }
    }

    fn job() -> crate::store::JobRecord {
        use crate::store::{JobRecord, JobStatus, JobStep};
        JobRecord {
            revision: 0,
            id: "ftjob-s".into(),
            tenant: "acme".into(),
            created_at: 1,
            model: "m".into(),
            training_file: "file-t".into(),
            validation_file: None,
            hyperparameters: json!({}),
            method: json!({"type": "supervised"}),
            suffix: None,
            seed: 1,
            metadata: None,
            status: JobStatus::ValidatingFiles,
            step: JobStep::Screen,
            error: None,
            fine_tuned_model: None,
            finished_at: None,
            trained_tokens: None,
            result_files: vec![],
            estimated_finish: None,
            pipeline: crate::store::Pipeline::default(),
        }
    }

    /// One short example (~10 estimated tokens) and one of ~109 (400 bytes of content).
    fn mixed_lengths(dir: &Path) -> PathBuf {
        let ex = |content: &str| {
            format!(
                "{{\"messages\":[{{\"role\":\"user\",\"content\":\"{content}\"}},{{\"role\":\"assistant\",\"content\":\"y\"}}]}}\n"
            )
        };
        let p = dir.join("train.jsonl");
        std::fs::write(&p, ex("hi") + &ex(&"a".repeat(400))).unwrap();
        p
    }

    #[tokio::test]
    async fn too_long_is_counted_against_the_plans_max_length() {
        let dir = tempfile::tempdir().unwrap();
        let training_path = mixed_lengths(dir.path());
        let s = StreamingScreener::new(cfg(), ModelRegistry::default());
        let input = |max_length| ScreenInput {
            job: job(),
            training_path: training_path.clone(),
            validation_path: None,
            max_length,
        };
        let short = s.screen(input(50)).await.unwrap();
        assert_eq!(short["training_file"]["max_length"], 50);
        assert_eq!(short["training_file"]["too_long"], 1);
        let w = short["warning"].as_str().unwrap();
        assert!(
            w.contains("max length of 50 tokens")
                && w.ends_with("truncated: 1 in the training_file."),
            "{w}"
        );
        // The same file under a plan allowing 2048 tokens: nothing is too long, no warning.
        let long = s.screen(input(2048)).await.unwrap();
        assert_eq!(long["training_file"]["max_length"], 2048);
        assert_eq!(long["training_file"]["too_long"], 0);
        assert!(long.get("warning").is_none(), "{long}");
    }

    #[tokio::test]
    async fn quick_check_refuses_non_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "a,b,c\n1,2,3\n").unwrap();
        let s = StreamingScreener::new(cfg(), ModelRegistry::default());
        let e = s.quick_check(p.clone()).await.unwrap_err();
        assert_eq!(e.code, "invalid_file_format");
        assert_eq!(e.param.as_deref(), Some("file"));
        std::fs::write(&p, "{\"messages\": []}\n").unwrap();
        assert!(s.quick_check(p).await.is_ok());
    }
}
