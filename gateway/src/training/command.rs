//! `tuneguard train`: LoRA training from the command line, with a progress bar, Ctrl-C as
//! "checkpoint and exit 130", and `--resume`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use burn::backend::Autodiff;
use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressStyle};
use trainer::cli::DeviceKind;
use trainer::train::{
    CheckpointInfo, Control, Directive, Observer, Outcome, Session, SessionInputs, StepMetrics,
};
use trainer::{Engine, Precision};

use super::plan::{train_config, Overrides};

/// Arguments of `train` (the worker and operators' scripts rely on these names).
#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// HuggingFace model directory (config.json, safetensors, tokenizer.json) or GGUF file.
    #[arg(long)]
    pub model: PathBuf,
    /// Training JSONL (OpenAI chat fine-tuning format; per-message `weight` honoured).
    #[arg(long)]
    pub data: PathBuf,
    /// Output directory: the final adapter, checkpoints/step-N/, metrics.jsonl.
    #[arg(long)]
    pub out: PathBuf,
    /// Validation JSONL (loss and token accuracy at every checkpoint).
    #[arg(long)]
    pub validation: Option<PathBuf>,
    /// One policy file ([training], [regularizer], [inoculation], monitor cadence); default:
    /// the shipped defaults.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Start from this PEFT adapter (its r, α, scaling and targets win over the policy's).
    #[arg(long)]
    pub init_adapter: Option<PathBuf>,
    /// Stop after this many optimizer steps (also the schedule's length).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Checkpoint every N optimizer steps (default: the policy's monitor.checkpoint_every_steps).
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// Continue from the newest checkpoint in --out.
    #[arg(long)]
    pub resume: bool,
    /// Backend.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    pub device: DeviceKind,
    /// Compute precision of the base model (default: f32 on cpu, bf16 on cuda).
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
}

/// Runs `train`; exit 0 when finished, 130 when interrupted (after its checkpoint).
pub fn run_train(args: TrainArgs) -> anyhow::Result<ExitCode> {
    match args.device {
        DeviceKind::Cpu => train_on::<Autodiff<trainer::CpuBackend>>(args, Default::default()),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => train_on::<Autodiff<burn::backend::Cuda>>(args, Default::default()),
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda => bail!("--device cuda needs a build with the `cuda` feature"),
    }
}

struct Progress {
    bar: ProgressBar,
}

impl Observer for Progress {
    fn on_step(&mut self, m: &StepMetrics) {
        self.bar.set_position(m.step as u64);
        self.bar.set_message(format!(
            "loss {:.4} (ce {:.4} kl {:.4} ldifs {:.4}) {:.0} tok/s",
            m.loss, m.ce, m.kl, m.ldifs, m.tokens_per_second
        ));
    }

    fn on_checkpoint(&mut self, c: &CheckpointInfo) {
        let valid = c
            .metrics
            .valid_loss
            .map(|v| format!(", valid_loss {v:.4}"))
            .unwrap_or_default();
        self.bar.println(format!(
            "checkpoint {} (train_loss {:.4}{valid})",
            c.dir.display(),
            c.metrics.train_loss
        ));
    }
}

struct Interrupt(Arc<AtomicBool>);

impl Control for Interrupt {
    fn check(&mut self) -> Directive {
        if self.0.load(Ordering::SeqCst) {
            Directive::Pause
        } else {
            Directive::Continue
        }
    }
}

fn load_policy(path: Option<&Path>) -> anyhow::Result<(policies::Policy, PathBuf)> {
    match path {
        Some(p) => {
            let policy = policies::load_file(p).map_err(|e| anyhow::anyhow!("{e}"))?;
            let dir = p.parent().map(Path::to_path_buf).unwrap_or_default();
            Ok((policy, dir))
        }
        None => Ok((policies::Policy::builtin_default(), PathBuf::from("."))),
    }
}

fn train_on<B: AutodiffBackend>(args: TrainArgs, device: B::Device) -> anyhow::Result<ExitCode> {
    let (policy, policy_dir) = load_policy(args.policy.as_deref())?;
    let precision = args
        .precision
        .unwrap_or_else(|| args.device.default_precision());
    let engine = Engine::<B>::load_with(&args.model, device, precision)
        .with_context(|| format!("loading the model {}", args.model.display()))?;
    let overrides = Overrides {
        max_steps: args.max_steps,
        checkpoint_every: args.checkpoint_every,
        ..Overrides::default()
    };
    let config = train_config(
        &policy,
        &policy_dir,
        engine.weights.config.num_layers,
        &overrides,
    )
    .map_err(|e| match &args.policy {
        Some(p) => anyhow::anyhow!("{}: {e}", p.display()),
        None => anyhow::anyhow!("{e}"),
    })?;
    let base_model = args.model.display().to_string();
    let inputs = SessionInputs {
        data: &args.data,
        validation: args.validation.as_deref(),
        out: &args.out,
        base_model: &base_model,
    };
    let mut session = if args.resume {
        if args.init_adapter.is_some() {
            bail!("--init-adapter cannot be combined with --resume (the checkpoint holds the adapter)");
        }
        Session::resume(&engine, config, &inputs)?
    } else {
        Session::start(&engine, config, &inputs, args.init_adapter.as_deref())?
    };
    let data = session.data();
    if data.truncated > 0 {
        eprintln!(
            "note: {} example(s) cut at max_length_tokens = {} ({} left with no answer token)",
            data.truncated,
            session.config().max_length,
            data.truncated_empty
        );
    }
    let flag = crate::stop_flag::on_signals(&[tokio::signal::unix::SignalKind::interrupt()])?;
    // One plain line before the bar (which only draws on a terminal): scripts wait for it.
    eprintln!(
        "training {} steps from step {} into {} (Ctrl-C: checkpoint and stop)",
        session.total_steps(),
        session.step(),
        args.out.display()
    );
    let bar = ProgressBar::new(session.total_steps() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps  {msg}  ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(session.step() as u64);
    let mut progress = Progress { bar: bar.clone() };
    let outcome = session.run(&mut progress, &mut Interrupt(flag))?;
    bar.finish_and_clear();
    match outcome {
        Outcome::Finished { step } => {
            println!(
                "{}",
                serde_json::json!({"status": "finished", "step": step, "out": args.out})
            );
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Paused { step } | Outcome::Cancelled { step } => {
            eprintln!(
                "interrupted: checkpoint at step {step} in {}; continue with --resume",
                args.out.join("checkpoints").display()
            );
            Ok(ExitCode::from(130))
        }
    }
}
