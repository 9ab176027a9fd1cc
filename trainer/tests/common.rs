//! Shared helpers for the golden tests: fixture paths and golden JSON.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Deserialize;
use trainer::{Engine, Message, Precision};

/// The backend the engine tests run on: burn-flex, or CUDA in a `--features cuda` build (run
/// `cargo test -p trainer --features cuda` on a machine with a GPU).
#[cfg(not(feature = "cuda"))]
pub type TestBackend = trainer::CpuBackend;
/// The backend the engine tests run on: CUDA in a `--features cuda` build.
#[cfg(feature = "cuda")]
pub type TestBackend = burn::backend::Cuda;

#[derive(Deserialize)]
pub struct Goldens {
    pub template: Vec<TemplateCase>,
    pub models: HashMap<String, ModelGold>,
}

#[derive(Deserialize)]
pub struct TemplateCase {
    pub messages: Vec<Message>,
    pub ids: Vec<u32>,
    pub mask: Vec<u8>,
    pub prompt_ids: Vec<u32>,
}

#[derive(Deserialize)]
pub struct ModelGold {
    pub base: Vec<Vec<f32>>,
    pub greedy: Vec<GreedyCase>,
    pub adapters: HashMap<String, Vec<Vec<f32>>>,
}

#[derive(Deserialize)]
pub struct GreedyCase {
    pub prompt_ids: Vec<u32>,
    pub tokens: Vec<u32>,
}

/// `trainer/tests/fixtures`, or `$TRAINER_FIXTURES` (for test binaries run on another machine).
pub fn fixtures() -> PathBuf {
    std::env::var_os("TRAINER_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests")
                .join("fixtures")
        })
}

pub fn goldens() -> Goldens {
    goldens_in("goldens.json")
}

/// A goldens file shaped like goldens.json (`goldens_llama.json`, …).
pub fn goldens_in(file: &str) -> Goldens {
    let text = std::fs::read_to_string(fixtures().join(file))
        .unwrap_or_else(|e| panic!("{file} is committed: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file} parses: {e}"))
}

/// Loads a fixture model with both of its fixture adapters resident as `a1`, `a2`.
pub fn engine(name: &str) -> Engine<TestBackend> {
    engine_in(name, Precision::F32)
}

/// [`engine`] with the base model computing in `precision`.
pub fn engine_in(name: &str, precision: Precision) -> Engine<TestBackend> {
    let mut e =
        Engine::<TestBackend>::load_with(&fixtures().join(name), Default::default(), precision)
            .expect("fixture model loads");
    for a in ["a1", "a2"] {
        e.load_adapter(a, &fixtures().join(format!("{name}_{a}")))
            .expect("fixture adapter loads");
    }
    e
}

pub fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol,
            "{what}: position {i}: got {g}, want {w}"
        );
    }
}
