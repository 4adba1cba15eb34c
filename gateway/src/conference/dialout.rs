//! Calls out of a room, asked for by the API: to a phone number or SIP URI through a trunk, or
//! straight to a SIP URI with an IP address — an MCU conference, or a room on another gateway,
//! which makes the two conferences one (each is a leg of the other's mix, and N−1 mixing keeps
//! each side's own audio from coming back to it).
//!
//! Only the API starts these: no SIP request from outside can make the gateway call out.
//!
//! The INVITE carries our offer; a 401/407 is answered with the trunk's credentials; 180/183
//! show as ringing; a 2xx makes a dialog and a [`Call`](super::calls) like an inbound one,
//! joined to the room without a PIN; a failure, or no answer before the ring timeout (CANCEL),
//! ends in a call record with the cause.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mixer::codec::AudioCodec;
use rsip::prelude::*;
use rsip::{Header, Method};
use sip_stack::dialog::Dialog;
use sip_stack::digest::{ChallengeOutcome, DigestClient};
use sip_stack::message::{request_bytes, InboundResponse};
use sip_stack::request::NewRequest;
use sip_stack::sdp::sdes::Srtp;
use sip_stack::sdp::video::LocalVideo;
use sip_stack::sdp::{self, AudioStream, LocalAudio};
use sip_stack::transaction::{ClientTx, TxEvent};
use sip_stack::transport::{Peer, Transport};

use super::calls::video::{is_focus, local_video, CallVideo};
use super::calls::{audio_codec, leg_config, local_audio, new_branch};
use super::core::{Core, ALLOW};
use crate::config::IdentityHeader;
use crate::control::{Cause, ControlError, DialRequest};
use crate::dns;
use crate::ids::TrunkName;
use crate::media::ports::PortPair;
use crate::media::{LegSetup, MediaCommand, ParticipantId, Wire};
use crate::metrics::RoomCodecLabels;
use crate::signalling::sip::new_tag;
use crate::storage::{CallRecord, Direction as RecordDirection, Room};

/// Where a call out stands before its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialState {
    Calling,
    Ringing,
    /// 183 with SDP: the far end's early media (ringback, announcements) plays into the room.
    Early,
    /// CANCEL sent (ring timeout): waiting for the 487.
    Cancelling,
}

impl DialState {
    pub fn as_str(self) -> &'static str {
        match self {
            DialState::Calling => "calling",
            DialState::Ringing => "ringing",
            DialState::Early => "early",
            DialState::Cancelling => "cancelling",
        }
    }
}

/// Credentials to answer challenges with.
#[derive(Debug, Clone)]
pub(super) struct Credentials {
    username: String,
    password: String,
    realm: Option<String>,
}

/// A call out, before its answer.
#[derive(Debug)]
pub struct Dialing {
    pub id: ParticipantId,
    pub room: Room,
    pub target: String,
    pub trunk: Option<TrunkName>,
    pub state: DialState,
    pub started_ms: i64,
    pub(super) invite: rsip::Request,
    pub(super) peer: Peer,
    pub(super) via_host: String,
    pub(super) contact: String,
    pub(super) auth: DialAuth,
    pub(super) sdp: DialSdp,
    pub(super) ring_deadline: Instant,
}

/// How a call out answers a challenge.
#[derive(Debug)]
pub(super) struct DialAuth {
    pub(super) credentials: Option<Credentials>,
    pub(super) digest: DigestClient,
}

/// A call out's offer, and its media until the answer.
#[derive(Debug)]
pub(super) struct DialSdp {
    pub(super) local: LocalAudio,
    pub(super) offer: sdp::Session,
    pub(super) sdp_session: u64,
    /// The RTP sockets, until early media or the answer hands them to the media worker.
    pub(super) ports: Option<PortPair>,
    /// The stream of early media, once it started.
    pub(super) early: Option<(AudioStream, AudioCodec)>,
    /// Our video offer (its m-line follows the audio's) and its sockets.
    pub(super) video: Option<(LocalVideo, PortPair)>,
}

/// How a dial request was turned into a request-URI and a next hop.
struct Route {
    uri: rsip::Uri,
    peer: SocketAddr,
    transport: Transport,
    from: String,
    /// A P-Asserted-Identity or P-Preferred-Identity header.
    identity: Option<Header>,
    credentials: Option<Credentials>,
}

impl Core {
    /// Starts a call out of `room`; the participant id names it in the API from now on.
    /// `next_hop`: where the target's host name resolved to, for a URI dialled directly.
    pub(super) fn dial(
        &mut self,
        room: Room,
        request: DialRequest,
        next_hop: Option<SocketAddr>,
    ) -> Result<ParticipantId, ControlError> {
        let route = self.route(&request, next_hop)?;
        let now = self.now.at;
        let ports = self.ports.allocate().map_err(|_| ControlError::NoPorts)?;
        let advertised = self.advertised_ip(route.peer);
        let port = self.sip_port(route.transport);
        let via_host = format!("{advertised}:{port}");
        let contact = format!("sip:{}@{via_host}{}", room.number, route.transport.uri_param());
        // Our offers are plain RTP/AVP: what a trunk or MCU on the other side surely takes.
        let local = local_audio(advertised, ports.port, Srtp::Off);
        let sdp_session = u64::from(rand::random::<u32>());
        let mut offer = sdp::offer(&local, sdp_session, 1);
        // Video too (an MCU conference, a room on another gateway, a video phone), when on and
        // a port pair is free; a call out without it is an audio call.
        let video =
            self.shared.config.video.enabled.then(|| self.ports.allocate().ok()).flatten().map(|ports| {
                let local = local_video(&self.shared.config.video, ports.port, Srtp::Off);
                offer.medias.push(sdp::video::offer_media(&local, None));
                (local, ports)
            });
        let body = offer.to_string();
        let call_id = format!("{:016x}@{advertised}", rand::random::<u64>());
        let session_expires = self.shared.config.conference.session_expires_secs;
        let mut headers = Vec::new();
        headers.extend(route.identity.clone());
        headers.push(Header::Allow(ALLOW.into()));
        headers.push(Header::Supported("timer".into()));
        headers.push(Header::Other("Session-Expires".into(), format!("{session_expires};refresher=uac")));
        headers.push(Header::UserAgent(self.shared.config.sip.user_agent.clone().into()));
        let invite = NewRequest {
            method: Method::Invite,
            uri: route.uri.clone(),
            transport: route.transport,
            sent_by: via_host.clone(),
            branch: new_branch(),
            from: route.from.clone(),
            from_tag: new_tag(),
            to: route.uri.to_string(),
            call_id,
            cseq: 1,
            contact: Some(contact.clone()),
            headers,
            body: Some(("application/sdp".into(), body.into_bytes())),
        }
        .build();
        // RFC 4579 §5: the room calling out is a conference focus.
        let mut invite = invite;
        for h in invite.headers.iter_mut() {
            if let Header::Contact(_) = h {
                *h = Header::Contact(format!("<{contact}>;isfocus").into());
            }
        }
        let peer = Peer { transport: route.transport, addr: route.peer, connection: None };
        let tx = self.layer.send_request(now, invite.clone(), peer).map_err(|e| {
            tracing::warn!(error = %e, "INVITE not sent");
            ControlError::Unavailable
        })?;
        let id = self.calls.new_id();
        let ring = Duration::from_secs(u64::from(request.ring_timeout_secs.unwrap_or(60).clamp(1, 600)));
        tracing::info!(participant = %id, room = %room.number, to = %route.uri, trunk = ?request.trunk, "calling out");
        self.calls.start_dialing(
            tx,
            Dialing {
                id,
                room,
                target: request.to,
                trunk: request.trunk,
                state: DialState::Calling,
                started_ms: self.now.unix_ms,
                invite,
                peer,
                via_host,
                contact,
                auth: DialAuth { credentials: route.credentials, digest: DigestClient::default() },
                sdp: DialSdp { local, offer, sdp_session, ports: Some(ports), early: None, video },
                ring_deadline: now + ring,
            },
        );
        Ok(id)
    }

    /// The request-URI, next hop, From and credentials for a dial request.
    fn route(&mut self, request: &DialRequest, next_hop: Option<SocketAddr>) -> Result<Route, ControlError> {
        let bad = |m: String| Err(ControlError::BadTarget(m));
        let to = request.to.trim();
        let trunk = match &request.trunk {
            Some(name) => match self.trunks.config(name) {
                Some(t) => Some(t.clone()),
                None => return bad(format!("no trunk named `{name}`")),
            },
            None => None,
        };
        match trunk {
            Some(trunk) => {
                let proxy = trunk.proxy.uri().clone();
                let Some(peer) = self.trunks.address(&trunk) else {
                    return bad(format!("trunk `{}`'s proxy does not resolve to an address", trunk.name));
                };
                let host =
                    trunk.domain.as_ref().map_or_else(|| proxy.host_with_port.to_string(), |d| d.to_string());
                let uri = if to.starts_with("sip:") {
                    to.to_string()
                } else if is_number(to) {
                    format!("sip:{to}@{host}")
                } else {
                    return bad(format!("`{to}` is neither a SIP URI nor a phone number"));
                };
                let uri = rsip::Uri::try_from(uri.as_str())
                    .map_err(|_| ControlError::BadTarget(format!("`{to}` does not parse")))?;
                let caller = trunk.caller_id.as_deref().unwrap_or(&trunk.username);
                let identity = match trunk.identity_header {
                    IdentityHeader::None => None,
                    IdentityHeader::Pai => {
                        Some(Header::Other("P-Asserted-Identity".into(), format!("<sip:{caller}@{host}>")))
                    }
                    IdentityHeader::Ppi => {
                        Some(Header::Other("P-Preferred-Identity".into(), format!("<sip:{caller}@{host}>")))
                    }
                };
                Ok(Route {
                    uri,
                    peer,
                    transport: crate::signalling::sip::trunks::transport_of(&trunk),
                    identity,
                    from: format!("sip:{caller}@{host}"),
                    credentials: trunk.password.clone().map(|password| Credentials {
                        username: trunk.auth_user().to_string(),
                        password,
                        realm: trunk.realm.clone(),
                    }),
                })
            }
            None => {
                if !to.starts_with("sip:") {
                    return bad(format!("`{to}` needs a trunk: only a SIP URI can be dialled directly"));
                }
                let uri = rsip::Uri::try_from(to)
                    .map_err(|_| ControlError::BadTarget(format!("`{to}` does not parse")))?;
                let Some(peer) = dns::literal(&uri).or(next_hop) else {
                    return bad(format!("`{to}` does not resolve to an address"));
                };
                let from = format!("sip:gateway@{}", self.advertised_ip(peer));
                Ok(Route { uri, peer, transport: Transport::Udp, from, identity: None, credentials: None })
            }
        }
    }

    /// Responses to our INVITEs; false when the event is not about one.
    pub(super) fn on_dial_event(&mut self, event: &TxEvent) -> bool {
        let (tx, response) = match event {
            TxEvent::Response { tx, response } => (*tx, Some(response)),
            TxEvent::Timeout { tx } | TxEvent::TransportError { tx } => (*tx, None),
            _ => return false,
        };
        // A 2xx retransmitted after we answered it: ACK again (RFC 3261 §13.2.2.4).
        if let Some(ack) = self.calls.answered.get(&tx) {
            if response.is_some_and(|r| r.response.status_code.code() / 100 == 2) {
                let (peer, bytes) = ack.clone();
                self.layer.send_stateless(peer, bytes);
            }
            return true;
        }
        if !self.calls.dialing.contains_key(&tx) {
            return false;
        }
        let Some(response) = response else {
            let code = if matches!(event, TxEvent::Timeout { .. }) { 408 } else { 503 };
            self.dial_failed(tx, &code.to_string());
            return true;
        };
        let code = response.response.status_code.code();
        match code {
            100 => {}
            101..=199 => {
                if !response.response.body.is_empty() {
                    self.early_media(tx, response);
                }
                if let Some(d) = self.calls.dialing.get_mut(&tx) {
                    if d.state == DialState::Calling {
                        d.state = DialState::Ringing;
                        tracing::info!(participant = %d.id, code, "ringing");
                    }
                }
            }
            200..=299 => self.dial_answered(tx, response),
            401 | 407 => self.dial_challenged(tx, response),
            _ => {
                let cancelled = self.calls.dialing.get(&tx).is_some_and(|d| d.state == DialState::Cancelling);
                let cause = if cancelled { "no-answer".to_string() } else { code.to_string() };
                self.dial_failed(tx, &cause);
            }
        }
        true
    }

    /// 401/407: the INVITE again, with credentials, a new branch and the next CSeq.
    fn dial_challenged(&mut self, tx: ClientTx, response: &InboundResponse) {
        let Some(mut d) = self.calls.stop_dialing(tx) else { return };
        let proxy = response.response.status_code.code() == 407;
        let challenges: Vec<String> = response
            .response
            .headers
            .iter()
            .filter_map(|h| match h {
                Header::WwwAuthenticate(v) if !proxy => Some(v.value().to_string()),
                Header::ProxyAuthenticate(v) if proxy => Some(v.value().to_string()),
                _ => None,
            })
            .collect();
        let Some(credentials) = d.auth.credentials.clone() else {
            return self.end_dialing(d, &response.response.status_code.code().to_string());
        };
        let outcome = d.auth.digest.on_challenges(challenges.iter().map(String::as_str));
        // With a realm configured, only that realm's challenges are answered.
        let realm_ok = credentials
            .realm
            .as_ref()
            .is_none_or(|r| challenges.iter().any(|c| c.contains(&format!("\"{r}\""))));
        if !matches!(outcome, Ok(ChallengeOutcome::Retry)) || !realm_ok {
            tracing::warn!(participant = %d.id, ?outcome, "call out: credentials refused");
            return self.end_dialing(d, "auth-rejected");
        }
        let uri = d.invite.uri.to_string();
        let cnonce = format!("{:016x}", rand::random::<u64>());
        let Some(value) = d.auth.digest.authorization(
            &credentials.username,
            &credentials.password,
            "INVITE",
            &uri,
            &cnonce,
        ) else {
            return self.end_dialing(d, "auth-rejected");
        };
        let mut invite = d.invite.clone();
        let seq = invite.cseq_header().ok().and_then(|c| c.typed().ok()).map_or(1, |c| c.seq) + 1;
        let mut headers = rsip::Headers::default();
        let via = d.peer.transport.via_token();
        headers
            .push(Header::Via(format!("SIP/2.0/{via} {};rport;branch={}", d.via_host, new_branch()).into()));
        for h in invite.headers.iter() {
            let replaced = matches!(
                h,
                Header::Via(_) | Header::CSeq(_) | Header::Authorization(_) | Header::ProxyAuthorization(_)
            );
            if !replaced {
                headers.push(h.clone());
            }
        }
        headers.push(Header::CSeq(format!("{seq} INVITE").into()));
        headers.push(if proxy {
            Header::ProxyAuthorization(value.into())
        } else {
            Header::Authorization(value.into())
        });
        invite.headers = headers;
        match self.layer.send_request(self.now.at, invite.clone(), d.peer) {
            Ok(new_tx) => {
                d.invite = invite;
                self.calls.start_dialing(new_tx, d);
            }
            Err(e) => {
                tracing::warn!(error = %e, "authenticated INVITE not sent");
                self.end_dialing(d, "503");
            }
        }
    }

    /// A provisional response with SDP (RFC 3261 §13.2.1, RFC 3960): the far end's early media
    /// plays into the room, which it does not hear yet (deaf until the answer).
    fn early_media(&mut self, tx: ClientTx, response: &InboundResponse) {
        let Some(d) = self.calls.dialing.get_mut(&tx) else { return };
        if d.sdp.early.is_some() || d.state == DialState::Cancelling {
            return;
        }
        let answered = sdp::parse(&response.response.body)
            .and_then(|answer| sdp::read_answer(&d.sdp.offer, &answer, &d.sdp.local))
            .ok()
            .and_then(|stream| audio_codec(&stream.codec).map(|codec| (stream, codec)));
        let (Some((stream, codec)), Some(ports)) = (answered, d.sdp.ports.take()) else { return };
        tracing::info!(participant = %d.id, codec = codec.name(), "early media");
        let leg = LegSetup {
            id: d.id,
            room: d.room.number.clone(),
            config: leg_config(codec, &stream),
            wire: Wire::Udp {
                rtp: ports.rtp,
                rtcp: (!stream.rtcp_mux).then_some(ports.rtcp),
                remote: stream.remote,
                remote_rtcp: stream.remote.and_then(crate::media::rtcp_beside),
            },
            srtp: None,
            joined: false,
        };
        let id = d.id;
        let labels = RoomCodecLabels { room: d.room.number.to_string(), codec: codec.name().into() };
        d.state = DialState::Early;
        d.sdp.early = Some((stream, codec));
        self.out.media(MediaCommand::Add(Box::new(leg)));
        self.out.media(MediaCommand::SetMuted(id, false));
        self.shared.metrics.media.active_legs.get_or_create(&labels).inc();
    }

    /// A 2xx: ACK, the dialog, and the leg joins the room.
    fn dial_answered(&mut self, tx: ClientTx, response: &InboundResponse) {
        let Some(mut d) = self.calls.stop_dialing(tx) else { return };
        let seq = d.invite.cseq_header().ok().and_then(|c| c.typed().ok()).map_or(1, |c| c.seq);
        let dialog = match Dialog::uac(&d.invite, response, &d.contact) {
            Ok(dialog) => dialog,
            Err(e) => {
                tracing::warn!(participant = %d.id, error = %e, "2xx without a usable dialog");
                return self.end_dialing(d, "bad-answer");
            }
        };
        let via = format!("SIP/2.0/{} {};rport", d.peer.transport.via_token(), d.via_host);
        let ack = dialog.ack(seq, &via, &new_branch());
        let ack = Bytes::from(request_bytes(&ack));
        self.layer.send_stateless(d.peer, ack.clone());
        self.calls.answered.insert(tx, (d.peer, ack));
        let answer = sdp::parse(&response.response.body).ok();
        let answered = answer
            .as_ref()
            .and_then(|answer| sdp::read_answer(&d.sdp.offer, answer, &d.sdp.local).ok())
            .and_then(|stream| audio_codec(&stream.codec).map(|codec| (stream, codec)));
        // Our video m-line is the second; an answer that refused it leaves an audio call.
        let video = d.sdp.video.take().zip(answer.as_ref()).and_then(|((local, ports), answer)| {
            let stream = sdp::video::read_answer(&d.sdp.offer, answer, 1, &local).ok().flatten()?;
            let mut video = CallVideo::new(local, stream, ports);
            video.cascade = is_focus(&response.response.headers);
            Some(video)
        });
        let Some((stream, codec)) = answered else {
            tracing::info!(participant = %d.id, "2xx without a usable SDP answer: hanging up");
            let call = self.outbound_call(tx, d, dialog, response, None, None);
            let id = call.id();
            self.calls.insert(call);
            return self.end_call(id, Cause::BadSdp, true);
        };
        tracing::info!(participant = %d.id, room = %d.room.number, codec = codec.name(), "call out answered");
        let early = d.sdp.early.as_ref().map(|(_, codec)| *codec);
        let room = d.room.number.clone();
        let config = leg_config(codec, &stream);
        let remote = stream.remote;
        let on_hold = !stream.direction.sends();
        let call = self.outbound_call(tx, d, dialog, response, Some((stream, codec)), video);
        let id = call.id();
        self.write_record(call.record(None));
        self.calls.insert(call);
        match early {
            None => self.start_media(id),
            // The early leg becomes the call's: the answer's stream, heard and hearing.
            Some(early_codec) => {
                if early_codec != codec {
                    let metrics = &self.shared.metrics;
                    let old = RoomCodecLabels { room: room.to_string(), codec: early_codec.name().into() };
                    metrics.media.active_legs.get_or_create(&old).dec();
                    let new = RoomCodecLabels { room: room.to_string(), codec: codec.name().into() };
                    metrics.media.active_legs.get_or_create(&new).inc();
                }
                self.out.media(MediaCommand::Update { id, config, remote, on_hold, srtp: None });
                self.out.media(MediaCommand::Join(id));
                self.announce_join(id, &room);
                self.start_video(id);
                self.show_without_video(id);
                self.publish(id);
            }
        }
    }

    fn dial_failed(&mut self, tx: ClientTx, cause: &str) {
        if let Some(d) = self.calls.stop_dialing(tx) {
            self.end_dialing(d, cause);
        }
    }

    /// A call out that will not be answered: its early media leg out, its record written.
    fn end_dialing(&mut self, d: Dialing, cause: &str) {
        if let Some((_, codec)) = &d.sdp.early {
            self.out.media(MediaCommand::Remove(d.id));
            let labels = RoomCodecLabels { room: d.room.number.to_string(), codec: codec.name().into() };
            self.shared.metrics.media.active_legs.get_or_create(&labels).dec();
        }
        tracing::info!(participant = %d.id, room = %d.room.number, to = %d.target, cause, "call out failed");
        self.count_call(cause);
        let record = CallRecord {
            leg_id: format!("out-{}-{}", d.room.number, d.id),
            call_id: d
                .invite
                .headers
                .iter()
                .find_map(|h| match h {
                    Header::CallId(c) => Some(c.value().to_string()),
                    _ => None,
                })
                .unwrap_or_default(),
            direction: RecordDirection::Outbound,
            from_uri: String::new(),
            to_uri: d.invite.uri.to_string(),
            room_number: Some(d.room.number.to_string()),
            started_at_ms: d.started_ms,
            answered_at_ms: None,
            ended_at_ms: Some(self.now.unix_ms),
            cause: cause.to_string(),
            codec: None,
        };
        self.write_record(record);
    }

    /// Ring timeouts: CANCEL (RFC 3261 §9.1) and wait for the 487.
    pub(super) fn handle_dial_timeouts(&mut self, now: Instant) {
        for tx in self.calls.ring_timeouts(now) {
            let Some(d) = self.calls.dialing.get_mut(&tx) else { continue };
            d.state = DialState::Cancelling;
            tracing::info!(participant = %d.id, "no answer in time: CANCEL");
            // The INVITE as it went, which may have moved to TCP for its size and back.
            let cancel = self.layer.client_request(tx).map_or_else(|| cancel_for(&d.invite), cancel_for);
            let peer = self.layer.client_peer(tx).unwrap_or(d.peer);
            match cancel.map(|c| self.layer.send_request(now, c, peer)) {
                Some(Ok(_)) => {}
                _ => self.dial_failed(tx, "no-answer"),
            }
        }
    }

    /// Cancels every call out (shutdown).
    pub(super) fn cancel_all_dialing(&mut self) {
        let txs: Vec<ClientTx> = self.calls.dialing.keys().copied().collect();
        for tx in txs {
            let now = self.now.at;
            if let Some(d) = self.calls.dialing.get(&tx) {
                let cancel = self.layer.client_request(tx).map_or_else(|| cancel_for(&d.invite), cancel_for);
                let peer = self.layer.client_peer(tx).unwrap_or(d.peer);
                if let Some(cancel) = cancel {
                    let _ = self.layer.send_request(now, cancel, peer);
                }
            }
            self.dial_failed(tx, "shutdown");
        }
    }
}

/// §9.1: a CANCEL matching the INVITE: same Request-URI, top Via, From, To, Call-ID, and
/// CSeq number.
fn cancel_for(invite: &rsip::Request) -> Option<rsip::Request> {
    let mut headers = rsip::Headers::default();
    let mut seq = None;
    for h in invite.headers.iter() {
        match h {
            Header::Via(_) if headers.iter().all(|h| !matches!(h, Header::Via(_))) => headers.push(h.clone()),
            Header::From(_) | Header::To(_) | Header::CallId(_) | Header::MaxForwards(_) => {
                headers.push(h.clone())
            }
            Header::Route(_) => headers.push(h.clone()),
            Header::CSeq(c) => seq = c.typed().ok().map(|c| c.seq),
            _ => {}
        }
    }
    headers.push(Header::CSeq(format!("{} CANCEL", seq?).into()));
    headers.push(Header::ContentLength(0.into()));
    Some(rsip::Request {
        method: Method::Cancel,
        uri: invite.uri.clone(),
        version: rsip::Version::V2,
        headers,
        body: Vec::new(),
    })
}

/// Digits with an optional leading `+`: what a trunk dials.
fn is_number(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or(s);
    !digits.is_empty()
        && digits.len() <= 32
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_copies_what_rfc3261_section_9_1_asks() {
        let invite = rsip::Request::try_from(
            "INVITE sip:2000@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;rport;branch=z9hG4bKabc\r\n\
             Max-Forwards: 70\r\nFrom: <sip:a@192.0.2.9>;tag=t1\r\nTo: <sip:2000@192.0.2.1>\r\n\
             Call-ID: c1\r\nCSeq: 2 INVITE\r\nContact: <sip:1000@192.0.2.9>\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        let cancel = cancel_for(&invite).unwrap();
        let text = String::from_utf8(request_bytes(&cancel)).unwrap();
        assert!(text.starts_with("CANCEL sip:2000@192.0.2.1 SIP/2.0\r\n"), "{text}");
        assert!(text.contains("branch=z9hG4bKabc"), "{text}");
        assert!(text.contains("CSeq: 2 CANCEL"), "{text}");
        assert!(text.contains("From: <sip:a@192.0.2.9>;tag=t1"), "{text}");
        assert!(!text.contains("Contact"), "{text}");
    }

    #[test]
    fn numbers_are_digits_with_an_optional_plus() {
        assert!(is_number("+15551230000"));
        assert!(is_number("1000"));
        assert!(!is_number("+"));
        assert!(!is_number("sip:1000@x"));
        assert!(!is_number("12a"));
    }
}
