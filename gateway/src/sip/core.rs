//! The SIP core: one task owning the transaction layer. Socket tasks feed it messages; handlers
//! that must wait (for the database) run as their own tasks and hand their responses back as
//! [`Command`]s, so the core itself never waits on anything but its inputs.

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
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use super::calls::Calls;
use super::invite::Admission;
use super::register;
use super::transport::{udp_peer, Inbound, Transports};
use super::trunks::{LocalPorts, Trunks};
use crate::calls::{Cause, Control, ControlError};
use crate::clock::Now;
use crate::config::TrunkConfig;
use crate::limits::{AuthThrottle, KeyedLocks, Rate, RateLimit};
use crate::media::ports::Ports;
use crate::media::prompts::Prompts;
use crate::media::{Media, MediaEvent};
use crate::metrics::{self, RequestLabels, ResponseLabels, TransportLabels};
use crate::state::Shared;

/// Methods the gateway accepts, for `Allow`.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REGISTER";

/// How long a digest nonce is good for.
const NONCE_LIFETIME_SECS: u64 = 300;

/// Work handed back to the core by handler tasks.
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
}

/// What handler tasks get to do their work.
#[derive(Clone)]
pub struct Context {
    pub shared: Arc<Shared>,
    /// One lock around the digest server's whole state (its nonce counts).
    pub digest: Arc<Mutex<DigestServer>>,
    /// Digest failures per source and per user (`[limits] auth_failures_*`).
    pub auth: Arc<Mutex<AuthThrottle>>,
    /// One REGISTER per user at a time.
    pub registrations: Arc<KeyedLocks>,
    pub commands: mpsc::Sender<Command>,
}

impl Context {
    pub fn server(&self) -> Option<&str> {
        Some(&self.shared.config.sip.user_agent)
    }

    pub async fn respond(&self, tx: ServerTx, response: rsip::Response) {
        // The core only goes away at shutdown, when the response no longer matters.
        let _ = self.commands.send(Command::Respond { tx, response }).await;
    }
}

/// How long shutdown waits for trunks to un-register.
const UNREGISTER_GRACE: Duration = Duration::from_secs(3);

pub(super) struct Core {
    pub(super) ctx: Context,
    pub(super) layer: TransactionLayer,
    pub(super) transports: Transports,
    trunks: Trunks,
    pub(super) calls: Calls,
    pub(super) media: Media,
    pub(super) ports: Ports,
    pub(super) prompts: Prompts,
    /// Call records being written; shutdown waits for them.
    pub(super) records: JoinSet<()>,
    /// Requests per second from each address (`[limits] requests_per_source`).
    flood: RateLimit,
    /// One permit per REGISTER or new INVITE waiting for its look-ups (`[limits]
    /// pending_requests`).
    pub(super) pending: Arc<Semaphore>,
    /// When the input being handled came: the core's only time (see [`run`]).
    pub(super) now: Now,
}

/// What wakes the core.
pub(super) enum Input {
    Shutdown,
    Inbound(Inbound),
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

/// The loop around the core, and the one place call control gets its time from: it reads the
/// clock once per input and hands that to the core with it.
#[allow(clippy::disallowed_methods)]
pub async fn run(
    shared: Arc<Shared>,
    transports: Transports,
    mut inbound: mpsc::Receiver<Inbound>,
    close: watch::Sender<bool>,
    media: MediaParts,
) {
    let MediaParts { media, events: mut media_events, prompts } = media;
    let mut control = shared.take_control_receiver().unwrap_or_else(|| mpsc::channel(1).1);
    let (commands, mut command_rx) = mpsc::channel(1024);
    let mut core = Core::new(&shared, transports, media, prompts, commands, Now::read());
    core.trunks.start(core.now, &mut core.layer, &shared);
    core.flush();

    let shutdown = shared.shutdown_signal();
    tokio::pin!(shutdown);
    // Set once shutdown begins: the core runs on until trunks are un-registered or this passes.
    let mut stop_by: Option<Instant> = None;
    loop {
        if let Some(stop_by) = stop_by {
            let settled = core.trunks.stopped() && core.calls.byes_in_flight() == 0;
            if settled || Now::read().at >= stop_by {
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
            Some(message) = inbound.recv() => Input::Inbound(message),
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
    }
    close.send_replace(true);
    // Every ended call's record is written before the gateway exits.
    while core.records.join_next().await.is_some() {}
}

impl Core {
    /// The core as configured, at `now`, with nothing started: [`run`] starts the trunks.
    pub(super) fn new(
        shared: &Arc<Shared>,
        transports: Transports,
        media: Media,
        prompts: Prompts,
        commands: mpsc::Sender<Command>,
        now: Now,
    ) -> Core {
        // Validated at start-up: every name is a known algorithm.
        let algorithms =
            shared.config.sip.digest_algorithms.iter().filter_map(|a| Algorithm::from_token(a)).collect();
        let digest = DigestServer::new(shared.config.sip.realm.clone(), rand::random(), NONCE_LIFETIME_SECS)
            .with_algorithms(algorithms);
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
        let local = transports.udp_local_addr().unwrap_or_else(|| ([127, 0, 0, 1], 5060).into());
        let ports = LocalPorts {
            udp: local,
            tcp: sip.tcp.first().map(|a| a.port()),
            tls: sip.tls.first().map(|a| a.port()),
        };
        let trunks = Trunks::new(&shared.config.trunks, ports, sip.public_address, &sip.user_agent);
        let conference = &shared.config.conference;
        let calls = Calls::new(
            conference.pin_failures_per_source,
            conference.pin_failures_per_room,
            Duration::from_secs(u64::from(conference.pin_block_secs)),
        );
        let rtp = &shared.config.rtp;
        let ports = Ports::new(rtp.address, rtp.port_min, rtp.port_max);
        Core {
            ctx: Context {
                shared: shared.clone(),
                digest: Arc::new(Mutex::new(digest)),
                auth: Arc::new(Mutex::new(AuthThrottle::new(
                    limits.auth_failures_per_source,
                    limits.auth_failures_per_user,
                ))),
                registrations: Arc::default(),
                commands,
            },
            layer,
            transports,
            trunks,
            calls,
            media,
            ports,
            prompts,
            records: JoinSet::new(),
            flood: RateLimit::new(limits.requests_per_source),
            pending: Arc::new(Semaphore::new(limits.pending_requests)),
            now,
        }
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
                let shared = self.ctx.shared.clone();
                self.trunks.stop(self.now, &mut self.layer, &shared);
                self.end_all_calls(Cause::Shutdown);
            }
            Input::Inbound(message) => self.on_inbound(message),
            Input::Command(command) => self.on_command(command),
            Input::Media(event) => self.on_media_event(event),
            Input::Control(request) => self.on_control(request),
            Input::Timer => {
                let shared = self.ctx.shared.clone();
                self.layer.handle_timeout(now);
                self.trunks.handle_timeout(self.now, &mut self.layer, &shared);
                self.handle_calls_timeout(now);
            }
        }
    }

    fn on_inbound(&mut self, message: Inbound) {
        let (peer, bytes) = match message {
            Inbound::Datagram { socket, src, bytes } => (udp_peer(socket, src), bytes),
            Inbound::Stream { conn, transport, src, bytes } => {
                (Peer { transport, addr: src, connection: Some(conn) }, bytes)
            }
            Inbound::Ping { conn } => return self.transports.pong(conn),
            Inbound::Connected { conn, transport, peer, writer } => {
                return self.transports.connected(conn, transport, peer, writer)
            }
            Inbound::Closed { conn } => return self.transports.closed(conn),
        };
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
                self.ctx.shared.metrics.sip_rate_limited.inc();
                return;
            }
        }
        match message::parse(&bytes) {
            Ok(Parsed::Request(request)) => self.layer.handle_request(now, request, peer),
            Ok(Parsed::Response(response)) => {
                self.ctx.shared.metrics.sip_responses_received.get_or_create(&labels).inc();
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
        let metrics = &self.ctx.shared.metrics;
        let tag = new_tag();
        match message::bad_request(bytes, error, &tag, &self.ctx.shared.config.sip.user_agent, ALLOW) {
            Some(reply) => {
                tracing::debug!(src = %peer.addr, %error, code = error.status_code(), "request refused at parsing");
                metrics.sip_bad_requests.get_or_create(&labels).inc();
                metrics
                    .sip_responses_sent
                    .get_or_create(&ResponseLabels { transport: labels.transport, code: error.status_code() })
                    .inc();
                self.transports.send(&Transmit { to: peer, bytes: Bytes::from(reply) });
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
        }
    }

    fn on_control(&mut self, request: Control) {
        match request {
            Control::Conferences(reply) => {
                let _ = reply.send(self.calls.conferences());
            }
            Control::Dial { room, request, reply } => {
                let result = if self.ctx.shared.is_draining() {
                    Err(ControlError::Unavailable)
                } else {
                    self.dial(room, request)
                };
                let _ = reply.send(result);
            }
            Control::Participant { room, id, action, reply } => {
                let result = if self.ctx.shared.is_draining() {
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
            Control::Reload { trunks, prompts } => self.reload(&trunks, prompts),
        }
    }

    /// New trunks and prompts from the config file; calls in progress go on as they are (a
    /// prompt already playing plays to its end).
    fn reload(&mut self, trunks: &[TrunkConfig], prompts: Prompts) {
        self.prompts = prompts;
        let shared = self.ctx.shared.clone();
        shared.set_trunk_configs(trunks);
        super::add_tls_trunks(trunks, &mut self.transports);
        self.trunks.reload(self.now, trunks, &mut self.layer, &shared);
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
                    self.ctx.shared.metrics.sip_responses_sent.get_or_create(&labels).inc();
                }
            }
            Err(e) => tracing::debug!(error = %e, code, "response not sent"),
        }
    }

    /// Sends what the layer queued and acts on its events.
    pub(super) fn flush(&mut self) {
        loop {
            while let Some(t) = self.layer.poll_transmit() {
                self.transports.send(&t);
            }
            let Some(event) = self.layer.poll_event() else { break };
            let shared = self.ctx.shared.clone();
            if let Some(event) = self.trunks.on_event(self.now, event, &mut self.layer, &shared) {
                self.on_event(event);
            }
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
        let shared = &self.ctx.shared;
        let transport = metrics_transport(from.transport);
        shared
            .metrics
            .sip_requests
            .get_or_create(&RequestLabels { transport, method: request.request.method.to_string() })
            .inc();
        match request.request.method {
            Method::Options => {
                let response = options_response(&request, self.ctx.server());
                self.respond(tx, response);
            }
            Method::Register => match self.pending.clone().try_acquire_owned() {
                Ok(permit) => {
                    let ctx = self.ctx.clone();
                    tokio::spawn(async move {
                        register::handle(ctx, tx, request, from).await;
                        drop(permit);
                    });
                }
                Err(_) => self.overloaded(tx, &request),
            },
            // In a dialog (or claiming to be): BYE, re-INVITE, UPDATE, INFO, OPTIONS.
            _ if request.envelope.to.tag().is_some() => self.on_in_dialog(tx, request, from),
            Method::Invite if !shared.is_draining() => self.on_new_invite(tx, request, from),
            _ if shared.is_draining() => {
                let mut response = response_to(
                    &request,
                    StatusCode::ServiceUnavailable,
                    Some(&new_tag()),
                    self.ctx.server(),
                );
                push_header(&mut response, Header::RetryAfter("30".into()));
                self.respond(tx, response);
            }
            _ => {
                let mut response =
                    response_to(&request, StatusCode::NotImplemented, Some(&new_tag()), self.ctx.server());
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

    /// Too much already waits for look-ups: `503` with `Retry-After` (RFC 3261 §21.5.4).
    pub(super) fn overloaded(&mut self, tx: ServerTx, request: &InboundRequest) {
        self.ctx.shared.metrics.sip_overloaded.inc();
        let mut response =
            response_to(request, StatusCode::ServiceUnavailable, Some(&new_tag()), self.ctx.server());
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
