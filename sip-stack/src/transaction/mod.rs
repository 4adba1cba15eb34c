//! The transaction layer (RFC 3261 §17, with the RFC 6026 Accepted states).
//!
//! Sans-IO: feed it parsed messages with their source and the time, tell it when time passes,
//! and drain what it wants sent ([`TransactionLayer::poll_transmit`]), what the transaction user
//! must know ([`TransactionLayer::poll_event`]) and when to call it next
//! ([`TransactionLayer::poll_timeout`]).
//!
//! It retransmits requests and responses over UDP, absorbs retransmissions, answers CANCEL
//! (§9.2), sends `100 Trying` for INVITE (§17.2.1), ACKs non-2xx final responses (§17.1.1.3) and
//! times transactions out. ACK for 2xx and 2xx retransmission belong to the dialog layer above.

mod key;
mod timers;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rsip::prelude::*;
use rsip::{Header, Method, Request, Response, StatusCode};

use key::TxKey;
pub use key::MAGIC_COOKIE;
pub use timers::{Timer, TimerConfig, TimerTable};

use crate::message::{request_bytes, response_bytes, InboundRequest, InboundResponse};
use crate::response::response_to;
use crate::transport::{Peer, Transmit, Transport};
use crate::via;

/// A client transaction: a request we sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientTx(u64);

/// A server transaction: a request we received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerTx(u64);

/// What the transaction user (dialogs, registrar, call control) must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxEvent {
    /// A new request. `tx` is `None` for an ACK that matched no transaction: the ACK of a 2xx,
    /// which belongs to its dialog (§13.3.1.4).
    Request { tx: Option<ServerTx>, request: InboundRequest, from: Peer },
    /// A response to one of our requests: provisional, final, or (RFC 6026 Accepted) a 2xx
    /// retransmission the dialog must ACK again.
    Response { tx: ClientTx, response: InboundResponse },
    /// Timer B or F fired: no final response. The TU acts as on a 408 (§8.1.3.1).
    Timeout { tx: ClientTx },
    /// The transport could not deliver the request. The TU acts as on a 503 (§8.1.3.1).
    TransportError { tx: ClientTx },
    /// A CANCEL matched this INVITE before its final response; the CANCEL got its 200. The TU
    /// should now answer the INVITE with 487 (§9.2).
    Cancelled { tx: ServerTx },
    /// Timer H fired: a non-2xx final response to this INVITE was never ACKed (§17.2.1).
    AckTimeout { tx: ServerTx },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("no such transaction")]
    Unknown,
    #[error("the request has no Via with a branch starting with {MAGIC_COOKIE}")]
    NoBranch,
    #[error("the request lacks a valid {0} header")]
    MissingHeader(&'static str),
    #[error("ACK is not sent in a transaction: send it stateless")]
    AckNotTransactional,
    #[error("a transaction with this branch already exists")]
    DuplicateBranch,
    #[error("a {status} response is not allowed in this transaction state")]
    InvalidState { status: u16 },
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxStats {
    pub retransmissions: u64,
    pub absorbed: u64,
    pub stray_responses: u64,
    pub timeouts: u64,
    /// New requests refused with 503 because the layer held its maximum of transactions.
    pub overloaded: u64,
    /// Answered transactions ended before their timer, oldest first, to keep the lingering
    /// ones within their bound.
    pub retired_early: u64,
}

#[derive(Debug)]
enum ClientInvite {
    Calling {
        interval: Duration,
    },
    Proceeding,
    /// RFC 6026 §8.4: a 2xx arrived; further 2xx go to the TU until Timer M.
    Accepted,
    /// A non-2xx final arrived and was ACKed; retransmissions of it get the ACK again.
    Completed {
        ack: Bytes,
    },
}

#[derive(Debug)]
enum ClientNonInvite {
    Trying { interval: Duration },
    Proceeding,
    Completed,
}

#[derive(Debug)]
enum ServerInvite {
    Proceeding {
        provisional: Bytes,
    },
    Completed {
        response: Bytes,
        interval: Duration,
    },
    Confirmed,
    /// RFC 6026 §8.7: a 2xx was sent; INVITE retransmissions are absorbed until Timer L.
    Accepted,
}

#[derive(Debug)]
enum ServerNonInvite {
    Trying,
    Proceeding { response: Bytes },
    Completed { response: Bytes },
}

#[derive(Debug)]
enum State {
    InviteClient(ClientInvite),
    NonInviteClient(ClientNonInvite),
    InviteServer(ServerInvite),
    NonInviteServer(ServerNonInvite),
}

#[derive(Debug)]
struct Transaction {
    key: TxKey,
    /// Client: where the request goes. Server: where responses go (§18.2.2).
    peer: Peer,
    /// The request that created the transaction, as sent or received.
    request: Request,
    /// The request's bytes, for retransmission (client transactions).
    wire: Bytes,
    timers: TimerTable,
    state: State,
    /// Answered and only absorbing retransmissions: counted in [`Lingering`].
    lingering: bool,
    /// Client: the UDP peer a request was meant for before its size moved it to TCP, to go
    /// back to if the TCP connection is refused (§18.1.1).
    udp_fallback: Option<Peer>,
}

/// Server transactions that have sent their final answer and stay only to absorb
/// retransmissions (non-INVITE Completed over UDP, Timer J; INVITE Accepted, Timer L; each
/// 32 s by default; INVITE Confirmed, Timer I, 5 s). They do not count against the cap on live
/// transactions, which would otherwise hold a gateway to cap / 32 s requests a second; they
/// have their own bound, and past it the oldest go first — first those whose loss costs
/// nothing ([`Linger::Repeatable`]), then the others. A peer retransmits within T2 (4 s) of
/// a lost answer, so the oldest are the least likely to be asked again.
#[derive(Debug, Default)]
struct Lingering {
    /// Ids of each [`Linger`] kind in the order they began lingering; ids already gone are
    /// dropped when they reach the front. Every id is pushed once and lingers at most 32 s,
    /// so a queue holds at most the ids of that long.
    order: [VecDeque<u64>; 2],
    count: usize,
    max: usize,
}

/// What ending a lingering transaction early costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Linger {
    /// Nothing: a retransmission reaching the TU as new gets the same answer again (a fresh
    /// challenge for a request answered 401 or 407), or none is needed (the ACKs a Confirmed
    /// INVITE absorbs).
    Repeatable = 0,
    /// The TU would not answer the same again (a REGISTER's credentials count as a replay, a
    /// retransmitted INVITE looks like a new call): these are kept longest.
    Once = 1,
}

/// The output side: queues and the timer heap, kept apart from the transactions so both can be
/// borrowed at once.
#[derive(Debug, Default)]
struct Io {
    transmits: VecDeque<Transmit>,
    events: VecDeque<TxEvent>,
    /// (deadline, transaction id, timer); stale entries are skipped when popped.
    heap: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    stats: TxStats,
}

impl Io {
    fn send(&mut self, to: Peer, bytes: Bytes) {
        self.transmits.push_back(Transmit { to, bytes });
    }

    fn arm(&mut self, id: u64, tx: &mut Transaction, timer: Timer, at: Instant) {
        tx.timers.set(timer, at);
        self.heap.push(Reverse((at, id, timer)));
    }
}

/// Every transaction of one endpoint.
#[derive(Debug)]
pub struct TransactionLayer {
    config: TimerConfig,
    next_id: u64,
    transactions: HashMap<u64, Transaction>,
    keys: HashMap<TxKey, u64>,
    io: Io,
    server_name: Option<String>,
    /// Requests this large go over TCP instead of UDP.
    udp_request_limit: Option<usize>,
    /// Transactions alive at once; a new request past it gets a stateless 503.
    max_transactions: usize,
    lingering: Lingering,
    /// Peers whose TCP connection was refused, until when their big requests stay on UDP.
    udp_only: HashMap<SocketAddr, Instant>,
}

/// RFC 3261 §18.1.1: a request larger than 1300 bytes (path MTU unknown) must go over a
/// congestion-controlled transport.
pub const UDP_REQUEST_LIMIT: usize = 1300;

/// How long a peer that refused TCP gets its big requests over UDP without trying TCP again.
const UDP_ONLY_FOR: Duration = Duration::from_secs(600);

/// Peers remembered as UDP-only at most: we connect only where we send requests (trunks,
/// calls out), but past this the oldest memory is dropped and TCP is tried again.
const UDP_ONLY_MAX: usize = 1024;

impl TransactionLayer {
    pub fn new(config: TimerConfig) -> TransactionLayer {
        TransactionLayer {
            config,
            next_id: 1,
            transactions: HashMap::new(),
            keys: HashMap::new(),
            io: Io::default(),
            server_name: None,
            udp_request_limit: Some(UDP_REQUEST_LIMIT),
            max_transactions: usize::MAX,
            lingering: Lingering { max: usize::MAX, ..Lingering::default() },
            udp_only: HashMap::new(),
        }
    }

    /// Bounds the transactions alive at once: past `max` not yet answered, a new request is
    /// answered `503` with `Retry-After` and holds nothing (a flood cannot grow the tables).
    /// Answered ones that only absorb retransmissions are bounded apart, at four times `max`:
    /// past that the oldest end early (see [`Lingering`]).
    pub fn with_max_transactions(mut self, max: usize) -> TransactionLayer {
        self.max_transactions = max;
        self.lingering.max = max.saturating_mul(4);
        self
    }

    /// Keeps large requests on UDP (for a peer known to have no TCP; RFC 3261 §18.1.1 would
    /// have them sent over TCP).
    pub fn without_tcp_fallback(mut self) -> TransactionLayer {
        self.udp_request_limit = None;
        self
    }

    /// The Server header of responses the layer makes itself (100, CANCEL's 200, 481).
    pub fn with_server_name(mut self, name: impl Into<String>) -> TransactionLayer {
        self.server_name = Some(name.into());
        self
    }

    pub fn config(&self) -> &TimerConfig {
        &self.config
    }

    /// Live transactions.
    pub fn len(&self) -> usize {
        self.transactions.len()
    }

    /// Of those, answered server transactions that only absorb retransmissions.
    pub fn lingering(&self) -> usize {
        self.lingering.count
    }

    pub fn is_empty(&self) -> bool {
        self.transactions.is_empty()
    }

    pub fn stats(&self) -> TxStats {
        self.io.stats
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.io.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.io.events.pop_front()
    }

    /// The next instant [`Self::handle_timeout`] has work to do.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, id, timer))) = self.io.heap.peek().copied() {
            let live = self.transactions.get(&id).and_then(|tx| tx.timers.deadline(timer));
            if live == Some(at) {
                return Some(at);
            }
            self.io.heap.pop();
        }
        None
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, id, timer))) = self.io.heap.peek().copied() {
            if at > now {
                break;
            }
            self.io.heap.pop();
            if self.io.heap.capacity() > 64 && self.io.heap.len() < self.io.heap.capacity() / 4 {
                self.io.heap.shrink_to(self.io.heap.len() * 2);
            }
            let Some(tx) = self.transactions.get_mut(&id) else { continue };
            if tx.timers.deadline(timer) != Some(at) {
                continue;
            }
            tx.timers.clear(timer);
            self.on_timer(now, id, timer);
        }
    }

    /// Sends bytes outside any transaction: the ACK of a 2xx, a 2xx retransmitted by the UAS
    /// dialog, a stateless response.
    pub fn send_stateless(&mut self, to: Peer, bytes: Bytes) {
        self.io.send(to, bytes);
    }

    /// Starts a client transaction for `request` (any method but ACK), whose top Via must carry
    /// a fresh branch with the magic cookie (§8.1.1.7).
    /// A request over `udp_request_limit` bytes to a UDP peer goes over TCP instead, its top
    /// Via saying so (§18.1.1); [`TransactionLayer::stream_refused`] sends it back to UDP.
    pub fn send_request(
        &mut self,
        now: Instant,
        mut request: Request,
        mut to: Peer,
    ) -> Result<ClientTx, TxError> {
        if request.method == Method::Ack {
            return Err(TxError::AckNotTransactional);
        }
        let mut udp_fallback = None;
        if to.transport == Transport::Udp
            && self.udp_request_limit.is_some_and(|limit| request_bytes(&request).len() > limit)
            && self.udp_only.get(&to.addr).is_none_or(|until| *until <= now)
            && via::set_transport(&mut request, Transport::Tcp)
        {
            udp_fallback = Some(to);
            to = Peer { transport: Transport::Tcp, addr: to.addr, connection: None };
        }
        let via = request
            .via_header()
            .map_err(|_| TxError::MissingHeader("Via"))?
            .typed()
            .map_err(|_| TxError::MissingHeader("Via"))?;
        let branch = key::branch(&via).filter(|b| b.starts_with(MAGIC_COOKIE)).ok_or(TxError::NoBranch)?;
        request.cseq_header().map_err(|_| TxError::MissingHeader("CSeq"))?;
        let tx_key = TxKey::Client { branch, method: request.method.to_string() };
        if self.keys.contains_key(&tx_key) {
            return Err(TxError::DuplicateBranch);
        }
        let id = self.next_id();
        let wire = Bytes::from(request_bytes(&request));
        let invite = request.method == Method::Invite;
        let state = if invite {
            State::InviteClient(ClientInvite::Calling { interval: self.config.t1 })
        } else {
            State::NonInviteClient(ClientNonInvite::Trying { interval: self.config.t1 })
        };
        let mut tx = Transaction {
            key: tx_key.clone(),
            peer: to,
            request,
            wire: wire.clone(),
            timers: TimerTable::default(),
            state,
            lingering: false,
            udp_fallback,
        };
        // §17.1.1.2 / §17.1.2.2: retransmit over UDP (A or E), give up after 64·T1 (B or F).
        let (retransmit, timeout) = if invite { (Timer::A, Timer::B) } else { (Timer::E, Timer::F) };
        if !to.transport.is_reliable() {
            self.io.arm(id, &mut tx, retransmit, now + self.config.t1);
        }
        self.io.arm(id, &mut tx, timeout, now + self.config.transaction_timeout());
        self.io.send(to, wire);
        self.keys.insert(tx_key, id);
        self.transactions.insert(id, tx);
        Ok(ClientTx(id))
    }

    /// The request that started a client transaction (to build a CANCEL, or to retry with
    /// credentials).
    pub fn client_request(&self, tx: ClientTx) -> Option<&Request> {
        self.transactions.get(&tx.0).map(|t| &t.request)
    }

    /// Where a client transaction's request went, as sent: after a move to TCP or back.
    pub fn client_peer(&self, tx: ClientTx) -> Option<Peer> {
        self.transactions.get(&tx.0).map(|t| t.peer)
    }

    /// Reports that a TCP connection to `addr` could not be opened (§18.1.1: refused; also
    /// when it timed out, as a UDP-only peer's firewall would make it). Requests that went over
    /// TCP only for their size, still unanswered, go again over UDP with their Via saying so,
    /// and retransmit there; the next ones to that peer go over UDP for a while
    /// ([`UDP_ONLY_FOR`]). Returns how many went again.
    pub fn stream_refused(&mut self, now: Instant, addr: SocketAddr) -> usize {
        let t1 = self.config.t1;
        if self.udp_only.len() >= UDP_ONLY_MAX {
            self.udp_only.retain(|_, until| *until > now);
            if self.udp_only.len() >= UDP_ONLY_MAX {
                if let Some(oldest) = self.udp_only.iter().min_by_key(|(_, until)| **until).map(|(a, _)| *a) {
                    self.udp_only.remove(&oldest);
                }
            }
        }
        self.udp_only.insert(addr, now + UDP_ONLY_FOR);
        let ids: Vec<u64> = self
            .transactions
            .iter()
            .filter(|(_, t)| {
                t.peer.transport == Transport::Tcp
                    && t.peer.addr == addr
                    && t.udp_fallback.is_some()
                    && matches!(
                        t.state,
                        State::InviteClient(ClientInvite::Calling { .. })
                            | State::NonInviteClient(ClientNonInvite::Trying { .. })
                    )
            })
            .map(|(id, _)| *id)
            .collect();
        let mut resent = 0;
        for id in ids {
            let Some(t) = self.transactions.get_mut(&id) else { continue };
            let Some(udp) = t.udp_fallback.take() else { continue };
            if !via::set_transport(&mut t.request, Transport::Udp) {
                continue;
            }
            t.peer = udp;
            t.wire = Bytes::from(request_bytes(&t.request));
            let retransmit = match &mut t.state {
                State::InviteClient(ClientInvite::Calling { interval }) => {
                    *interval = t1;
                    Timer::A
                }
                State::NonInviteClient(ClientNonInvite::Trying { interval }) => {
                    *interval = t1;
                    Timer::E
                }
                _ => continue,
            };
            let wire = t.wire.clone();
            self.io.arm(id, t, retransmit, now + t1);
            self.io.send(udp, wire);
            resent += 1;
        }
        resent
    }

    /// Reports that a stream connection failed for a client transaction (§8.1.3.1).
    pub fn transport_error(&mut self, tx: ClientTx) {
        if self.transactions.contains_key(&tx.0) {
            self.terminate(tx.0);
            self.io.events.push_back(TxEvent::TransportError { tx });
        }
    }

    /// Sends a response in a server transaction.
    pub fn send_response(&mut self, now: Instant, tx: ServerTx, response: Response) -> Result<(), TxError> {
        let id = tx.0;
        let t = self.transactions.get_mut(&id).ok_or(TxError::Unknown)?;
        let code = response.status_code.code();
        let bytes = Bytes::from(response_bytes(&response));
        let reliable = t.peer.transport.is_reliable();
        let peer = t.peer;
        let cfg = self.config;
        let mut terminate = false;
        let lingered = t.lingering;
        match &mut t.state {
            State::InviteServer(state) => match (&*state, code) {
                (ServerInvite::Proceeding { .. }, 100..=199) => {
                    *state = ServerInvite::Proceeding { provisional: bytes.clone() };
                }
                // §17.2.1 with RFC 6026 §8.5: a 2xx moves to Accepted, Timer L.
                (ServerInvite::Proceeding { .. }, 200..=299) => {
                    *state = ServerInvite::Accepted;
                    self.io.arm(id, t, Timer::L, now + cfg.transaction_timeout());
                    t.lingering = true;
                }
                // RFC 6026 §8.7: the TU retransmits the 2xx through the Accepted transaction.
                (ServerInvite::Accepted, 200..=299) => {}
                (ServerInvite::Proceeding { .. }, 300..=699) => {
                    *state = ServerInvite::Completed { response: bytes.clone(), interval: cfg.t1 };
                    if !reliable {
                        self.io.arm(id, t, Timer::G, now + cfg.t1);
                    }
                    self.io.arm(id, t, Timer::H, now + cfg.transaction_timeout());
                }
                _ => return Err(TxError::InvalidState { status: code }),
            },
            State::NonInviteServer(state) => match (&*state, code) {
                (ServerNonInvite::Trying | ServerNonInvite::Proceeding { .. }, 100..=199) => {
                    *state = ServerNonInvite::Proceeding { response: bytes.clone() };
                }
                // §17.2.2: final response, Completed, Timer J (zero on reliable transports).
                (ServerNonInvite::Trying | ServerNonInvite::Proceeding { .. }, 200..=699) => {
                    *state = ServerNonInvite::Completed { response: bytes.clone() };
                    if reliable {
                        terminate = true;
                    } else {
                        self.io.arm(id, t, Timer::J, now + cfg.transaction_timeout());
                        t.lingering = true;
                    }
                }
                _ => return Err(TxError::InvalidState { status: code }),
            },
            State::InviteClient(_) | State::NonInviteClient(_) => return Err(TxError::Unknown),
        }
        let lingers = t.lingering && !lingered;
        self.io.send(peer, bytes);
        if terminate {
            self.terminate(id);
        } else if lingers {
            let kind = if matches!(code, 401 | 407) { Linger::Repeatable } else { Linger::Once };
            self.linger(id, kind);
        }
        Ok(())
    }

    /// Where a server transaction's responses go.
    pub fn server_peer(&self, tx: ServerTx) -> Option<Peer> {
        self.transactions.get(&tx.0).map(|t| t.peer)
    }

    /// The request of a server transaction.
    pub fn server_request(&self, tx: ServerTx) -> Option<&Request> {
        self.transactions.get(&tx.0).map(|t| &t.request)
    }

    /// Handles a request from the network. `from` is where it arrived from.
    pub fn handle_request(&mut self, now: Instant, mut inbound: InboundRequest, from: Peer) {
        // §18.2.1: note where it really came from, then decide where responses go (§18.2.2).
        let top_via = via::stamp_received(&mut inbound.request, &inbound.envelope.top_via, from.addr);
        inbound.envelope.top_via = top_via;
        let reply_to = if from.transport.is_reliable() {
            from
        } else {
            Peer { addr: via::response_target(&inbound.envelope.top_via, from.addr), ..from }
        };
        let method = inbound.request.method;
        let tx_key = key::server_key(&method, &inbound.request.uri, &inbound.envelope);

        if let Some(&id) = self.keys.get(&tx_key) {
            self.on_server_retransmission(now, id, inbound, from);
            return;
        }
        match method {
            // An ACK without a transaction is a 2xx ACK, for the dialog (§17.2.3, RFC 6026).
            Method::Ack => {
                self.io.events.push_back(TxEvent::Request { tx: None, request: inbound, from });
            }
            Method::Cancel => self.on_cancel(now, tx_key, inbound, reply_to),
            _ if self.transactions.len() - self.lingering.count >= self.max_transactions => {
                self.io.stats.overloaded += 1;
                let mut busy = response_to(
                    &inbound,
                    StatusCode::ServiceUnavailable,
                    Some("overload"),
                    self.server_name.as_deref(),
                );
                crate::response::push_header(&mut busy, rsip::Header::RetryAfter("5".into()));
                self.io.send(reply_to, Bytes::from(response_bytes(&busy)));
            }
            _ => {
                let id = self.next_id();
                let invite = method == Method::Invite;
                let mut t = Transaction {
                    key: tx_key.clone(),
                    peer: reply_to,
                    request: inbound.request.clone(),
                    wire: Bytes::new(),
                    timers: TimerTable::default(),
                    lingering: false,
                    udp_fallback: None,
                    state: State::NonInviteServer(ServerNonInvite::Trying),
                };
                if invite {
                    // §17.2.1: answer at once with 100 Trying so the client stops retransmitting.
                    let trying = response_to(&inbound, StatusCode::Trying, None, self.server_name.as_deref());
                    let bytes = Bytes::from(response_bytes(&trying));
                    self.io.send(reply_to, bytes.clone());
                    t.state = State::InviteServer(ServerInvite::Proceeding { provisional: bytes });
                }
                self.keys.insert(tx_key, id);
                self.transactions.insert(id, t);
                let tx = Some(ServerTx(id));
                self.io.events.push_back(TxEvent::Request { tx, request: inbound, from });
            }
        }
    }

    /// Handles a response from the network.
    pub fn handle_response(&mut self, now: Instant, inbound: InboundResponse) {
        let Some(id) = key::client_key(&inbound.envelope).and_then(|k| self.keys.get(&k).copied()) else {
            // §18.1.2: a response matching no transaction is discarded.
            self.io.stats.stray_responses += 1;
            return;
        };
        let cfg = self.config;
        let Some(t) = self.transactions.get_mut(&id) else { return };
        let code = inbound.response.status_code.code();
        let reliable = t.peer.transport.is_reliable();
        let tx = ClientTx(id);
        let mut terminate = false;
        let mut deliver = true;
        match &mut t.state {
            State::InviteClient(state) => match (&*state, code) {
                (ClientInvite::Calling { .. } | ClientInvite::Proceeding, 100..=199) => {
                    // §17.1.1.2: a provisional stops retransmission and Timer B.
                    *state = ClientInvite::Proceeding;
                    t.timers.clear(Timer::A);
                    t.timers.clear(Timer::B);
                }
                // RFC 6026 §8.4: 2xx → Accepted, Timer M; later 2xx also go to the TU.
                (ClientInvite::Calling { .. } | ClientInvite::Proceeding, 200..=299) => {
                    *state = ClientInvite::Accepted;
                    t.timers.clear_all();
                    self.io.arm(id, t, Timer::M, now + cfg.transaction_timeout());
                }
                (ClientInvite::Accepted, 200..=299) => {}
                (ClientInvite::Calling { .. } | ClientInvite::Proceeding, 300..=699) => {
                    // §17.1.1.3: the transaction ACKs a non-2xx final itself.
                    let ack = Bytes::from(request_bytes(&ack_for(&t.request, &inbound.response)));
                    self.io.send(t.peer, ack.clone());
                    *state = ClientInvite::Completed { ack };
                    t.timers.clear_all();
                    if reliable {
                        terminate = true;
                    } else {
                        self.io.arm(id, t, Timer::D, now + Duration::from_secs(32));
                    }
                }
                (ClientInvite::Completed { ack }, 300..=699) => {
                    let ack = ack.clone();
                    self.io.send(t.peer, ack);
                    self.io.stats.absorbed += 1;
                    deliver = false;
                }
                _ => {
                    self.io.stats.absorbed += 1;
                    deliver = false;
                }
            },
            State::NonInviteClient(state) => match (&*state, code) {
                (ClientNonInvite::Trying { .. } | ClientNonInvite::Proceeding, 100..=199) => {
                    *state = ClientNonInvite::Proceeding;
                }
                // §17.1.2.2: final → Completed, Timer K (zero on reliable transports).
                (ClientNonInvite::Trying { .. } | ClientNonInvite::Proceeding, 200..=699) => {
                    *state = ClientNonInvite::Completed;
                    t.timers.clear_all();
                    if reliable {
                        terminate = true;
                    } else {
                        self.io.arm(id, t, Timer::K, now + cfg.t4);
                    }
                }
                _ => {
                    self.io.stats.absorbed += 1;
                    deliver = false;
                }
            },
            State::InviteServer(_) | State::NonInviteServer(_) => {
                self.io.stats.stray_responses += 1;
                return;
            }
        }
        if deliver {
            self.io.events.push_back(TxEvent::Response { tx, response: inbound });
        }
        if terminate {
            self.terminate(id);
        }
    }

    fn on_server_retransmission(&mut self, now: Instant, id: u64, inbound: InboundRequest, from: Peer) {
        let cfg = self.config;
        let Some(t) = self.transactions.get_mut(&id) else { return };
        let peer = t.peer;
        let is_ack = inbound.request.method == Method::Ack;
        match &mut t.state {
            State::InviteServer(state) => match (&*state, is_ack) {
                (ServerInvite::Proceeding { provisional }, false) => {
                    let again = provisional.clone();
                    self.io.send(peer, again);
                    self.io.stats.retransmissions += 1;
                }
                (ServerInvite::Completed { response, .. }, false) => {
                    let again = response.clone();
                    self.io.send(peer, again);
                    self.io.stats.retransmissions += 1;
                }
                // §17.2.1: the ACK confirms a non-2xx final; absorb ACK retransmissions for T4,
                // lingering as an answered non-INVITE does (the first INVITE of every
                // authenticated call is one of these).
                (ServerInvite::Completed { .. }, true) => {
                    *state = ServerInvite::Confirmed;
                    t.timers.clear_all();
                    if peer.transport.is_reliable() {
                        self.terminate(id);
                    } else {
                        self.io.arm(id, t, Timer::I, now + cfg.t4);
                        t.lingering = true;
                        self.linger(id, Linger::Repeatable);
                    }
                }
                // RFC 6026 §8.7: an ACK matching an Accepted transaction is for the TU (a peer
                // that reused the INVITE branch for its 2xx ACK).
                (ServerInvite::Accepted, true) => {
                    self.io.events.push_back(TxEvent::Request { tx: None, request: inbound, from });
                }
                _ => self.io.stats.absorbed += 1,
            },
            State::NonInviteServer(state) => match state {
                ServerNonInvite::Trying => self.io.stats.absorbed += 1,
                ServerNonInvite::Proceeding { response } | ServerNonInvite::Completed { response } => {
                    let again = response.clone();
                    self.io.send(peer, again);
                    self.io.stats.retransmissions += 1;
                }
            },
            State::InviteClient(_) | State::NonInviteClient(_) => self.io.stats.absorbed += 1,
        }
    }

    /// §9.2: a CANCEL gets its own transaction and a 200 if it matches an INVITE, 481 if not.
    fn on_cancel(&mut self, now: Instant, cancel_key: TxKey, inbound: InboundRequest, reply_to: Peer) {
        let invite_key = key::cancelled_invite_key(&inbound.request.uri, &inbound.envelope);
        let invite = self.keys.get(&invite_key).copied();
        let id = self.next_id();
        let t = Transaction {
            key: cancel_key.clone(),
            peer: reply_to,
            request: inbound.request.clone(),
            wire: Bytes::new(),
            timers: TimerTable::default(),
            lingering: false,
            udp_fallback: None,
            state: State::NonInviteServer(ServerNonInvite::Trying),
        };
        self.keys.insert(cancel_key, id);
        self.transactions.insert(id, t);
        let status = if invite.is_some() { StatusCode::OK } else { StatusCode::CallTransactionDoesNotExist };
        let tag = self.server_name.as_deref();
        let response = response_to(&inbound, status, None, tag);
        // The transaction was just inserted, so this cannot fail.
        let _ = self.send_response(now, ServerTx(id), response);
        if let Some(invite) = invite {
            let proceeding = matches!(
                self.transactions.get(&invite).map(|t| &t.state),
                Some(State::InviteServer(ServerInvite::Proceeding { .. }))
            );
            if proceeding {
                self.io.events.push_back(TxEvent::Cancelled { tx: ServerTx(invite) });
            }
        }
    }

    fn on_timer(&mut self, now: Instant, id: u64, timer: Timer) {
        let cfg = self.config;
        let Some(t) = self.transactions.get_mut(&id) else { return };
        let peer = t.peer;
        match (&mut t.state, timer) {
            // §17.1.1.2: Timer A doubles each time.
            (State::InviteClient(ClientInvite::Calling { interval }), Timer::A) => {
                *interval *= 2;
                let next = now + *interval;
                let wire = t.wire.clone();
                self.io.arm(id, t, Timer::A, next);
                self.io.send(peer, wire);
                self.io.stats.retransmissions += 1;
            }
            // §17.1.2.2: Timer E doubles up to T2 while Trying, and stays at T2 in Proceeding.
            (State::NonInviteClient(ClientNonInvite::Trying { interval }), Timer::E) => {
                *interval = (*interval * 2).min(cfg.t2);
                let next = now + *interval;
                let wire = t.wire.clone();
                self.io.arm(id, t, Timer::E, next);
                self.io.send(peer, wire);
                self.io.stats.retransmissions += 1;
            }
            (State::NonInviteClient(ClientNonInvite::Proceeding), Timer::E) => {
                let wire = t.wire.clone();
                self.io.arm(id, t, Timer::E, now + cfg.t2);
                self.io.send(peer, wire);
                self.io.stats.retransmissions += 1;
            }
            (State::InviteClient(ClientInvite::Calling { .. }), Timer::B)
            | (
                State::NonInviteClient(ClientNonInvite::Trying { .. } | ClientNonInvite::Proceeding),
                Timer::F,
            ) => {
                self.terminate(id);
                self.io.stats.timeouts += 1;
                self.io.events.push_back(TxEvent::Timeout { tx: ClientTx(id) });
            }
            // §17.2.1: Timer G doubles up to T2.
            (State::InviteServer(ServerInvite::Completed { response, interval }), Timer::G) => {
                *interval = (*interval * 2).min(cfg.t2);
                let next = now + *interval;
                let again = response.clone();
                self.io.arm(id, t, Timer::G, next);
                self.io.send(peer, again);
                self.io.stats.retransmissions += 1;
            }
            (State::InviteServer(ServerInvite::Completed { .. }), Timer::H) => {
                self.terminate(id);
                self.io.stats.timeouts += 1;
                self.io.events.push_back(TxEvent::AckTimeout { tx: ServerTx(id) });
            }
            (_, Timer::D | Timer::I | Timer::J | Timer::K | Timer::L | Timer::M) => self.terminate(id),
            // A timer left over from an earlier state.
            _ => {}
        }
    }

    fn terminate(&mut self, id: u64) {
        if let Some(t) = self.transactions.remove(&id) {
            self.keys.remove(&t.key);
            shrink_sparse(&mut self.transactions);
            shrink_sparse(&mut self.keys);
            if t.lingering {
                self.lingering.count -= 1;
                self.drop_gone_lingering();
            }
        }
    }

    /// Counts `id` among the lingering, and ends the oldest while there are too many, the
    /// repeatable before the others.
    fn linger(&mut self, id: u64, kind: Linger) {
        self.lingering.order[kind as usize].push_back(id);
        self.lingering.count += 1;
        while self.lingering.count > self.lingering.max {
            let queue = if self.lingering.order[Linger::Repeatable as usize].is_empty() {
                Linger::Once
            } else {
                Linger::Repeatable
            };
            let Some(oldest) = self.lingering.order[queue as usize].pop_front() else { break };
            if self.transactions.get(&oldest).is_some_and(|t| t.lingering) {
                self.io.stats.retired_early += 1;
                self.terminate(oldest);
            }
        }
    }

    /// Pops ids of transactions already gone off the front of each lingering queue.
    fn drop_gone_lingering(&mut self) {
        for queue in &mut self.lingering.order {
            while let Some(&front) = queue.front() {
                if self.transactions.get(&front).is_some_and(|t| t.lingering) {
                    break;
                }
                queue.pop_front();
            }
            if queue.capacity() > 64 && queue.len() < queue.capacity() / 4 {
                queue.shrink_to(queue.len() * 2);
            }
        }
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

/// Gives back the memory of a table that grew for a peak of traffic once three quarters of it
/// stand empty. It halves at most once per halving of the entries, so the rehash is paid for by
/// the removals that made room.
fn shrink_sparse<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 64 && map.len() < map.capacity() / 4 {
        map.shrink_to(map.len() * 2);
    }
}

/// The ACK for a non-2xx final response (§17.1.1.3): the INVITE's Request-URI, top Via, Route,
/// From, Call-ID and CSeq number; the response's To (with its tag).
fn ack_for(invite: &Request, response: &Response) -> Request {
    let mut headers = rsip::Headers::default();
    if let Some(via) = invite.headers.iter().find(|h| matches!(h, Header::Via(_))) {
        headers.push(via.clone());
    }
    for h in invite.headers.iter() {
        match h {
            Header::Route(_) | Header::From(_) | Header::CallId(_) => headers.push(h.clone()),
            _ => {}
        }
    }
    if let Ok(to) = response.to_header() {
        headers.push(Header::To(to.clone()));
    }
    if let Ok(Ok(cseq)) = invite.cseq_header().map(|c| c.typed()) {
        headers.push(Header::CSeq(rsip::typed::CSeq { seq: cseq.seq, method: Method::Ack }.into()));
    }
    headers.push(Header::MaxForwards(70.into()));
    headers.push(Header::ContentLength(0.into()));
    Request {
        method: Method::Ack,
        uri: invite.uri.clone(),
        version: rsip::Version::V2,
        headers,
        body: Vec::new(),
    }
}

#[cfg(test)]
mod tests;
