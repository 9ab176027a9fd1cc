//! A model's chat template (Jinja, from its tokenizer_config.json or GGUF metadata) rendered
//! over any conversation: text or an error, never a panic or a hang. Input: the template, a
//! NUL byte, then the messages as JSON (an array of {role, content}).
//!
//! Shared by the fuzz target (`fuzz/fuzz_targets/`) and the seed replay that `cargo test`
//! runs (`gateway/tests/fuzz_seeds.rs`), so the target cannot rot.
use tokenizers::models::wordlevel::WordLevel;
use tokenizers::Tokenizer;
use trainer::{ChatTokenizer, Message};

fn tokenizer() -> Tokenizer {
    let vocab = [
        ("<|im_start|>", 0),
        ("<|im_end|>", 1),
        ("<|endoftext|>", 2),
        ("[UNK]", 3),
    ]
    .into_iter()
    .map(|(t, i)| (t.to_string(), i))
    .collect();
    let model = WordLevel::builder()
        .vocab(vocab)
        .unk_token("[UNK]".into())
        .build()
        .expect("word-level model");
    Tokenizer::new(model)
}

/// Panics when the input shows a bug; anything else is fine.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (template, messages) = text.split_once('\0').unwrap_or((text, "[]"));
    let messages: Vec<Message> = serde_json::from_str(messages).unwrap_or_else(|_| {
        vec![Message {
            role: "user".into(),
            content: messages.into(),
        }]
    });
    let Ok(chat) = ChatTokenizer::from_parts(tokenizer(), Some(template.into()), None, None) else {
        return;
    };
    let _ = chat.render(&messages, true);
    let _ = chat.encode_chat(&messages, Some(64));
}
