//! The SIP core: one task owning the transaction layer. Socket tasks feed it messages; handlers
//! that must wait (for the database) run as their own tasks and hand their responses back as
//! [`Command`]s, so the core itself never waits on anything but its inputs.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rsip::{Header, Method, StatusCode};
use sip_stack::digest::{Algorithm, DigestServer};
use sip_stack::message::{self, Inbound as Parsed, InboundRequest};
use sip_stack::response::{push_header, response_to};
use sip_stack::transaction::{ServerTx, TimerConfig, TransactionLayer, TxEvent};
use sip_stack::transport::{Peer, Transmit, Transport};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::calls::Calls;
use super::dns::{self, HostPort, Names};
use super::invite::{self, Admission};
use super::register;
use super::transport::{udp_peer, Inbound, Transports};
use super::trunks::{LocalPorts, TrunkOutput, Trunks};
use crate::calls::{Cause, Control, ControlError, RoomEvent};
use crate::clock::Now;
use crate::config::TrunkConfig;
use crate::limits::{AuthThrottle, KeyedLocks, Rate, RateLimit};
use crate::media::ports::Ports;
use crate::media::prompts::Prompts;
use crate::media::{Media, MediaCommand, MediaEvent};
use crate::metrics::{self, RequestLabels, ResponseLabels, TransportLabels};
use crate::state::Shared;
use crate::storage::CallRecord;

/// Methods the gateway accepts, for `Allow`.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REGISTER";

/// How long a digest nonce is good for.
const NONCE_LIFETIME_SECS: u64 = 300;

/// Verdicts of the look-ups the core asked for ([`Output::Lookup`]), handed back to it.
#[derive(Debug)]
pub enum Command {
    Respond {
        tx: ServerTx,
        response: rsip::Response,
    },
    /// An INVITE passed admission (caller authenticated, room found).
    Admit(Box<Admission>),
    /// An INVITE failed admission: challenged, or refused with `response`. `known_caller`:
    /// the caller was authenticated (or is a trunk), so the refusal gets a call record.
    Refuse {
        tx: ServerTx,
        response: rsip::Response,
        known_caller: bool,
    },
    /// What a name the core asked for resolved to.
    Resolved {
        name: HostPort,
        addr: Option<SocketAddr>,
    },
}

/// What the core asks of the world. [`run`] carries each out; the core's tests read them.
#[derive(Debug)]
pub(super) enum Output {
    /// SIP bytes for a peer.
    Transmit(Transmit),
    /// A command for the media worker.
    Media(MediaCommand),
    /// A request that needs the database (digest credentials, bindings, rooms) before it can
    /// be answered; the answer comes back as a [`Command`]. The permit counts it against
    /// `[limits] pending_requests` until then.
    Lookup { lookup: Box<Lookup>, permit: OwnedSemaphorePermit },
    /// A call record, written until the database takes it.
    Record(Box<CallRecord>),
    /// A trunk's state, for the API and the database.
    Trunk(TrunkOutput),
    /// For the pages showing a room.
    Room(RoomEvent),
    /// The trunks as last loaded: TLS connections to them check their certificates this way.
    TlsTrunks(Vec<TrunkConfig>, Names),
}

#[derive(Debug)]
pub(super) struct Lookup {
    pub(super) kind: LookupKind,
    pub(super) tx: ServerTx,
    pub(super) request: InboundRequest,
    pub(super) from: Peer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LookupKind {
    Register,
    /// A new INVITE: who calls, and which room.
    Invite,
}

/// What look-up tasks get to do their work.
#[derive(Clone)]
pub struct Context {
    pub shared: Arc<Shared>,
    /// One lock around the digest server's whole state (its nonce counts).
    pub digest: Arc<Mutex<DigestServer>>,
    /// Digest failures per source and per user (`[limits] auth_failures_*`).
    pub auth: Arc<Mutex<AuthThrottle>>,
    /// One REGISTER per user at a time.
    pub registrations: Arc<KeyedLocks>,
}

impl Context {
    pub(super) fn new(shared: &Arc<Shared>) -> Context {
        // Validated at start-up: every name is a known algorithm.
        let sip = &shared.config.sip;
        let algorithms = sip.digest_algorithms.iter().filter_map(|a| Algorithm::from_token(a)).collect();
        let digest = DigestServer::new(sip.realm.clone(), rand::random(), NONCE_LIFETIME_SECS)
            .with_algorithms(algorithms);
        let limits = &shared.config.limits;
        Context {
            shared: shared.clone(),
            digest: Arc::new(Mutex::new(digest)),
            auth: Arc::new(Mutex::new(AuthThrottle::new(
                limits.auth_failures_per_source,
                limits.auth_failures_per_user,
            ))),
            registrations: Arc::default(),
        }
    }

    pub fn server(&self) -> Option<&str> {
        Some(&self.shared.config.sip.user_agent)
    }

    /// Runs a look-up to its verdict.
    pub(super) async fn look_up(&self, lookup: Lookup) -> Command {
        let Lookup { kind, tx, request, from } = lookup;
        match kind {
            LookupKind::Register => {
                Command::Respond { tx, response: register::handle(self, &request, from).await }
            }
            LookupKind::Invite => invite::admit(self, tx, request, from).await,
        }
    }
}

/// How long shutdown waits for trunks to un-register.
const UNREGISTER_GRACE: Duration = Duration::from_secs(3);

/// Call control: every call, dialog and trunk, and the transaction layer under them. It does
/// no I/O and reads no clock: [`Core::handle`] takes one input at [`Core::now`], and what it
/// decides to do waits in [`Core::poll_output`].
pub(super) struct Core {
    pub(super) shared: Arc<Shared>,
    pub(super) layer: TransactionLayer,
    /// The UDP listener's address: Via and Contact name it.
    pub(super) local: SocketAddr,
    pub(super) trunks: Trunks,
    pub(super) calls: Calls,
    pub(super) ports: Ports,
    pub(super) prompts: Prompts,
    /// Requests per second from each address (`[limits] requests_per_source`).
    flood: RateLimit,
    /// One permit per REGISTER or new INVITE waiting for its look-ups (`[limits]
    /// pending_requests`).
    pub(super) pending: Arc<Semaphore>,
    /// When the input being handled came: the core's only time (see [`run`]).
    pub(super) now: Now,
    pub(super) out: Outputs,
}

/// The core's outputs, in the order it decided them.
#[derive(Default)]
pub(super) struct Outputs(VecDeque<Output>);

impl Outputs {
    pub(super) fn push(&mut self, output: Output) {
        self.0.push_back(output);
    }

    pub(super) fn media(&mut self, command: MediaCommand) {
        self.0.push_back(Output::Media(command));
    }
}

/// What wakes the core.
pub(super) enum Input {
    Shutdown,
    /// A SIP message from a peer.
    Message {
        peer: Peer,
        bytes: Bytes,
    },
    Command(Command),
    Media(MediaEvent),
    Control(Control),
    /// The earliest deadline passed.
    Timer,
}

/// What the core needs besides the sockets: the media worker, its events, and the prompts.
pub struct MediaParts {
    pub media: Media,
    pub events: mpsc::Receiver<MediaEvent>,
    pub prompts: Prompts,
}

/// Where the core's outputs go: the sockets, the media worker, the look-up and storage tasks.
struct Shell {
    ctx: Context,
    transports: Transports,
    media: Media,
    commands: mpsc::Sender<Command>,
    /// Call records being written; shutdown waits for them.
    records: JoinSet<()>,
}

impl Shell {
    fn execute(&mut self, output: Output) {
        match output {
            Output::Transmit(t) => self.transports.send(&t),
            Output::Media(command) => {
                self.media.send(command);
            }
            Output::Lookup { lookup, permit } => {
                let (ctx, commands) = (self.ctx.clone(), self.commands.clone());
                tokio::spawn(async move {
                    let command = ctx.look_up(*lookup).await;
                    // The core only goes away at shutdown, when the answer no longer matters.
                    let _ = commands.send(command).await;
                    drop(permit);
                });
            }
            Output::Record(record) => self.write_record(*record),
            Output::Trunk(TrunkOutput::Resolve(name)) => {
                let commands = self.commands.clone();
                tokio::spawn(async move {
                    let addr = dns::resolve(&name).await;
                    let _ = commands.send(Command::Resolved { name, addr }).await;
                });
            }
            Output::Trunk(trunk) => publish_trunk(&self.ctx.shared, trunk),
            Output::Room(event) => self.ctx.shared.publish_room_event(event),
            Output::TlsTrunks(trunks, names) => super::add_tls_trunks(&trunks, &names, &mut self.transports),
        }
    }

    /// Writes a call record in the background, trying again until the database takes it
    /// (a record is never only logged); shutdown waits for every write.
    fn write_record(&mut self, record: CallRecord) {
        let storage = self.ctx.shared.storage.clone();
        let retries = self.ctx.shared.metrics.call_record_retries.clone();
        // Reap the writes already done, so the set holds only those in flight.
        while self.records.try_join_next().is_some() {}
        self.records.spawn(async move {
            let mut wait = RECORD_RETRY_FIRST;
            while let Err(e) = storage.write_call_record(&record).await {
                tracing::warn!(error = %e, leg = %record.leg_id, retry_in_ms = wait.as_millis() as u64, "call record not written yet");
                retries.inc();
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RECORD_RETRY_MAX);
            }
        });
    }
}

/// A failed call record write is tried again after this, doubling up to [`RECORD_RETRY_MAX`].
const RECORD_RETRY_FIRST: Duration = Duration::from_millis(200);
const RECORD_RETRY_MAX: Duration = Duration::from_secs(10);

fn publish_trunk(shared: &Shared, output: TrunkOutput) {
    match output {
        TrunkOutput::View(view) => shared.set_trunk_view(view),
        TrunkOutput::Removed(name) => shared.remove_trunk_view(&name),
        TrunkOutput::Resolve(_) => {}
        TrunkOutput::Status(status) => {
            let storage = shared.storage.clone();
            tokio::spawn(async move {
                if let Err(e) = storage.set_trunk_status(&status).await {
                    tracing::warn!(error = %e, "trunk status not stored");
                }
            });
        }
    }
}

/// The loop around the core, and the one place call control gets its time from: it reads the
/// clock once per input and hands that to the core with it.
#[allow(clippy::disallowed_methods)]
pub async fn run(
    shared: Arc<Shared>,
    mut transports: Transports,
    mut inbound: mpsc::Receiver<Inbound>,
    close: watch::Sender<bool>,
    media: MediaParts,
) {
    let MediaParts { media, events: mut media_events, prompts } = media;
    let mut control = shared.take_control_receiver().unwrap_or_else(|| mpsc::channel(1).1);
    let (commands, mut command_rx) = mpsc::channel(1024);
    let local = transports.udp_local_addr().unwrap_or_else(|| ([127, 0, 0, 1], 5060).into());
    let names = dns::trunk_names(&shared.config.trunks).await;
    super::add_tls_trunks(&shared.config.trunks, &names, &mut transports);
    let mut core = Core::new(&shared, local, names, prompts, Now::read());
    let ctx = Context::new(&shared);
    let mut shell = Shell { ctx, transports, media, commands, records: JoinSet::new() };
    core.start();
    core.flush();
    while let Some(output) = core.poll_output() {
        shell.execute(output);
    }

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
                Inbound::Closed { conn } => {
                    shell.transports.closed(conn);
                    continue;
                }
            },
            Some(command) = command_rx.recv() => Input::Command(command),
            Some(event) = media_events.recv() => Input::Media(event),
            Some(request) = control.recv() => Input::Control(request),
            _ = timer => Input::Timer,
        };
        core.now = Now::read();
        if matches!(input, Input::Shutdown) {
            stop_by = Some(core.now.at + UNREGISTER_GRACE);
        }
        core.handle(input);
        core.flush();
        while let Some(output) = core.poll_output() {
            shell.execute(output);
        }
    }
    close.send_replace(true);
    // Every ended call's record is written before the gateway exits.
    while shell.records.join_next().await.is_some() {}
}

impl Core {
    /// The core as configured, at `now`, with nothing started: [`Core::start`] starts the
    /// trunks. `local` is the UDP listener's address.
    /// `names`: what the trunks' proxy names resolved to.
    pub(super) fn new(
        shared: &Arc<Shared>,
        local: SocketAddr,
        names: Names,
        prompts: Prompts,
        now: Now,
    ) -> Core {
        let sip = &shared.config.sip;
        let timers = TimerConfig {
            t1: Duration::from_millis(sip.t1_ms),
            t2: Duration::from_millis(sip.t2_ms),
            t4: Duration::from_millis(sip.t4_ms),
        };
        let limits = &shared.config.limits;
        let layer = TransactionLayer::new(timers)
            .with_server_name(sip.user_agent.clone())
            .with_max_transactions(limits.server_transactions);
        let ports = LocalPorts {
            udp: local,
            tcp: sip.tcp.first().map(|a| a.port()),
            tls: sip.tls.first().map(|a| a.port()),
        };
        let trunks = Trunks::new(&shared.config.trunks, names, ports, sip.public_address, &sip.user_agent);
        let conference = &shared.config.conference;
        let calls = Calls::new(
            conference.pin_failures_per_source,
            conference.pin_failures_per_room,
            Duration::from_secs(u64::from(conference.pin_block_secs)),
        );
        let rtp = &shared.config.rtp;
        let ports = Ports::new(rtp.address, rtp.port_min, rtp.port_max);
        Core {
            shared: shared.clone(),
            layer,
            local,
            trunks,
            calls,
            ports,
            prompts,
            flood: RateLimit::new(limits.requests_per_source),
            pending: Arc::new(Semaphore::new(limits.pending_requests)),
            now,
            out: Outputs::default(),
        }
    }

    /// Starts the trunks: registrations and OPTIONS pings.
    pub(super) fn start(&mut self) {
        self.trunks.start(self.now, &mut self.layer, &self.shared.metrics);
    }

    /// After shutdown began: true once no trunk is un-registering and no BYE is in flight.
    pub(super) fn settled(&self) -> bool {
        self.trunks.stopped() && self.calls.byes_in_flight() == 0
    }

    /// The next thing to do, in the order the core decided it.
    pub(super) fn poll_output(&mut self) -> Option<Output> {
        self.out.0.pop_front()
    }

    pub(super) fn server(&self) -> Option<&str> {
        Some(&self.shared.config.sip.user_agent)
    }

    /// The earliest deadline of the transactions, the trunks and the calls.
    pub(super) fn poll_timeout(&mut self) -> Option<Instant> {
        [self.layer.poll_timeout(), self.trunks.poll_timeout(), self.calls.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }
}

impl Core {
    /// Handles one input at `self.now`.
    pub(super) fn handle(&mut self, input: Input) {
        let now = self.now.at;
        match input {
            Input::Shutdown => {
                self.trunks.stop(self.now, &mut self.layer, &self.shared.metrics);
                self.end_all_calls(Cause::Shutdown);
            }
            Input::Message { peer, bytes } => self.on_message(peer, bytes),
            Input::Command(command) => self.on_command(command),
            Input::Media(event) => self.on_media_event(event),
            Input::Control(request) => self.on_control(request),
            Input::Timer => {
                self.layer.handle_timeout(now);
                self.trunks.handle_timeout(self.now, &mut self.layer, &self.shared.metrics);
                self.handle_calls_timeout(now);
            }
        }
    }

    fn on_message(&mut self, peer: Peer, bytes: Bytes) {
        let now = self.now.at;
        let labels = TransportLabels { transport: metrics_transport(peer.transport) };
        // A flood is dropped before any parsing; trunks are exempt (a carrier's calls all come
        // from a few addresses).
        let request = !bytes.starts_with(b"SIP/");
        if request && !self.trusted(peer.addr) {
            if let Rate::Refused { first } = self.flood.check(now, peer.addr.ip()) {
                if first {
                    tracing::warn!(src = %peer.addr, "SIP requests over the per-source rate: dropping");
                }
                self.shared.metrics.sip_rate_limited.inc();
                return;
            }
        }
        match message::parse(&bytes) {
            Ok(Parsed::Request(request)) => self.layer.handle_request(now, request, peer),
            Ok(Parsed::Response(response)) => {
                self.shared.metrics.sip_responses_received.get_or_create(&labels).inc();
                self.layer.handle_response(now, response);
            }
            Err(error) => self.reject_unparseable(peer, &bytes, &error, labels),
        }
    }

    /// RFC 3261 §8.2: a 400 when the request can still be answered, otherwise a silent drop.
    fn reject_unparseable(
        &mut self,
        peer: Peer,
        bytes: &[u8],
        error: &message::ParseError,
        labels: TransportLabels,
    ) {
        let metrics = &self.shared.metrics;
        let tag = new_tag();
        match message::bad_request(bytes, error, &tag, &self.shared.config.sip.user_agent, ALLOW) {
            Some(reply) => {
                tracing::debug!(src = %peer.addr, %error, code = error.status_code(), "request refused at parsing");
                metrics.sip_bad_requests.get_or_create(&labels).inc();
                metrics
                    .sip_responses_sent
                    .get_or_create(&ResponseLabels { transport: labels.transport, code: error.status_code() })
                    .inc();
                self.out.push(Output::Transmit(Transmit { to: peer, bytes: Bytes::from(reply) }));
            }
            None => {
                tracing::debug!(src = %peer.addr, %error, "dropped unparseable message");
                metrics.sip_dropped.get_or_create(&labels).inc();
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Respond { tx, response } => self.respond(tx, response),
            Command::Refuse { tx, response, known_caller } => {
                self.on_admission_refused(tx, response, known_caller)
            }
            Command::Admit(admission) => self.on_admitted(*admission),
            Command::Resolved { name, addr } => self.trunks.resolved(name, addr),
        }
    }

    fn on_control(&mut self, request: Control) {
        match request {
            Control::Conferences(reply) => {
                let _ = reply.send(self.calls.conferences());
            }
            Control::Dial { room, request, next_hop, reply } => {
                let result = if self.shared.is_draining() {
                    Err(ControlError::Unavailable)
                } else {
                    self.dial(room, request, next_hop)
                };
                let _ = reply.send(result);
            }
            Control::Participant { room, id, action, reply } => {
                let result = if self.shared.is_draining() {
                    Err(ControlError::Unavailable)
                } else {
                    self.participant_action(&room, id, action)
                };
                let _ = reply.send(result);
            }
            Control::BrowserJoin { request, reply } => {
                let result = self.browser_join(*request);
                if let Err(refused) = result {
                    self.count_call(refused.code());
                }
                if reply.send(result).is_err() {
                    // The page went away while we decided: nothing to keep.
                    if let Ok(admitted) = result {
                        self.end_browser(admitted.id, Cause::ConnectionLost, false);
                    }
                }
            }
            Control::BrowserMedia { id, config, wire } => self.browser_media(id, config, wire),
            Control::BrowserConnected { id } => self.browser_connected(id),
            Control::BrowserLeave { id, cause } => self.end_browser(id, cause, false),
            Control::Reload { trunks, names, prompts } => self.reload(&trunks, names, prompts),
        }
    }

    /// New trunks and prompts from the config file; calls in progress go on as they are (a
    /// prompt already playing plays to its end).
    fn reload(&mut self, trunks: &[TrunkConfig], names: Names, prompts: Prompts) {
        self.prompts = prompts;
        self.shared.set_trunk_configs(trunks);
        self.out.push(Output::TlsTrunks(trunks.to_vec(), names.clone()));
        self.trunks.reload(self.now, trunks, names, &mut self.layer, &self.shared.metrics);
        tracing::info!(trunks = trunks.len(), "trunks and prompts reloaded");
    }

    /// Sends a response in a server transaction, counting it by transport and code.
    pub(super) fn respond(&mut self, tx: ServerTx, response: rsip::Response) {
        let code = response.status_code.code();
        let transport = self.layer.server_peer(tx).map(|p| metrics_transport(p.transport));
        match self.layer.send_response(self.now.at, tx, response) {
            Ok(()) => {
                if let Some(transport) = transport {
                    let labels = ResponseLabels { transport, code };
                    self.shared.metrics.sip_responses_sent.get_or_create(&labels).inc();
                }
            }
            Err(e) => tracing::debug!(error = %e, code, "response not sent"),
        }
    }

    /// Sends what the layer queued and acts on its events.
    pub(super) fn flush(&mut self) {
        loop {
            while let Some(t) = self.layer.poll_transmit() {
                self.out.push(Output::Transmit(t));
            }
            let Some(event) = self.layer.poll_event() else { break };
            let metrics = &self.shared.metrics;
            if let Some(event) = self.trunks.on_event(self.now, event, &mut self.layer, metrics) {
                self.on_event(event);
            }
        }
        while let Some(trunk) = self.trunks.poll_output() {
            self.out.push(Output::Trunk(trunk));
        }
        self.calls.reschedule();
        self.calls.compact();
    }

    fn on_event(&mut self, event: TxEvent) {
        if self.on_client_event(&event) {
            return;
        }
        match event {
            TxEvent::Request { tx: Some(tx), request, from } => self.on_request(tx, request, from),
            TxEvent::Request { tx: None, request, .. } if request.request.method == Method::Ack => {
                self.on_ack(&request)
            }
            TxEvent::Cancelled { tx } => self.on_cancelled(tx),
            other => tracing::trace!(?other, "transaction event without a handler"),
        }
    }

    fn on_request(&mut self, tx: ServerTx, request: InboundRequest, from: Peer) {
        let shared = &self.shared;
        let transport = metrics_transport(from.transport);
        shared
            .metrics
            .sip_requests
            .get_or_create(&RequestLabels { transport, method: request.request.method.to_string() })
            .inc();
        match request.request.method {
            Method::Options => {
                let response = options_response(&request, self.server());
                self.respond(tx, response);
            }
            Method::Register => self.look_up(LookupKind::Register, tx, request, from),
            // In a dialog (or claiming to be): BYE, re-INVITE, UPDATE, INFO, OPTIONS.
            _ if request.envelope.to.tag().is_some() => self.on_in_dialog(tx, request, from),
            Method::Invite if !shared.is_draining() => self.on_new_invite(tx, request, from),
            _ if shared.is_draining() => {
                let mut response =
                    response_to(&request, StatusCode::ServiceUnavailable, Some(&new_tag()), self.server());
                push_header(&mut response, Header::RetryAfter("30".into()));
                self.respond(tx, response);
            }
            _ => {
                let mut response =
                    response_to(&request, StatusCode::NotImplemented, Some(&new_tag()), self.server());
                push_header(&mut response, Header::Allow(ALLOW.into()));
                self.respond(tx, response);
            }
        }
    }
}

impl Core {
    /// Whether `addr` is a trunk's: its requests are not rate-limited.
    fn trusted(&self, addr: SocketAddr) -> bool {
        self.trunks.trusts(addr)
    }

    /// Hands a request to a look-up task, or refuses it when too many wait already.
    pub(super) fn look_up(&mut self, kind: LookupKind, tx: ServerTx, request: InboundRequest, from: Peer) {
        let Ok(permit) = self.pending.clone().try_acquire_owned() else {
            return self.overloaded(tx, &request);
        };
        let lookup = Lookup { kind, tx, request, from };
        self.out.push(Output::Lookup { lookup: Box::new(lookup), permit });
    }

    /// Too much already waits for look-ups: `503` with `Retry-After` (RFC 3261 §21.5.4).
    pub(super) fn overloaded(&mut self, tx: ServerTx, request: &InboundRequest) {
        self.shared.metrics.sip_overloaded.inc();
        let mut response =
            response_to(request, StatusCode::ServiceUnavailable, Some(&new_tag()), self.server());
        push_header(&mut response, Header::RetryAfter("5".into()));
        self.respond(tx, response);
    }
}

/// `OPTIONS` is how load balancers and trunks probe the gateway (RFC 3261 §11.2).
fn options_response(request: &InboundRequest, server: Option<&str>) -> rsip::Response {
    let mut response = response_to(request, StatusCode::OK, Some(&new_tag()), server);
    push_header(&mut response, Header::Allow(ALLOW.into()));
    push_header(&mut response, Header::Accept("application/sdp".into()));
    push_header(&mut response, Header::Supported("replaces, timer".into()));
    response
}

fn metrics_transport(transport: Transport) -> metrics::Transport {
    match transport {
        Transport::Udp => metrics::Transport::Udp,
        Transport::Tcp => metrics::Transport::Tcp,
        Transport::Tls => metrics::Transport::Tls,
    }
}

/// A To tag: 64 random bits (RFC 3261 §19.3 asks for at least 32).
pub fn new_tag() -> String {
    format!("{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests;
