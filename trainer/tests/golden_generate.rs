//! Greedy KV-cache generation is token-identical to transformers for 32 tokens.

mod common;

use common::{engine, goldens};
use trainer::{GenerateOptions, Sampling};

fn greedy(n: usize) -> GenerateOptions {
    GenerateOptions {
        max_new_tokens: n,
        sampling: Sampling::Greedy,
        stop_tokens: Vec::new(),
    }
}

#[test]
fn greedy_matches_transformers_for_32_tokens() {
    let g = goldens();
    for name in ["tiny_tied", "tiny_untied"] {
        let e = engine(name);
        for (i, case) in g.models[name].greedy.iter().enumerate() {
            let out = e
                .generate(std::slice::from_ref(&case.prompt_ids), None, &greedy(32))
                .expect("generates");
            assert_eq!(out[0], case.tokens, "{name} prompt {i}");
        }
    }
}

#[test]
fn batched_left_padded_generation_equals_single() {
    let g = goldens();
    let e = engine("tiny_untied");
    let prompts: Vec<Vec<u32>> = g.models["tiny_untied"]
        .greedy
        .iter()
        .map(|c| c.prompt_ids.clone())
        .collect();
    let mut prompts = prompts;
    prompts.push(prompts[0][..5].to_vec());
    let batched = e
        .generate(&prompts, Some("a1"), &greedy(12))
        .expect("batched");
    for (p, got) in prompts.iter().zip(&batched) {
        let alone = e
            .generate(std::slice::from_ref(p), Some("a1"), &greedy(12))
            .expect("alone");
        assert_eq!(got, &alone[0]);
    }
}

#[test]
fn stop_token_ends_a_row_and_is_kept() {
    let g = goldens();
    let e = engine("tiny_untied");
    let case = &g.models["tiny_untied"].greedy[0];
    let stop = case.tokens[3];
    let first = case.tokens.iter().position(|&t| t == stop).unwrap_or(3);
    let opts = GenerateOptions {
        stop_tokens: vec![stop],
        ..greedy(32)
    };
    let out = e
        .generate(std::slice::from_ref(&case.prompt_ids), None, &opts)
        .expect("generates");
    assert_eq!(out[0], case.tokens[..=first]);
}
