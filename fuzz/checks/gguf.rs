//! A GGUF file from anywhere: the reader, the llama config and the tokenizer built from its
//! metadata give a value or an error naming what is wrong, never a panic or an allocation
//! sized by a corrupt count.
//!
//! Shared by the fuzz target (`fuzz/fuzz_targets/`) and the seed replay that `cargo test`
//! runs (`gateway/tests/fuzz_seeds.rs`), so the target cannot rot.
use std::sync::OnceLock;
use trainer::gguf::{self, GgufFile};

static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

/// Panics when the input shows a bug; anything else is fine.
pub fn check(data: &[u8]) {
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"));
    let path = dir.path().join("model.gguf");
    std::fs::write(&path, data).expect("writing the input");
    if let Ok(file) = GgufFile::read_metadata(&path) {
        let _ = gguf::llama::config(&file);
        let _ = gguf::tokenizer::chat_tokenizer(&file);
    }
    let _ = GgufFile::read(&path);
}
