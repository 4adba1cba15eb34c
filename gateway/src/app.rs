//! `gateway run`: start every listener, serve until SIGINT/SIGTERM, shut down cleanly; on
//! SIGHUP read the config file again and apply its trunks and prompts.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use mixer::source::SourcePolicy;
use tokio::task::JoinSet;

use crate::conference::{self, MediaParts};
use crate::config::Config;
use crate::control::Control;
use crate::http;
use crate::media::prompts::Prompts;
use crate::media::{Media, VideoPlane};
use crate::signalling::sip;
use crate::state::Shared;
use crate::storage::Storage;

/// How often this node tells the database it is alive: a call record left open by a crash
/// ends at most this long before the crash.
const HEARTBEAT: Duration = Duration::from_secs(10);

/// How long shutdown waits for tasks to finish before exiting anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Reads the configuration again, as start-up read it (file, environment, command line).
pub type Reload = Box<dyn Fn() -> anyhow::Result<Config> + Send + Sync>;

#[allow(clippy::disallowed_methods)] // start-up
pub async fn run(config: Config, reload: Reload) -> anyhow::Result<()> {
    let mut storage = Storage::connect(&config.database.url, config.database.max_connections)
        .await
        .context("opening the database")?;
    if let Some(node) = &config.database.node {
        storage.set_node(node);
    }
    // Calls the last run of this node left open died with it.
    let lost = storage.close_lost_call_records().await.context("closing call records left open")?;
    if lost > 0 {
        tracing::warn!(records = lost, "call records left open by a stopped gateway closed as lost");
    }
    storage.heartbeat(crate::clock::unix_ms()).await.context("recording this node")?;
    tracing::info!(backend = ?storage.backend(), "database ready");

    // Bind everything before serving anything: a port in use fails start-up, naming it.
    let sip = sip::Listeners::bind(&config.sip).await?;
    let http_listener = http::bind(&config.http).await?;

    let trunk_names: Vec<String> = config.trunks.iter().map(|t| t.name.to_string()).collect();
    storage.retain_trunks(&trunk_names).await.context("pruning trunk status")?;
    let rate = config.conference.mix_rate;
    let prompts = Prompts::load(&config.prompts, rate).context("loading prompts")?;
    let shared = Shared::new(config, storage);
    let rtp_timeout = Duration::from_secs(u64::from(shared.config.rtp.timeout_secs));
    let source_policy = SourcePolicy {
        strict: shared.config.rtp.strict_source,
        relearn_after: Duration::from_millis(u64::from(shared.config.rtp.relearn_after_ms)),
        ..SourcePolicy::default()
    };
    let hold = shared.config.rtp.hold_timeout_secs;
    let hold_timeout = (hold > 0).then(|| Duration::from_secs(u64::from(hold)));
    let workers = match shared.config.rtp.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let video = &shared.config.video;
    let video = video.enabled.then(|| VideoPlane {
        workers: match video.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        },
        room: crate::media::video::room_config(video),
    });
    let (media, events) =
        Media::start(workers, rate, rtp_timeout, hold_timeout, source_policy, video, &shared.metrics)
            .context("starting the media workers")?;
    let mut tasks = JoinSet::new();
    let sip = sip.serve(&shared, &mut tasks);
    tasks.spawn(conference::run(shared.clone(), sip, MediaParts { media, events, prompts }));
    tasks.spawn(http::serve(http_listener, shared.clone()));
    tasks.spawn(heartbeat(shared.clone()));
    tasks.spawn(crate::memory::trim_periodically(shared.clone()));
    tracing::info!("gateway ready");

    signals(&shared, &reload).await?;
    tracing::info!("shutting down: refusing new calls");
    shared.begin_shutdown();
    // Calls in progress are hung up and their records written by their own tasks as they see
    // the shutdown signal; wait for them, bounded.
    let drained =
        tokio::time::timeout(SHUTDOWN_GRACE, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!("tasks still running after {SHUTDOWN_GRACE:?}; exiting anyway");
    }
    shared.storage.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Serves signals until SIGTERM or SIGINT: SIGHUP reloads.
async fn signals(shared: &Arc<Shared>, reload: &Reload) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    // What the last reload applied (start-up's configuration at first).
    let mut applied = shared.config.clone();
    loop {
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM");
                return Ok(());
            }
            _ = int.recv() => {
                tracing::info!("SIGINT");
                return Ok(());
            }
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reading the configuration again");
                match apply(shared, reload, &applied).await {
                    Ok(config) => applied = config,
                    Err(e) => tracing::error!("configuration not reloaded, the running one stays: {e:#}"),
                }
            }
        }
    }
}

/// Reads and checks the configuration, then hands its trunks and prompts to call control.
/// Nothing is applied unless all of it loads. Other changed tables are named: they take
/// effect at the next restart.
async fn apply(shared: &Arc<Shared>, reload: &Reload, applied: &Config) -> anyhow::Result<Config> {
    let config = reload()?;
    let prompts = Prompts::load(&config.prompts, shared.config.conference.mix_rate)?;
    let running = &shared.config;
    let restart_only = [
        ("sip", running.sip != config.sip),
        ("http", running.http != config.http),
        ("rtp", running.rtp != config.rtp),
        ("database", running.database != config.database),
        ("log", running.log != config.log),
        ("conference", running.conference != config.conference),
        ("webrtc", running.webrtc != config.webrtc),
        ("limits", running.limits != config.limits),
    ];
    for (table, _) in restart_only.iter().filter(|(_, changed)| *changed) {
        tracing::warn!(table = %format!("[{table}]"), "changed in the configuration: takes effect at the next restart");
    }
    if config.trunks != applied.trunks {
        let names: Vec<String> = config.trunks.iter().map(|t| t.name.to_string()).collect();
        shared.storage.retain_trunks(&names).await.context("pruning trunk status")?;
    }
    let trunks = config.trunks.clone();
    let names = crate::dns::trunk_names(&trunks).await;
    shared
        .control
        .send(Control::Reload { trunks, names, prompts })
        .await
        .map_err(|_| anyhow::anyhow!("call control has stopped"))?;
    Ok(config)
}

/// Records this node as alive every [`HEARTBEAT`] until shutdown, and drops expired
/// registrations (a phone that vanished leaves no row behind).
#[allow(clippy::disallowed_methods)] // a housekeeping task
async fn heartbeat(shared: Arc<Shared>) {
    let mut shutdown = std::pin::pin!(shared.shutdown_signal());
    let mut every = tokio::time::interval(HEARTBEAT);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {
                let now = crate::clock::unix_ms();
                if let Err(e) = shared.storage.heartbeat(now).await {
                    tracing::warn!(error = %e, "heartbeat not recorded");
                }
                if let Err(e) = shared.storage.purge_expired_bindings(now).await {
                    tracing::warn!(error = %e, "expired registrations not purged");
                }
            }
            _ = &mut shutdown => return,
        }
    }
}
