//! What every task of a running gateway shares.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{broadcast, mpsc, watch, Semaphore};

use crate::config::{Config, TrunkConfig};
use crate::control::{Control, RoomEvent, TrunkView};
use crate::ids::RoomNumber;
use crate::limits::SourceSlots;
use crate::metrics::Metrics;
use crate::storage::Storage;

/// Room events a page may fall behind by before it is sent the whole list again.
const ROOM_EVENTS: usize = 256;

pub struct Shared {
    pub config: Config,
    pub metrics: Metrics,
    pub storage: Storage,
    draining: AtomicBool,
    shutdown: watch::Sender<bool>,
    /// One lock around every trunk's published state.
    trunks: Mutex<Vec<TrunkView>>,
    /// The `[[trunk]]` tables in force: those of `config` until a reload (`SIGHUP`) changes them.
    trunk_configs: Mutex<Arc<[TrunkConfig]>>,
    /// Requests from the API to call control.
    pub control: mpsc::Sender<Control>,
    /// The receiving end, taken once by the SIP core.
    control_rx: Mutex<Option<mpsc::Receiver<Control>>>,
    /// Participants joining, leaving, talking, muted, per room: for the browsers' pages (a
    /// page wakes for its own room's changes only).
    room_events: Mutex<HashMap<RoomNumber, broadcast::Sender<RoomEvent>>>,
    /// One permit per open join page (`[webrtc] max_pages`).
    pub pages: Arc<Semaphore>,
    /// Open join pages per address (`[webrtc] max_pages_per_source`).
    pub pages_by_source: Arc<SourceSlots>,
    /// One permit per accepted SIP TCP/TLS connection (`[limits] connections`).
    pub sip_connections: Arc<Semaphore>,
    /// Accepted SIP connections per address (`[limits] connections_per_source`).
    pub sip_connections_by_source: Arc<SourceSlots>,
}

impl Shared {
    pub fn new(config: Config, storage: Storage) -> Arc<Shared> {
        let (shutdown, _) = watch::channel(false);
        let (control, control_rx) = mpsc::channel(256);
        let pages = Arc::new(Semaphore::new(config.webrtc.max_pages));
        let config_pages_per_source = config.webrtc.max_pages_per_source;
        let sip_connections = Arc::new(Semaphore::new(config.limits.connections));
        let sip_connections_by_source = SourceSlots::new(config.limits.connections_per_source);
        let trunk_configs = Mutex::new(config.trunks.clone().into());
        Arc::new(Shared {
            config,
            metrics: Metrics::new(),
            storage,
            draining: AtomicBool::new(false),
            shutdown,
            trunks: Mutex::new(Vec::new()),
            trunk_configs,
            control,
            control_rx: Mutex::new(Some(control_rx)),
            room_events: Mutex::new(HashMap::new()),
            pages,
            pages_by_source: SourceSlots::new(config_pages_per_source),
            sip_connections,
            sip_connections_by_source,
        })
    }

    /// A page's view of one room's changes.
    pub fn room_events(&self, room: &RoomNumber) -> broadcast::Receiver<RoomEvent> {
        let mut rooms = self.room_events.lock().unwrap_or_else(PoisonError::into_inner);
        rooms.entry(room.clone()).or_insert_with(|| broadcast::channel(ROOM_EVENTS).0).subscribe()
    }

    /// Tells the room's pages, if any are listening; a room no page listens to is forgotten.
    pub fn publish_room_event(&self, event: RoomEvent) {
        let mut rooms = self.room_events.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(pages) = rooms.get(event.room()) else { return };
        if pages.send(event).is_err() {
            // No receiver left: every page of the room is gone.
            rooms.retain(|_, pages| pages.receiver_count() > 0);
        }
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

    /// Forgets a trunk taken out of the configuration.
    pub fn remove_trunk_view(&self, name: &str) {
        self.trunks.lock().unwrap_or_else(|p| p.into_inner()).retain(|t| t.name != name);
    }

    /// The trunks in force (the config file's, as last loaded).
    pub fn trunk_configs(&self) -> Arc<[TrunkConfig]> {
        self.trunk_configs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_trunk_configs(&self, trunks: &[TrunkConfig]) {
        *self.trunk_configs.lock().unwrap_or_else(|p| p.into_inner()) = trunks.into();
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
