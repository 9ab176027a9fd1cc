//! Makes a safety pool: each prompt of a chat JSONL file (user messages only) is answered by a
//! base model through the engine (greedy, so the same model and prompts give the same pool),
//! and a reply is kept only when the selector's own filters pass it — the on-policy
//! [`QualityFilter`] (finished turn, minimum length, no template markers, no repetition loop)
//! and the Interleaving++ [`RefusalFilter`] (a benign prompt deserves a helpful answer).
//! `scripts/make-pool.sh` runs it to write `conf/pools/general.jsonl`.
//!
//! `cargo run --release -p selector --features engine --example make_pool -- \
//!     MODEL PROMPTS.jsonl OUT.jsonl [BATCH=16] [MAX_NEW_TOKENS=256]`

use selector::{
    ChatMessage, EngineGenerator, PoolExample, QualityFilter, RefusalFilter, ReplyGenerator,
    DEFAULT_REFUSAL_KEYWORDS, DEFAULT_WINDOW_WORDS,
};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;
use trainer::{CpuBackend, Engine, GenerateOptions, Sampling};

#[derive(serde::Deserialize)]
struct PromptLine {
    messages: Vec<ChatMessage>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        return Err(
            "usage: make_pool MODEL PROMPTS.jsonl OUT.jsonl [BATCH] [MAX_NEW_TOKENS]".into(),
        );
    }
    let model = PathBuf::from(&args[0]);
    let prompts_path = PathBuf::from(&args[1]);
    let out_path = PathBuf::from(&args[2]);
    let batch: usize = args.get(3).map_or(Ok(16), |s| s.parse())?;
    let max_new_tokens: usize = args.get(4).map_or(Ok(256), |s| s.parse())?;

    let prompts: Vec<Vec<ChatMessage>> = std::fs::read_to_string(&prompts_path)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<PromptLine>(l).map(|p| p.messages))
        .collect::<Result<_, _>>()?;
    let t0 = Instant::now();
    let engine = Engine::<CpuBackend>::load(&model, Default::default())?;
    eprintln!(
        "loaded {} in {:.1} s; {} prompts, batch {batch}, up to {max_new_tokens} new tokens",
        model.display(),
        t0.elapsed().as_secs_f64(),
        prompts.len()
    );
    let options = GenerateOptions {
        max_new_tokens,
        sampling: Sampling::Greedy,
        stop_tokens: engine.weights.config.eos_token_ids.clone(),
    };
    let mut generator = EngineGenerator::new(&engine, options);
    let quality = QualityFilter::default();
    let refusal = RefusalFilter::new(DEFAULT_REFUSAL_KEYWORDS, DEFAULT_WINDOW_WORDS);

    let mut kept = Vec::new();
    let mut rejected: BTreeMap<&'static str, usize> = BTreeMap::new();
    let t1 = Instant::now();
    for (i, chunk) in prompts.chunks(batch).enumerate() {
        let refs: Vec<&[ChatMessage]> = chunk.iter().map(Vec::as_slice).collect();
        let replies = generator.generate_batch(&refs).map_err(|e| e.to_string())?;
        for (prompt, reply) in chunk.iter().zip(replies) {
            if let Err(r) = quality.check_reply(&reply) {
                *rejected.entry(r.kind()).or_default() += 1;
                continue;
            }
            if refusal.is_refusal(&reply.text) {
                *rejected.entry("refusal").or_default() += 1;
                continue;
            }
            let mut messages = prompt.clone();
            messages.push(ChatMessage {
                role: "assistant".into(),
                content: reply.text,
            });
            kept.push(PoolExample::new(messages)?);
        }
        eprintln!(
            "batch {}/{}: {} kept so far, {:.0} s",
            i + 1,
            prompts.len().div_ceil(batch),
            kept.len(),
            t1.elapsed().as_secs_f64()
        );
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(&out_path)?);
    for ex in &kept {
        writeln!(out, "{}", ex.to_json_line())?;
    }
    out.flush()?;
    eprintln!(
        "kept {} of {} replies in {:.0} s (rejected: {rejected:?}) -> {}",
        kept.len(),
        prompts.len(),
        t1.elapsed().as_secs_f64(),
        out_path.display()
    );
    Ok(())
}
