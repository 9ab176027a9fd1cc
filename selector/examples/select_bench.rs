//! Times the pure selection path for a 6,000-example job over a 10,000-item pool:
//! pool parsing, refusal filtering, plusplus selection and mixing of raw JSONL lines.
//! `cargo run -p selector --example select_bench` (numbers go to BENCHMARKS.md).

use selector::{jsonl_lines, mix_jsonl, parse_pool, Candidate, Method, MixConfig, RefusalFilter};
use std::time::Instant;

fn main() {
    let reply =
        "Here is a careful, helpful answer that explains the topic step by step. ".repeat(8);
    let pool: String = (0..10_000)
        .map(|i| {
            let r = if i % 7 == 0 {
                format!("Sorry, I cannot. {reply}")
            } else {
                reply.clone()
            };
            serde_json::json!({"messages": [
                {"role": "user", "content": format!("Question number {i}?")},
                {"role": "assistant", "content": r}
            ]})
            .to_string()
                + "\n"
        })
        .collect();
    let client: String = (0..6_000)
        .map(|i| {
            serde_json::json!({"messages": [
                {"role": "user", "content": format!("Client prompt {i}")},
                {"role": "assistant", "content": reply}
            ]})
            .to_string()
                + "\n"
        })
        .collect();

    let t = Instant::now();
    let examples = match parse_pool(&pool) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let parse = t.elapsed();

    let t = Instant::now();
    let filter = RefusalFilter::default();
    let candidates: Vec<Candidate> = examples
        .iter()
        .enumerate()
        .map(|(index, e)| Candidate {
            index,
            score: Some(((index * 7919) % 10_007) as f64 / 10_007.0),
            is_refusal: filter.is_refusal(e.reply()),
        })
        .collect();
    let refusal = t.elapsed();

    let t = Instant::now();
    let cfg = MixConfig::new(Method::PlusPlus);
    let pool_lines = jsonl_lines(&pool);
    let (text, manifest) = match mix_jsonl(&cfg, &client, &pool_lines, &candidates) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let mix = t.elapsed();
    println!(
        "pool 10000 ({:.1} MB): parse {:.1} ms, refusal filter {:.1} ms; plusplus select + mix into 6000 client lines ({:.1} MB) -> {} lines, {} inserted: {:.1} ms",
        pool.len() as f64 / 1e6,
        parse.as_secs_f64() * 1e3,
        refusal.as_secs_f64() * 1e3,
        client.len() as f64 / 1e6,
        text.lines().count(),
        manifest.inserted.len(),
        mix.as_secs_f64() * 1e3
    );
}
