//! A GGUF file written like llama.cpp's converter (tiny_llama.gguf: q/k rows permuted, every
//! supported storage type — F32, F16, BF16, Q8_0, Q4_0, Q4_1 — and the tokenizer in the
//! metadata) equals transformers' GGUF loading (goldens_gguf.json from make_fixtures.py
//! `--gguf`): token ids, chat-template ids and masks, per-token log-probs within 1e-4 with and
//! without PEFT adapters, greedy generations token for token.

mod common;

use common::{assert_close, fixtures, goldens_in, TestBackend};
use serde::Deserialize;
use trainer::{ChatTokenizer, Engine, GenerateOptions, Sampling};

const TOL: f32 = 1e-4;

#[derive(Deserialize)]
struct Tokens {
    tokens: Vec<TokenCase>,
}

#[derive(Deserialize)]
struct TokenCase {
    text: String,
    ids: Vec<u32>,
}

fn engine() -> Engine<TestBackend> {
    let mut e =
        Engine::<TestBackend>::load(&fixtures().join("tiny_llama.gguf"), Default::default())
            .expect("tiny_llama.gguf loads");
    for a in ["a1", "a2"] {
        e.load_adapter(a, &fixtures().join(format!("tiny_llama_{a}")))
            .expect("adapter loads");
    }
    e
}

#[test]
fn gguf_tokenizer_and_template_equal_transformers() {
    let g = goldens_in("goldens_gguf.json");
    let tok = ChatTokenizer::load(&fixtures().join("tiny_llama.gguf")).expect("tokenizer loads");
    let text = std::fs::read_to_string(fixtures().join("goldens_gguf.json")).expect("read");
    let tokens: Tokens = serde_json::from_str(&text).expect("parses");
    for case in tokens.tokens {
        let enc = tok
            .tokenizer
            .encode(case.text.as_str(), false)
            .expect("encodes");
        assert_eq!(enc.get_ids(), case.ids, "{:?}", case.text);
    }
    for (i, case) in g.template.iter().enumerate() {
        let enc = tok.encode_chat(&case.messages, None).expect("encodes");
        assert_eq!(enc.ids, case.ids, "example {i} ids");
        let mask: Vec<u8> = enc.answer_mask.iter().map(|&m| u8::from(m)).collect();
        assert_eq!(mask, case.mask, "example {i} mask");
        let prompt = tok
            .encode_prompt(&case.messages[..case.messages.len() - 1])
            .expect("prompt");
        assert_eq!(prompt, case.prompt_ids, "example {i} generation prompt");
    }
}

#[test]
fn gguf_logprobs_match_transformers_base_and_adapted() {
    let g = goldens_in("goldens_gguf.json");
    let gold = &g.models["tiny_llama"];
    let e = engine();
    assert!(e.weights.config.tie_word_embeddings);
    for (i, case) in g.template.iter().enumerate() {
        for adapter in [None, Some("a1"), Some("a2")] {
            let lp = e
                .token_logprobs(std::slice::from_ref(&case.ids), &[adapter])
                .expect("scores");
            let want = match adapter {
                None => &gold.base[i],
                Some(a) => &gold.adapters[a][i],
            };
            assert_close(&lp[0], want, TOL, &format!("{adapter:?} example {i}"));
        }
    }
}

#[test]
fn gguf_greedy_matches_transformers_for_32_tokens() {
    let g = goldens_in("goldens_gguf.json");
    let e = engine();
    let opts = GenerateOptions {
        max_new_tokens: 32,
        sampling: Sampling::Greedy,
        stop_tokens: Vec::new(),
    };
    for (i, case) in g.models["tiny_llama"].greedy.iter().enumerate() {
        let out = e
            .generate(std::slice::from_ref(&case.prompt_ids), None, &opts)
            .expect("generates");
        assert_eq!(out[0], case.tokens, "prompt {i}");
    }
}

#[test]
fn a_version_2_file_loads_like_version_3() {
    // v2 and v3 share the layout (v3 only added big-endian files, which are refused by their
    // byte-swapped version number).
    let mut bytes = std::fs::read(fixtures().join("tiny_llama.gguf")).expect("read");
    assert_eq!(bytes[4..8], 3u32.to_le_bytes());
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = tmp.path().join("v2.gguf");
    std::fs::write(&p, bytes).expect("write");
    let v2 = Engine::<TestBackend>::load(&p, Default::default()).expect("v2 loads");
    let g = goldens_in("goldens_gguf.json");
    let lp = v2
        .token_logprobs(std::slice::from_ref(&g.template[0].ids), &[None])
        .expect("scores");
    assert_close(&lp[0], &g.models["tiny_llama"].base[0], TOL, "v2 base");
}
