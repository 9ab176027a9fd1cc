//! The chat-JSONL screener and the upload-time quick check, on any bytes: they must return a
//! report or a failure naming a line, never panic, and a report counts only real lines.
//!
//! Shared by the fuzz target (`fuzz/fuzz_targets/`) and the seed replay that `cargo test`
//! runs (`gateway/tests/fuzz_seeds.rs`), so the target cannot rot.
use gateway::screen::{quick_check, screen, ScreenOptions};

/// Panics when the input shows a bug; anything else is fine.
pub fn check(data: &[u8]) {
    let _ = quick_check(data);
    let opts = ScreenOptions {
        min_examples: 1,
        tokenizer: None,
        max_length: 64,
        max_line_bytes: 1 << 16,
    };
    match screen(std::io::Cursor::new(data), &opts) {
        Ok(report) => {
            let lines = data.split(|b| *b == b'\n').count() as u64;
            assert!(
                report.examples <= lines,
                "{} examples from {lines} lines",
                report.examples
            );
        }
        Err(f) => assert!(!f.message.is_empty()),
    }
}
