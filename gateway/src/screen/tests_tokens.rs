//! Screening with a real (tiny, hand-written) tokenizer.json.
use super::*;

const TOKENIZER_JSON: &str = r#"{
  "version": "1.0", "truncation": null, "padding": null,
  "added_tokens": [
    {"id": 0, "content": "<|im_start|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 1, "content": "<|im_end|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 2, "content": "<|fim_suffix|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 7, "content": "</tool_call>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": false}
  ],
  "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
  "model": {"type": "WordLevel", "vocab": {"<|im_start|>": 0, "<|im_end|>": 1, "<|fim_suffix|>": 2, "<unk>": 3, "user": 4, "assistant": 5, "hi": 6, "</tool_call>": 7}, "unk_token": "<unk>"}
}"#;

fn model_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tokenizer.json"), TOKENIZER_JSON).unwrap();
    dir
}

fn line(user: &str, assistant: &str) -> String {
    format!(
        r#"{{"messages":[{{"role":"user","content":"{user}"}},{{"role":"assistant","content":"{assistant}"}}]}}"#
    )
}

#[test]
fn counts_chatml_tokens_with_the_tokenizer() {
    let dir = model_dir();
    let tok = load_tokenizer(dir.path()).unwrap();
    let mut text = String::new();
    for i in 0..10 {
        // user turn: im_start user hi…hi im_end; assistant: im_start assistant hi im_end.
        text.push_str(&line(&"hi ".repeat(i + 1), "hi"));
        text.push('\n');
    }
    let opts = ScreenOptions {
        tokenizer: Some(&tok),
        max_length: 12,
        ..ScreenOptions::default()
    };
    let r = screen(text.as_bytes(), &opts).unwrap();
    assert_eq!(r.token_source, TokenSource::Tokenizer);
    // Example i has (i + 1) + 7 tokens: 8..=17.
    assert_eq!(r.tokens_total, (8..=17).sum::<u64>());
    assert_eq!(r.tokens_p5, 8);
    assert_eq!(r.tokens_p50, 12);
    assert_eq!(r.tokens_p95, 17);
    assert_eq!(r.too_long, 5);
}

#[test]
fn rejects_the_tokenizers_own_added_tokens() {
    let dir = model_dir();
    let tok = load_tokenizer(dir.path()).unwrap();
    let mut text = String::new();
    for i in 0..10 {
        let a = if i == 6 { "see <|fim_suffix|>" } else { "ok" };
        text.push_str(&line("hi", a));
        text.push('\n');
    }
    let opts = ScreenOptions {
        tokenizer: Some(&tok),
        ..ScreenOptions::default()
    };
    let f = screen(text.as_bytes(), &opts).unwrap_err();
    assert_eq!(f.reason, FailReason::InvalidToken);
    assert_eq!(
        f.message,
        "Invalid file format. Example 7 message contains an invalid token: <|fim_suffix|> (line 7)."
    );
    // Without the tokenizer that token is not known to be special.
    assert!(screen(text.as_bytes(), &ScreenOptions::default()).is_ok());
}

#[test]
fn missing_tokenizer_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let e = load_tokenizer(dir.path()).unwrap_err();
    assert!(e.to_string().contains("tokenizer.json"), "{e}");
}

#[test]
fn added_tokens_with_a_slash_are_found_even_when_escaped() {
    let dir = model_dir();
    let tok = load_tokenizer(dir.path()).unwrap();
    let opts = ScreenOptions {
        tokenizer: Some(&tok),
        ..ScreenOptions::default()
    };
    for written in [r"</tool_call>", r"<\/tool_call>", r"x\n<\/tool_call>"] {
        let mut text = String::new();
        for i in 0..10 {
            text.push_str(&line("hi", if i == 2 { written } else { "ok" }));
            text.push('\n');
        }
        let f = screen(text.as_bytes(), &opts).unwrap_err();
        assert_eq!(f.reason, FailReason::InvalidToken, "{written}");
        assert!(
            f.message.contains("invalid token: </tool_call>"),
            "{}",
            f.message
        );
    }
}

/// A GGUF file's tokenizer (the trainer's, built from `tokenizer.*` metadata) counts tokens
/// exactly as the trainer tokenizes; a file that is not GGUF is an error naming it.
#[test]
fn a_gguf_files_tokenizer_counts_what_the_trainer_encodes() {
    let gguf = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../trainer/tests/fixtures/tiny_llama.gguf");
    let tok = load_tokenizer(&gguf).unwrap();
    let chat = "<|im_start|>user\nhi hi<|im_end|>\n<|im_start|>assistant\nhi<|im_end|>\n";
    let want = trainer::ChatTokenizer::load(&gguf)
        .unwrap()
        .tokenizer
        .encode(chat, false)
        .unwrap()
        .len() as u64;
    let text: String = (0..10).map(|_| line("hi hi", "hi") + "\n").collect();
    let opts = ScreenOptions {
        tokenizer: Some(&tok),
        ..ScreenOptions::default()
    };
    let r = screen(text.as_bytes(), &opts).unwrap();
    assert_eq!(r.token_source, TokenSource::Tokenizer);
    assert_eq!(r.tokens_total, 10 * want);

    let dir = tempfile::tempdir().unwrap();
    let not_gguf = dir.path().join("model.gguf");
    std::fs::write(&not_gguf, b"not a gguf file").unwrap();
    let e = load_tokenizer(&not_gguf).unwrap_err();
    assert!(e.to_string().contains("model.gguf"), "{e}");
}
