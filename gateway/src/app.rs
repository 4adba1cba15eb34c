//! `gateway run`: start every listener, serve until SIGINT/SIGTERM, shut down cleanly.

use std::time::Duration;

use anyhow::Context as _;
use mixer::source::SourcePolicy;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::media::prompts::Prompts;
use crate::media::Media;
use crate::sip::core::MediaParts;
use crate::state::Shared;
use crate::storage::Storage;
use crate::{http, sip};

/// How often this node tells the database it is alive: a call record left open by a crash
/// ends at most this long before the crash.
const HEARTBEAT: Duration = Duration::from_secs(10);

/// How long shutdown waits for tasks to finish before exiting anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub async fn run(config: Config) -> anyhow::Result<()> {
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

    let trunk_names: Vec<String> = config.trunks.iter().map(|t| t.name.clone()).collect();
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
    let (media, events) = Media::start(rate, rtp_timeout, hold_timeout, source_policy, &shared.metrics)
        .context("starting the media worker")?;
    let mut tasks = JoinSet::new();
    sip.serve(&shared, MediaParts { media, events, prompts }, &mut tasks);
    tasks.spawn(http::serve(http_listener, shared.clone()));
    tasks.spawn(heartbeat(shared.clone()));
    tracing::info!("gateway ready");

    wait_for_signal().await?;
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

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
    Ok(())
}

/// Records this node as alive every [`HEARTBEAT`] until shutdown, and drops expired
/// registrations (a phone that vanished leaves no row behind).
async fn heartbeat(shared: std::sync::Arc<Shared>) {
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
