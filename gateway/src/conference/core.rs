//! The call-control core: one state machine for every call, dialog and trunk, with the
//! transaction layer under them. It is fed [`Input`]s (SIP messages, verdicts of look-ups,
//! media events, API commands, the time passing) at [`Core::now`], and queues [`Output`]s for
//! [`super::shell`] to carry out; [`Core::poll_timeout`] says when it next needs the time. It
//! does no I/O and reads no clock.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rsip::{Header, Method, StatusCode};
use sip_stack::message::{self, Inbound as Parsed, InboundRequest};
use sip_stack::response::{push_header, response_to};
use sip_stack::transaction::{ServerTx, TimerConfig, TransactionLayer, TxEvent, TxStats};
use sip_stack::transport::{Peer, Transmit, Transport};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::calls::Calls;
use super::invite::Admission;
use crate::clock::Now;
use crate::config::TrunkConfig;
use crate::control::{Cause, Control, ControlError, RoomEvent};
use crate::dns::{HostPort, Names};
use crate::limits::{Rate, RateLimit};
use crate::media::ports::Ports;
use crate::media::prompts::Prompts;
use crate::media::{MediaCommand, MediaEvent};
use crate::metrics::{self, RequestLabels, ResponseLabels, TransportLabels};
use crate::signalling::sip::new_tag;
use crate::signalling::sip::trunks::{LocalPorts, TrunkOutput, Trunks};
use crate::state::Shared;
use crate::storage::CallRecord;

/// Methods the gateway accepts, for `Allow`.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REGISTER";

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
    /// A new INVITE, which needs the database (digest credentials, rooms) before it can be
    /// answered; the answer comes back as a [`Command`]. The permit counts it against
    /// `[limits] pending_requests` until then.
    Lookup { lookup: Box<Lookup>, permit: OwnedSemaphorePermit },
    /// A REGISTER, for the registrar (digest credentials, bindings); the answer comes back as
    /// a [`Command::Respond`]. The permit as for a look-up.
    Register { lookup: Box<Lookup>, permit: OwnedSemaphorePermit },
    /// A call record, written until the database takes it.
    Record(Box<CallRecord>),
    /// A trunk's state, for the API and the database.
    Trunk(TrunkOutput),
    /// For the pages showing a room.
    Room(RoomEvent),
    /// The trunks as last loaded, for admission look-ups, and for TLS connections to them,
    /// which check their certificates this way.
    Trunks(Vec<TrunkConfig>, Names),
}

/// A request waiting for the database.
#[derive(Debug)]
pub(super) struct Lookup {
    pub(super) tx: ServerTx,
    pub(super) request: InboundRequest,
    pub(super) from: Peer,
}

/// Call control: every call, dialog and trunk, and the transaction layer under them. It does
/// no I/O and reads no clock: [`Core::handle`] takes one input at [`Core::now`], and what it
/// decides to do waits in [`Core::poll_output`].
pub(super) struct Core {
    /// Read for the configuration and to count in the metrics, nothing else: the trunk list in
    /// force, the draining flag and the pages' events are the core's own or its outputs.
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
    /// Since [`Input::Shutdown`]: new calls and API requests are refused.
    pub(super) draining: bool,
    pub(super) out: Outputs,
    /// The layer's counters as last put in the metrics.
    counted: TxStats,
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
    /// A TCP connection to `addr` could not be opened.
    Refused {
        addr: SocketAddr,
    },
    /// The earliest deadline passed.
    Timer,
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
            draining: false,
            out: Outputs::default(),
            counted: TxStats::default(),
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
                self.draining = true;
                self.trunks.stop(self.now, &mut self.layer, &self.shared.metrics);
                self.end_all_calls(Cause::Shutdown);
            }
            Input::Message { peer, bytes } => self.on_message(peer, bytes),
            Input::Command(command) => self.on_command(command),
            Input::Media(event) => self.on_media_event(event),
            Input::Control(request) => self.on_control(request),
            Input::Refused { addr } => {
                let resent = self.layer.stream_refused(now, addr);
                if resent > 0 {
                    tracing::info!(to = %addr, requests = resent, "TCP refused: sent over UDP");
                }
            }
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
                self.shared.metrics.sip.rate_limited.inc();
                return;
            }
        }
        match message::parse(&bytes) {
            Ok(Parsed::Request(request)) => self.layer.handle_request(now, request, peer),
            Ok(Parsed::Response(response)) => {
                self.shared.metrics.sip.responses_received.get_or_create(&labels).inc();
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
                metrics.sip.bad_requests.get_or_create(&labels).inc();
                metrics
                    .sip
                    .responses_sent
                    .get_or_create(&ResponseLabels { transport: labels.transport, code: error.status_code() })
                    .inc();
                self.out.push(Output::Transmit(Transmit { to: peer, bytes: Bytes::from(reply) }));
            }
            None => {
                tracing::debug!(src = %peer.addr, %error, "dropped unparseable message");
                metrics.sip.dropped.get_or_create(&labels).inc();
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
                let _ = reply.send(self.calls.conferences(self.default_layout()));
            }
            Control::Layout { room, layout, presenter, reply } => {
                let _ = reply.send(self.set_layout(room, layout, presenter));
            }
            Control::Dial { room, request, next_hop, reply } => {
                let result = if self.draining {
                    Err(ControlError::Unavailable)
                } else {
                    self.dial(room, request, next_hop)
                };
                let _ = reply.send(result);
            }
            Control::Participant { room, id, action, reply } => {
                let result = if self.draining {
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
        self.out.push(Output::Trunks(trunks.to_vec(), names.clone()));
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
                    self.shared.metrics.sip.responses_sent.get_or_create(&labels).inc();
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
        self.count_transactions();
    }

    /// What the transaction layer counted since the last time, into the metrics.
    fn count_transactions(&mut self) {
        let stats = self.layer.stats();
        if stats == self.counted {
            return;
        }
        let was = std::mem::replace(&mut self.counted, stats);
        let family = &self.shared.metrics.sip.transaction_events;
        for (event, now, before) in [
            (metrics::TxEvent::Retransmitted, stats.retransmissions, was.retransmissions),
            (metrics::TxEvent::Absorbed, stats.absorbed, was.absorbed),
            (metrics::TxEvent::StrayResponse, stats.stray_responses, was.stray_responses),
            (metrics::TxEvent::TimedOut, stats.timeouts, was.timeouts),
            (metrics::TxEvent::RefusedFull, stats.overloaded, was.overloaded),
            (metrics::TxEvent::RetiredEarly, stats.retired_early, was.retired_early),
        ] {
            if now > before {
                family.get_or_create(&metrics::TxEventLabels { event }).inc_by(now - before);
            }
        }
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
            .sip
            .requests
            .get_or_create(&RequestLabels { transport, method: request.request.method.to_string() })
            .inc();
        match request.request.method {
            Method::Options => {
                let response = options_response(&request, self.server());
                self.respond(tx, response);
            }
            Method::Register => self.register(tx, request, from),
            // In a dialog (or claiming to be): BYE, re-INVITE, UPDATE, INFO, OPTIONS.
            _ if request.envelope.to.tag().is_some() => self.on_in_dialog(tx, request, from),
            Method::Invite if !self.draining => self.on_new_invite(tx, request, from),
            _ if self.draining => {
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

    /// Hands a REGISTER to the registrar, or refuses it when too many wait already.
    fn register(&mut self, tx: ServerTx, request: InboundRequest, from: Peer) {
        let Ok(permit) = self.pending.clone().try_acquire_owned() else {
            return self.overloaded(tx, &request);
        };
        let lookup = Lookup { tx, request, from };
        self.out.push(Output::Register { lookup: Box::new(lookup), permit });
    }

    /// Too much already waits for look-ups: `503` with `Retry-After` (RFC 3261 §21.5.4).
    pub(super) fn overloaded(&mut self, tx: ServerTx, request: &InboundRequest) {
        self.shared.metrics.sip.overloaded.inc();
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

#[cfg(test)]
mod tests;
