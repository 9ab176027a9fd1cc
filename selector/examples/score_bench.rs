//! Pool-scoring throughput on CPU: base + 3 LoRA adapters (r = 32, all targets) over a
//! random Qwen2-shaped model, batched (rows of all four models share forward passes) vs four
//! sequential single-model passes. Same rows, same batch size; numbers for BENCHMARKS.md.
//! `cargo run -p selector --features engine --example score_bench [hidden layers examples]`

use selector::{ChatMessage, EngineScorer, NllRequest, NllScorer, PoolExample, RowOrder};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;
use trainer::{CpuBackend, Engine, LoraAdapter, LoraConfig};

fn rand_vec(n: usize, state: &mut u64, scale: f32) -> Vec<f32> {
    let mut rng = selector::rng::SplitMix64::new(*state);
    *state = state.wrapping_add(1);
    (0..n)
        .map(|_| ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32 * scale)
        .collect()
}

/// Writes a random tied-embedding Qwen2 model using the fixture tokenizer (vocab 320).
fn write_model(dir: &Path, hidden: usize, layers: usize) -> anyhow::Result<()> {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../trainer/tests/fixtures/tiny_tied");
    for f in [
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
    ] {
        std::fs::copy(fixture.join(f), dir.join(f))?;
    }
    let (heads, kv, inter, vocab) = (hidden / 64, hidden / 128, hidden * 3, 320);
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("config.json"))?)?;
    cfg["hidden_size"] = hidden.into();
    cfg["intermediate_size"] = inter.into();
    cfg["num_attention_heads"] = heads.into();
    cfg["num_key_value_heads"] = kv.into();
    cfg["num_hidden_layers"] = layers.into();
    cfg["layer_types"] = serde_json::json!(vec!["full_attention"; layers]);
    cfg["max_position_embeddings"] = 4096.into();
    std::fs::write(dir.join("config.json"), cfg.to_string())?;
    let mut t = BTreeMap::new();
    let mut s = 1u64;
    let mut put = |name: String, shape: Vec<usize>, scale: f32| {
        let n = shape.iter().product();
        let data = if scale == 0.0 {
            vec![1.0; n]
        } else {
            rand_vec(n, &mut s, scale)
        };
        t.insert(name, (shape, data));
    };
    put(
        "model.embed_tokens.weight".into(),
        vec![vocab, hidden],
        0.05,
    );
    put("model.norm.weight".into(), vec![hidden], 0.0);
    let (q, k) = (heads * 64, kv * 64);
    for l in 0..layers {
        let p = format!("model.layers.{l}");
        put(format!("{p}.input_layernorm.weight"), vec![hidden], 0.0);
        put(
            format!("{p}.post_attention_layernorm.weight"),
            vec![hidden],
            0.0,
        );
        for (m, out, inp) in [
            ("q_proj", q, hidden),
            ("k_proj", k, hidden),
            ("v_proj", k, hidden),
        ] {
            put(format!("{p}.self_attn.{m}.weight"), vec![out, inp], 0.05);
            put(format!("{p}.self_attn.{m}.bias"), vec![out], 0.05);
        }
        put(
            format!("{p}.self_attn.o_proj.weight"),
            vec![hidden, q],
            0.05,
        );
        put(
            format!("{p}.mlp.gate_proj.weight"),
            vec![inter, hidden],
            0.05,
        );
        put(format!("{p}.mlp.up_proj.weight"), vec![inter, hidden], 0.05);
        put(
            format!("{p}.mlp.down_proj.weight"),
            vec![hidden, inter],
            0.05,
        );
    }
    trainer::weights::write_safetensors(&dir.join("model.safetensors"), &t)?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (hidden, layers, n) = match args[..] {
        [h, l, n] => (h, l, n),
        _ => (256, 4, 32),
    };
    let dir = tempfile::tempdir()?;
    write_model(dir.path(), hidden, layers)?;
    let mut engine = Engine::<CpuBackend>::load(dir.path(), Default::default())?;
    for name in ["a1", "a2", "a3"] {
        let a = LoraAdapter::init(
            &engine.weights.config,
            LoraConfig::default(),
            &engine.device,
        );
        engine.insert_adapter(name, a);
    }
    let pool: Vec<PoolExample> = (0..n)
        .map(|i| {
            PoolExample::new(vec![
                ChatMessage { role: "user".into(), content: format!("Question {i}: how do tides work, briefly?") },
                ChatMessage {
                    role: "assistant".into(),
                    content: format!("Answer {i}: the moon's gravity pulls the oceans, raising two bulges that the earth rotates through each day."),
                },
            ])
            .map_err(anyhow::Error::msg)
        })
        .collect::<anyhow::Result<_>>()?;
    let models = [None, Some("a1"), Some("a2"), Some("a3")];
    let scorer = EngineScorer::new(engine, 2048, 16);
    let tokens: usize = pool
        .iter()
        .map(|e| {
            let m: Vec<trainer::Message> = e
                .messages()
                .iter()
                .map(|m| trainer::Message {
                    role: m.role.clone(),
                    content: m.content.clone(),
                })
                .collect();
            scorer
                .engine()
                .tokenizer
                .encode_chat(&m, None)
                .map(|c| c.ids.len())
                .unwrap_or(0)
        })
        .sum();
    let requests = |only: Option<Option<&'static str>>| -> Vec<NllRequest<'_>> {
        pool.iter()
            .flat_map(|e| {
                models.iter().map(move |&a| NllRequest {
                    example: e,
                    adapter: a,
                })
            })
            .filter(|r| only.is_none_or(|m| r.adapter == m))
            .collect()
    };
    let mut best = (f64::MAX, f64::MAX, f64::MAX);
    let mut scorer = scorer.with_row_order(RowOrder::Mixed);
    for _ in 0..2 {
        let t = Instant::now();
        scorer
            .score_batch(&requests(None))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        best.0 = best.0.min(t.elapsed().as_secs_f64());
        scorer = scorer.with_row_order(RowOrder::ByAdapter);
        let t = Instant::now();
        scorer
            .score_batch(&requests(None))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        best.2 = best.2.min(t.elapsed().as_secs_f64());
        scorer = scorer.with_row_order(RowOrder::Mixed);
        let t = Instant::now();
        for m in models {
            scorer
                .score_batch(&requests(Some(m)))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        best.1 = best.1.min(t.elapsed().as_secs_f64());
    }
    let rows_tokens = (tokens * models.len()) as f64;
    println!(
        "model hidden {hidden}, {layers} layers, vocab 320; {n} examples, {tokens} tokens each pass; base + 3 adapters (r=32, all targets), 16 rows/pass\n\
         one call, rows mixed:       {:.2} s  {:.1} examples/s  {:.0} tokens/s (all 4 models)\n\
         one call, rows by adapter:  {:.2} s  {:.1} examples/s  {:.0} tokens/s\n\
         4 sequential passes:        {:.2} s  {:.1} examples/s  {:.0} tokens/s\n\
         speed vs sequential: mixed {:.2}x, by adapter {:.2}x",
        best.0, n as f64 / best.0, rows_tokens / best.0,
        best.2, n as f64 / best.2, rows_tokens / best.2,
        best.1, n as f64 / best.1, rows_tokens / best.1,
        best.1 / best.0,
        best.1 / best.2
    );
    Ok(())
}
