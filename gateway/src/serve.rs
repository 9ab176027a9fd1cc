//! `tuneguard serve`: opens the store, sweeps, binds, prints the one stdout line, and runs
//! the server, the job runner and upload expiry until a shutdown signal.

use crate::auth::{demo_key, Auth};
use crate::config::{Config, ExecutionMode, TenantConfig};
use crate::jobs::metered::{MeteredExecutor, MeteredProxy};
use crate::jobs::screening::StreamingScreener;
use crate::jobs::{Runner, Seams};
use crate::metrics::Metrics;
use crate::policy_watch::{PolicyWatcher, PollOutcome, WatchPlanner};
use crate::server::{self, ServeOptions};
use crate::state::AppState;
use crate::store::{open_store, BlobStore, OpenStoreError, Store};
use crate::upstream::{UpstreamExecutor, UpstreamProxy};
use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Per completion of the upstream monitor (a provider's checkpoint model answering).
const UPSTREAM_EVAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// How often the runner re-reads active jobs (and polls running upstream jobs) when nothing
/// wakes it sooner.
pub const RUNNER_POLL_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("storage under {path}: {source}")]
    Store {
        path: String,
        source: crate::store::StoreError,
    },
    #[error("{0}")]
    OpenStore(#[from] OpenStoreError),
    #[error("demo tenant key under {path}: {source}")]
    DemoKey {
        path: String,
        source: std::io::Error,
    },
    #[error("replica id under {path}: {source}")]
    ReplicaId {
        path: String,
        source: std::io::Error,
    },
    #[error("binding {addr} (config key `server.listen`): {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS (config keys `server.tls_cert_path`/`server.tls_key_path`): {0}")]
    Tls(#[from] server::TlsError),
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("policies (config key `policies.dir`): {0}")]
    Policies(String),
    #[error("upstream (config section `[upstream]`): {0}")]
    Upstream(String),
    #[error("writing to stdout: {0}")]
    Stdout(std::io::Error),
}

/// The state `serve` runs on: [`build_state_with`] plus the real seams for the config —
/// streaming screening with the configured tokenizers, the dataset transform, and either the
/// upstream executor + proxy (`execution.mode = "upstream"`) or local execution.
///
/// Policies: the directory `policies.dir` is loaded (an invalid or empty set, or a missing
/// directory, is a start-up error) and watched for changes; only when `policies.dir` is the
/// shipped default `conf/policies` and that is absent does the embedded default set apply.
pub fn build(config: Config) -> Result<Gateway, ServeError> {
    let screening = config.screening.clone();
    let interleave = config.interleave.clone();
    let upstream = config.upstream.clone();
    let mode = config.execution;
    let policy_dir = config.policies.dir.clone();
    let mut state = build_state_with(config, Seams::builtin())?;
    state.seams.mode = mode;
    let metrics = Arc::clone(&state.metrics);
    let models = state.config.models.clone();
    state.seams.screener = Arc::new(StreamingScreener::new(screening, models.clone()));
    state.seams.transformer = Arc::new(crate::transform::EngineTransformer::new(
        crate::transform::InterleaveEngine::new(interleave, models, Some(Arc::clone(&metrics)))
            .with_store_cache(state.store.score_cache()),
    ));
    let policy_watcher = if uses_policy_dir(&policy_dir)? {
        // A directory without policy files is refused here too (the error names the path).
        let (watcher, rx) =
            PolicyWatcher::load(&policy_dir).map_err(|e| ServeError::Policies(e.to_string()))?;
        metrics.policy_reload_ok();
        state.seams.planner = Arc::new(WatchPlanner::new(rx));
        Some(watcher)
    } else {
        tracing::info!(dir = %policy_dir.display(), "default policy directory (config key `policies.dir`) not present; the embedded default policy set applies");
        state.seams.planner = Arc::new(WatchPlanner::embedded());
        None
    };
    if let Some(up) = upstream {
        let upstream_err = |e: crate::upstream::UpstreamError| ServeError::Upstream(e.message);
        if mode == ExecutionMode::Upstream {
            let mut exec = UpstreamExecutor::new(&up.base_url, &up.api_key, state.blobs.clone())
                .map_err(upstream_err)?;
            let mc = &state.config.monitor;
            if mc.upstream_checkpoints {
                let endpoint = crate::monitoring::chat_answers::ChatEndpoint {
                    url: crate::persona_cmd::judge::completions_url(&up.base_url),
                    api_key: up.api_key.clone(),
                    concurrency: mc.upstream_concurrency,
                    timeout: UPSTREAM_EVAL_TIMEOUT,
                };
                exec = exec.with_monitor(crate::monitoring::upstream::UpstreamMonitor::new(
                    mc.clone(),
                    endpoint,
                    Arc::clone(&state.store),
                    Some(Arc::clone(&metrics)),
                ));
            }
            state.seams.executor = Arc::new(MeteredExecutor {
                inner: Arc::new(exec),
                metrics: Arc::clone(&metrics),
            });
        }
        let proxy = UpstreamProxy::new(&up.base_url, &up.api_key).map_err(upstream_err)?;
        state.proxy = Some(Arc::new(MeteredProxy {
            inner: Arc::new(proxy),
            metrics,
        }));
    }
    let local = Arc::new(
        crate::local::LocalExecutor::new(
            state.config.data_dir.clone(),
            state.config.models.clone(),
            Arc::clone(&state.store),
            state.blobs.clone(),
        )
        .with_metrics(Arc::clone(&state.metrics)),
    );
    state.seams.executor = if mode == ExecutionMode::Local {
        local
    } else {
        Arc::new(crate::local::RoutingExecutor {
            upstream: Arc::clone(&state.seams.executor),
            local,
        })
    };
    Ok(Gateway {
        state,
        policy_watcher,
        workers: None,
    })
}

/// `policies.dir` as shipped: when that directory is absent the embedded default set applies.
pub const DEFAULT_POLICIES_DIR: &str = "conf/policies";

/// Whether policies come from `dir` (`true`) or the embedded default set (`false`: only when
/// `dir` is the shipped default and absent). Any other missing path, or a path that is not a
/// directory, is a start-up error naming `policies.dir` and the path.
fn uses_policy_dir(dir: &std::path::Path) -> Result<bool, ServeError> {
    use std::path::Component;
    if dir.is_dir() {
        return Ok(true);
    }
    let exists = dir.exists();
    let is_default = dir
        .components()
        .filter(|c| *c != Component::CurDir)
        .eq(std::path::Path::new(DEFAULT_POLICIES_DIR).components());
    if is_default && !exists {
        return Ok(false);
    }
    let problem = if exists {
        "is not a directory"
    } else {
        "does not exist"
    };
    Err(ServeError::Policies(format!(
        "{}: {problem}; point it at a directory of *.toml policy files",
        dir.display()
    )))
}

/// A built gateway, ready to [`serve`].
pub struct Gateway {
    pub state: AppState,
    /// Watches `policies.dir` while serving (None: embedded default policy).
    pub policy_watcher: Option<PolicyWatcher>,
    /// How to start worker processes for local jobs (`[local] workers` of them are
    /// supervised while serving); `None` runs no workers (external workers only).
    pub workers: Option<crate::local::supervise::WorkerCommand>,
}

/// Polls the policy directory every `interval` until `stop`, counting reloads.
async fn watch_policies(
    mut watcher: PolicyWatcher,
    interval: Duration,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let polled = tokio::task::spawn_blocking(move || {
            let outcome = watcher.poll();
            (watcher, outcome)
        })
        .await;
        match polled {
            Ok((w, outcome)) => {
                watcher = w;
                match outcome {
                    PollOutcome::Reloaded => metrics.policy_reload_ok(),
                    PollOutcome::Failed => metrics.policy_reload_failed(),
                    PollOutcome::Unchanged => {}
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "policy watcher stopped; the last loaded policy set stays in force");
                return;
            }
        }
    }
}

/// Builds the state from a validated config and the given seams: demo tenant when none is
/// configured (its key printed to stderr), store, blobs, metrics.
pub fn build_state_with(mut config: Config, seams: Seams) -> Result<AppState, ServeError> {
    let data_dir = config.data_dir.clone();
    let store_err = |source| ServeError::Store {
        path: data_dir.display().to_string(),
        source,
    };
    if config.tenants.is_empty() {
        let key = demo_key(&data_dir).map_err(|source| ServeError::DemoKey {
            path: data_dir.display().to_string(),
            source,
        })?;
        eprintln!("tuneguard demo tenant key: {key}");
        config.tenants.push(TenantConfig {
            name: "demo".into(),
            api_key_hashes: vec![crate::auth::hash_key(&key)],
        });
    }
    let store: Arc<dyn Store> = open_store(&config)?;
    let blobs = BlobStore::open_with(&data_dir, &config.storage.blobs).map_err(store_err)?;
    let metrics = Arc::new(Metrics::new(prometheus::Registry::new())?);
    let auth = Arc::new(Auth::new(&config.tenants, &config.admin_key_hashes));
    Ok(AppState::new(
        Arc::new(config),
        store,
        blobs,
        auth,
        metrics,
        seams,
    ))
}

/// Runs everything on `state` until `shutdown`; prints `tuneguard listening on …` once bound.
pub async fn serve(gateway: Gateway, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    let Gateway {
        state,
        policy_watcher,
        workers,
    } = gateway;
    let cfg = Arc::clone(&state.config);
    let report = crate::sweep::startup(&state)
        .await
        .map_err(|source| ServeError::Store {
            path: cfg.data_dir.display().to_string(),
            source,
        })?;
    tracing::info!(?report, "startup sweep done");
    let tls = match &cfg.server.tls {
        Some(t) => Some(server::load_tls(&t.cert, &t.key)?),
        None => None,
    };
    let addr = cfg.server.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "tuneguard listening on {scheme}://{local}").map_err(ServeError::Stdout)?;
        out.flush().map_err(ServeError::Stdout)?;
    }
    let stop = CancellationToken::new();
    let data_dir = &state.config.data_dir;
    let replica = crate::auth::replica_id(data_dir).map_err(|source| ServeError::ReplicaId {
        path: data_dir.display().to_string(),
        source,
    })?;
    let runner = Runner::new(
        Arc::clone(&state.store),
        state.blobs.clone(),
        state.seams.clone(),
        Arc::clone(&state.metrics),
        state.runner.clone(),
        RUNNER_POLL_INTERVAL,
    )
    .with_holder(replica);
    let runner_task = tokio::spawn(runner.run(stop.clone()));
    let worker_tasks: Vec<_> = match workers {
        // Upstream mode trains locally only what `run_locally` policies send here, on the
        // `[[models]]` it names: no entry, no workers.
        Some(cmd) if cfg.execution == ExecutionMode::Local || !cfg.models.entries.is_empty() => (0
            ..cfg.local.workers)
            .map(|i| {
                tokio::spawn(crate::local::supervise::supervise(
                    cmd.clone(),
                    i,
                    stop.clone(),
                ))
            })
            .collect(),
        _ => Vec::new(),
    };
    let expiry_task = tokio::spawn(crate::sweep::expiry_loop(state.clone(), stop.clone()));
    let policy_task = policy_watcher.map(|w| {
        let interval = cfg.policies.reload_interval;
        tokio::spawn(watch_policies(
            w,
            interval,
            Arc::clone(&state.metrics),
            stop.clone(),
        ))
    });
    state.set_ready(true);
    let app = crate::api::app(state.clone());
    let ready = state.clone();
    let shutdown = async move {
        shutdown.await;
        ready.set_ready(false);
    };
    server::run_with(
        listener,
        app,
        ServeOptions {
            tls,
            grace: cfg.server.shutdown_grace,
        },
        shutdown,
    )
    .await;
    stop.cancel();
    let _ = runner_task.await;
    for t in worker_tasks {
        let _ = t.await;
    }
    let _ = expiry_task.await;
    if let Some(t) = policy_task {
        let _ = t.await;
    }
    tracing::info!("stopped");
    Ok(())
}
