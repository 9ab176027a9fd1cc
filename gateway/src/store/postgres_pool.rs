//! A small blocking connection pool for [`super::PgStore`]: at most `size` connections, opened
//! on demand, handed out one per store call and put back when the call ends. A connection the
//! server closed (restart, network cut, `pg_terminate_backend`) is dropped when it comes back
//! and a fresh one is opened by the next call, so the store recovers on its own; the call that
//! met the broken connection fails with its error.
//!
//! Why not `r2d2_postgres`: the store needs exactly this (bounded, lazy, drop-if-closed, a wait
//! with a deadline), which is a few dozen lines, and one crate less to audit.

use super::postgres_tls::PgTls;
use super::{StoreError, StoreResult};
use ::postgres::{Client, Config, NoTls};
use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a call waits for a free connection before failing with
/// [`StoreError::Unavailable`].
const CHECKOUT_WAIT: Duration = Duration::from_secs(30);

pub(super) struct Pool {
    config: Config,
    tls: PgTls,
    size: usize,
    state: Mutex<State>,
    freed: Condvar,
}

struct State {
    idle: Vec<Client>,
    /// Connections open, idle or handed out.
    open: usize,
}

pub(super) struct Conn<'a> {
    pool: &'a Pool,
    client: Option<Client>,
}

impl Pool {
    pub(super) fn new(config: Config, tls: PgTls, size: usize) -> Pool {
        Pool {
            config,
            tls,
            size: size.max(1),
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> StoreResult<std::sync::MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| StoreError::Task("postgres pool mutex poisoned".into()))
    }

    /// A connection of its own for the caller (opened if none is idle and the pool has room).
    pub(super) fn get(&self) -> StoreResult<Conn<'_>> {
        let deadline = Instant::now() + CHECKOUT_WAIT;
        let mut state = self.lock()?;
        loop {
            while let Some(client) = state.idle.pop() {
                if client.is_closed() {
                    state.open -= 1;
                    continue;
                }
                return Ok(Conn {
                    pool: self,
                    client: Some(client),
                });
            }
            if state.open < self.size {
                state.open += 1;
                drop(state);
                return match connect(&self.config, &self.tls) {
                    Ok(client) => Ok(Conn {
                        pool: self,
                        client: Some(client),
                    }),
                    Err(e) => {
                        self.lock()?.open -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(StoreError::Unavailable(format!(
                    "all {} pooled connections busy for {}s (config key `storage.postgres_pool_size`)",
                    self.size,
                    CHECKOUT_WAIT.as_secs()
                )));
            }
            state = self
                .freed
                .wait_timeout(state, deadline - now)
                .map_err(|_| StoreError::Task("postgres pool mutex poisoned".into()))?
                .0;
        }
    }
}

/// Opens one connection (the pool's, or the migration's own).
pub(super) fn connect(config: &Config, tls: &PgTls) -> StoreResult<Client> {
    super::postgres::blocking(|| match tls {
        PgTls::Off => config.connect(NoTls),
        PgTls::On { connect, .. } => config.connect(connect.clone()),
    })
    .map_err(|e| {
        // The error's source says what failed (a TLS handshake names the certificate check).
        let mut msg = format!("connecting ({}): {e}", tls.describe());
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        StoreError::Unavailable(msg)
    })
}

impl Deref for Conn<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("present until drop")
    }
}

impl DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("present until drop")
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let Ok(mut state) = self.pool.state.lock() else {
            return;
        };
        if client.is_closed() {
            state.open -= 1;
            drop(state);
            self.pool.freed.notify_one();
            // Closing blocks on the client's own runtime (see `blocking`).
            super::postgres::blocking(move || drop(client));
        } else {
            state.idle.push(client);
            drop(state);
            self.pool.freed.notify_one();
        }
    }
}

impl Drop for Pool {
    /// Closing a client blocks on its own small runtime, which panics inside an async context:
    /// the idle connections are closed on a thread of their own.
    fn drop(&mut self) {
        let idle = match self.state.get_mut() {
            Ok(state) => std::mem::take(&mut state.idle),
            Err(p) => std::mem::take(&mut p.into_inner().idle),
        };
        if !idle.is_empty() {
            let _ = std::thread::Builder::new()
                .name("postgres-close".into())
                .spawn(move || drop(idle));
        }
    }
}
