//! `tuneguard persona`: extracts persona vectors (one `[L+1, hidden]` tensor `vectors`) from a
//! trait file, optionally filtered by an OpenAI-compatible judge ([`judge`]), and writes them
//! atomically for the training steering regularizer.

pub mod judge;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use burn::tensor::backend::Backend;
use trainer::cli::DeviceKind;
use trainer::persona::{extract_with_progress, PersonaJudge, PersonaOptions, Progress, Traits};
use trainer::{Engine, Precision};

use judge::{HttpJudge, API_KEY_ENV};

/// Arguments of `persona`.
#[derive(Debug, Clone, clap::Args)]
pub struct PersonaArgs {
    /// HuggingFace Qwen2 model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Trait file (persona_vectors' JSON: `instruction` pos/neg pairs, `questions`,
    /// `eval_prompt`), e.g. conf/traits/evil.json.
    #[arg(long)]
    pub traits: PathBuf,
    /// Output safetensors file (one tensor `vectors`, `[layers+1, hidden]`).
    #[arg(long)]
    pub out: PathBuf,
    /// OpenAI-compatible judge: base URL (e.g. https://api.openai.com/v1) or the full
    /// `/chat/completions` endpoint. Without a judge every pair is kept. API key: env
    /// TUNEGUARD_JUDGE_API_KEY (optional).
    #[arg(long, requires = "judge_model")]
    pub judge_url: Option<String>,
    /// Judge model name.
    #[arg(long, requires = "judge_url")]
    pub judge_model: Option<String>,
    /// Answers per (instruction pair, question) and side.
    #[arg(long, default_value_t = 10)]
    pub samples: usize,
    /// Most new tokens per answer.
    #[arg(long, default_value_t = 1000)]
    pub max_new_tokens: usize,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Rows per generation batch and per capture pass.
    #[arg(long, default_value_t = 16)]
    pub batch_rows: usize,
    /// Backend.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    pub device: DeviceKind,
    /// Compute precision of the base model (default: f32 on cpu, bf16 on cuda).
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
}

/// Runs `persona` on the chosen backend.
pub fn run_persona(args: PersonaArgs) -> anyhow::Result<()> {
    match args.device {
        DeviceKind::Cpu => persona_on::<trainer::CpuBackend>(args, Default::default()),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => persona_on::<burn::backend::Cuda>(args, Default::default()),
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda => bail!("--device cuda needs a build with the `cuda` feature"),
    }
}

fn persona_on<B: Backend>(args: PersonaArgs, device: B::Device) -> anyhow::Result<()> {
    let traits = Traits::load(&args.traits)?;
    let mut judge = match (&args.judge_url, &args.judge_model) {
        (Some(url), Some(model)) => {
            let key = std::env::var(API_KEY_ENV).ok();
            Some(HttpJudge::new(url, model, key.as_deref())?)
        }
        _ => None,
    };
    if args.out.is_dir() {
        bail!(
            "--out {} is a directory; give a file name",
            args.out.display()
        );
    }
    let precision = args
        .precision
        .unwrap_or_else(|| args.device.default_precision());
    let engine = Engine::<B>::load_with(&args.model, device, precision)
        .with_context(|| format!("loading model {}", args.model.display()))?;
    let opts = PersonaOptions {
        max_new_tokens: args.max_new_tokens,
        samples_per_question: args.samples,
        temperature: args.temperature,
        seed: args.seed,
        batch_rows: args.batch_rows,
        ..PersonaOptions::default()
    };
    eprintln!(
        "persona: {} instruction pairs × {} questions × {} samples; judge: {}",
        traits.instruction.len(),
        traits.questions.len(),
        args.samples,
        judge
            .as_ref()
            .map_or("none (every pair is kept)".to_string(), |j| format!(
                "{j:?}"
            ))
    );
    let judge_ref = judge.as_mut().map(|j| j as &mut dyn PersonaJudge);
    let mut deciles = [None; 3];
    let mut progress = |p| report_progress(p, &mut deciles);
    let vectors = extract_with_progress(&engine, &traits, &opts, judge_ref, &mut progress)
        .with_context(|| format!("extracting persona vectors from {}", args.traits.display()))?;
    eprint!("{}", vectors.report);
    write_atomically(&args.out, |tmp| Ok(vectors.write(tmp)?))?;
    eprintln!(
        "persona: wrote {} (tensor `{}` [{}, {}])",
        args.out.display(),
        trainer::persona::VECTORS_TENSOR,
        vectors.layers,
        vectors.hidden
    );
    Ok(())
}

/// A stderr line each time a stage passes another tenth of its work (`last`: the tenth last
/// reported, per stage).
fn report_progress(p: Progress, last: &mut [Option<usize>; 3]) {
    let (stage, what, done, n, unit) = match p {
        Progress::Generated(d, n) => (0, "generated", d, n, "answers"),
        Progress::Judged(d, n) => (1, "judged", d, n, "pairs"),
        Progress::Captured(d, n) => (2, "captured", d, n, "kept answers"),
    };
    let tenth = done * 10 / n.max(1);
    if last[stage] == Some(tenth) {
        return;
    }
    last[stage] = Some(tenth);
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "persona: {what} {done}/{n} {unit}");
}

/// Writes `path` through a temp file in the same directory: write, fsync, rename, fsync the
/// directory; a failure leaves any previous file untouched and no temp file behind.
fn write_atomically(
    path: &Path,
    write: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{}: not a file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        write(&tmp)?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("syncing {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing directory {}", dir.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
