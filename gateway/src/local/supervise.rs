//! `serve`'s worker processes: `[local] workers` children running `tuneguard worker` at a
//! lower CPU priority (through `nice` when it is installed), each restarted with exponential
//! backoff (1 s doubling to 60 s) when it exits, and stopped with the gateway.

use std::path::PathBuf;
use std::time::Duration;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// How a worker process is started.
#[derive(Debug, Clone)]
pub struct WorkerCommand {
    /// The `tuneguard` binary.
    pub exe: PathBuf,
    /// `--config FILE` when serve was given one.
    pub config: Option<PathBuf>,
}

impl WorkerCommand {
    fn command(&self) -> Command {
        let nice = which_nice();
        let mut c = match &nice {
            Some(n) => {
                let mut c = Command::new(n);
                c.arg("-n").arg("10").arg(&self.exe);
                c
            }
            None => Command::new(&self.exe),
        };
        c.arg("worker");
        if let Some(cfg) = &self.config {
            c.arg("--config").arg(cfg);
        }
        // The worker follows this process: it stops when its parent is no longer us.
        c.env(
            super::worker::SUPERVISOR_PID_ENV,
            std::process::id().to_string(),
        );
        c.kill_on_drop(true);
        c
    }
}

fn which_nice() -> Option<PathBuf> {
    ["/usr/bin/nice", "/bin/nice"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Keeps one worker process alive until `stop`.
pub async fn supervise(cmd: WorkerCommand, index: usize, stop: CancellationToken) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = std::time::Instant::now();
        let mut child = match cmd.command().spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(worker = index, error = %e, "starting a worker failed");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(60));
                continue;
            }
        };
        tokio::select! {
            _ = stop.cancelled() => {
                // SIGTERM-like stop: the worker checkpoints at its next step boundary when
                // asked politely; the gateway is shutting down, so kill it (its lease expires
                // and the job resumes from its last checkpoint on the next start).
                let _ = child.kill().await;
                return;
            }
            status = child.wait() => {
                tracing::warn!(worker = index, ?status, "worker exited; restarting");
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_secs(1);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}
