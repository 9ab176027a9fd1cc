//! Llama-family models (`model_type = "llama"`) equal transformers (+ PEFT): per-token
//! log-probs within 1e-4, base and adapted, and greedy 32-token generations token for token.
//! tiny_llama is tied without biases (SmolLM2's shape); tiny_llama_bias is untied with
//! `attention_bias` (q, k, v, o) and `mlp_bias` (gate, up, down) on.

mod common;

use common::{assert_close, engine, fixtures, goldens_in, Goldens};
use trainer::{Architecture, GenerateOptions, ModelConfig, Sampling};

const TOL: f32 = 1e-4;
const MODELS: [&str; 2] = ["tiny_llama", "tiny_llama_bias"];

fn goldens() -> Goldens {
    goldens_in("goldens_llama.json")
}

#[test]
fn llama_configs_read_the_bias_keys() {
    let tied = ModelConfig::load(&fixtures().join("tiny_llama/config.json")).expect("config");
    assert_eq!(tied.architecture, Architecture::Llama);
    assert!(tied.tie_word_embeddings && !tied.qkv_bias && !tied.o_bias && !tied.mlp_bias);
    assert_eq!(tied.rope_theta, 100000.0);
    let bias = ModelConfig::load(&fixtures().join("tiny_llama_bias/config.json")).expect("config");
    assert!(!bias.tie_word_embeddings && bias.qkv_bias && bias.o_bias && bias.mlp_bias);
}

#[test]
fn llama_base_logprobs_match_transformers() {
    let g = goldens();
    for name in MODELS {
        let e = engine(name);
        for (i, case) in g.template.iter().enumerate() {
            let lp = e
                .token_logprobs(std::slice::from_ref(&case.ids), &[None])
                .expect("scores");
            let what = format!("{name} base example {i}");
            assert_close(&lp[0], &g.models[name].base[i], TOL, &what);
        }
    }
}

#[test]
fn llama_adapter_logprobs_match_peft() {
    let g = goldens();
    for name in MODELS {
        let e = engine(name);
        for adapter in ["a1", "a2"] {
            for (i, case) in g.template.iter().enumerate() {
                let lp = e
                    .token_logprobs(std::slice::from_ref(&case.ids), &[Some(adapter)])
                    .expect("scores");
                let want = &g.models[name].adapters[adapter][i];
                assert_close(&lp[0], want, TOL, &format!("{name} {adapter} example {i}"));
            }
        }
    }
}

#[test]
fn llama_greedy_matches_transformers_for_32_tokens() {
    let g = goldens();
    let opts = GenerateOptions {
        max_new_tokens: 32,
        sampling: Sampling::Greedy,
        stop_tokens: Vec::new(),
    };
    for name in MODELS {
        let e = engine(name);
        for (i, case) in g.models[name].greedy.iter().enumerate() {
            let out = e
                .generate(std::slice::from_ref(&case.prompt_ids), None, &opts)
                .expect("generates");
            assert_eq!(out[0], case.tokens, "{name} prompt {i}");
        }
    }
}
