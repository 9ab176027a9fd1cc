//! CPU scoring benchmark, burn side (see reference/bench_torch.py, which also builds DIR).
//!
//! cargo run --release -p trainer --example bench_score -- DIR [BATCH] [SEQ] [ITERS]
//! (release: a dev build keeps debug assertions on inside burn-flex and gemm, ~2× slower)

use std::time::Instant;

use rand::{Rng, SeedableRng};
use trainer::{CpuBackend, Engine};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .get(1)
        .ok_or_else(|| anyhow::anyhow!("usage: bench_score DIR [BATCH] [SEQ] [ITERS]"))?;
    let num = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (batch, seq, iters) = (num(2, 4), num(3, 256), num(4, 3).max(1));
    let t0 = Instant::now();
    let engine = Engine::<CpuBackend>::load(std::path::Path::new(dir), Default::default())?;
    eprintln!("loaded in {:.1}s", t0.elapsed().as_secs_f64());
    let vocab = engine.weights.config.vocab_size as u32;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let seqs: Vec<Vec<u32>> = (0..batch)
        .map(|_| (0..seq).map(|_| rng.gen_range(3..vocab)).collect())
        .collect();
    let none = vec![None; batch];
    let mut times = Vec::new();
    for _ in 0..=iters {
        let t = Instant::now();
        let lp = engine.token_logprobs(&seqs, &none)?;
        times.push(t.elapsed().as_secs_f64());
        assert_eq!(lp.len(), batch);
    }
    // Where the time goes: body (all blocks) vs lm_head GEMM vs log-softmax + gather.
    let batch_t = trainer::TokenBatch::right_padded(&seqs, 0);
    let opts = trainer::ForwardOptions::default();
    let t = Instant::now();
    let out = engine
        .weights
        .forward(&batch_t, &opts, None, &engine.device);
    let hidden = out.hidden.narrow(1, 0, seq - 1);
    let _ = hidden.clone().into_data();
    let body = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let logits = engine.weights.logits(hidden);
    let _ = logits.clone().slice([0..1, 0..1, 0..1]).into_data();
    let head = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let _ = burn::tensor::activation::log_softmax(logits, 2)
        .slice([0..1, 0..1, 0..1])
        .into_data();
    let lsm = t.elapsed().as_secs_f64();
    println!("breakdown: blocks {body:.3}s, lm_head {head:.3}s, log_softmax {lsm:.3}s");
    let best = times[1..].iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "burn-flex: batch {batch} seq {seq}: best {best:.3}s, {:.1} tokens/s (all {times:.3?})",
        (batch * seq) as f64 / best
    );
    Ok(())
}
