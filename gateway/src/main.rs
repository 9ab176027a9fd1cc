//! `tuneguard`: thin command-line entry point.

use anyhow::Context;
use clap::{Parser, Subcommand};
use gateway::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "tuneguard",
    version,
    about = "A safety gateway for fine-tuning APIs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (embedded defaults when no config file exists).
    Serve {
        /// Config file (default: conf/tuneguard.toml if present, else embedded defaults).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Train local fine-tuning jobs: lease queued jobs from the store and run them (`serve`
    /// starts `[local] workers` of these itself).
    Worker {
        /// Config file (the same one `serve` uses).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Operator policy tools.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Answer-only mean NLL of each example under the base model and each adapter (JSONL).
    Score(trainer::cli::ScoreArgs),
    /// Generate replies to prompts with the base model and each adapter (JSONL).
    Generate(trainer::cli::GenerateArgs),
    /// LoRA fine-tuning with the policy's defenses; checkpoints, metrics.jsonl, --resume.
    Train(gateway::training::command::TrainArgs),
    /// Pre-score an Interleaving pool by the perplexity-gap score (cached), ranked JSONL.
    Select(selector::cli::SelectArgs),
    /// Extract persona vectors ([L+1, hidden] safetensors) from a trait file, judge optional.
    Persona(gateway::persona_cmd::PersonaArgs),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate a policy directory offline; every bad file is reported (exit 1 if any).
    Check {
        /// The policy directory (one <name>.toml per policy).
        dir: PathBuf,
    },
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn serve(config: Option<PathBuf>) -> anyhow::Result<()> {
    init_tracing();
    let config_path = config.clone();
    let config = Config::load(config.as_deref()).context("loading configuration")?;
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    rt.block_on(async {
        // Before anything is announced: a SIGTERM after the listening line is a graceful stop.
        let signal = gateway::server::shutdown_signal().context("installing signal handlers")?;
        let mut gateway = gateway::serve::build(config)?;
        gateway.workers = Some(gateway::local::supervise::WorkerCommand {
            exe: std::env::current_exe().context("locating the tuneguard binary")?,
            config: config_path,
        });
        gateway::serve::serve(gateway, signal).await?;
        anyhow::Ok(())
    })?;
    Ok(())
}

fn worker(config: Option<PathBuf>) -> anyhow::Result<()> {
    init_tracing();
    let config = Config::load(config.as_deref()).context("loading configuration")?;
    use tokio::signal::unix::SignalKind;
    // A stop request: the current job checkpoints at its next step boundary.
    let stop = gateway::stop_flag::on_signals(&[SignalKind::terminate(), SignalKind::interrupt()])?;
    let supervisor = gateway::local::worker::supervisor_pid();
    gateway::local::worker::run(&config, stop, supervisor)
}

fn policy_check(dir: &std::path::Path) -> ExitCode {
    match policies::check_dir(dir) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            eprintln!("{}: {} error(s)", dir.display(), errors.len());
            ExitCode::FAILURE
        }
    }
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(config).map(|()| ExitCode::SUCCESS),
        Command::Worker { config } => worker(config).map(|()| ExitCode::SUCCESS),
        Command::Policy {
            command: PolicyCommand::Check { dir },
        } => Ok(policy_check(&dir)),
        Command::Score(args) => trainer::cli::run_score(args).map(|()| ExitCode::SUCCESS),
        Command::Generate(args) => trainer::cli::run_generate(args).map(|()| ExitCode::SUCCESS),
        Command::Train(args) => gateway::training::command::run_train(args),
        Command::Select(args) => selector::cli::run_select(args).map(|()| ExitCode::SUCCESS),
        Command::Persona(args) => {
            gateway::persona_cmd::run_persona(args).map(|()| ExitCode::SUCCESS)
        }
    }
}
