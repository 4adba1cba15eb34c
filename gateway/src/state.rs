//! What every task of a running gateway shares.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::storage::Storage;

pub struct Shared {
    pub config: Config,
    pub metrics: Metrics,
    pub storage: Storage,
    draining: AtomicBool,
    shutdown: watch::Sender<bool>,
}

impl Shared {
    pub fn new(config: Config, storage: Storage) -> Arc<Shared> {
        let (shutdown, _) = watch::channel(false);
        Arc::new(Shared {
            config,
            metrics: Metrics::new(),
            storage,
            draining: AtomicBool::new(false),
            shutdown,
        })
    }

    /// True once shutdown has begun: new calls are refused with `503`.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Starts the shutdown: listeners stop, new calls are refused.
    pub fn begin_shutdown(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.shutdown.send_replace(true);
    }

    /// Resolves when shutdown begins.
    pub fn shutdown_signal(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.shutdown.subscribe();
        async move {
            // An error means the sender is gone, which is a shutdown too.
            let _ = rx.wait_for(|down| *down).await;
        }
    }
}
