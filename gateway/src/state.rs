//! What every task of a running gateway shares.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc, watch, Semaphore};

use crate::calls::{Control, RoomEvent};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::sip::trunks::TrunkView;
use crate::storage::Storage;

pub struct Shared {
    pub config: Config,
    pub metrics: Metrics,
    pub storage: Storage,
    draining: AtomicBool,
    shutdown: watch::Sender<bool>,
    /// One lock around every trunk's published state.
    trunks: Mutex<Vec<TrunkView>>,
    /// Requests from the API to call control.
    pub control: mpsc::Sender<Control>,
    /// The receiving end, taken once by the SIP core.
    control_rx: Mutex<Option<mpsc::Receiver<Control>>>,
    /// Participants joining, leaving, talking, muted: for the browsers' pages.
    pub room_events: broadcast::Sender<RoomEvent>,
    /// One permit per open join page (`[webrtc] max_pages`).
    pub pages: Arc<Semaphore>,
}

impl Shared {
    pub fn new(config: Config, storage: Storage) -> Arc<Shared> {
        let (shutdown, _) = watch::channel(false);
        let (control, control_rx) = mpsc::channel(256);
        let pages = Arc::new(Semaphore::new(config.webrtc.max_pages));
        Arc::new(Shared {
            config,
            metrics: Metrics::new(),
            storage,
            draining: AtomicBool::new(false),
            shutdown,
            trunks: Mutex::new(Vec::new()),
            control,
            control_rx: Mutex::new(Some(control_rx)),
            room_events: broadcast::channel(1024).0,
            pages,
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

    /// The API's requests to call control; `None` after the first call.
    pub fn take_control_receiver(&self) -> Option<mpsc::Receiver<Control>> {
        self.control_rx.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Publishes a trunk's state.
    pub fn set_trunk_view(&self, view: TrunkView) {
        let mut trunks = self.trunks.lock().unwrap_or_else(|p| p.into_inner());
        match trunks.iter_mut().find(|t| t.name == view.name) {
            Some(t) => *t = view,
            None => trunks.push(view),
        }
    }

    pub fn trunk_views(&self) -> Vec<TrunkView> {
        self.trunks.lock().unwrap_or_else(|p| p.into_inner()).clone()
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
