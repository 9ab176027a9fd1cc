//! SmolLM2-135M-Instruct loaded from its Q4_1 GGUF file equals transformers' GGUF loading
//! (fixtures/smollm2_gguf.json, written by trainer/reference/check_gguf.py): identical token
//! ids and chat-template ids/masks, answer NLLs within 1e-4 in f32, identical greedy tokens.
//!
//! The model is not committed: `scripts/fetch-model.sh` puts it in `models/` (scripts/test.sh
//! runs it, so CI has it). Without it these tests print a notice and pass.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use common::{fixtures, TestBackend};
use serde::Deserialize;
use trainer::{Architecture, Engine, GenerateOptions, Message, Sampling, ScoreOptions};

#[derive(Deserialize)]
struct Reference {
    tokens: Vec<TokenCase>,
    chats: Vec<ChatCase>,
    greedy: Vec<GreedyCase>,
}

#[derive(Deserialize)]
struct TokenCase {
    text: String,
    ids: Vec<u32>,
}

#[derive(Deserialize)]
struct ChatCase {
    messages: Vec<Message>,
    ids: Vec<u32>,
    mask: Vec<u8>,
    nll: f64,
    answer_tokens: usize,
}

#[derive(Deserialize)]
struct GreedyCase {
    prompt_ids: Vec<u32>,
    tokens: Vec<u32>,
    text: String,
}

/// `models/SmolLM2-135M-Instruct.Q4_1.gguf` in the repository root, or `$TUNEGUARD_SMOLLM2_GGUF`.
fn model_path() -> Option<PathBuf> {
    let p = std::env::var_os("TUNEGUARD_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("models")
                .join("SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    if p.is_file() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: {} is absent; run scripts/fetch-model.sh to fetch it",
            p.display()
        );
        None
    }
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(fixtures().join("smollm2_gguf.json"))
        .expect("smollm2_gguf.json is committed");
    serde_json::from_str(&text).expect("smollm2_gguf.json parses")
}

/// One engine for all tests of this binary (loading dequantizes ~135M weights).
fn engine() -> Option<&'static Engine<TestBackend>> {
    static ENGINE: OnceLock<Option<Engine<TestBackend>>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let path = model_path()?;
            let t = Instant::now();
            let e = Engine::<TestBackend>::load(&path, Default::default()).expect("GGUF loads");
            eprintln!("loaded {} in {:.2?}", path.display(), t.elapsed());
            Some(e)
        })
        .as_ref()
}

#[test]
fn config_comes_from_the_llama_metadata() {
    let Some(e) = engine() else { return };
    let c = &e.weights.config;
    assert_eq!(c.architecture, Architecture::Llama);
    assert_eq!(
        (c.num_layers, c.hidden_size, c.intermediate_size),
        (30, 576, 1536)
    );
    assert_eq!((c.num_heads, c.num_kv_heads, c.head_dim), (9, 3, 64));
    assert_eq!((c.vocab_size, c.rope_theta), (49152, 100000.0));
    assert!((c.rms_norm_eps - 1e-5).abs() < 1e-9);
    assert!(c.tie_word_embeddings && !c.qkv_bias && !c.o_bias && !c.mlp_bias);
    assert_eq!(c.eos_token_ids, [2]);
    assert_eq!((e.tokenizer.eos_id, e.tokenizer.pad_id), (Some(2), 2));
}

#[test]
fn token_ids_equal_transformers() {
    let Some(e) = engine() else { return };
    for case in reference().tokens {
        let enc = e
            .tokenizer
            .tokenizer
            .encode(case.text.as_str(), false)
            .expect("encodes");
        assert_eq!(enc.get_ids(), case.ids, "{:?}", case.text);
    }
}

#[test]
fn chat_template_ids_and_masks_equal_transformers() {
    let Some(e) = engine() else { return };
    for (i, case) in reference().chats.iter().enumerate() {
        let enc = e
            .tokenizer
            .encode_chat(&case.messages, None)
            .expect("encodes");
        assert_eq!(enc.ids, case.ids, "chat {i} ids");
        let mask: Vec<u8> = enc.answer_mask.iter().map(|&m| u8::from(m)).collect();
        assert_eq!(mask, case.mask, "chat {i} mask");
    }
}

#[test]
fn answer_nlls_equal_transformers_within_1e4() {
    let Some(e) = engine() else { return };
    let r = reference();
    let enc: Vec<_> = r
        .chats
        .iter()
        .map(|c| e.tokenizer.encode_chat(&c.messages, None).expect("encodes"))
        .collect();
    let scores = e
        .score(&enc, &[None], &ScoreOptions { max_batch_rows: 3 })
        .expect("scores");
    let mut worst = 0.0f64;
    for (i, (s, c)) in scores[0].iter().zip(&r.chats).enumerate() {
        assert_eq!(s.answer_tokens, c.answer_tokens, "chat {i}");
        let diff = (s.nll - c.nll).abs();
        eprintln!(
            "chat {i}: {} tokens, |NLL − transformers| {diff:.2e}",
            c.ids.len()
        );
        worst = worst.max(diff);
        assert!(
            diff < 1e-4,
            "chat {i}: nll {} vs transformers {}",
            s.nll,
            c.nll
        );
    }
    eprintln!("max |NLL − transformers| = {worst:.2e}");
}

#[test]
fn greedy_generation_equals_transformers() {
    let Some(e) = engine() else { return };
    let opts = GenerateOptions {
        max_new_tokens: 24,
        sampling: Sampling::Greedy,
        stop_tokens: Vec::new(),
    };
    for case in reference().greedy {
        let out = e
            .generate(std::slice::from_ref(&case.prompt_ids), None, &opts)
            .expect("generates");
        assert_eq!(out[0], case.tokens, "{:?}", case.text);
    }
}
