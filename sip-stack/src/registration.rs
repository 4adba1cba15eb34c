//! The registration client (RFC 3261 §10.2) for trunks and MCUs.
//!
//! Sans-IO: the owner sends each request from [`RegistrationClient::poll_request`] in a new
//! client transaction, and reports its final response ([`RegistrationClient::handle_response`])
//! or failure ([`RegistrationClient::handle_failure`]); time comes in through
//! [`RegistrationClient::handle_timeout`].
//!
//! It authenticates (401/407), refreshes before the granted expiry, follows `423 Interval Too
//! Brief`, re-registers with the public address the registrar saw (`received`/`rport`), and
//! after a failure retries with exponential backoff and jitter, forever. A refusal of the
//! credentials (`403`, or a fresh challenge answered and challenged again) moves it to
//! [`RegState::Rejected`], which tries again only slowly ([`REJECTED_RETRY_FIRST`], doubling
//! to [`REJECTED_RETRY_MAX`]): carriers send transient 403s, but a wrong password must not
//! hammer the registrar.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rsip::prelude::*;
use rsip::{Header, Request, Response};

use crate::digest::{ChallengeOutcome, DigestClient};
use crate::rng::Rng;
use crate::transport::Transport;

/// After a refusal of the credentials, the first new attempt waits this long…
pub const REJECTED_RETRY_FIRST: Duration = Duration::from_secs(600);
/// …and later ones double up to this.
pub const REJECTED_RETRY_MAX: Duration = Duration::from_secs(3600);
/// A registrar's `Retry-After` is taken up to this (a huge value must not park the trunk, nor
/// overflow the clock).
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);

/// What to register, where, and how.
#[derive(Debug, Clone)]
pub struct RegistrationConfig {
    /// The REGISTER Request-URI: the registrar (`sip:host:port`).
    pub registrar: rsip::Uri,
    /// The address of record, in From and To.
    pub aor: rsip::Uri,
    /// Our Contact.
    pub contact: rsip::Uri,
    /// Username for digest auth (carriers often want an account id here, not the number).
    pub auth_username: String,
    pub password: String,
    /// Answer only challenges for this realm, when set.
    pub realm: Option<String>,
    /// Requested expiry.
    pub expires: u32,
    /// Via transport and sent-by.
    pub transport: Transport,
    pub local: SocketAddr,
    pub user_agent: Option<String>,
    /// First retry delay; doubles per failure up to `retry_max`, each ±20 % jitter.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Re-register with the address the registrar saw, when it differs from the Contact.
    pub learn_public_address: bool,
}

/// Where a registration stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegState {
    Idle,
    Registering,
    /// Bound until `expires_at`; the refresh goes out at `refresh_at`.
    Registered {
        expires: u32,
        expires_at: Instant,
        refresh_at: Instant,
    },
    /// The last attempt failed; the next is at `next_attempt`.
    Retrying {
        failures: u32,
        next_attempt: Instant,
        last_error: String,
    },
    /// The registrar refused the credentials; the next attempt, slow, is at `next_attempt`.
    Rejected {
        reason: String,
        rejections: u32,
        next_attempt: Instant,
    },
    Unregistering,
    Unregistered,
}

impl RegState {
    /// A lower-case name for APIs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            RegState::Idle => "idle",
            RegState::Registering => "registering",
            RegState::Registered { .. } => "registered",
            RegState::Retrying { .. } => "retrying",
            RegState::Rejected { .. } => "rejected",
            RegState::Unregistering => "unregistering",
            RegState::Unregistered => "unregistered",
        }
    }
}

/// Why a request got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegFailure {
    /// Timer F fired.
    Timeout,
    /// The transport could not deliver it.
    Transport,
}

/// What the owner should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegEvent {
    StateChanged(RegState),
    /// The registrar saw us at this address, which now goes in the Contact.
    PublicAddress(SocketAddr),
}

/// Which header carries our credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthHeader {
    Www,
    Proxy,
}

pub struct RegistrationClient {
    config: RegistrationConfig,
    state: RegState,
    rng: Rng,
    call_id: String,
    from_tag: String,
    cseq: u32,
    digest: DigestClient,
    auth_header: AuthHeader,
    /// The request in flight answered a challenge received just before it.
    answering_fresh_challenge: bool,
    /// The expiry to ask for (raised by 423).
    expires: u32,
    /// Failed attempts since the last success: the backoff exponent.
    failures: u32,
    /// Refusals of the credentials since the last success: the slow retry's exponent.
    rejections: u32,
    in_flight: Option<u32>,
    timer: Option<Instant>,
    requests: VecDeque<Request>,
    events: VecDeque<RegEvent>,
}

impl RegistrationClient {
    pub fn new(config: RegistrationConfig, seed: u64) -> RegistrationClient {
        let mut rng = Rng::new(seed);
        let call_id = rng.token();
        let from_tag = rng.token();
        let expires = config.expires;
        RegistrationClient {
            config,
            state: RegState::Idle,
            rng,
            call_id,
            from_tag,
            cseq: 0,
            digest: DigestClient::default(),
            auth_header: AuthHeader::Www,
            answering_fresh_challenge: false,
            expires,
            failures: 0,
            rejections: 0,
            in_flight: None,
            timer: None,
            requests: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn state(&self) -> &RegState {
        &self.state
    }

    pub fn config(&self) -> &RegistrationConfig {
        &self.config
    }

    /// Registers now (also after [`RegState::Rejected`], e.g. when the configuration changed).
    pub fn start(&mut self, now: Instant) {
        self.digest.reset();
        self.failures = 0;
        self.rejections = 0;
        self.send_register(now, self.expires);
        self.set_state(RegState::Registering);
    }

    /// Un-registers (`Expires: 0`) if a binding may exist; otherwise stops at once.
    pub fn stop(&mut self, now: Instant) {
        self.timer = None;
        match self.state {
            RegState::Registered { .. } | RegState::Registering | RegState::Retrying { .. } => {
                self.send_register(now, 0);
                self.set_state(RegState::Unregistering);
            }
            _ => self.set_state(RegState::Unregistered),
        }
    }

    pub fn poll_request(&mut self) -> Option<Request> {
        self.requests.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<RegEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timer.is_none_or(|t| t > now) {
            return;
        }
        self.timer = None;
        match self.state {
            // Refresh: the binding stays in force while the refresh is under way.
            RegState::Registered { .. } => self.send_register(now, self.expires),
            RegState::Retrying { .. } => {
                self.send_register(now, self.expires);
                self.set_state(RegState::Registering);
            }
            // A fresh start for the credentials: new challenge, new nonce count.
            RegState::Rejected { .. } => {
                self.digest.reset();
                self.send_register(now, self.expires);
                self.set_state(RegState::Registering);
            }
            _ => {}
        }
    }

    /// The final response to the request in flight (provisional responses are ignored).
    pub fn handle_response(&mut self, now: Instant, response: &Response) {
        let code = response.status_code.code();
        if code < 200 || !self.is_current(response) {
            return;
        }
        self.in_flight = None;
        if self.state == RegState::Unregistering {
            if matches!(code, 401 | 407) && self.answer_challenge(response, now, 0) {
                return;
            }
            self.set_state(RegState::Unregistered);
            return;
        }
        match code {
            200..=299 => self.on_success(now, response),
            401 | 407 => {
                if !self.answer_challenge(response, now, self.expires)
                    && !matches!(self.state, RegState::Rejected { .. })
                {
                    self.fail(now, format!("{code} with no usable challenge"), None);
                }
            }
            403 => self.reject(now, format!("403 {}", reason(response))),
            423 => {
                // §10.2.8: ask again with at least Min-Expires.
                let min = response.headers.iter().find_map(|h| match h {
                    Header::MinExpires(m) => m.value().trim().parse::<u32>().ok(),
                    _ => None,
                });
                match min {
                    Some(min) if min > self.expires => {
                        self.expires = min;
                        self.send_register(now, self.expires);
                    }
                    _ => self.fail(now, "423 without a usable Min-Expires".into(), None),
                }
            }
            _ => {
                let retry_after = response.headers.iter().find_map(|h| match h {
                    Header::RetryAfter(r) => r.value().split(';').next()?.trim().parse::<u64>().ok(),
                    _ => None,
                });
                self.fail(now, format!("{code} {}", reason(response)), retry_after.map(Duration::from_secs));
            }
        }
    }

    /// The request in flight got no response.
    pub fn handle_failure(&mut self, now: Instant, failure: RegFailure) {
        if self.in_flight.take().is_none() {
            return;
        }
        if self.state == RegState::Unregistering {
            self.set_state(RegState::Unregistered);
            return;
        }
        let error = match failure {
            RegFailure::Timeout => "no response (timeout)",
            RegFailure::Transport => "transport error",
        };
        self.fail(now, error.into(), None);
    }

    fn is_current(&self, response: &Response) -> bool {
        let cseq = response.cseq_header().ok().and_then(|c| c.typed().ok()).map(|c| c.seq);
        cseq.is_some() && cseq == self.in_flight
    }

    fn on_success(&mut self, now: Instant, response: &Response) {
        if self.config.learn_public_address {
            if let Some(public) = seen_address(response) {
                let contact_addr = contact_socket(&self.config.contact);
                if contact_addr != Some(public) {
                    // §18.2.1 / RFC 3581: the registrar sees another address; bind that one.
                    set_contact_address(&mut self.config.contact, public);
                    self.events.push_back(RegEvent::PublicAddress(public));
                    self.send_register(now, self.expires);
                    return;
                }
            }
        }
        self.failures = 0;
        self.rejections = 0;
        let granted = self.granted_expires(response).max(1);
        // Refresh at 90 % of the granted time, and at least 5 s before it runs out.
        let granted_d = Duration::from_secs(u64::from(granted));
        let lead = (granted_d / 10).max(Duration::from_secs(5)).min(granted_d / 2);
        let refresh_at = now + granted_d - lead;
        self.timer = Some(refresh_at);
        self.set_state(RegState::Registered { expires: granted, expires_at: now + granted_d, refresh_at });
    }

    /// The expiry the registrar granted: our Contact's `expires`, else `Expires`, else ours.
    fn granted_expires(&self, response: &Response) -> u32 {
        let ours = contact_socket(&self.config.contact);
        let from_contact = response.headers.iter().find_map(|h| match h {
            Header::Contact(c) => crate::registrar::split_list(c.value())
                .into_iter()
                .filter_map(|v| crate::name_addr::NameAddr::parse(v).ok())
                .find(|c| {
                    contact_socket(&c.uri) == ours
                        && c.uri.auth.as_ref().map(|a| &a.user)
                            == self.config.contact.auth.as_ref().map(|a| &a.user)
                })
                .and_then(|c| c.expires().and_then(|e| e.parse::<u32>().ok())),
            _ => None,
        });
        let from_header = response.headers.iter().find_map(|h| match h {
            Header::Expires(e) => e.value().trim().parse::<u32>().ok(),
            _ => None,
        });
        from_contact.or(from_header).unwrap_or(self.expires)
    }

    /// Answers a 401/407; `false` when it cannot (no usable challenge, or rejected).
    fn answer_challenge(&mut self, response: &Response, now: Instant, expires: u32) -> bool {
        let proxy = response.status_code.code() == 407;
        let values: Vec<&str> = response
            .headers
            .iter()
            .filter_map(|h| match (h, proxy) {
                (Header::WwwAuthenticate(v), false) => Some(v.value()),
                (Header::ProxyAuthenticate(v), true) => Some(v.value()),
                _ => None,
            })
            .filter(|v| match &self.config.realm {
                Some(realm) => crate::digest::Challenge::parse(v).is_ok_and(|c| &c.realm == realm),
                None => true,
            })
            .collect();
        let stale = values.iter().any(|v| crate::digest::Challenge::parse(v).is_ok_and(|c| c.stale));
        // Credentials made for a challenge we had just received, challenged again without
        // `stale`: the username or password is wrong. Retrying would only hammer the server.
        if self.answering_fresh_challenge && !stale {
            self.reject(
                now,
                format!(
                    "{} after answering a fresh challenge: credentials refused",
                    response.status_code.code()
                ),
            );
            return false;
        }
        match self.digest.on_challenges(values) {
            Ok(ChallengeOutcome::Retry) => {
                self.auth_header = if proxy { AuthHeader::Proxy } else { AuthHeader::Www };
                self.send_register(now, expires);
                self.answering_fresh_challenge = true;
                true
            }
            Ok(ChallengeOutcome::Rejected) => {
                self.reject(now, "challenged again with the same nonce: credentials refused".into());
                false
            }
            Err(_) => false,
        }
    }

    fn reject(&mut self, now: Instant, reason: String) {
        self.rejections = self.rejections.saturating_add(1);
        let rejections = self.rejections;
        let wait =
            REJECTED_RETRY_FIRST.saturating_mul(1u32 << (rejections - 1).min(8)).min(REJECTED_RETRY_MAX);
        let next_attempt = now + wait;
        self.timer = Some(next_attempt);
        self.set_state(RegState::Rejected { reason, rejections, next_attempt });
    }

    fn fail(&mut self, now: Instant, error: String, retry_after: Option<Duration>) {
        self.failures = self.failures.saturating_add(1);
        let failures = self.failures;
        let exp = self.config.retry_base.saturating_mul(1u32 << (failures - 1).min(16));
        let base = exp.min(self.config.retry_max);
        let jitter = 0.8 + 0.4 * self.rng.unit();
        let delay = retry_after.map_or_else(|| base.mul_f64(jitter), |r| r.min(RETRY_AFTER_MAX));
        let next_attempt = now + delay;
        self.timer = Some(next_attempt);
        self.set_state(RegState::Retrying { failures, next_attempt, last_error: error });
    }

    fn set_state(&mut self, state: RegState) {
        if state != self.state {
            self.state = state.clone();
            self.events.push_back(RegEvent::StateChanged(state));
        }
    }

    fn send_register(&mut self, _now: Instant, expires: u32) {
        self.cseq += 1;
        self.in_flight = Some(self.cseq);
        self.answering_fresh_challenge = false;
        let c = &self.config;
        let branch = self.rng.branch();
        let registrar = c.registrar.to_string();
        let mut headers = rsip::Headers::default();
        headers.push(Header::Via(
            format!("SIP/2.0/{} {};branch={branch};rport", c.transport.via_token(), c.local).into(),
        ));
        headers.push(Header::MaxForwards(70.into()));
        headers.push(Header::From(format!("<{}>;tag={}", c.aor, self.from_tag).into()));
        headers.push(Header::To(format!("<{}>", c.aor).into()));
        headers.push(Header::CallId(self.call_id.clone().into()));
        headers.push(Header::CSeq(format!("{} REGISTER", self.cseq).into()));
        headers.push(Header::Contact(format!("<{}>", c.contact).into()));
        headers.push(Header::Expires(expires.to_string().into()));
        if let Some(ua) = &c.user_agent {
            headers.push(Header::UserAgent(ua.clone().into()));
        }
        let cnonce = self.rng.token();
        let (user, password) = (c.auth_username.clone(), c.password.clone());
        if let Some(value) = self.digest.authorization(&user, &password, "REGISTER", &registrar, &cnonce) {
            headers.push(match self.auth_header {
                AuthHeader::Www => Header::Authorization(value.into()),
                AuthHeader::Proxy => Header::ProxyAuthorization(value.into()),
            });
        }
        headers.push(Header::ContentLength(0.into()));
        self.requests.push_back(Request {
            method: rsip::Method::Register,
            uri: self.config.registrar.clone(),
            version: rsip::Version::V2,
            headers,
            body: Vec::new(),
        });
    }
}

fn reason(response: &Response) -> String {
    match &response.status_code {
        rsip::StatusCode::Other(_, reason) => reason.clone(),
        other => format!("{other}").split_once(' ').map(|(_, r)| r.to_string()).unwrap_or_default(),
    }
}

/// The (received, rport) of the top Via of a response: where the registrar saw us.
fn seen_address(response: &Response) -> Option<SocketAddr> {
    let via = response.via_header().ok()?.typed().ok()?;
    let received: IpAddr = via.received().ok()??;
    let rport = crate::via::rport(&via)??;
    Some(SocketAddr::new(received, rport))
}

fn contact_socket(uri: &rsip::Uri) -> Option<SocketAddr> {
    let ip = match &uri.host_with_port.host {
        rsip::Host::IpAddr(ip) => *ip,
        rsip::Host::Domain(_) => return None,
    };
    Some(SocketAddr::new(ip, uri.host_with_port.port.map_or(5060, |p| *p.value())))
}

fn set_contact_address(uri: &mut rsip::Uri, addr: SocketAddr) {
    uri.host_with_port =
        rsip::HostWithPort { host: rsip::Host::IpAddr(addr.ip()), port: Some(addr.port().into()) };
}

#[cfg(test)]
mod tests;
