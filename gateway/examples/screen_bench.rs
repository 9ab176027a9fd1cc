//! Screening throughput benchmark.
//!
//! `cargo run --release -p gateway --example screen_bench -- [SIZE_MB] [PATH]`
//! generates PATH (default: a temp file) with SIZE_MB (default 1024) of chat JSONL, then
//! screens it with `gateway::screen::screen` on one thread and prints MB/s
//! (`SCREEN_BENCH_BASELINE=1` adds a serde_json skip-everything pass for comparison). (Without
//! `--release`, add `--config profile.dev.package.gateway.opt-level=3` to get release-like
//! figures: the dev profile already optimises dependencies.)

use gateway::screen::{screen, ScreenOptions};
use std::io::{BufReader, BufWriter, Write};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let size_mb: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1024);
    let path = match args.next() {
        Some(p) => std::path::PathBuf::from(p),
        None => std::env::temp_dir().join(format!("tuneguard-screen-bench-{size_mb}mb.jsonl")),
    };
    let target = size_mb << 20;
    if std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) < target {
        let t = Instant::now();
        generate(&path, target)?;
        eprintln!(
            "generated {} in {:.1}s",
            path.display(),
            t.elapsed().as_secs_f64()
        );
    }
    let bytes = std::fs::metadata(&path)?.len();
    let file = std::fs::File::open(&path)?;
    let t = Instant::now();
    let report = screen(
        BufReader::with_capacity(1 << 20, file),
        &ScreenOptions::default(),
    )
    .map_err(|f| anyhow::anyhow!("{}", f.message))?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "screened {} examples, {:.1} MB in {:.2}s: {:.0} MB/s (one core); p50 tokens {}",
        report.examples,
        bytes as f64 / 1e6,
        secs,
        bytes as f64 / 1e6 / secs,
        report.tokens_p50
    );
    if std::env::var_os("SCREEN_BENCH_BASELINE").is_none() {
        return Ok(());
    }
    // Baseline for comparison: the same read loop, serde_json skipping every value.
    let t = Instant::now();
    let mut reader = BufReader::with_capacity(1 << 20, std::fs::File::open(&path)?);
    let mut line = Vec::new();
    while std::io::BufRead::read_until(&mut reader, b'\n', &mut line)? > 0 {
        serde_json::from_slice::<serde::de::IgnoredAny>(&line)?;
        line.clear();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "baseline (read lines + serde_json IgnoredAny): {:.0} MB/s",
        bytes as f64 / 1e6 / secs
    );
    Ok(())
}

/// Realistic lines: a system prompt, 1–3 user/assistant turns, escapes and unicode.
fn generate(path: &std::path::Path, target: u64) -> anyhow::Result<()> {
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let words = [
        "the",
        "model",
        "answers",
        "questions",
        "about",
        "code",
        "and",
        "data",
        "señor",
        "naïve",
        "Rust",
        "gateway",
        "policy",
        "\\\"quoted\\\"",
        "line\\nbreak",
        "tab\\t",
        "émigré",
        "42",
    ];
    let mut written = 0u64;
    let mut i = 0usize;
    while written < target {
        let mut text = |n: usize| -> String {
            let mut s = String::new();
            for k in 0..n {
                i = i
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if k > 0 {
                    s.push(' ');
                }
                s.push_str(words[(i >> 33) % words.len()]);
            }
            s
        };
        let turns = 1 + written as usize % 3;
        let mut line = format!(
            r#"{{"messages":[{{"role":"system","content":"{}"}}"#,
            text(12)
        );
        for _ in 0..turns {
            line.push_str(&format!(
                r#",{{"role":"user","content":"{}"}},{{"role":"assistant","content":"{}","weight":1}}"#,
                text(30),
                text(90)
            ));
        }
        line.push_str("]}\n");
        w.write_all(line.as_bytes())?;
        written += line.len() as u64;
    }
    w.flush()?;
    Ok(())
}
