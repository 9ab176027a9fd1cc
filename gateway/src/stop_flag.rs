//! A flag set by the first of some Unix signals, for the synchronous commands (`train`,
//! `worker`) that check it between optimizer steps.

use anyhow::Context;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

/// Installs handlers for `kinds` on a small signal thread and returns the flag the first of
/// them sets. The handlers are in place when this returns.
pub fn on_signals(kinds: &[SignalKind]) -> anyhow::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    let kinds = kinds.to_vec();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal thread")?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        rt.block_on(async move {
            let mut streams = Vec::with_capacity(kinds.len());
            for k in kinds {
                match signal(k) {
                    Ok(s) => streams.push(s),
                    Err(_) => return,
                }
            }
            let _ = ready_tx.send(());
            let waits = streams.iter_mut().map(|s| Box::pin(s.recv()));
            futures::future::select_all(waits).await;
            set.store(true, Ordering::SeqCst);
        })
    });
    ready_rx.recv().context("installing signal handlers")?;
    Ok(flag)
}
