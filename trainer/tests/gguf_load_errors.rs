//! Bad or unsupported GGUF files give errors naming the file and the key or tensor at fault,
//! never panics: each case patches a copy of tiny_llama.gguf.

mod common;

use std::path::Path;

use common::{fixtures, TestBackend};
use trainer::{ChatTokenizer, Engine};

fn original() -> Vec<u8> {
    std::fs::read(fixtures().join("tiny_llama.gguf")).expect("tiny_llama.gguf is committed")
}

fn load_err(bytes: &[u8]) -> String {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = tmp.path().join("model.gguf");
    std::fs::write(&p, bytes).expect("write");
    let err = Engine::<TestBackend>::load(&p, Default::default())
        .map(|_| ())
        .expect_err("refused")
        .to_string();
    assert!(err.contains("model.gguf"), "names the file: {err}");
    err
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{:?} not in the file", String::from_utf8_lossy(needle)))
}

/// Replaces the string value of metadata `key` (same length).
fn patch_string_value(bytes: &mut [u8], key: &str, new: &str) {
    // key bytes, u32 type (8 = string), u64 length, value.
    let at = find(bytes, key.as_bytes()) + key.len() + 4 + 8;
    bytes[at..at + new.len()].copy_from_slice(new.as_bytes());
}

#[test]
fn a_file_that_is_not_gguf_is_refused() {
    let err = load_err(b"PK\x03\x04 not a model at all");
    assert!(err.contains("not a GGUF file"), "{err}");
}

#[test]
fn version_1_and_truncated_files_are_refused() {
    let mut b = original();
    b[4..8].copy_from_slice(&1u32.to_le_bytes());
    let err = load_err(&b);
    assert!(err.contains("GGUF version 1 is not supported"), "{err}");
    let b = original();
    let err = load_err(&b[..200]);
    assert!(err.contains("truncated"), "{err}");
    let err = load_err(&b[..b.len() - 100]);
    assert!(err.contains("past the end of the file"), "{err}");
}

/// A count the file cannot hold (a corrupt header) is an error naming it, read before
/// anything is allocated by it: fuzzing found a 3 GiB allocation from such a header.
#[test]
fn counts_larger_than_the_file_are_refused_before_allocating() {
    let b = original();
    // Magic, version, then the tensor count and the metadata count (u64 each).
    for (at, what) in [(8, "the tensor count"), (16, "the metadata count")] {
        let mut bad = b.clone();
        bad[at..at + 8].copy_from_slice(&(1u64 << 27).to_le_bytes());
        let err = load_err(&bad);
        assert!(
            err.contains(what) && err.contains("bytes are left"),
            "{err}"
        );
    }
    // The first metadata key's length.
    let mut bad = b.clone();
    bad[24..32].copy_from_slice(&(1u64 << 27).to_le_bytes());
    let err = load_err(&bad);
    assert!(
        err.contains("a metadata key") && err.contains("left"),
        "{err}"
    );
}

#[test]
fn an_unsupported_tensor_type_is_refused_naming_type_and_tensor() {
    let mut b = original();
    let name = b"blk.1.ffn_up.weight";
    // name, u32 dimension count, u64 per dimension, u32 ggml type.
    let at = find(&b, name) + name.len();
    let dims = u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes")) as usize;
    let ty = at + 4 + 8 * dims;
    b[ty..ty + 4].copy_from_slice(&12u32.to_le_bytes());
    let err = load_err(&b);
    assert!(
        err.contains("blk.1.ffn_up.weight") && err.contains("Q4_K"),
        "{err}"
    );
}

#[test]
fn another_architecture_or_tokenizer_model_is_refused_by_key() {
    let mut b = original();
    patch_string_value(&mut b, "general.architecture", "gemma");
    let err = load_err(&b);
    assert!(
        err.contains("`general.architecture` `gemma` is not supported"),
        "{err}"
    );
    let mut b = original();
    patch_string_value(&mut b, "tokenizer.ggml.model", "bert");
    let err = load_err(&b);
    assert!(
        err.contains("`tokenizer.ggml.model` `bert` is not supported"),
        "{err}"
    );
}

#[test]
fn a_tensor_outside_the_llama_forward_is_refused_by_name() {
    let mut b = original();
    let at = find(&b, b"output_norm.weight");
    b[at..at + 18].copy_from_slice(b"rope_freqs.weight_");
    let err = load_err(&b);
    assert!(
        err.contains("rope_freqs.weight_") && err.contains("not part of the llama forward"),
        "{err}"
    );
}

#[test]
fn the_tokenizer_alone_reads_only_the_metadata() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = tmp.path().join("m.gguf");
    let b = original();
    // Cut inside the tensor data: the tokenizer does not need it, the weights do.
    std::fs::write(&p, &b[..b.len() - 100]).expect("write");
    let tok = ChatTokenizer::load(&p).expect("tokenizer loads from the metadata");
    assert_eq!(tok.eos_id, tok.tokenizer.token_to_id("<|im_end|>"));
    assert!(Engine::<TestBackend>::load(Path::new(&p), Default::default()).is_err());
}
