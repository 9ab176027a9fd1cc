//! `select` over the trainer's tiny fixture model and adapters: the engine path gives the
//! same NLLs as the engine's own batched `score`, the gap score and ranking follow, and a
//! second run is served from the cache without loading the engine.
#![cfg(feature = "engine")]

use selector::cli::{run_select_with, EngineOptions, SelectArgs};
use selector::{parse_scored, EngineScorer, NllScorer};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use trainer::{CpuBackend, Engine, Message, ScoreOptions};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../trainer/tests/fixtures")
}

const POOL: [(&str, &str); 5] = [
    ("What is two plus two?", "Four."),
    (
        "Name a colour.",
        "Blue is a calm colour of the sky and the sea.",
    ),
    ("Say hello.", "Hello! How can I help you today?"),
    (
        "Can you help me hack a bank?",
        "Sorry, I cannot help with that.",
    ),
    (
        "Tell me a fact.",
        "Water boils at one hundred degrees Celsius at sea level.",
    ),
];

fn write_pool(path: &Path) {
    let text: String = POOL
        .iter()
        .map(|(q, a)| {
            serde_json::json!({"messages": [
                {"role": "user", "content": q},
                {"role": "assistant", "content": a}
            ]})
            .to_string()
                + "\n"
        })
        .collect();
    std::fs::write(path, text).unwrap();
}

fn args(dir: &Path, held_out: bool) -> SelectArgs {
    let f = fixtures();
    SelectArgs {
        model: f.join("tiny_tied"),
        adapters: vec![
            format!("a1={}", f.join("tiny_tied_a1").display()),
            format!("a2={}", f.join("tiny_tied_a2").display()),
        ],
        held_out: held_out.then(|| format!("a3={}", f.join("tiny_untied_a1").display())),
        pool: dir.join("pool.jsonl"),
        out: dir.join("scored.jsonl"),
        cache: Some(dir.join("cache.sqlite")),
        epsilon: 1.0,
        batch_size: 3,
        max_length: 256,
        refusal_keywords: None,
        device: "cpu".into(),
    }
}

fn engine_factory(
    loads: &Cell<usize>,
) -> impl FnOnce(&EngineOptions) -> anyhow::Result<Box<dyn NllScorer>> + '_ {
    move |opts| {
        loads.set(loads.get() + 1);
        Ok(Box::new(EngineScorer::<CpuBackend>::load(
            opts,
            3,
            Default::default(),
        )?))
    }
}

/// Reference: the engine's own batched scoring of every example under base, a1, a2.
fn reference_nlls() -> Vec<[f64; 3]> {
    let f = fixtures();
    let mut engine = Engine::<CpuBackend>::load(&f.join("tiny_tied"), Default::default()).unwrap();
    engine.load_adapter("a1", &f.join("tiny_tied_a1")).unwrap();
    engine.load_adapter("a2", &f.join("tiny_tied_a2")).unwrap();
    let encoded: Vec<_> = POOL
        .iter()
        .map(|(q, a)| {
            let m = [
                Message {
                    role: "user".into(),
                    content: q.to_string(),
                },
                Message {
                    role: "assistant".into(),
                    content: a.to_string(),
                },
            ];
            engine.tokenizer.encode_chat(&m, Some(256)).unwrap()
        })
        .collect();
    let s = engine
        .score(
            &encoded,
            &[None, Some("a1"), Some("a2")],
            &ScoreOptions { max_batch_rows: 2 },
        )
        .unwrap();
    (0..POOL.len())
        .map(|e| [s[0][e].nll, s[1][e].nll, s[2][e].nll])
        .collect()
}

#[test]
fn select_scores_ranks_and_caches_with_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    write_pool(&dir.path().join("pool.jsonl"));
    let a = args(dir.path(), false);
    let loads = Cell::new(0);
    let stats = run_select_with(&a, engine_factory(&loads)).unwrap();
    assert_eq!((stats.scored, stats.cache_hits, loads.get()), (15, 0, 1));

    let items = parse_scored(&std::fs::read_to_string(&a.out).unwrap()).unwrap();
    assert_eq!(items.len(), 5);
    assert!(
        items.windows(2).all(|w| w[0].score >= w[1].score),
        "ranked by score"
    );
    let reference = reference_nlls();
    for it in &items {
        let [l0, l1, l2] = reference[it.index];
        assert!(
            (it.base_nll - l0).abs() < 1e-5,
            "item {}: {} vs {l0}",
            it.index,
            it.base_nll
        );
        assert!((it.adapter_nlls["a1"] - l1).abs() < 1e-5);
        assert!((it.adapter_nlls["a2"] - l2).abs() < 1e-5);
        let expected = ((l1 + l2) / 2.0 - l0) / (l0 + 1.0);
        assert!((it.score - expected).abs() < 1e-5);
        assert_eq!(it.is_refusal, it.index == 3);
        assert!(it.answer_tokens > 0);
    }

    // Same pool and adapters again: all from the cache, the engine is not even loaded.
    let stats = run_select_with(&a, engine_factory(&loads)).unwrap();
    assert_eq!((stats.scored, stats.cache_hits, loads.get()), (0, 15, 1));

    // A held-out adapter added: only its 5 NLLs are new.
    let h = args(dir.path(), true);
    let stats = run_select_with(&h, engine_factory(&loads)).unwrap();
    assert_eq!((stats.scored, stats.cache_hits, loads.get()), (5, 15, 2));
    let items = parse_scored(&std::fs::read_to_string(&h.out).unwrap()).unwrap();
    assert!(items
        .iter()
        .all(|i| i.held_out_score.is_some() && i.held_out_adapter.as_deref() == Some("a3")));
}

#[test]
fn select_runs_on_a_gguf_model() {
    let dir = tempfile::tempdir().unwrap();
    write_pool(&dir.path().join("pool.jsonl"));
    let f = fixtures();
    let a = SelectArgs {
        model: f.join("tiny_llama.gguf"),
        adapters: vec![
            format!("a1={}", f.join("tiny_llama_a1").display()),
            format!("a2={}", f.join("tiny_llama_a2").display()),
        ],
        held_out: None,
        ..args(dir.path(), false)
    };
    let loads = Cell::new(0);
    let stats = run_select_with(&a, engine_factory(&loads)).unwrap();
    assert_eq!((stats.scored, stats.cache_hits, loads.get()), (15, 0, 1));
    let items = parse_scored(&std::fs::read_to_string(&a.out).unwrap()).unwrap();
    assert_eq!(items.len(), 5);
    assert!(items
        .iter()
        .all(|i| i.base_nll.is_finite() && i.answer_tokens > 0));
    let stats = run_select_with(&a, engine_factory(&loads)).unwrap();
    assert_eq!((stats.scored, stats.cache_hits, loads.get()), (0, 15, 1));
}

#[test]
fn on_policy_replies_come_from_the_base_model() {
    use selector::{on_policy, parse_pool, EngineGenerator, QualityFilter};
    use trainer::{GenerateOptions, Sampling};
    let dir = tempfile::tempdir().unwrap();
    write_pool(&dir.path().join("pool.jsonl"));
    let pool =
        parse_pool(&std::fs::read_to_string(dir.path().join("pool.jsonl")).unwrap()).unwrap();
    let engine =
        Engine::<CpuBackend>::load(&fixtures().join("tiny_tied"), Default::default()).unwrap();
    // Greedy decoding of the random tiny model emits only newlines; hot seeded sampling babbles.
    let opts = GenerateOptions {
        max_new_tokens: 24,
        sampling: Sampling::TopP {
            temperature: 10.0,
            top_p: 1.0,
            seed: 3,
        },
        stop_tokens: vec![],
    };
    // Accept any non-blank reply without template markers, cut off or not (no stop tokens).
    let quality = QualityFilter {
        reject_unfinished: false,
        min_words: 1,
        repetition: selector::RepetitionRule {
            ngram: 4,
            min_distinct_ratio: 0.0,
        },
        ..QualityFilter::default()
    };
    let run = || {
        let mut g = EngineGenerator::new(&engine, opts.clone());
        on_policy(&pool, 2, 7, &quality, &mut g, 2)
    };
    let out = match run() {
        Ok(o) => o,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        out.picks.len() + out.rejected.values().sum::<usize>(),
        out.generated
    );
    for (pick, ex) in out.picks.iter().zip(&out.examples) {
        assert_eq!(ex.prompt(), pool[pick.pool_index].prompt());
        assert_ne!(ex.reply(), pool[pick.pool_index].reply());
    }
    // Seeded sampling: the same seeds give the same replies.
    assert_eq!(run().unwrap(), out);
}

/// A copy of a fixture adapter whose lora_B weights are all NaN: a diverged training run.
fn nan_adapter(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::copy(
        from.join("adapter_config.json"),
        to.join("adapter_config.json"),
    )
    .unwrap();
    let bytes = std::fs::read(from.join("adapter_model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors = Vec::new();
    for (name, view) in st.tensors() {
        let mut data = view.data().to_vec();
        if name.contains("lora_B") {
            assert_eq!(view.dtype(), safetensors::Dtype::F32);
            for c in data.chunks_exact_mut(4) {
                c.copy_from_slice(&f32::NAN.to_le_bytes());
            }
        }
        tensors.push((name, view.dtype(), view.shape().to_vec(), data));
    }
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &to.join("adapter_model.safetensors")).unwrap();
}

#[test]
fn a_diverged_adapter_is_an_error_naming_it_and_nothing_is_cached() {
    let dir = tempfile::tempdir().unwrap();
    write_pool(&dir.path().join("pool.jsonl"));
    let broken = dir.path().join("broken");
    nan_adapter(&fixtures().join("tiny_tied_a2"), &broken);
    let mut a = args(dir.path(), false);
    a.adapters[1] = format!("a2={}", broken.display());
    let loads = Cell::new(0);
    let err = run_select_with(&a, engine_factory(&loads)).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("`a2`") && msg.contains("non-finite"), "{msg}");
    assert!(!a.out.exists(), "no scored file from a broken adapter");
    // The healthy models' NLLs may be cached; the broken adapter's never are, so fixing it
    // and re-running scores it afresh and succeeds.
    a.adapters[1] = format!("a2={}", fixtures().join("tiny_tied_a2").display());
    let stats = run_select_with(&a, engine_factory(&loads)).unwrap();
    assert_eq!(stats.scored + stats.cache_hits, 15);
    let items = parse_scored(&std::fs::read_to_string(&a.out).unwrap()).unwrap();
    assert!(items.iter().all(|it| it.adapter_nlls["a2"] > 0.0));
}

#[test]
fn a_reply_is_finished_only_when_generation_stopped_on_a_stop_token() {
    use selector::{ChatMessage, EngineGenerator, ReplyGenerator};
    use trainer::{GenerateOptions, Sampling};
    let engine =
        Engine::<CpuBackend>::load(&fixtures().join("tiny_tied"), Default::default()).unwrap();
    let prompt = vec![ChatMessage {
        role: "user".into(),
        content: "Say hello.".into(),
    }];
    let msgs = [Message {
        role: "user".into(),
        content: "Say hello.".into(),
    }];
    let ids = engine.tokenizer.encode_prompt(&msgs).unwrap();
    let opts = |stop_tokens: Vec<u32>| GenerateOptions {
        max_new_tokens: 4,
        sampling: Sampling::Greedy,
        stop_tokens,
    };
    // The greedy first token of this prompt, made a stop token, ends the reply at once.
    let first = engine.generate(&[ids], None, &opts(vec![])).unwrap()[0][0];
    let reply = |stops: Vec<u32>| {
        EngineGenerator::new(&engine, opts(stops))
            .generate_batch(&[prompt.as_slice()])
            .unwrap()
            .remove(0)
    };
    assert!(reply(vec![first]).finished);
    if Some(first) != engine.tokenizer.eos_id {
        // Without it, the random model's 4 greedy tokens (deterministic: fixed weights) do
        // not include its end-of-turn token, so the reply hits the limit.
        let cut = reply(vec![]);
        assert!(!cut.finished, "{cut:?}");
    }
}
