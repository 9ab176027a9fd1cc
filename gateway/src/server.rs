//! The server as a value: `run(listener, app, shutdown)` accepts HTTP/1.1 and HTTP/2 (h2c or
//! ALPN over TLS) on a bound listener until `shutdown` resolves, then drains in-flight
//! connections for the grace period.

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// Serving options beyond the listener and router.
#[derive(Clone, Default)]
pub struct ServeOptions {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// How long in-flight connections may take to finish after shutdown starts.
    pub grace: Duration,
}

/// Loads a PEM certificate chain and private key into a rustls config advertising h2 and
/// http/1.1 over ALPN.
pub fn load_tls(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| TlsError::Read {
            path: p.display().to_string(),
            source,
        })
    };
    let invalid = |p: &Path, m: String| TlsError::Invalid {
        path: p.display().to_string(),
        message: m,
    };
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(invalid(cert, "no PEM certificate found".into()));
    }
    let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| invalid(key, e.to_string()))?
        .ok_or_else(|| invalid(key, "no PEM private key found".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| invalid(key, e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Plain HTTP with a 30 s drain.
pub async fn run(listener: TcpListener, app: Router, shutdown: impl Future<Output = ()>) {
    run_with(
        listener,
        app,
        ServeOptions {
            tls: None,
            grace: Duration::from_secs(30),
        },
        shutdown,
    )
    .await
}

pub async fn run_with(
    listener: TcpListener,
    app: Router,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()>,
) {
    let builder = Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let acceptor = opts.tls.clone().map(TlsAcceptor::from);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let svc = TowerToHyperService::new(app.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let result = match acceptor {
                Some(acc) => match acc.accept(stream).await {
                    Ok(tls) => {
                        let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
                        watcher.watch(conn.into_owned()).await
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                },
                None => {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                    watcher.watch(conn.into_owned()).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(opts.grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_seconds = opts.grace.as_secs(),
            "connections still open after the grace period; closing"
        );
    }
}

/// Installs the SIGINT and SIGTERM handlers now and returns a future that resolves on either.
/// Call it before announcing the server: from then on a signal is a graceful stop, never the
/// default action (which kills the process) — a lazily installed handler would leave a window.
#[cfg(unix)]
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutdown signal received");
    })
}

/// Ctrl-C where there are no unix signals.
#[cfg(not(unix))]
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown signal received");
    })
}
