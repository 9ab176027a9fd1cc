//! The transform step's engine side on the trainer's tiny fixture model: on-policy
//! Interleaving regenerates the replies of the pool prompts the selector's seeded order picks
//! (greedy, so deterministic), and missing inputs fail with their own codes.

use gateway::config::{Config, InterleaveConfig, ModelRegistry};
use gateway::transform::{InterleaveEngine, ScoredSpec, TransformError};
use selector::{
    parse_pool, plan_with_picks, EngineGenerator, Method, MixConfig, Pick, ReplyGenerator,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../trainer/tests/fixtures")
}

fn config(data_dir: &Path, model_dir: &Path, adapters: &str) -> (InterleaveConfig, ModelRegistry) {
    let text = format!(
        "[storage]\ndata_dir = {:?}\n[interleave]\nbatch_size = 3\nmax_length = 256\nmax_new_tokens = 6\n\
         [[models]]\nmodel = \"tiny-*\"\npath = {:?}\nadapters = {{ {adapters} }}\n",
        data_dir.display().to_string(),
        model_dir.display().to_string()
    );
    let c = Config::from_sources(Some(("t.toml", &text)), Vec::new()).unwrap();
    (c.interleave, c.models)
}

fn interleaver(config: (InterleaveConfig, ModelRegistry)) -> InterleaveEngine {
    InterleaveEngine::new(config.0, config.1, None)
}

fn write_pool(path: &Path, n: usize) {
    let text: String = (0..n)
        .map(|i| {
            json!({"messages": [
                {"role": "user", "content": format!("Question number {i}?")},
                {"role": "assistant", "content": format!("Stored answer {i}.")}
            ]})
            .to_string()
                + "\n"
        })
        .collect();
    std::fs::write(path, text).unwrap();
}

fn spec(method: Method, pool: &Path) -> ScoredSpec {
    ScoredSpec {
        method,
        fraction: 0.1,
        pool: pool.to_path_buf(),
        seed: 2,
        placement: selector::mix::Placement::Even,
        gap_epsilon: 1.0,
        refusal_keywords: Vec::new(),
        refusal_window_words: 10,
        // The random tiny model never ends its turn within 6 tokens: accept cut-off replies.
        quality: Some(policies::ReplyQuality {
            reject_unfinished: false,
            min_reply_words: 0,
            template_markers: Vec::new(),
            repetition_ngram: 4,
            repetition_min_distinct_ratio: 0.0,
        }),
    }
}

#[test]
fn on_policy_regenerates_the_seeded_prompts_with_the_base_model() {
    let dir = tempfile::tempdir().unwrap();
    let pool_path = dir.path().join("pool.jsonl");
    write_pool(&pool_path, 8);
    let model = fixtures().join("tiny_tied");
    let engine = interleaver(config(dir.path(), &model, ""));
    let scratch = dir.path().join("scratch");
    let got = engine
        .interleave("tiny-q", &spec(Method::OnPolicy, &pool_path), 40, &scratch)
        .unwrap();

    // What the selector and the engine give directly: the first 4 prompts of the seeded
    // order, answered greedily, placed by plan_with_picks.
    let order = selector::rng::permutation(8, 2);
    let pool = parse_pool(&std::fs::read_to_string(&pool_path).unwrap()).unwrap();
    let trainer_engine =
        trainer::Engine::<trainer::CpuBackend>::load(&model, Default::default()).unwrap();
    let options = trainer::GenerateOptions {
        max_new_tokens: 6,
        sampling: trainer::Sampling::Greedy,
        stop_tokens: trainer_engine.weights.config.eos_token_ids.clone(),
    };
    let mut generator = EngineGenerator::new(&trainer_engine, options);
    let prompts: Vec<&[selector::ChatMessage]> =
        order[..4].iter().map(|&i| pool[i].prompt()).collect();
    let replies = generator.generate_batch(&prompts).unwrap();
    let picks: Vec<Pick> = order[..4]
        .iter()
        .map(|&i| Pick {
            pool_index: i,
            score: None,
        })
        .collect();
    let config = MixConfig {
        method: Method::OnPolicy,
        fraction: 0.1,
        seed: 2,
        placement: selector::mix::Placement::Even,
    };
    let (_, manifest) = plan_with_picks(&config, 40, &picks);
    let expected: Vec<(u64, u64)> = manifest
        .inserted
        .iter()
        .map(|e| (e.pool_index as u64, e.position as u64))
        .collect();
    let actual: Vec<(u64, u64)> = got
        .inserted
        .iter()
        .map(|i| (i.pool_index, i.position))
        .collect();
    assert_eq!(actual, expected);
    for (k, &i) in order[..4].iter().enumerate() {
        let line: Value = serde_json::from_str(&got.lines[&(i as u64)]).unwrap();
        let msgs = line["messages"].as_array().unwrap();
        assert_eq!(msgs[0]["content"], format!("Question number {i}?"));
        assert_eq!(msgs[1]["role"], "assistant");
        assert_eq!(msgs[1]["content"], replies[k].text.as_str());
        assert_ne!(msgs[1]["content"], format!("Stored answer {i}."));
    }
    assert_eq!(got.desc["method"], "on_policy");
    assert_eq!(got.desc["engine"]["generated"], 4);

    let again = engine
        .interleave("tiny-q", &spec(Method::OnPolicy, &pool_path), 40, &scratch)
        .unwrap();
    assert_eq!(again, got, "same inputs and seed, same output");
}

fn code(e: TransformError) -> String {
    e.code().to_string()
}

#[test]
fn missing_inputs_fail_with_their_own_codes() {
    let dir = tempfile::tempdir().unwrap();
    let pool_path = dir.path().join("pool.jsonl");
    write_pool(&pool_path, 8);
    let scratch = dir.path().join("scratch");
    let f = fixtures();
    let a1 = format!("a1 = {:?}", f.join("tiny_tied_a1").display().to_string());

    // A model directory that is not there.
    let e = interleaver(config(dir.path(), &dir.path().join("nope"), &a1))
        .interleave("tiny-q", &spec(Method::Plus, &pool_path), 40, &scratch)
        .unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    assert_eq!(code(e), "interleave_model_missing");

    let engine = interleaver(config(dir.path(), &f.join("tiny_tied"), &a1));
    // A pool file that is not there, and one with a malformed line.
    let e = engine
        .interleave(
            "tiny-q",
            &spec(Method::Plus, &dir.path().join("absent.jsonl")),
            40,
            &scratch,
        )
        .unwrap_err();
    assert_eq!(code(e), "invalid_interleave_pool");
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"messages\": []}\n").unwrap();
    let e = engine
        .interleave("tiny-q", &spec(Method::Plus, &bad), 40, &scratch)
        .unwrap_err();
    assert!(e.to_string().contains("line 1"), "{e}");
    assert_eq!(code(e), "invalid_interleave_pool");

    // An adapter directory whose weights are not a safetensors file.
    let broken = dir.path().join("broken_adapter");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::copy(
        f.join("tiny_tied_a1/adapter_config.json"),
        broken.join("adapter_config.json"),
    )
    .unwrap();
    std::fs::write(broken.join("adapter_model.safetensors"), b"not safetensors").unwrap();
    let spec_broken = format!("b1 = {:?}", broken.display().to_string());
    let e = interleaver(config(dir.path(), &f.join("tiny_tied"), &spec_broken))
        .interleave("tiny-q", &spec(Method::PlusPlus, &pool_path), 40, &scratch)
        .unwrap_err();
    assert!(e.to_string().contains("b1"), "{e}");
    assert_eq!(code(e), "interleave_adapter_incompatible");

    // No adapters at all for a gap-scored method.
    let e = interleaver(config(dir.path(), &f.join("tiny_tied"), ""))
        .interleave("tiny-q", &spec(Method::Plus, &pool_path), 40, &scratch)
        .unwrap_err();
    assert_eq!(code(e), "interleave_adapter_missing");

    // A model no entry matches.
    let e = engine
        .interleave("gpt-4o", &spec(Method::Plus, &pool_path), 40, &scratch)
        .unwrap_err();
    assert_eq!(code(e), "interleave_method_unavailable");
}
