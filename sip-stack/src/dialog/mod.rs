//! Dialogs (RFC 3261 §12): the peer-to-peer relationship an INVITE creates, which every later
//! request of the call (ACK, re-INVITE, UPDATE, INFO, BYE) travels in.
//!
//! A [`Dialog`] is made from the INVITE (UAS, §12.1.1) or from a response to ours (UAC,
//! §12.1.2). It builds in-dialog requests with the route set and CSeq rules (§12.2.1.1), the ACK
//! of a 2xx (§13.2.2.4), and checks in-dialog requests it receives (§12.2.2), taking target
//! refreshes from re-INVITE and UPDATE. [`OkRetransmit`] resends a UAS 2xx until its ACK comes
//! (§13.3.1.4); [`session_timer`] keeps the session alive (RFC 4028); [`glare_delay`] spaces a
//! re-INVITE retried after 491 (§14.1).

pub mod session_timer;

use std::time::{Duration, Instant};

use rsip::prelude::*;
use rsip::{Header, Method, Request};

use crate::message::{InboundRequest, InboundResponse};
use crate::name_addr::NameAddr;
use crate::registrar::split_list;
use crate::rng::Rng;

/// A dialog's identity (§12): Call-ID and both tags, seen from our side.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

impl DialogId {
    /// The dialog an inbound request belongs to: our tag is in To, theirs in From.
    pub fn of_request(request: &InboundRequest) -> Option<DialogId> {
        Some(DialogId {
            call_id: request.envelope.call_id.clone(),
            local_tag: request.envelope.to.tag()?.to_string(),
            remote_tag: request.envelope.from.tag()?.to_string(),
        })
    }

    /// The dialog an inbound response belongs to: our tag is in From, theirs in To.
    pub fn of_response(response: &InboundResponse) -> Option<DialogId> {
        Some(DialogId {
            call_id: response.envelope.call_id.clone(),
            local_tag: response.envelope.from.tag()?.to_string(),
            remote_tag: response.envelope.to.tag()?.to_string(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    /// Made by a provisional response.
    Early,
    /// Made or confirmed by a 2xx.
    Confirmed,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    #[error("no tag to identify the dialog")]
    NoTag,
    #[error("no Contact to send in-dialog requests to")]
    NoContact,
    /// §12.2.2: answer with 500.
    #[error("CSeq {got} is lower than {expected}")]
    CSeqOutOfOrder { got: u32, expected: u32 },
}

/// One dialog.
#[derive(Debug, Clone)]
pub struct Dialog {
    pub id: DialogId,
    pub state: DialogState,
    local_seq: u32,
    remote_seq: Option<u32>,
    /// Our From (as UAC) or To (as UAS) value, with our tag.
    local_party: String,
    remote_party: String,
    remote_target: rsip::Uri,
    /// Route set in the order requests use it (§12.1.1, §12.1.2).
    route_set: Vec<String>,
    local_contact: String,
}

impl Dialog {
    /// §12.1.1: the UAS side, from the INVITE and the tag we put in our response's To.
    pub fn uas(
        invite: &InboundRequest,
        local_tag: &str,
        local_contact: &str,
        initial_seq: u32,
    ) -> Result<Dialog, DialogError> {
        let remote_tag = invite.envelope.from.tag().ok_or(DialogError::NoTag)?.to_string();
        let remote_target = contact_uri(&invite.request.headers).ok_or(DialogError::NoContact)?;
        let to = header_value(&invite.request.headers, |h| matches!(h, Header::To(_))).unwrap_or_default();
        Ok(Dialog {
            id: DialogId {
                call_id: invite.envelope.call_id.clone(),
                local_tag: local_tag.into(),
                remote_tag,
            },
            state: DialogState::Confirmed,
            local_seq: initial_seq,
            remote_seq: Some(invite.envelope.cseq.seq),
            local_party: with_tag(&to, local_tag),
            remote_party: header_value(&invite.request.headers, |h| matches!(h, Header::From(_)))
                .unwrap_or_default(),
            remote_target,
            route_set: record_routes(&invite.request.headers),
            local_contact: local_contact.into(),
        })
    }

    /// §12.1.2: the UAC side, from our INVITE and a 1xx (with To tag) or 2xx to it.
    pub fn uac(
        invite: &Request,
        response: &InboundResponse,
        local_contact: &str,
    ) -> Result<Dialog, DialogError> {
        let id = DialogId::of_response(response).ok_or(DialogError::NoTag)?;
        let remote_target = contact_uri(&response.response.headers).ok_or(DialogError::NoContact)?;
        let mut route_set = record_routes(&response.response.headers);
        route_set.reverse();
        let local_seq = invite.cseq_header().ok().and_then(|c| c.typed().ok()).map_or(1, |c| c.seq);
        let code = response.response.status_code.code();
        Ok(Dialog {
            id,
            state: if code < 200 { DialogState::Early } else { DialogState::Confirmed },
            local_seq,
            remote_seq: None,
            local_party: header_value(&invite.headers, |h| matches!(h, Header::From(_))).unwrap_or_default(),
            remote_party: header_value(&response.response.headers, |h| matches!(h, Header::To(_)))
                .unwrap_or_default(),
            remote_target,
            route_set,
            local_contact: local_contact.into(),
        })
    }

    /// A 2xx confirms an early dialog, and may bring a new target and route set (§13.2.2.4).
    pub fn confirm(&mut self, response: &InboundResponse) {
        self.state = DialogState::Confirmed;
        if let Some(target) = contact_uri(&response.response.headers) {
            self.remote_target = target;
        }
    }

    pub fn remote_target(&self) -> &rsip::Uri {
        &self.remote_target
    }

    pub fn route_set(&self) -> &[String] {
        &self.route_set
    }

    /// Where in-dialog requests go first: the first route, or the remote target.
    pub fn next_hop(&self) -> rsip::Uri {
        self.route_set.first().and_then(|r| route_uri(r)).unwrap_or_else(|| self.remote_target.clone())
    }

    /// Checks an in-dialog request (§12.2.2) and takes a target refresh (re-INVITE, UPDATE).
    pub fn on_request(&mut self, request: &InboundRequest) -> Result<(), DialogError> {
        let seq = request.envelope.cseq.seq;
        let method = request.request.method;
        if !matches!(method, Method::Ack | Method::Cancel) {
            if let Some(expected) = self.remote_seq {
                if seq <= expected {
                    return Err(DialogError::CSeqOutOfOrder { got: seq, expected: expected + 1 });
                }
            }
            self.remote_seq = Some(seq);
        }
        if matches!(method, Method::Invite | Method::Update) {
            if let Some(target) = contact_uri(&request.request.headers) {
                self.remote_target = target;
            }
        }
        Ok(())
    }

    /// A new in-dialog request (§12.2.1.1); `via` is our Via value without branch.
    pub fn request(&mut self, method: Method, via: &str, branch: &str) -> Request {
        self.local_seq += 1;
        self.build(method, self.local_seq, via, branch)
    }

    /// The ACK of a 2xx to the INVITE sent with CSeq `invite_seq` (§13.2.2.4): a new branch,
    /// the INVITE's sequence number.
    pub fn ack(&self, invite_seq: u32, via: &str, branch: &str) -> Request {
        self.build(Method::Ack, invite_seq, via, branch)
    }

    fn build(&self, method: Method, seq: u32, via: &str, branch: &str) -> Request {
        // §12.2.1.1: with a loose router first, the target is the Request-URI and the whole
        // route set goes in Route; with a strict one, it takes the Request-URI's place.
        let first_is_loose = self.route_set.first().is_none_or(|r| r.contains(";lr"));
        let (uri, routes) = if first_is_loose {
            (self.remote_target.clone(), self.route_set.clone())
        } else {
            let mut rest: Vec<String> = self.route_set[1..].to_vec();
            rest.push(format!("<{}>", self.remote_target));
            (route_uri(&self.route_set[0]).unwrap_or_else(|| self.remote_target.clone()), rest)
        };
        let mut headers = rsip::Headers::default();
        headers.push(Header::Via(format!("{via};branch={branch}").into()));
        headers.push(Header::MaxForwards(70.into()));
        for route in routes {
            headers.push(Header::Route(route.into()));
        }
        headers.push(Header::From(self.local_party.clone().into()));
        headers.push(Header::To(self.remote_party.clone().into()));
        headers.push(Header::CallId(self.id.call_id.clone().into()));
        headers.push(Header::CSeq(format!("{seq} {method}").into()));
        if matches!(method, Method::Invite | Method::Update) {
            headers.push(Header::Contact(format!("<{}>", self.local_contact).into()));
        }
        headers.push(Header::ContentLength(0.into()));
        Request { method, uri, version: rsip::Version::V2, headers, body: Vec::new() }
    }
}

/// The URI of a route entry: `<sip:p.example;lr>` or a bare URI.
fn route_uri(route: &str) -> Option<rsip::Uri> {
    let inner = match (route.find('<'), route.find('>')) {
        (Some(open), Some(close)) if open < close => &route[open + 1..close],
        _ => route.trim(),
    };
    rsip::Uri::try_from(inner).ok()
}

/// The first Contact URI of a message.
fn contact_uri(headers: &rsip::Headers) -> Option<rsip::Uri> {
    headers.iter().find_map(|h| match h {
        Header::Contact(c) => {
            split_list(c.value()).first().and_then(|v| NameAddr::parse(v).ok()).map(|c| c.uri)
        }
        _ => None,
    })
}

/// Record-Route entries in message order, each `<uri;params>`.
fn record_routes(headers: &rsip::Headers) -> Vec<String> {
    headers
        .iter()
        .filter_map(|h| match h {
            Header::RecordRoute(r) => {
                Some(split_list(r.value()).into_iter().map(str::to_string).collect::<Vec<_>>())
            }
            _ => None,
        })
        .flatten()
        .collect()
}

fn header_value(headers: &rsip::Headers, pick: impl Fn(&Header) -> bool) -> Option<String> {
    headers.iter().find(|h| pick(h)).map(|h| {
        let text = h.to_string();
        text.split_once(':').map(|(_, v)| v.trim().to_string()).unwrap_or_default()
    })
}

/// `value` with `;tag=tag` unless it has a tag already.
fn with_tag(value: &str, tag: &str) -> String {
    match NameAddr::parse(value) {
        Ok(to) if to.tag().is_some() => value.to_string(),
        _ => format!("{value};tag={tag}"),
    }
}

/// Resends a UAS 2xx to INVITE until its ACK arrives (§13.3.1.4): after T1, doubling up to T2;
/// the UAS gives up (and should send BYE) after 64·T1.
#[derive(Debug, Clone)]
pub struct OkRetransmit {
    interval: Duration,
    t2: Duration,
    next: Instant,
    give_up: Instant,
    acked: bool,
}

/// What an [`OkRetransmit`] asks for at a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OkAction {
    Resend,
    /// No ACK within 64·T1: end the call with BYE.
    GiveUp,
}

impl OkRetransmit {
    pub fn new(now: Instant, t1: Duration, t2: Duration) -> OkRetransmit {
        OkRetransmit { interval: t1, t2, next: now + t1, give_up: now + t1 * 64, acked: false }
    }

    pub fn ack(&mut self) {
        self.acked = true;
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.acked).then(|| self.next.min(self.give_up))
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Option<OkAction> {
        if self.acked {
            return None;
        }
        if now >= self.give_up {
            self.acked = true;
            return Some(OkAction::GiveUp);
        }
        if now >= self.next {
            self.interval = (self.interval * 2).min(self.t2);
            self.next = now + self.interval;
            return Some(OkAction::Resend);
        }
        None
    }
}

/// How long to wait before retrying a re-INVITE refused with 491 (§14.1): 2.1-4 s for the owner
/// of the Call-ID (who sent the initial INVITE), 0-2 s for the other side, in 10 ms steps.
pub fn glare_delay(owns_call_id: bool, rng: &mut Rng) -> Duration {
    let steps = rng.next_u64() % 200;
    if owns_call_id {
        Duration::from_millis(2100 + (steps % 191) * 10)
    } else {
        Duration::from_millis(steps * 10)
    }
}

#[cfg(test)]
mod tests;
