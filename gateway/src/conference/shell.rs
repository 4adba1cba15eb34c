//! The loop around call control: it reads the clock once per input, hands the input to the
//! [`Core`], and carries out what the core asks (its [`Output`]s): SIP to the sockets,
//! commands to the media worker, look-ups as tasks whose results come back as inputs, call
//! records to their writer. Connections (accepted, closed, keep-alive pings) are handled
//! here; the core only sees their messages.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use sip_stack::transport::Peer;
use tokio::sync::mpsc;

use super::core::{Command, Core, Input, Lookup, Output};
use super::invite;
use crate::clock::Now;
use crate::dns;
use crate::media::prompts::Prompts;
use crate::media::{Media, MediaEvent};
use crate::signalling::sip::auth::{self, Context};
use crate::signalling::sip::register::{Registrations, Submitted};
use crate::signalling::sip::transport::{udp_peer, Inbound, Transports};
use crate::signalling::sip::trunks::TrunkOutput;
use crate::signalling::sip::{self, SipIo};
use crate::state::Shared;
use crate::storage::{CallRecord, Storage};

/// How long shutdown waits for trunks to un-register.
const UNREGISTER_GRACE: Duration = Duration::from_secs(3);

/// What the core needs besides the sockets: the media worker, its events, and the prompts.
pub struct MediaParts {
    pub media: Media,
    pub events: mpsc::Receiver<MediaEvent>,
    pub prompts: Prompts,
}

/// Where the core's outputs go: the sockets, the media worker, the look-up and storage tasks.
struct Shell {
    ctx: Context,
    registrations: Registrations,
    transports: Transports,
    media: Media,
    commands: mpsc::Sender<Command>,
    /// To the call records' writer; dropped at shutdown, which then waits for the writer.
    records: Option<mpsc::UnboundedSender<CallRecord>>,
    /// Look-ups answered without waiting, for the core when this round of outputs is done.
    answered: Vec<Command>,
}

impl Shell {
    fn execute(&mut self, output: Output) {
        match output {
            Output::Transmit(t) => self.transports.send(&t),
            Output::Media(command) => {
                self.media.send(command);
            }
            Output::Register { lookup, .. }
                if let Some(response) = auth::challenge_unauthenticated(&self.ctx, &lookup.request) =>
            {
                self.answered.push(Command::Respond { tx: lookup.tx, response });
            }
            Output::Register { lookup, permit } => {
                let Lookup { tx, request, from } = *lookup;
                self.registrations.submit(Submitted { tx, request, from, permit });
            }
            Output::Lookup { lookup, .. }
                if let Some(command) =
                    invite::refuse_at_once(&self.ctx, lookup.tx, &lookup.request, lookup.from) =>
            {
                self.answered.push(command);
            }
            Output::Lookup { lookup, permit } => {
                let (ctx, commands) = (self.ctx.clone(), self.commands.clone());
                tokio::spawn(async move {
                    let command = look_up(&ctx, *lookup).await;
                    // The core only goes away at shutdown, when the answer no longer matters.
                    let _ = commands.send(command).await;
                    drop(permit);
                });
            }
            Output::Record(record) => self.write_record(*record),
            Output::Trunk(trunk) => self.on_trunk(trunk),
            Output::Room(event) => self.ctx.shared.publish_room_event(event),
            Output::Trunks(trunks, names) => {
                // Admission look-ups read them from here on.
                self.ctx.shared.set_trunk_configs(&trunks);
                sip::add_tls_trunks(&trunks, &names, &mut self.transports);
            }
        }
    }

    /// Carries out everything the core has queued.
    fn drain(&mut self, core: &mut Core) {
        loop {
            core.flush();
            while let Some(output) = core.poll_output() {
                self.execute(output);
            }
            if self.answered.is_empty() {
                return;
            }
            for command in std::mem::take(&mut self.answered) {
                core.handle(Input::Command(command));
            }
        }
    }

    fn on_trunk(&mut self, output: TrunkOutput) {
        let shared = &self.ctx.shared;
        match output {
            TrunkOutput::View(view) => shared.set_trunk_view(view),
            TrunkOutput::Removed(name) => shared.remove_trunk_view(&name),
            TrunkOutput::Status(status) => {
                let storage = shared.storage.clone();
                tokio::spawn(async move {
                    if let Err(e) = storage.set_trunk_status(&status).await {
                        tracing::warn!(error = %e, "trunk status not stored");
                    }
                });
            }
            TrunkOutput::Resolve(name) => {
                let commands = self.commands.clone();
                tokio::spawn(async move {
                    let addr = dns::resolve(&name).await;
                    let _ = commands.send(Command::Resolved { name, addr }).await;
                });
            }
        }
    }

    /// Hands a call record to the writer, which tries until the database takes it (a record
    /// is never only logged); shutdown waits for every write.
    fn write_record(&mut self, record: CallRecord) {
        if let Some(records) = &self.records {
            // The writer only ends once this sender is dropped, at shutdown.
            let _ = records.send(record);
        }
    }
}

/// Writes call records in batches: those that come while one batch is in the database go in
/// the next, in one transaction. A batch that fails is tried again, whole, until it is taken.
async fn write_records(storage: Storage, retries: Counter, mut rx: mpsc::UnboundedReceiver<CallRecord>) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while rx.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        let mut wait = RECORD_RETRY_FIRST;
        while let Err(e) = storage.write_call_records(&batch).await {
            tracing::warn!(error = %e, records = batch.len(), retry_in_ms = wait.as_millis() as u64, "call records not written yet");
            retries.inc();
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(RECORD_RETRY_MAX);
        }
        batch.clear();
    }
}

/// Most call records one transaction writes.
const RECORD_BATCH: usize = 256;

/// A failed call record write is tried again after this, doubling up to [`RECORD_RETRY_MAX`].
const RECORD_RETRY_FIRST: Duration = Duration::from_millis(200);
const RECORD_RETRY_MAX: Duration = Duration::from_secs(10);

/// The loop around the core, and the one place call control gets its time from: it reads the
/// clock once per input and hands that to the core with it.
#[allow(clippy::disallowed_methods)]
pub async fn run(shared: Arc<Shared>, sip: SipIo, media: MediaParts) {
    let SipIo { mut transports, mut inbound, close } = sip;
    let MediaParts { media, events: mut media_events, prompts } = media;
    let mut control = shared.take_control_receiver().unwrap_or_else(|| mpsc::channel(1).1);
    let (commands, mut command_rx) = mpsc::channel(1024);
    let local = transports.udp_local_addr().unwrap_or_else(|| ([127, 0, 0, 1], 5060).into());
    let names = dns::trunk_names(&shared.config.trunks).await;
    sip::add_tls_trunks(&shared.config.trunks, &names, &mut transports);
    let mut core = Core::new(&shared, local, names, prompts, Now::read());
    let ctx = Context::new(&shared);
    let (records, records_rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_records(
        shared.storage.clone(),
        shared.metrics.call_record_retries.clone(),
        records_rx,
    ));
    let (answers, mut answer_rx) = mpsc::unbounded_channel();
    let registrations = Registrations::start(ctx.clone(), answers);
    let mut shell = Shell {
        ctx,
        registrations,
        transports,
        media,
        commands,
        records: Some(records),
        answered: Vec::new(),
    };
    core.start();
    shell.drain(&mut core);

    let shutdown = shared.shutdown_signal();
    tokio::pin!(shutdown);
    // Set once shutdown begins: the core runs on until trunks are un-registered or this passes.
    let mut stop_by: Option<Instant> = None;
    loop {
        if let Some(stop_by) = stop_by {
            if core.settled() || Now::read().at >= stop_by {
                break;
            }
        }
        let deadline = [core.poll_timeout(), stop_by].into_iter().flatten().min();
        let timer = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let input = tokio::select! {
            _ = &mut shutdown, if stop_by.is_none() => Input::Shutdown,
            Some(message) = inbound.recv() => match message {
                Inbound::Datagram { socket, src, bytes } => Input::Message { peer: udp_peer(socket, src), bytes },
                Inbound::Stream { conn, transport, src, bytes } => {
                    Input::Message { peer: Peer { transport, addr: src, connection: Some(conn) }, bytes }
                }
                // Connections are the shell's: the core only sees their messages.
                Inbound::Ping { conn } => {
                    shell.transports.pong(conn);
                    continue;
                }
                Inbound::Connected { conn, transport, peer, writer } => {
                    shell.transports.connected(conn, transport, peer, writer);
                    continue;
                }
                Inbound::Refused { addr } => Input::Refused { addr },
                Inbound::Closed { conn } => {
                    shell.transports.closed(conn);
                    continue;
                }
            },
            Some(command) = command_rx.recv() => Input::Command(command),
            Some((tx, response)) = answer_rx.recv() => Input::Command(Command::Respond { tx, response }),
            Some(event) = media_events.recv() => Input::Media(event),
            Some(request) = control.recv() => Input::Control(request),
            _ = timer => Input::Timer,
        };
        core.now = Now::read();
        if matches!(input, Input::Shutdown) {
            stop_by = Some(core.now.at + UNREGISTER_GRACE);
        }
        core.handle(input);
        shell.drain(&mut core);
    }
    close.send_replace(true);
    // Every ended call's record is written before the gateway exits.
    shell.records = None;
    let _ = writer.await;
}

/// Runs an INVITE's admission to its verdict.
pub(super) async fn look_up(ctx: &Context, lookup: Lookup) -> Command {
    let Lookup { tx, request, from } = lookup;
    invite::admit(ctx, tx, request, from).await
}
