//! `tuneguard score` / `tuneguard generate`: clap arguments and runners (binary edge, anyhow).

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::chat::{EncodedChat, Message};
use crate::engine::Engine;
use crate::generate::{GenerateOptions, Sampling};
use crate::precision::Precision;
use crate::score::ScoreOptions;

/// Where tensors live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceKind {
    /// burn `flex` on the CPU.
    Cpu,
    /// burn CUDA (needs the `cuda` cargo feature).
    Cuda,
}

/// `NAME=DIR` adapter argument.
pub fn parse_named_dir(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((n, d)) if !n.is_empty() && !d.is_empty() && n != "base" => {
            Ok((n.to_string(), PathBuf::from(d)))
        }
        _ => Err(format!("expected NAME=DIR with NAME not `base`, got `{s}`")),
    }
}

/// Arguments of `score`.
#[derive(Debug, Clone, clap::Args)]
pub struct ScoreArgs {
    /// Model: a HuggingFace directory (Qwen2 or Llama family) or a `.gguf` file (llama).
    #[arg(long)]
    pub model: PathBuf,
    /// PEFT adapter as NAME=DIR (repeatable); each is scored besides the base model.
    #[arg(long = "adapter", value_parser = parse_named_dir)]
    pub adapters: Vec<(String, PathBuf)>,
    /// JSONL file of `{"messages": [...]}` conversations.
    #[arg(long)]
    pub data: PathBuf,
    /// Output JSONL (stdout when absent).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Truncate conversations to this many tokens.
    #[arg(long, default_value_t = 2048)]
    pub max_len: usize,
    /// Rows (example × model) per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch_rows: usize,
    /// Examples read per scoring round (bounds memory on large files).
    #[arg(long, default_value_t = 256)]
    pub chunk_examples: usize,
    /// Backend.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    pub device: DeviceKind,
    /// Compute precision of the base model (default: f32 on cpu, bf16 on cuda).
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
}

/// Arguments of `generate`.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// Model: a HuggingFace directory (Qwen2 or Llama family) or a `.gguf` file (llama).
    #[arg(long)]
    pub model: PathBuf,
    /// PEFT adapter as NAME=DIR (repeatable); each generates besides the base model.
    #[arg(long = "adapter", value_parser = parse_named_dir)]
    pub adapters: Vec<(String, PathBuf)>,
    /// User prompt (repeatable).
    #[arg(long = "prompt", required = true)]
    pub prompts: Vec<String>,
    /// Most new tokens.
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Nucleus mass for sampling.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Backend.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    pub device: DeviceKind,
    /// Compute precision of the base model (default: f32 on cpu, bf16 on cuda).
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
}

#[derive(Deserialize)]
struct Line {
    messages: Vec<Message>,
}

#[derive(Serialize)]
struct ScoreLine<'a> {
    index: usize,
    model: &'a str,
    nll: Option<f64>,
    answer_tokens: usize,
    truncated: bool,
}

/// Runs `score` on the chosen backend.
pub fn run_score(args: ScoreArgs) -> anyhow::Result<()> {
    match args.device {
        DeviceKind::Cpu => score_on::<crate::CpuBackend>(args, Default::default()),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => score_on::<burn::backend::Cuda>(args, Default::default()),
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda => bail!("--device cuda needs a build with the `cuda` feature"),
    }
}

/// Runs `generate` on the chosen backend.
pub fn run_generate(args: GenerateArgs) -> anyhow::Result<()> {
    match args.device {
        DeviceKind::Cpu => generate_on::<crate::CpuBackend>(args, Default::default()),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => generate_on::<burn::backend::Cuda>(args, Default::default()),
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda => bail!("--device cuda needs a build with the `cuda` feature"),
    }
}

impl DeviceKind {
    /// The precision used when `--precision` is not given.
    pub fn default_precision(self) -> Precision {
        match self {
            DeviceKind::Cpu => Precision::F32,
            DeviceKind::Cuda => Precision::Bf16,
        }
    }
}

fn load_engine<B: Backend>(
    model: &std::path::Path,
    adapters: &[(String, PathBuf)],
    device: B::Device,
    precision: Precision,
) -> anyhow::Result<Engine<B>> {
    let mut engine = Engine::<B>::load_with(model, device, precision)
        .with_context(|| format!("loading model {}", model.display()))?;
    for (name, dir) in adapters {
        engine
            .load_adapter(name, dir)
            .with_context(|| format!("loading adapter `{name}` from {}", dir.display()))?;
    }
    Ok(engine)
}

fn score_on<B: Backend>(args: ScoreArgs, device: B::Device) -> anyhow::Result<()> {
    let precision = args
        .precision
        .unwrap_or_else(|| args.device.default_precision());
    let started = std::time::Instant::now();
    let engine = load_engine::<B>(&args.model, &args.adapters, device, precision)?;
    let loaded = started.elapsed();
    let mut tokens = 0usize;
    let names: Vec<String> = std::iter::once("base".to_string())
        .chain(args.adapters.iter().map(|(n, _)| n.clone()))
        .collect();
    let models: Vec<Option<&str>> = std::iter::once(None)
        .chain(args.adapters.iter().map(|(n, _)| Some(n.as_str())))
        .collect();
    let open = || {
        std::fs::File::open(&args.data).with_context(|| format!("opening {}", args.data.display()))
    };
    let total = BufReader::new(open()?).lines().count() as u64;
    let bar = indicatif::ProgressBar::new(total).with_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} examples {elapsed_precise} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let opts = ScoreOptions {
        max_batch_rows: args.batch_rows,
    };
    let mut pending: Vec<(usize, EncodedChat)> = Vec::new();
    let mut flush =
        |pending: &mut Vec<(usize, EncodedChat)>, out: &mut Box<dyn Write>| -> anyhow::Result<()> {
            let encs: Vec<EncodedChat> = pending.iter().map(|(_, e)| e.clone()).collect();
            tokens += encs.iter().map(|e| e.ids.len()).sum::<usize>() * models.len();
            let scores = engine.score(&encs, &models, &opts)?;
            for (k, (index, enc)) in pending.iter().enumerate() {
                for (m, name) in names.iter().enumerate() {
                    let s = &scores[m][k];
                    let line = ScoreLine {
                        index: *index,
                        model: name,
                        nll: s.nll.is_finite().then_some(s.nll),
                        answer_tokens: s.answer_tokens,
                        truncated: enc.truncated,
                    };
                    writeln!(out, "{}", serde_json::to_string(&line)?)?;
                }
            }
            bar.inc(pending.len() as u64);
            pending.clear();
            Ok(())
        };
    for (i, line) in BufReader::new(open()?).lines().enumerate() {
        let where_ = || format!("{}:{}", args.data.display(), i + 1);
        let line = line.with_context(where_)?;
        if line.trim().is_empty() {
            bail!("{}: empty line", where_());
        }
        let parsed: Line = serde_json::from_str(&line)
            .with_context(|| format!("{}: expected {{\"messages\": [...]}}", where_()))?;
        let enc = engine
            .tokenizer
            .encode_chat(&parsed.messages, Some(args.max_len))
            .with_context(where_)?;
        pending.push((i, enc));
        if pending.len() >= args.chunk_examples.max(1) {
            flush(&mut pending, &mut out)?;
        }
    }
    if !pending.is_empty() {
        flush(&mut pending, &mut out)?;
    }
    bar.finish();
    out.flush()?;
    let work = started.elapsed() - loaded;
    eprintln!(
        "loaded in {:.3} s; scored {tokens} tokens in {:.3} s ({:.1} tokens/s)",
        loaded.as_secs_f64(),
        work.as_secs_f64(),
        tokens as f64 / work.as_secs_f64().max(1e-9)
    );
    Ok(())
}

#[derive(Serialize)]
struct GenerateLine<'a> {
    prompt: &'a str,
    model: &'a str,
    completion: String,
    tokens: usize,
}

fn generate_on<B: Backend>(args: GenerateArgs, device: B::Device) -> anyhow::Result<()> {
    let precision = args
        .precision
        .unwrap_or_else(|| args.device.default_precision());
    let started = std::time::Instant::now();
    let engine = load_engine::<B>(&args.model, &args.adapters, device, precision)?;
    eprintln!("loaded in {:.3} s", started.elapsed().as_secs_f64());
    let prompts = args
        .prompts
        .iter()
        .map(|p| {
            engine.tokenizer.encode_prompt(&[Message {
                role: "user".into(),
                content: p.clone(),
            }])
        })
        .collect::<Result<Vec<_>, _>>()?;
    let sampling = if args.temperature > 0.0 {
        Sampling::TopP {
            temperature: args.temperature,
            top_p: args.top_p,
            seed: args.seed,
        }
    } else {
        Sampling::Greedy
    };
    let mut stop_tokens = engine.weights.config.eos_token_ids.clone();
    stop_tokens.extend(engine.tokenizer.eos_id);
    let opts = GenerateOptions {
        max_new_tokens: args.max_new_tokens,
        sampling,
        stop_tokens: stop_tokens.clone(),
    };
    let mut stdout = std::io::stdout().lock();
    let models: Vec<(&str, Option<&str>)> = std::iter::once(("base", None))
        .chain(
            args.adapters
                .iter()
                .map(|(n, _)| (n.as_str(), Some(n.as_str()))),
        )
        .collect();
    for (label, adapter) in models {
        let t = std::time::Instant::now();
        let outs = engine.generate(&prompts, adapter, &opts)?;
        let secs = t.elapsed().as_secs_f64();
        let n: usize = outs.iter().map(Vec::len).sum();
        eprintln!(
            "{label}: generated {n} tokens for {} prompts in {secs:.3} s ({:.1} tokens/s)",
            prompts.len(),
            n as f64 / secs.max(1e-9)
        );
        for (prompt, toks) in args.prompts.iter().zip(outs) {
            let text_ids: Vec<u32> = toks
                .iter()
                .copied()
                .filter(|t| !stop_tokens.contains(t))
                .collect();
            let completion = engine
                .tokenizer
                .tokenizer
                .decode(&text_ids, true)
                .map_err(|e| anyhow::anyhow!("decoding: {e}"))?;
            let line = GenerateLine {
                prompt,
                model: label,
                completion,
                tokens: toks.len(),
            };
            writeln!(stdout, "{}", serde_json::to_string(&line)?)?;
        }
    }
    Ok(())
}
