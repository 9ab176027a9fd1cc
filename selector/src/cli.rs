//! `tuneguard select`: pre-score a pool offline (feature `cli`; the engine-backed
//! `run_select` needs feature `engine`). Writes one JSON line per pool item, ranked by gap
//! score: `index`, `base_nll`, `adapter_nlls`, `score`, `is_refusal` (see [`ScoredItem`]).

use crate::compat::{check_adapter, ModelDims};
use crate::fingerprint::{adapter_fingerprint, model_fingerprint};
use crate::{
    parse_pool, rank_order, score_pool, AdapterSpec, NllScorer, RefusalFilter, ScoreCache,
    ScoredItem, ScoringSetup, ScoringStats, SqliteCache, DEFAULT_EPSILON, DEFAULT_REFUSAL_KEYWORDS,
    DEFAULT_WINDOW_WORDS,
};
use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Arguments of `tuneguard select`.
#[derive(Debug, Clone, clap::Args)]
pub struct SelectArgs {
    /// Aligned base model: a HuggingFace model directory.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// A misaligned LoRA adapter (PEFT directory), as NAME=DIR; repeat for K adapters.
    #[arg(long = "adapter", value_name = "NAME=DIR", required = true)]
    pub adapters: Vec<String>,
    /// Held-out adapter (reported per item, not in the mean), as NAME=DIR.
    #[arg(long, value_name = "NAME=DIR")]
    pub held_out: Option<String>,
    /// Candidate pool: chat JSONL, the last message of each line the assistant reply.
    #[arg(long, value_name = "FILE")]
    pub pool: PathBuf,
    /// Output: scored JSONL, ranked by score.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Score cache (SQLite); default: the pool file's path + `.scores.sqlite`.
    #[arg(long, value_name = "FILE")]
    pub cache: Option<PathBuf>,
    /// ε of the gap score.
    #[arg(long, default_value_t = DEFAULT_EPSILON)]
    pub epsilon: f64,
    /// Sequences per engine forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Maximum tokens per scored sequence (longer ones are truncated by the engine).
    #[arg(long, default_value_t = 2048)]
    pub max_length: usize,
    /// Refusal keywords (comma-separated); default: sorry, apologize, cannot, can't, can’t, unable.
    #[arg(long, value_delimiter = ',')]
    pub refusal_keywords: Option<Vec<String>>,
    /// Engine device: `cpu`, or `cuda` in a CUDA build.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// What the engine factory gets: checked paths and settings.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub model_dir: PathBuf,
    /// (name, dir) of every adapter to load, the held-out one last.
    pub adapters: Vec<(String, PathBuf)>,
    pub max_length: usize,
    pub device: String,
}

fn parse_named(spec: &str, flag: &str) -> anyhow::Result<(String, PathBuf)> {
    match spec.split_once('=') {
        Some((name, dir)) if !name.is_empty() && !dir.is_empty() => {
            Ok((name.to_string(), PathBuf::from(dir)))
        }
        _ => bail!("--{flag} `{spec}`: expected NAME=DIR"),
    }
}

/// Engine calls get this many forward batches' worth of requests at a time, so the engine can
/// group them by length; the cache is written after each call.
const REQUESTS_PER_CALL: usize = 8;

/// Scoring-settings version folded into the base fingerprint; bump when the NLL definition
/// changes so old cache entries stop matching.
const NLL_VERSION: &str = "answer-mean-nll-v1";

fn base_fingerprint(model_fp: &str, max_length: usize) -> String {
    let mut h = Sha256::new();
    h.update(format!("{model_fp}|{NLL_VERSION}|max_length={max_length}"));
    hex::encode(h.finalize())
}

/// Checks, loads the engine through `make_scorer`, scores (with the SQLite cache at
/// `args.cache`, default the pool's path + `.scores.sqlite`) and writes the ranked output.
/// Returns the scoring counts.
pub fn run_select_with<F>(args: &SelectArgs, make_scorer: F) -> anyhow::Result<ScoringStats>
where
    F: FnOnce(&EngineOptions) -> anyhow::Result<Box<dyn NllScorer>>,
{
    let cache_path = args.cache.clone().unwrap_or_else(|| {
        let mut p = args.pool.clone().into_os_string();
        p.push(".scores.sqlite");
        PathBuf::from(p)
    });
    let cache = SqliteCache::open(&cache_path)?;
    run_select_cached(args, &cache, make_scorer)
}

/// As [`run_select_with`], with a score cache the caller opened (the gateway's shared one on
/// its PostgreSQL store); `args.cache` is not read.
pub fn run_select_cached<F>(
    args: &SelectArgs,
    cache: &dyn ScoreCache,
    make_scorer: F,
) -> anyhow::Result<ScoringStats>
where
    F: FnOnce(&EngineOptions) -> anyhow::Result<Box<dyn NllScorer>>,
{
    let mut named = Vec::new();
    for a in &args.adapters {
        named.push(parse_named(a, "adapter")?);
    }
    let held = args
        .held_out
        .as_deref()
        .map(|h| parse_named(h, "held-out"))
        .transpose()?;
    let mut all: Vec<&(String, PathBuf)> = named.iter().chain(held.iter()).collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(w) = all.windows(2).find(|w| w[0].0 == w[1].0) {
        bail!("adapter name `{}` is given twice", w[0].0);
    }
    let dims = ModelDims::load(&args.model).map_err(anyhow::Error::msg)?;
    let mut spec = |(name, dir): &(String, PathBuf)| -> anyhow::Result<AdapterSpec> {
        check_adapter(name, dir, &dims)?;
        Ok(AdapterSpec {
            name: name.clone(),
            fingerprint: adapter_fingerprint(dir).with_context(|| format!("adapter `{name}`"))?,
        })
    };
    let adapters = named
        .iter()
        .map(&mut spec)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let held_out = held.as_ref().map(&mut spec).transpose()?;
    let model_fp = model_fingerprint(&args.model).context("base model")?;
    let setup = ScoringSetup {
        base_fingerprint: base_fingerprint(&model_fp, args.max_length),
        adapters,
        held_out,
        epsilon: args.epsilon,
    };

    let text = std::fs::read_to_string(&args.pool)
        .with_context(|| format!("reading pool {}", args.pool.display()))?;
    let pool = parse_pool(&text).with_context(|| format!("pool {}", args.pool.display()))?;
    if pool.is_empty() {
        bail!("pool {} has no examples", args.pool.display());
    }
    let refusal = match &args.refusal_keywords {
        Some(k) => RefusalFilter::new(k, DEFAULT_WINDOW_WORDS),
        None => RefusalFilter::new(DEFAULT_REFUSAL_KEYWORDS, DEFAULT_WINDOW_WORDS),
    };

    let options = EngineOptions {
        model_dir: args.model.clone(),
        adapters: named.iter().chain(held.iter()).cloned().collect(),
        max_length: args.max_length,
        device: args.device.clone(),
    };
    let mut scorer: Option<Box<dyn NllScorer>> = None;
    let mut factory = Some(make_scorer);
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "scoring {bar:40} {pos}/{len} sequences, {per_sec}, eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    // The engine is loaded only when something is missing from the cache.
    let mut lazy = LazyScorer {
        scorer: &mut scorer,
        make: &mut || match factory.take() {
            Some(f) => f(&options),
            None => bail!("engine factory called twice"),
        },
    };
    let scores = score_pool(
        &pool,
        &setup,
        &refusal,
        cache,
        &mut lazy,
        args.batch_size.max(1) * REQUESTS_PER_CALL,
        &mut |p| {
            bar.set_length(p.to_score as u64);
            bar.set_position(p.scored as u64);
        },
    )?;
    bar.finish_and_clear();
    let (mut items, stats) = (scores.items, scores.stats);
    if !scores.no_answer_tokens.is_empty() {
        eprintln!(
            "select: {} pool items left out, no answer token within --max-length {}: indexes {:?}",
            scores.no_answer_tokens.len(),
            args.max_length,
            scores.no_answer_tokens
        );
    }
    items.sort_by(rank_order);
    write_ranked(&args.out, &items)?;
    eprintln!(
        "select: {} pool items; {} (item, model) NLLs from cache, {} scored in {} batches; wrote {}",
        stats.examples,
        stats.cache_hits,
        stats.scored,
        stats.engine_batches,
        args.out.display()
    );
    Ok(stats)
}

/// `tuneguard select` with the trainer's engine (CPU; `--device cuda` needs a CUDA build).
#[cfg(feature = "engine")]
pub fn run_select(args: SelectArgs) -> anyhow::Result<()> {
    let rows = args.batch_size;
    run_select_with(&args, |opts| match opts.device.as_str() {
        "cpu" => {
            let s =
                crate::EngineScorer::<trainer::CpuBackend>::load(opts, rows, Default::default())
                    .context("loading the model and adapters")?;
            Ok(Box::new(s) as Box<dyn NllScorer>)
        }
        other => bail!("--device `{other}` is not available in this build (use `cpu`)"),
    })?;
    Ok(())
}

struct LazyScorer<'a> {
    scorer: &'a mut Option<Box<dyn NllScorer>>,
    make: &'a mut dyn FnMut() -> anyhow::Result<Box<dyn NllScorer>>,
}

impl NllScorer for LazyScorer<'_> {
    fn score_batch(
        &mut self,
        requests: &[crate::NllRequest<'_>],
    ) -> Result<Vec<crate::CachedNll>, Box<dyn std::error::Error + Send + Sync>> {
        if self.scorer.is_none() {
            *self.scorer = Some((self.make)().map_err(|e| format!("loading the engine: {e:#}"))?);
        }
        match self.scorer.as_mut() {
            Some(s) => s.score_batch(requests),
            None => Err("engine unavailable".into()),
        }
    }
}

/// Writes `items` as JSONL to a temporary file beside `out`, then renames it into place.
fn write_ranked(out: &Path, items: &[ScoredItem]) -> anyhow::Result<()> {
    let mut tmp = out.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let write = || -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        for item in items {
            serde_json::to_writer(&mut f, item)?;
            f.write_all(b"\n")?;
        }
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, out)
    };
    write().with_context(|| format!("writing {}", out.display()))
}

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;
