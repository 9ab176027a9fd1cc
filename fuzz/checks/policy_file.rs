//! A policy file as an operator may write it: loading it (TOML through the `config` crate,
//! then key-by-key validation) gives a policy or an error naming the file, never a panic.
//!
//! Shared by the fuzz target (`fuzz/fuzz_targets/`) and the seed replay that `cargo test`
//! runs (`gateway/tests/fuzz_seeds.rs`), so the target cannot rot.
use std::sync::OnceLock;

static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

/// Panics when the input shows a bug; anything else is fine.
pub fn check(data: &[u8]) {
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"));
    let path = dir.path().join("fuzz.toml");
    std::fs::write(&path, data).expect("writing the input");
    if let Err(e) = policies::load_file(&path) {
        assert!(!e.to_string().is_empty());
    }
    // The set loader too: matching, precedence and the version hash over one file.
    let _ = policies::PolicySet::load_dir(dir.path());
}
