//! The shared application state handed to every handler.

use crate::auth::Auth;
use crate::config::Config;
use crate::jobs::{Proxy, RunnerHandle, Seams};
use crate::metrics::Metrics;
use crate::store::{BlobStore, Store};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub blobs: BlobStore,
    pub auth: Arc<Auth>,
    pub metrics: Arc<Metrics>,
    pub runner: RunnerHandle,
    pub seams: Seams,
    /// Forwards unknown /v1 routes upstream when configured.
    pub proxy: Option<Arc<dyn Proxy>>,
    /// Engines and adapters serving local chat completions.
    pub serving: Arc<crate::serving::Serving>,
    /// The proxy's recent "this tenant may reach this model" answers.
    pub listed_models: Arc<crate::api::proxied_models::ListedCache>,
    ready: Arc<AtomicBool>,
}

impl AppState {
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        blobs: BlobStore,
        auth: Arc<Auth>,
        metrics: Arc<Metrics>,
        seams: Seams,
    ) -> AppState {
        AppState {
            config,
            store,
            blobs,
            auth,
            metrics,
            runner: RunnerHandle::default(),
            seams,
            proxy: None,
            serving: Arc::default(),
            listed_models: Arc::default(),
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}
