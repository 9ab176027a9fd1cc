//! PEFT-format adapters: our save round-trips, and PEFT reads what we write.

mod common;

use common::{assert_close, engine, fixtures, goldens};
use serde::Deserialize;

#[derive(Deserialize)]
struct Stage2 {
    logprobs: Vec<Vec<f32>>,
}

#[test]
fn saved_adapter_reloads_to_identical_logprobs() {
    let mut e = engine("tiny_untied");
    let tmp = tempfile::tempdir().expect("tempdir");
    e.save_adapter("a1", tmp.path(), "tiny_untied")
        .expect("saves");
    e.load_adapter("again", tmp.path()).expect("reloads");
    let ids = goldens().template[2].ids.clone();
    let a = e
        .token_logprobs(std::slice::from_ref(&ids), &[Some("a1")])
        .expect("a1");
    let b = e.token_logprobs(&[ids], &[Some("again")]).expect("again");
    assert_eq!(a, b);
}

#[test]
fn adapter_we_wrote_gives_peft_logits() {
    let dir = fixtures().join("rust_saved_adapter");
    let text = std::fs::read_to_string(fixtures().join("goldens_stage2.json"))
        .expect("stage 2 goldens committed");
    let stage2: Stage2 = serde_json::from_str(&text).expect("parses");
    let mut e = engine("tiny_untied");
    e.load_adapter("rust", &dir).expect("loads");
    for (i, case) in goldens().template.iter().enumerate() {
        let lp = e
            .token_logprobs(std::slice::from_ref(&case.ids), &[Some("rust")])
            .expect("scores");
        assert_close(&lp[0], &stage2.logprobs[i], 1e-4, &format!("example {i}"));
    }
    // Saving what we loaded reproduces the committed file byte for byte.
    let tmp = tempfile::tempdir().expect("tempdir");
    e.save_adapter("rust", tmp.path(), "tiny_untied")
        .expect("saves");
    let ours = std::fs::read(tmp.path().join("adapter_model.safetensors")).expect("read");
    let committed = std::fs::read(dir.join("adapter_model.safetensors")).expect("read");
    assert_eq!(ours, committed);
}
