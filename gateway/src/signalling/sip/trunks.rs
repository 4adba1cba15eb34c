//! Trunks in the SIP core: one registration client per registering trunk, its REGISTERs sent
//! through the core's transaction layer, its state published for the API, metrics, logs and the
//! database; and OPTIONS pings to each trunk that asks for them, which tell whether it answers.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use rsip::{Header, Method};
use sip_stack::registration::{RegEvent, RegFailure, RegState, RegistrationClient, RegistrationConfig};
use sip_stack::request::NewRequest;
use sip_stack::transaction::{ClientTx, TransactionLayer, TxEvent};
use sip_stack::transport::{ConnectionId, Peer, Transport};

use crate::clock::{instant_to_unix_ms, Now};
use crate::config::{TrunkConfig, TrunkTransport};
use crate::control::TrunkView;
use crate::dns::{self, HostPort, Names};
use crate::ids::TrunkName;
use crate::metrics::{Metrics, TrunkLabels};
use crate::storage::TrunkStatus;

/// OPTIONS pings to one trunk (RFC 3261 §11): any response means it is there.
struct KeepAlive {
    id: u64,
    /// The registering trunk whose view this shares; `None` for a trunk that does not register.
    runner: Option<u64>,
    peer: Option<SocketAddr>,
    proxy: rsip::Uri,
    from: String,
    local: SocketAddr,
    transport: Transport,
    interval: Duration,
    /// When the next OPTIONS goes (none until the trunk starts).
    next: Option<Instant>,
    sent_at: Option<Instant>,
    view: TrunkView,
}

struct Runner {
    id: u64,
    client: RegistrationClient,
    proxy: rsip::Uri,
    peer: Option<SocketAddr>,
    transport: Transport,
    view: TrunkView,
    /// Taken out of the configuration by a reload: un-registering, then gone. It publishes
    /// nothing more.
    retiring: bool,
}

/// Our listeners, which Via and Contact name for a trunk's transport.
#[derive(Debug, Clone, Copy)]
pub struct LocalPorts {
    /// The UDP listener, which UDP requests are sent from.
    pub udp: SocketAddr,
    pub tcp: Option<u16>,
    pub tls: Option<u16>,
}

/// How a trunk is reached and how we name ourselves to it.
struct Endpoint {
    proxy: rsip::Uri,
    /// The proxy's address, once it resolves.
    peer: Option<SocketAddr>,
    /// Our address for Via and Contact: the public address, the listener's, or the one the
    /// system routes to the proxy from; with the port of the trunk's transport.
    local: SocketAddr,
    transport: Transport,
    /// The host of our address of record.
    host: rsip::HostWithPort,
}

impl Endpoint {
    fn of(t: &TrunkConfig, ports: LocalPorts, public: Option<IpAddr>, names: &Names) -> Endpoint {
        let proxy = t.proxy.uri().clone();
        let peer = names.address(&proxy);
        let udp = ports.udp;
        let ip = public
            .or_else(|| (!udp.ip().is_unspecified()).then_some(udp.ip()))
            .or_else(|| peer.and_then(route_source))
            .unwrap_or(udp.ip());
        let transport = transport_of(t);
        let port = match transport {
            Transport::Udp => udp.port(),
            Transport::Tcp => ports.tcp.unwrap_or(udp.port()),
            Transport::Tls => ports.tls.unwrap_or(udp.port()),
        };
        let host = match &t.domain {
            Some(domain) => domain.host_with_port().clone(),
            None => proxy.host_with_port.host.clone().into(),
        };
        Endpoint { proxy, peer, local: SocketAddr::new(ip, port), transport, host }
    }
}

/// Every configured trunk: a registration client for each that registers, OPTIONS pings for
/// each that asks for them.
pub struct Trunks {
    /// The `[[trunk]]` tables these were built from.
    configs: Vec<TrunkConfig>,
    runners: Vec<Runner>,
    by_tx: HashMap<ClientTx, u64>,
    keepalives: Vec<KeepAlive>,
    pings: HashMap<ClientTx, u64>,
    stopping: bool,
    ports: LocalPorts,
    public: Option<IpAddr>,
    user_agent: String,
    /// Ids of runners and keep-alives (a reload adds new ones).
    next_id: u64,
    /// What the API and the database are to learn, in order.
    outbox: VecDeque<TrunkOutput>,
    /// The proxies' addresses, as resolved outside the core.
    names: Names,
    /// Names asked for and not answered yet.
    resolving: HashSet<HostPort>,
}

/// What the trunks tell the rest of the gateway: their state, for the API's views and for the
/// database.
#[derive(Debug)]
pub enum TrunkOutput {
    View(TrunkView),
    /// Taken out of the configuration.
    Removed(TrunkName),
    Status(TrunkStatus),
    /// A proxy's name to look up; the answer comes to [`Trunks::resolved`].
    Resolve(HostPort),
}

impl Trunks {
    pub fn new(
        configs: &[TrunkConfig],
        names: Names,
        ports: LocalPorts,
        public: Option<IpAddr>,
        user_agent: &str,
    ) -> Trunks {
        let mut trunks = Trunks {
            configs: Vec::new(),
            runners: Vec::new(),
            by_tx: HashMap::new(),
            keepalives: Vec::new(),
            pings: HashMap::new(),
            stopping: false,
            ports,
            public,
            user_agent: user_agent.to_string(),
            next_id: 0,
            outbox: VecDeque::new(),
            names,
            resolving: HashSet::new(),
        };
        for t in configs {
            trunks.add(t);
        }
        trunks
    }

    /// Builds the registration client and pings of one trunk, not yet started.
    fn add(&mut self, t: &TrunkConfig) {
        self.configs.push(t.clone());
        let runner = t.register.then(|| {
            self.next_id += 1;
            self.runner(self.next_id, t)
        });
        let runner_id = runner.as_ref().map(|r| r.id);
        self.runners.extend(runner);
        if t.options_interval_secs > 0 {
            self.next_id += 1;
            let keepalive = self.keepalive(self.next_id, t, runner_id);
            self.keepalives.push(keepalive);
        }
    }

    fn runner(&self, id: u64, t: &TrunkConfig) -> Runner {
        let Endpoint { proxy, peer, local, transport, host } =
            Endpoint::of(t, self.ports, self.public, &self.names);
        // The user part was checked with the configuration (`config::load`).
        let registrar = match &t.domain {
            Some(domain) => sip_uri(None, domain.host_with_port().clone(), Transport::Udp),
            None => sip_uri(None, proxy.host_with_port.clone(), Transport::Udp),
        };
        let config = RegistrationConfig {
            registrar,
            aor: sip_uri(Some(&t.username), host.clone(), Transport::Udp),
            contact: sip_uri(Some(&t.username), local.into(), transport),
            auth_username: t.auth_user().to_string(),
            password: t.password.clone().unwrap_or_default(),
            realm: t.realm.clone(),
            expires: t.expires,
            transport,
            local,
            user_agent: Some(self.user_agent.clone()),
            retry_base: Duration::from_secs(2),
            // After an outage of any length, registered again within a minute of the
            // registrar answering: 45 s at most between tries (±20 %).
            retry_max: Duration::from_secs(45),
            // Over TCP the source port the registrar sees is our connection's, not a listener.
            learn_public_address: self.public.is_none() && transport == Transport::Udp,
        };
        let view = TrunkView::new(&t.name, "idle", config.contact.to_string());
        Runner {
            id,
            client: RegistrationClient::new(config, rand::random()),
            proxy,
            peer,
            transport,
            view,
            retiring: false,
        }
    }

    fn keepalive(&self, id: u64, t: &TrunkConfig, runner: Option<u64>) -> KeepAlive {
        let Endpoint { proxy, peer, local, transport, host } =
            Endpoint::of(t, self.ports, self.public, &self.names);
        KeepAlive {
            id,
            runner,
            peer,
            from: format!("sip:{}@{host}", t.username),
            local,
            transport,
            interval: Duration::from_secs(u64::from(t.options_interval_secs)),
            next: None,
            sent_at: None,
            view: TrunkView::new(&t.name, "not-registering", String::new()),
            proxy,
        }
    }

    /// Whether `addr` is one of a trunk's inbound sources.
    pub fn trusts(&self, addr: SocketAddr) -> bool {
        self.configs.iter().any(|t| t.trusts(addr))
    }

    pub fn start(&mut self, now: Now, layer: &mut TransactionLayer, metrics: &Metrics) {
        for keepalive in &mut self.keepalives {
            keepalive.next = Some(now.at);
            if keepalive.runner.is_none() {
                self.outbox.push_back(TrunkOutput::View(keepalive.view.clone()));
            }
        }
        for i in 0..self.runners.len() {
            self.runners[i].client.start(now.at);
            self.pump(i, now, layer, metrics);
        }
    }

    /// `SIGHUP`: the trunks as the configuration now has them. A trunk whose table did not
    /// change goes on as it is; one that is gone is un-registered; one that changed is
    /// registered anew (un-registering the old binding first when the address of record,
    /// contact or registrar differ); a new one starts. Calls are not touched.
    pub fn reload(
        &mut self,
        now: Now,
        configs: &[TrunkConfig],
        names: Names,
        layer: &mut TransactionLayer,
        metrics: &Metrics,
    ) {
        if self.stopping {
            return;
        }
        self.names.extend(names);
        let old = std::mem::take(&mut self.configs);
        let kept: Vec<TrunkConfig> = old.iter().filter(|t| configs.contains(t)).cloned().collect();
        let is_kept = |name: &str| kept.iter().any(|k| k.name == name);
        for t in old.iter().filter(|t| !is_kept(&t.name)) {
            if configs.iter().any(|n| n.name == t.name) {
                tracing::info!(trunk = %t.name, "trunk changed in the configuration");
            } else {
                tracing::info!(trunk = %t.name, "trunk removed from the configuration");
                self.outbox.push_back(TrunkOutput::Removed(t.name.clone()));
                let labels = TrunkLabels { trunk: t.name.to_string() };
                metrics.trunks.registered.remove(&labels);
                metrics.trunks.reachable.remove(&labels);
            }
        }
        // The pings of what is not kept stop now; registrations once un-registered.
        self.keepalives.retain(|k| is_kept(&k.view.name));
        let keepalives = &self.keepalives;
        self.pings.retain(|_, id| keepalives.iter().any(|k| k.id == *id));
        self.configs = kept;
        let (first_runner, first_keepalive) = (self.runners.len(), self.keepalives.len());
        for t in configs.iter().filter(|t| !self.configs.contains(t)).cloned().collect::<Vec<_>>() {
            if !old.iter().any(|o| o.name == t.name) {
                tracing::info!(trunk = %t.name, "trunk added to the configuration");
            }
            self.add(&t);
        }
        for i in 0..first_runner {
            let runner = &self.runners[i];
            if runner.retiring || self.configs.iter().any(|t| t.name == runner.view.name && t.register) {
                continue;
            }
            let (a, replaced) = (runner.client.config(), &self.runners[first_runner..]);
            // A new REGISTER for the same binding replaces it: nothing to un-register.
            let same_binding = replaced.iter().any(|n| {
                let b = n.client.config();
                n.view.name == runner.view.name
                    && (a.registrar == b.registrar && a.aor == b.aor && a.contact == b.contact)
            });
            let runner = &mut self.runners[i];
            runner.retiring = true;
            if !same_binding {
                runner.client.stop(now.at);
                self.pump(i, now, layer, metrics);
            }
        }
        for keepalive in &mut self.keepalives[first_keepalive..] {
            keepalive.next = Some(now.at);
            if keepalive.runner.is_none() {
                self.outbox.push_back(TrunkOutput::View(keepalive.view.clone()));
            }
        }
        for i in first_runner..self.runners.len() {
            self.runners[i].client.start(now.at);
            self.pump(i, now, layer, metrics);
        }
        self.sweep();
    }

    /// Forgets retired trunks that have finished un-registering.
    fn sweep(&mut self) {
        let before = self.runners.len();
        self.runners.retain(|r| !r.retiring || matches!(r.client.state(), RegState::Unregistering));
        if self.runners.len() != before {
            let runners = &self.runners;
            self.by_tx.retain(|_, id| runners.iter().any(|r| r.id == *id));
        }
    }

    /// Un-registers every trunk.
    pub fn stop(&mut self, now: Now, layer: &mut TransactionLayer, metrics: &Metrics) {
        self.stopping = true;
        for i in 0..self.runners.len() {
            if !self.runners[i].retiring {
                self.runners[i].client.stop(now.at);
                self.pump(i, now, layer, metrics);
            }
        }
    }

    /// The answer to a [`TrunkOutput::Resolve`]: the trunks named so use it from their next
    /// try on.
    pub fn resolved(&mut self, name: HostPort, addr: Option<SocketAddr>) {
        self.resolving.remove(&name);
        if let Some(addr) = addr {
            self.names.insert(name, addr);
        }
    }

    /// Where the trunk `name`'s proxy is, if known; when not, it is looked up for next time.
    /// The `[[trunk]]` table named `name`, as in force.
    pub fn config(&self, name: &str) -> Option<&TrunkConfig> {
        self.configs.iter().find(|t| t.name == *name)
    }

    pub fn address(&mut self, trunk: &TrunkConfig) -> Option<SocketAddr> {
        let proxy = trunk.proxy.uri();
        let addr = self.names.address(proxy);
        if addr.is_none() {
            ask(&mut self.resolving, &mut self.outbox, proxy);
        }
        addr
    }

    /// The next thing the API or the database is to learn.
    pub fn poll_output(&mut self) -> Option<TrunkOutput> {
        self.outbox.pop_front()
    }

    /// True when no trunk is still un-registering.
    pub fn stopped(&self) -> bool {
        self.runners.iter().all(|r| !matches!(r.client.state(), RegState::Unregistering))
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let pings = self.keepalives.iter().filter(|_| !self.stopping).filter_map(|k| k.next);
        self.runners.iter().filter_map(|r| r.client.poll_timeout()).chain(pings).min()
    }

    pub fn handle_timeout(&mut self, now: Now, layer: &mut TransactionLayer, metrics: &Metrics) {
        for i in 0..self.runners.len() {
            if self.runners[i].client.poll_timeout().is_some_and(|t| t <= now.at) {
                self.runners[i].client.handle_timeout(now.at);
                self.pump(i, now, layer, metrics);
            }
        }
        for i in 0..self.keepalives.len() {
            if !self.stopping && self.keepalives[i].next.is_some_and(|at| at <= now.at) {
                self.ping(i, now, layer);
            }
        }
        self.sweep();
    }

    fn ping(&mut self, i: usize, now: Now, layer: &mut TransactionLayer) {
        let k = &mut self.keepalives[i];
        k.next = Some(now.at + k.interval);
        if k.peer.is_none() {
            k.peer = self.names.address(&k.proxy);
        }
        let Some(addr) = k.peer else {
            ask(&mut self.resolving, &mut self.outbox, &k.proxy);
            return;
        };
        let request = NewRequest {
            method: Method::Options,
            uri: k.proxy.clone(),
            transport: k.transport,
            sent_by: k.local.to_string(),
            branch: format!("z9hG4bK{:016x}", rand::random::<u64>()),
            from: k.from.clone(),
            from_tag: format!("{:016x}", rand::random::<u64>()),
            to: k.proxy.to_string(),
            call_id: format!("{:016x}@{}", rand::random::<u64>(), k.local.ip()),
            cseq: 1,
            contact: None,
            headers: vec![Header::UserAgent(self.user_agent.clone().into())],
            body: None,
        }
        .build();
        let peer = match k.transport {
            Transport::Udp => Peer { transport: Transport::Udp, addr, connection: Some(ConnectionId(0)) },
            other => Peer { transport: other, addr, connection: None },
        };
        if let Ok(tx) = layer.send_request(now.at, request, peer) {
            k.sent_at = Some(now.at);
            self.pings.insert(tx, k.id);
        }
    }

    /// A ping's outcome: any response means the trunk is there; a timeout that it is not.
    fn pinged(&mut self, i: usize, now: Now, answered: bool, metrics: &Metrics) {
        let k = &mut self.keepalives[i];
        let rtt = k.sent_at.filter(|_| answered).map(|at| now.at.duration_since(at).as_millis() as u64);
        let name = k.view.name.clone();
        let view = match k.runner.and_then(|id| self.runners.iter_mut().find(|r| r.id == id)) {
            Some(runner) => &mut runner.view,
            None => &mut k.view,
        };
        if view.reachable != Some(answered) {
            if answered {
                tracing::info!(trunk = %name, rtt_ms = ?rtt, "trunk answers OPTIONS");
            } else {
                tracing::warn!(trunk = %name, "trunk does not answer OPTIONS");
            }
        }
        view.reachable = Some(answered);
        view.options_rtt_ms = rtt.or(view.options_rtt_ms.filter(|_| answered));
        metrics
            .trunks
            .reachable
            .get_or_create(&TrunkLabels { trunk: name.to_string() })
            .set(i64::from(answered));
        self.outbox.push_back(TrunkOutput::View(view.clone()));
    }

    /// Takes the transaction events that belong to a trunk; returns the others.
    pub fn on_event(
        &mut self,
        now: Now,
        event: TxEvent,
        layer: &mut TransactionLayer,
        metrics: &Metrics,
    ) -> Option<TxEvent> {
        let (tx, outcome) = match &event {
            TxEvent::Response { tx, response } => (*tx, Ok(&response.response)),
            TxEvent::Timeout { tx } => (*tx, Err(RegFailure::Timeout)),
            TxEvent::TransportError { tx } => (*tx, Err(RegFailure::Transport)),
            _ => return Some(event),
        };
        if let Some(&id) = self.pings.get(&tx) {
            let Some(i) = self.keepalives.iter().position(|k| k.id == id) else {
                self.pings.remove(&tx);
                return None;
            };
            match outcome {
                Ok(response) if response.status_code.code() < 200 => {}
                Ok(_) => {
                    self.pings.remove(&tx);
                    self.pinged(i, now, true, metrics);
                }
                Err(_) => {
                    self.pings.remove(&tx);
                    self.pinged(i, now, false, metrics);
                }
            }
            return None;
        }
        let Some(&id) = self.by_tx.get(&tx) else { return Some(event) };
        let Some(i) = self.runners.iter().position(|r| r.id == id) else {
            self.by_tx.remove(&tx);
            return None;
        };
        match outcome {
            Ok(response) => {
                if response.status_code.code() >= 200 {
                    self.by_tx.remove(&tx);
                }
                self.runners[i].client.handle_response(now.at, response);
            }
            Err(failure) => {
                self.by_tx.remove(&tx);
                self.runners[i].client.handle_failure(now.at, failure);
            }
        }
        self.pump(i, now, layer, metrics);
        self.sweep();
        None
    }

    /// Sends what the client queued and publishes its state changes.
    fn pump(&mut self, i: usize, now: Now, layer: &mut TransactionLayer, metrics: &Metrics) {
        let runner = &mut self.runners[i];
        while let Some(request) = runner.client.poll_request() {
            if runner.peer.is_none() {
                runner.peer = self.names.address(&runner.proxy);
            }
            let Some(addr) = runner.peer else {
                ask(&mut self.resolving, &mut self.outbox, &runner.proxy);
                runner.view.detail = Some(format!("cannot resolve {}", runner.proxy.host_with_port));
                runner.client.handle_failure(now.at, RegFailure::Transport);
                continue;
            };
            let peer = match runner.transport {
                Transport::Udp => Peer { transport: Transport::Udp, addr, connection: Some(ConnectionId(0)) },
                // The connection open to the registrar, or a new one.
                other => Peer { transport: other, addr, connection: None },
            };
            match layer.send_request(now.at, request, peer) {
                Ok(tx) => {
                    self.by_tx.insert(tx, runner.id);
                }
                Err(e) => {
                    tracing::error!(trunk = %runner.view.name, error = %e, "REGISTER not sent");
                    runner.client.handle_failure(now.at, RegFailure::Transport);
                }
            }
        }
        let mut changed = false;
        while let Some(event) = runner.client.poll_event() {
            changed = true;
            match event {
                RegEvent::PublicAddress(addr) => {
                    tracing::info!(trunk = %runner.view.name, %addr, "registrar sees us at another address; updating Contact");
                    runner.view.contact = runner.client.config().contact.to_string();
                }
                RegEvent::StateChanged(state) => log_state(&runner.view.name, &state, now),
            }
        }
        if changed && !runner.retiring {
            publish(runner, now, metrics, &mut self.outbox);
        }
    }
}

fn log_state(name: &str, state: &RegState, now: Now) {
    match state {
        RegState::Registered { expires, .. } => tracing::info!(trunk = %name, expires, "trunk registered"),
        RegState::Retrying { failures, next_attempt, last_error } => {
            let wait = next_attempt.saturating_duration_since(now.at);
            tracing::warn!(trunk = %name, failures, retry_in = ?wait, error = %last_error, "trunk registration failed; retrying");
        }
        RegState::Rejected { reason, next_attempt, .. } => {
            let wait = next_attempt.saturating_duration_since(now.at);
            tracing::error!(trunk = %name, %reason, retry_in = ?wait, "trunk credentials rejected; trying again slowly");
        }
        other => tracing::info!(trunk = %name, state = other.name(), "trunk state"),
    }
}

fn publish(runner: &mut Runner, now: Now, metrics: &Metrics, outbox: &mut VecDeque<TrunkOutput>) {
    let state = runner.client.state().clone();
    let view = &mut runner.view;
    view.state = state.name();
    view.next_attempt_ms = None;
    view.next_refresh_ms = None;
    match &state {
        RegState::Registered { expires_at, refresh_at, .. } => {
            view.registrations += 1;
            view.registered_until_ms = Some(instant_to_unix_ms(*expires_at, now));
            view.next_refresh_ms = Some(instant_to_unix_ms(*refresh_at, now));
            view.detail = None;
        }
        RegState::Retrying { next_attempt, last_error, .. } => {
            view.next_attempt_ms = Some(instant_to_unix_ms(*next_attempt, now));
            view.detail = Some(last_error.clone());
        }
        RegState::Rejected { reason, next_attempt, .. } => {
            view.next_attempt_ms = Some(instant_to_unix_ms(*next_attempt, now));
            view.detail = Some(reason.clone());
        }
        RegState::Unregistered => view.registered_until_ms = None,
        _ => {}
    }
    let labels = TrunkLabels { trunk: view.name.to_string() };
    let up = matches!(state, RegState::Registered { .. });
    metrics.trunks.registered.get_or_create(&labels).set(i64::from(up));
    outbox.push_back(TrunkOutput::View(view.clone()));
    let status = TrunkStatus {
        name: view.name.to_string(),
        state: view.state.to_string(),
        detail: view.detail.clone(),
        registered_until_ms: view.registered_until_ms,
        next_attempt_at_ms: view.next_attempt_ms,
        updated_at_ms: now.unix_ms,
    };
    outbox.push_back(TrunkOutput::Status(status));
}

pub fn transport_of(trunk: &TrunkConfig) -> Transport {
    match trunk.transport {
        TrunkTransport::Udp => Transport::Udp,
        TrunkTransport::Tcp => Transport::Tcp,
        TrunkTransport::Tls => Transport::Tls,
    }
}

/// `sip:[user@]host[;transport=…]`, put together from parts already checked.
fn sip_uri(user: Option<&str>, host_with_port: rsip::HostWithPort, transport: Transport) -> rsip::Uri {
    let params = match transport {
        Transport::Udp => vec![],
        Transport::Tcp => vec![rsip::Param::Other("transport".into(), Some("tcp".into()))],
        Transport::Tls => vec![rsip::Param::Other("transport".into(), Some("tls".into()))],
    };
    rsip::Uri {
        scheme: Some(rsip::Scheme::Sip),
        auth: user.map(|user| rsip::Auth { user: user.to_string(), password: None }),
        host_with_port,
        params,
        headers: vec![],
    }
}

/// Asks for `proxy`'s name to be looked up, once until it is answered.
fn ask(resolving: &mut HashSet<HostPort>, outbox: &mut VecDeque<TrunkOutput>, proxy: &rsip::Uri) {
    if dns::literal(proxy).is_some() {
        return;
    }
    let name = dns::host_port(proxy);
    if resolving.insert(name.clone()) {
        outbox.push_back(TrunkOutput::Resolve(name));
    }
}

/// The local address the system would send from to reach `peer` (no packet is sent).
pub fn route_source(peer: SocketAddr) -> Option<IpAddr> {
    let probe = UdpSocket::bind(if peer.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }).ok()?;
    probe.connect(peer).ok()?;
    probe.local_addr().ok().map(|a| a.ip())
}
