//! `tuneguard`: thin command-line entry point.

use anyhow::Context;
use clap::{Parser, Subcommand};
use gateway::config::Config;
use std::path::PathBuf;

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
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            init_tracing();
            let config = Config::load(config.as_deref()).context("loading configuration")?;
            let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            rt.block_on(async {
                let state = gateway::serve::build_state(config)?;
                gateway::serve::serve(state, gateway::server::shutdown_signal()).await
            })?;
        }
    }
    Ok(())
}
