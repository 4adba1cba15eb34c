//! Calls into conferences, inside the SIP core: the answer to an admitted INVITE, the dialog
//! and its in-dialog requests (ACK, BYE, re-INVITE, UPDATE, INFO), the IVR that asks for the
//! PIN, session timers, and the end of each call with its record.
//!
//! Every call is a [`Call`] in [`Calls`]; its media is a leg of the room's conference in the
//! media worker. A caller to a room with a PIN starts muted and deaf, hearing only the IVR's
//! prompts; the right PIN joins it to the mix.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mixer::codec::AudioCodec;
use mixer::conference::{LegConfig, LegStats};
use rsip::prelude::*;
use rsip::{Header, Method, StatusCode};
use sip_stack::dialog::session_timer::{
    self, Refresher, SessionTimer, SessionTimerPolicy, TimerAction, UasDecision,
};
use sip_stack::dialog::{Dialog, DialogId, OkAction, OkRetransmit};
use sip_stack::message::{response_bytes, InboundRequest, InboundResponse};
use sip_stack::name_addr::NameAddr;
use sip_stack::response::{push_header, response_to, set_body};
use sip_stack::sdp::sdes::{Key, Srtp};
use sip_stack::sdp::{self, AudioStream, Direction, LocalAudio, SdpError};
use sip_stack::transaction::{ClientTx, ServerTx, TxEvent};
use sip_stack::transport::{Peer, Transport};

use super::browsers::Browser;
use super::core::{new_tag, Core, ALLOW};
use super::dialout::Dialing;
use super::invite::{self, Admission};
use crate::calls::ivr::{PinBlock, PinEntry, PinGuard, PinSource, PinStep};
use crate::calls::{Cause, ConferenceView, ControlError, ParticipantAction, ParticipantView, RoomEvent};
use crate::config::SrtpMode;
use crate::limits::{shrink_sparse, shrink_sparse_set};
use crate::media::ports::PortPair;
use crate::media::{Audience, LegSetup, MediaCommand, MediaEvent, ParticipantId, Wire};
use crate::metrics::{CallLabels, RoomCodecLabels};
use crate::storage::{CallRecord, Direction as RecordDirection, Room, IN_PROGRESS};

/// Codecs we answer with, most preferred first: wideband before narrowband, and G.722 before
/// Opus where a phone has both (as good at a 16 kHz mix, and far cheaper to decode).
/// A call record the database refused is tried again after this, doubling up to
/// [`RECORD_RETRY_MAX`], until it is written.
const RECORD_RETRY_FIRST: Duration = Duration::from_millis(200);
const RECORD_RETRY_MAX: Duration = Duration::from_secs(10);

const CODECS: [sdp::Codec; 4] = [sdp::G722, sdp::OPUS, sdp::PCMU, sdp::PCMA];

/// Where a call is in its life.
#[derive(Debug)]
enum Stage {
    /// In the IVR, asked for the PIN.
    Pin(PinEntry),
    /// The last wrong PIN: the goodbye prompt plays, then BYE.
    Goodbye,
    Joined {
        moderator: bool,
    },
}

/// A 2xx to an INVITE being resent until its ACK (RFC 3261 §13.3.1.4).
#[derive(Debug)]
struct PendingOk {
    timer: OkRetransmit,
    to: Peer,
    bytes: Bytes,
}

/// One call: a dialog with a phone (or with the far end of a call out), and its leg in a
/// conference.
#[derive(Debug)]
pub struct Call {
    id: ParticipantId,
    direction: RecordDirection,
    /// For a call out: the transaction of our INVITE, whose 2xx retransmissions get ACKs.
    invite_tx: Option<ClientTx>,
    dialog: Dialog,
    /// Where the INVITE came from: in-dialog requests go back there (phones behind NAT).
    peer: Peer,
    via_host: String,
    room: Room,
    stage: Stage,
    ok: Option<PendingOk>,
    session: Option<SessionTimer>,
    session_interval: u32,
    local: LocalAudio,
    sdp_session: u64,
    sdp_version: u64,
    stream: AudioStream,
    codec: AudioCodec,
    peer_allows_update: bool,
    user: String,
    display_name: String,
    from_uri: String,
    to_uri: String,
    started_ms: i64,
    talking: bool,
    /// Packets from strangers the media worker dropped (source security).
    foreign_packets: u64,
    muted: bool,
    deaf: bool,
    on_hold: bool,
    stats: Option<LegStats>,
    /// Lost packets already counted in the metrics.
    lost_reported: u64,
    media: Media,
    /// Our re-INVITE (session refresh) is out: a re-INVITE from the phone now is glare.
    reinvite_pending: bool,
    /// Our offer within the dialog (a refresh re-INVITE, or the 2xx to an offerless
    /// re-INVITE), until its answer comes.
    reoffer: Option<Box<sdp::Session>>,
    /// A refresh refused with 491, to try again at this time (RFC 3261 §14.1).
    retry_refresh_at: Option<Instant>,
}

/// Where the call's media stands.
#[derive(Debug)]
enum Media {
    /// We offered in the 2xx (the INVITE had no SDP); the answer comes in the ACK.
    AwaitingAnswer { offer: Box<sdp::Session>, ports: PortPair },
    /// Negotiated; the sockets wait to go to the media worker.
    Pending(PortPair),
    /// The leg is in its conference.
    Running,
}

impl Call {
    pub(super) fn id(&self) -> ParticipantId {
        self.id
    }

    fn joined(&self) -> bool {
        matches!(self.stage, Stage::Joined { .. })
    }

    /// The call's record: open (`end` None) or ended at `end`'s time for its cause.
    pub(super) fn record(&self, end: Option<(i64, &str)>) -> CallRecord {
        CallRecord {
            leg_id: format!("{}-{}", self.dialog.id.call_id, self.dialog.id.local_tag),
            call_id: self.dialog.id.call_id.clone(),
            direction: self.direction,
            from_uri: self.from_uri.clone(),
            to_uri: self.to_uri.clone(),
            room_number: Some(self.room.number.clone()),
            started_at_ms: self.started_ms,
            answered_at_ms: Some(self.started_ms),
            ended_at_ms: end.map(|(at, _)| at),
            cause: end.map_or(IN_PROGRESS, |(_, cause)| cause).into(),
            codec: Some(self.codec.name().into()),
        }
    }

    fn view(&self) -> ParticipantView {
        let stats = self.stats.as_ref();
        let (received, lost) = stats.map_or((0, 0), |s| (s.received, s.lost));
        ParticipantView {
            id: self.id,
            display_name: self.display_name.clone(),
            user: self.user.clone(),
            codec: self.codec.name(),
            direction: direction_name(self.direction),
            state: if self.joined() { "joined" } else { "pin" },
            joined: self.joined(),
            moderator: matches!(self.stage, Stage::Joined { moderator: true }),
            talking: self.talking,
            muted: self.muted,
            deaf: self.deaf,
            on_hold: self.on_hold,
            encrypted: self.stream.srtp.is_some(),
            packet_loss: if received + lost == 0 { 0.0 } else { lost as f64 / (received + lost) as f64 },
            jitter_ms: stats.map_or(0.0, |s| s.jitter_ms),
            foreign_packets: self.foreign_packets,
            started_at_ms: self.started_ms,
        }
    }
}

/// An INVITE in admission.
struct Pending {
    /// Its 487, ready for a CANCEL (§9.2).
    terminated: rsip::Response,
    cancelled: bool,
}

/// Every call the core knows.
pub struct Calls {
    calls: HashMap<ParticipantId, Call>,
    by_dialog: HashMap<DialogId, ParticipantId>,
    /// INVITEs being admitted, and whether a CANCEL came meanwhile.
    pending: HashMap<ServerTx, Pending>,
    /// Our in-dialog requests in flight: session refreshes and BYEs.
    requests: HashMap<ClientTx, Outgoing>,
    /// Calls out not yet answered, by the transaction of their INVITE.
    pub(super) dialing: HashMap<ClientTx, Dialing>,
    /// Answered calls out: where their ACK went, to send it again on a retransmitted 2xx.
    pub(super) answered: HashMap<ClientTx, (Peer, Bytes)>,
    /// Browsers in rooms (see [`super::browsers`]).
    pub(super) browsers: HashMap<ParticipantId, Browser>,
    /// Participants who pressed `*`: the next digit is a command.
    star: HashSet<ParticipantId>,
    next_id: u64,
    pub(super) guard: PinGuard,
}

#[derive(Debug, Clone, Copy)]
enum Outgoing {
    Refresh { id: ParticipantId, invite_seq: Option<u32> },
    Bye,
}

impl Calls {
    pub fn new(pin_failures: u32, pin_room_failures: u32, pin_window: Duration) -> Calls {
        Calls {
            calls: HashMap::new(),
            by_dialog: HashMap::new(),
            pending: HashMap::new(),
            requests: HashMap::new(),
            dialing: HashMap::new(),
            answered: HashMap::new(),
            browsers: HashMap::new(),
            star: HashSet::new(),
            next_id: 1,
            guard: PinGuard::new(pin_failures, pin_room_failures, pin_window),
        }
    }

    /// Gives back what the tables grew to for a peak, once most of them stand empty.
    pub(super) fn compact(&mut self) {
        shrink_sparse(&mut self.calls);
        shrink_sparse(&mut self.by_dialog);
        shrink_sparse(&mut self.pending);
        shrink_sparse(&mut self.requests);
        shrink_sparse(&mut self.dialing);
        shrink_sparse(&mut self.answered);
        shrink_sparse(&mut self.browsers);
        shrink_sparse_set(&mut self.star);
    }

    pub(super) fn new_id(&mut self) -> ParticipantId {
        let id = ParticipantId(self.next_id);
        self.next_id += 1;
        id
    }

    pub(super) fn insert(&mut self, call: Call) {
        self.by_dialog.insert(call.dialog.id.clone(), call.id);
        self.calls.insert(call.id, call);
    }

    /// BYEs still waiting for their answer.
    pub fn byes_in_flight(&self) -> usize {
        self.requests.values().filter(|o| matches!(o, Outgoing::Bye)).count()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.calls
            .values()
            .flat_map(|c| {
                let pin = match &c.stage {
                    Stage::Pin(entry) => Some(entry.poll_timeout()),
                    _ => None,
                };
                [
                    c.ok.as_ref().and_then(|o| o.timer.poll_timeout()),
                    c.session.as_ref().map(|s| s.poll_timeout()),
                    pin,
                    c.retry_refresh_at,
                ]
            })
            .flatten()
            .chain(self.dialing.values().filter_map(Dialing::poll_timeout))
            .min()
    }

    fn in_room<'a>(&'a self, room: &'a str) -> impl Iterator<Item = &'a Call> + 'a {
        self.calls.values().filter(move |c| c.room.number == room)
    }

    /// Everyone a room's limit counts: calls (in the IVR too) and browsers.
    pub(super) fn occupancy(&self, room: &str) -> usize {
        self.in_room(room).count() + self.browsers.values().filter(|b| b.room.number == room).count()
    }

    /// Participants in a room's mix, other than `except`.
    pub(super) fn joined_in_room(&self, room: &str, except: ParticipantId) -> usize {
        let calls = self.in_room(room).filter(|c| c.joined() && c.id != except).count();
        let browsers =
            self.browsers.values().filter(|b| b.room.number == room && b.in_mix() && b.id != except).count();
        calls + browsers
    }

    /// What the API shows of one participant, call or browser.
    pub(super) fn view(&self, id: ParticipantId) -> Option<(String, ParticipantView)> {
        match (self.calls.get(&id), self.browsers.get(&id)) {
            (Some(call), _) => Some((call.room.number.clone(), call.view())),
            (_, Some(browser)) => Some((browser.room.number.clone(), browser.view())),
            _ => None,
        }
    }

    pub fn conferences(&self) -> Vec<ConferenceView> {
        let mut rooms: HashMap<&str, Vec<ParticipantView>> = HashMap::new();
        for call in self.calls.values() {
            rooms.entry(call.room.number.as_str()).or_default().push(call.view());
        }
        for browser in self.browsers.values() {
            rooms.entry(browser.room.number.as_str()).or_default().push(browser.view());
        }
        for d in self.dialing.values() {
            rooms.entry(d.room.number.as_str()).or_default().push(ParticipantView {
                id: d.id,
                display_name: d.target.clone(),
                user: d.trunk.clone().unwrap_or_default(),
                codec: d.early.as_ref().map_or("", |(_, codec)| codec.name()),
                direction: "outbound",
                state: d.state.as_str(),
                joined: false,
                moderator: false,
                talking: false,
                muted: false,
                deaf: false,
                on_hold: false,
                encrypted: false,
                packet_loss: 0.0,
                jitter_ms: 0.0,
                foreign_packets: 0,
                started_at_ms: d.started_ms,
            });
        }
        let mut views: Vec<ConferenceView> = rooms
            .into_iter()
            .map(|(room, mut participants)| {
                participants.sort_by_key(|p| p.id);
                ConferenceView { room: room.to_string(), participants }
            })
            .collect();
        views.sort_by(|a, b| a.room.cmp(&b.room));
        views
    }
}

impl Core {
    /// An INVITE outside any dialog: admission (auth, room) runs as a task.
    pub(super) fn on_new_invite(&mut self, tx: ServerTx, request: InboundRequest, from: Peer) {
        let Ok(permit) = self.pending.clone().try_acquire_owned() else {
            return self.overloaded(tx, &request);
        };
        let terminated =
            response_to(&request, StatusCode::RequestTerminated, Some(&new_tag()), self.ctx.server());
        self.calls.pending.insert(tx, Pending { terminated, cancelled: false });
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            invite::admit(ctx, tx, request, from).await;
            drop(permit);
        });
    }

    /// CANCEL before our answer (RFC 3261 §9.2): the CANCEL got its 200; the INVITE gets 487.
    pub(super) fn on_cancelled(&mut self, tx: ServerTx) {
        let Some(pending) = self.calls.pending.get_mut(&tx).filter(|p| !p.cancelled) else { return };
        pending.cancelled = true;
        let response = pending.terminated.clone();
        self.respond(tx, response);
        self.count_call("cancelled");
    }

    /// A refusal of an INVITE from admission, counted by its code.
    pub(super) fn on_admission_refused(
        &mut self,
        tx: ServerTx,
        response: rsip::Response,
        known_caller: bool,
    ) {
        if self.calls.pending.remove(&tx).is_some_and(|p| p.cancelled) {
            return;
        }
        let code = response.status_code.code();
        if !matches!(code, 401 | 407) {
            self.count_call(&code.to_string());
        }
        if known_caller {
            self.write_refusal(&response, None);
        }
        self.respond(tx, response);
    }

    pub(super) fn on_admitted(&mut self, admission: Admission) {
        let Admission { tx, request, from, room, user } = admission;
        match self.calls.pending.remove(&tx) {
            Some(p) if !p.cancelled => {}
            // Cancelled meanwhile (answered with 487), or the transaction is gone.
            _ => return,
        }
        let now = self.now.at;
        let refuse = |core: &mut Core, status: StatusCode, why: &str| {
            tracing::info!(room = %room.number, user, code = status.code(), why, "call refused");
            core.count_call(&status.code().to_string());
            let response = response_to(&request, status, Some(&new_tag()), core.ctx.server());
            core.write_refusal(&response, Some(&room.number));
            core.respond(tx, response);
        };
        if self.ctx.shared.is_draining() {
            return refuse(self, StatusCode::ServiceUnavailable, "shutting down");
        }
        let limit = room.max_participants.unwrap_or(self.ctx.shared.config.conference.max_participants);
        if self.calls.occupancy(&room.number) >= limit as usize {
            return refuse(self, StatusCode::BusyHere, "room full");
        }
        let has_pin = room.pin.is_some() || room.moderator_pin.is_some();
        let from_uri = request.envelope.from.uri.to_string();
        let guessing = pin_source(&user, &from_uri, from.addr.ip());
        match has_pin.then(|| self.calls.guard.blocked(now, &guessing, &room.number)).flatten() {
            Some(PinBlock::Source) => {
                return refuse(self, StatusCode::Forbidden, "too many wrong PINs from this caller")
            }
            Some(PinBlock::Room) => {
                return refuse(self, StatusCode::Forbidden, "too many wrong PINs for this room")
            }
            None => {}
        }
        // An INVITE without a body asks us to offer; the answer comes in the ACK (RFC 3261
        // §13.2.1, "late offer", common with trunks and PBXes).
        let offer = if request.request.body.is_empty() {
            None
        } else {
            match sdp::parse(&request.request.body) {
                Ok(offer) => Some(offer),
                Err(e) => {
                    tracing::info!(error = %e, "INVITE with a broken SDP offer");
                    return refuse(self, StatusCode::NotAcceptableHere, "SDP does not parse");
                }
            }
        };
        let policy = SessionTimerPolicy {
            min_se: 90,
            session_expires: self.ctx.shared.config.conference.session_expires_secs,
            max_session_expires: self.ctx.shared.config.conference.max_session_expires_secs,
        };
        let timer = session_timer::negotiate_uas(&request.request, &policy);
        if let UasDecision::TooSmall { .. } = timer {
            let mut response = response_to(
                &request,
                StatusCode::SessionIntervalTooSmall,
                Some(&new_tag()),
                self.ctx.server(),
            );
            for h in timer.response_headers() {
                push_header(&mut response, h);
            }
            self.count_call("422");
            return self.respond(tx, response);
        }
        let ports = match self.ports.allocate() {
            Ok(ports) => ports,
            Err(e) => {
                tracing::error!(error = %e, "no RTP port for a call");
                return refuse(self, StatusCode::ServiceUnavailable, "no RTP port");
            }
        };
        let advertised = self.advertised_ip(from.addr);
        let local = local_audio(advertised, ports.port, srtp_policy(self.ctx.shared.config.rtp.srtp));
        let sdp_session = rand::random::<u32>() as u64;
        let (body, stream, pending_media) = match offer {
            Some(offer) => match sdp::answer(&offer, &local, sdp_session, 1) {
                Ok((answer, stream)) => (answer, stream, None),
                Err(e) => {
                    tracing::info!(error = %e, "SDP offer refused");
                    let reason = match e {
                        SdpError::Srtp { .. } => "SRTP policy",
                        _ => "no codec in common",
                    };
                    return refuse(self, StatusCode::NotAcceptableHere, reason);
                }
            },
            None => {
                tracing::debug!("INVITE without SDP: offering in the 200, the answer comes in the ACK");
                let ours = sdp::offer(&local, sdp_session, 1);
                (ours.clone(), no_stream_yet(), Some(ours))
            }
        };
        let Some(codec) = audio_codec(&stream.codec) else {
            return refuse(self, StatusCode::NotAcceptableHere, "no codec in common");
        };
        let tag = new_tag();
        let contact = self.contact(&room.number, advertised, from.transport);
        let mut dialog = match Dialog::uas(&request, &tag, &contact, rand::random::<u16>() as u32) {
            Ok(dialog) => dialog,
            Err(e) => {
                tracing::info!(error = %e, "INVITE cannot make a dialog");
                return refuse(self, StatusCode::BadRequest, "no dialog");
            }
        };
        dialog.state = sip_stack::dialog::DialogState::Confirmed;

        let mut ok = response_to(&request, StatusCode::OK, Some(&tag), self.ctx.server());
        push_header(&mut ok, Header::Contact(format!("<{contact}>").into()));
        push_header(&mut ok, Header::Allow(ALLOW.into()));
        push_header(&mut ok, Header::Supported("timer".into()));
        let (session, session_interval) = match timer {
            UasDecision::Use { interval, refresher, .. } => {
                for h in timer.response_headers() {
                    push_header(&mut ok, h);
                }
                (Some(SessionTimer::new(now, interval, refresher == Refresher::Uas)), interval)
            }
            UasDecision::TooSmall { .. } => (None, 0),
        };
        set_body(&mut ok, "application/sdp", body.to_string().into_bytes());
        let to = self.layer.server_peer(tx).unwrap_or(from);
        let bytes = Bytes::from(response_bytes(&ok));
        self.respond(tx, ok);

        let id = self.calls.new_id();
        let on_hold = !stream.direction.sends();
        let started_ms = self.now.unix_ms;
        let from_header = &request.envelope.from;
        let call = Call {
            id,
            direction: RecordDirection::Inbound,
            invite_tx: None,
            dialog,
            peer: from,
            via_host: format!("{}:{}", advertised, self.sip_port(from.transport)),
            stage: if has_pin {
                let c = &self.ctx.shared.config.conference;
                Stage::Pin(PinEntry::new(
                    now,
                    room.pin.clone(),
                    room.moderator_pin.clone(),
                    c.pin_attempts,
                    Duration::from_secs(u64::from(c.pin_digit_timeout_secs)),
                ))
            } else {
                Stage::Joined { moderator: false }
            },
            room,
            ok: Some(PendingOk {
                timer: OkRetransmit::new(now, self.layer.config().t1, self.layer.config().t2),
                to,
                bytes,
            }),
            session,
            session_interval,
            local,
            sdp_session,
            sdp_version: 1,
            stream,
            codec,
            peer_allows_update: allows(&request.request.headers, "UPDATE"),
            user,
            display_name: from_header
                .display_name
                .clone()
                .map(|d| d.trim_matches('"').to_string())
                .unwrap_or_default(),
            from_uri: from_header.uri.to_string(),
            to_uri: request.envelope.to.uri.to_string(),
            started_ms,
            talking: false,
            foreign_packets: 0,
            muted: false,
            deaf: false,
            on_hold,
            stats: None,
            lost_reported: 0,
            reinvite_pending: false,
            reoffer: None,
            retry_refresh_at: None,
            media: match pending_media {
                Some(offer) => Media::AwaitingAnswer { offer: Box::new(offer), ports },
                None => Media::Pending(ports),
            },
        };
        tracing::info!(
            participant = %id, room = %call.room.number, user = %call.user, codec = codec.name(),
            pin = has_pin, "call answered"
        );
        self.calls.by_dialog.insert(call.dialog.id.clone(), id);
        let awaiting = matches!(call.media, Media::AwaitingAnswer { .. });
        // Written at the answer, so a crash from here on still leaves the call's record.
        self.write_record(call.record(None));
        self.calls.calls.insert(id, call);
        if !awaiting {
            self.start_media(id);
        }
    }

    /// The leg joins its conference's media, and the caller hears the PIN prompt or the room.
    pub(super) fn start_media(&mut self, id: ParticipantId) {
        let Some(call) = self.calls.calls.get_mut(&id) else { return };
        let Media::Pending(ports) = std::mem::replace(&mut call.media, Media::Running) else { return };
        let stream = &call.stream;
        let leg = LegSetup {
            id,
            room: call.room.number.clone(),
            config: leg_config(call.codec, stream),
            wire: Wire::Udp {
                rtp: ports.rtp,
                rtcp: (!stream.rtcp_mux).then_some(ports.rtcp),
                remote: stream.remote,
                remote_rtcp: stream.remote.and_then(crate::media::rtcp_beside),
            },
            srtp: stream.srtp,
            joined: call.joined(),
        };
        self.media.send(MediaCommand::Add(Box::new(leg)));
        if call.on_hold {
            self.media.send(MediaCommand::Update {
                id,
                config: leg_config(call.codec, stream),
                remote: stream.remote,
                on_hold: true,
                srtp: stream.srtp,
            });
        }
        let labels = RoomCodecLabels { room: call.room.number.clone(), codec: call.codec.name().into() };
        self.ctx.shared.metrics.active_legs.get_or_create(&labels).inc();
        let room = call.room.number.clone();
        if call.joined() {
            self.announce_join(id, &room);
            self.publish(id);
        } else {
            self.media.send(MediaCommand::Play(Audience::Leg(id), self.prompts.enter_pin.clone()));
        }
    }

    /// Tones for the room, and the "first participant" prompt for a caller alone.
    pub(super) fn announce_join(&mut self, id: ParticipantId, room: &str) {
        if self.calls.joined_in_room(room, id) == 0 {
            self.media.send(MediaCommand::Play(Audience::Leg(id), self.prompts.first_participant.clone()));
        } else {
            self.media
                .send(MediaCommand::Play(Audience::Room(room.to_string()), self.prompts.join_tone.clone()));
        }
    }

    /// A request inside a dialog, or claiming to be (it has a To tag).
    pub(super) fn on_in_dialog(&mut self, tx: ServerTx, request: InboundRequest, from: Peer) {
        let method = request.request.method;
        let id = DialogId::of_request(&request).and_then(|d| self.calls.by_dialog.get(&d).copied());
        let Some(id) = id else {
            let response =
                response_to(&request, StatusCode::CallTransactionDoesNotExist, None, self.ctx.server());
            return self.respond(tx, response);
        };
        let now = self.now.at;
        let Some(call) = self.calls.calls.get_mut(&id) else { return };
        if let Err(e) = call.dialog.on_request(&request) {
            tracing::debug!(participant = %id, error = %e, "in-dialog request refused");
            let response = response_to(&request, StatusCode::ServerInternalError, None, self.ctx.server());
            return self.respond(tx, response);
        }
        let glare = call.reinvite_pending;
        let ok = |core: &Core| response_to(&request, StatusCode::OK, None, core.ctx.server());
        match method {
            // §14.2: our own re-INVITE is out; the phone tries again after its glare delay.
            Method::Invite if glare => {
                let response = response_to(&request, StatusCode::RequestPending, None, self.ctx.server());
                self.respond(tx, response);
            }
            Method::Bye => {
                self.respond(tx, ok(self));
                self.end_call(id, Cause::Normal, false);
            }
            Method::Invite | Method::Update => self.on_offer(tx, id, &request, from, now),
            Method::Info => {
                let digit = info_digit(&request);
                self.respond(tx, ok(self));
                if let Some(digit) = digit {
                    self.on_digit(id, digit, now);
                }
            }
            Method::Options => {
                let mut response = ok(self);
                push_header(&mut response, Header::Allow(ALLOW.into()));
                self.respond(tx, response);
            }
            _ => {
                let mut response =
                    response_to(&request, StatusCode::MethodNotAllowed, None, self.ctx.server());
                push_header(&mut response, Header::Allow(ALLOW.into()));
                self.respond(tx, response);
            }
        }
    }

    /// A re-INVITE or UPDATE: a session refresh, and maybe a new offer (hold, resume, codec
    /// change, new address).
    fn on_offer(
        &mut self,
        tx: ServerTx,
        id: ParticipantId,
        request: &InboundRequest,
        from: Peer,
        now: Instant,
    ) {
        let server = self.ctx.server().map(str::to_string);
        let Some(call) = self.calls.calls.get_mut(&id) else { return };
        let method = request.request.method;
        let mut response = response_to(request, StatusCode::OK, None, server.as_deref());
        push_header(&mut response, Header::Contact(format!("<{}>", call.dialog_contact()).into()));
        push_header(&mut response, Header::Allow(ALLOW.into()));
        if let Some(session) = &mut call.session {
            let policy = SessionTimerPolicy {
                min_se: 90,
                session_expires: call.session_interval,
                max_session_expires: self.ctx.shared.config.conference.max_session_expires_secs,
            };
            if let UasDecision::Use { interval, refresher, .. } =
                session_timer::negotiate_uas(&request.request, &policy)
            {
                session.refreshed(now, interval, refresher == Refresher::Uas);
                call.session_interval = interval;
                for h in (UasDecision::Use { interval, refresher, require_timer: false }).response_headers() {
                    push_header(&mut response, h);
                }
            }
        }
        let mut update = None;
        let srtp_mode = self.ctx.shared.config.rtp.srtp;
        if !request.request.body.is_empty() {
            let answered = sdp::parse(&request.request.body).and_then(|offer| {
                call.sdp_version += 1;
                let answered = sdp::answer(&offer, &call.local, call.sdp_session, call.sdp_version)?;
                // Another suite means new contexts: under our old key they would use its
                // keystream again (RFC 3711 §9.1), so a new key goes with it.
                let suite = |s: &AudioStream| s.srtp.map(|k| k.suite);
                if suite(&answered.1).is_some()
                    && suite(&call.stream).is_some_and(|old| Some(old) != suite(&answered.1))
                {
                    call.local.srtp = srtp_policy(srtp_mode);
                    return sdp::answer(&offer, &call.local, call.sdp_session, call.sdp_version);
                }
                Ok(answered)
            });
            let (answer, stream) = match answered {
                Ok(answered) => answered,
                Err(e) => {
                    tracing::info!(participant = %id, error = %e, "re-offer refused");
                    let response =
                        response_to(request, StatusCode::NotAcceptableHere, None, server.as_deref());
                    return self.respond(tx, response);
                }
            };
            let Some(codec) = audio_codec(&stream.codec) else { return };
            let on_hold = !stream.direction.sends();
            if on_hold != call.on_hold {
                tracing::info!(participant = %id, on_hold, "hold changed");
            }
            call.on_hold = on_hold;
            call.codec = codec;
            update = Some(MediaCommand::Update {
                id,
                config: leg_config(codec, &stream),
                remote: stream.remote,
                on_hold,
                srtp: stream.srtp,
            });
            call.stream = stream;
            set_body(&mut response, "application/sdp", answer.to_string().into_bytes());
        } else if method == Method::Invite {
            // An offerless re-INVITE: we offer our current stream; its answer comes in the ACK.
            call.sdp_version += 1;
            let mut local = call.local.clone();
            local.codecs = vec![*sdp_codec(call.codec)];
            let offer = sdp::reoffer(&local, &call.stream, call.sdp_session, call.sdp_version);
            set_body(&mut response, "application/sdp", offer.to_string().into_bytes());
            call.reoffer = Some(Box::new(offer));
        }
        if method == Method::Invite {
            let to = self.layer.server_peer(tx).unwrap_or(from);
            call.ok = Some(PendingOk {
                timer: OkRetransmit::new(now, self.layer.config().t1, self.layer.config().t2),
                to,
                bytes: Bytes::from(response_bytes(&response)),
            });
        }
        self.respond(tx, response);
        if let Some(update) = update {
            self.media.send(update);
        }
    }

    /// The ACK of our 2xx (it has no transaction of its own); after a late offer, it carries
    /// the answer.
    pub(super) fn on_ack(&mut self, request: &InboundRequest) {
        let id = DialogId::of_request(request).and_then(|d| self.calls.by_dialog.get(&d).copied());
        let Some(id) = id else { return };
        let Some(call) = self.calls.calls.get_mut(&id) else { return };
        call.ok = None;
        if let Some(offer) = call.reoffer.take() {
            return self.take_reanswer(id, &offer, &request.request.body);
        }
        let Media::AwaitingAnswer { .. } = call.media else { return };
        let Media::AwaitingAnswer { offer, ports } = std::mem::replace(&mut call.media, Media::Running)
        else {
            return;
        };
        let answered = sdp::parse(&request.request.body)
            .and_then(|answer| sdp::read_answer(&offer, &answer, &call.local))
            .ok()
            .and_then(|stream| audio_codec(&stream.codec).map(|codec| (stream, codec)));
        match answered {
            Some((stream, codec)) => {
                call.on_hold = !stream.direction.sends();
                call.codec = codec;
                call.stream = stream;
                call.media = Media::Pending(ports);
                self.start_media(id);
            }
            None => {
                tracing::info!(participant = %id, "no usable SDP answer in the ACK: hanging up");
                self.end_call(id, Cause::BadSdp, true);
            }
        }
    }

    /// Answers to our INVITEs, BYEs and session refreshes; false when the event is not ours.
    pub(super) fn on_client_event(&mut self, event: &TxEvent) -> bool {
        if self.on_dial_event(event) {
            return true;
        }
        let (tx, response) = match event {
            TxEvent::Response { tx, response } => (*tx, Some(response)),
            TxEvent::Timeout { tx } | TxEvent::TransportError { tx } => (*tx, None),
            _ => return false,
        };
        let Some(&outgoing) = self.calls.requests.get(&tx) else { return false };
        let code = response.map(|r| r.response.status_code.code());
        if code.is_none_or(|c| c >= 200) {
            self.calls.requests.remove(&tx);
        }
        if let Outgoing::Refresh { id, invite_seq } = outgoing {
            if code.is_none_or(|c| c >= 200) {
                if let Some(call) = self.calls.calls.get_mut(&id) {
                    call.reinvite_pending = false;
                    if !matches!(code, Some(200..=299)) {
                        // Refused: no answer to our re-offer will come.
                        call.reoffer = None;
                    }
                }
            }
            match (code, response) {
                (Some(200..=299), Some(response)) => self.refreshed(id, invite_seq, response),
                (Some(100..=199), _) => {}
                // Glare (RFC 3261 §14.1): both sides re-INVITEd; ours goes again after a delay.
                (Some(491), _) => {
                    if let Some(call) = self.calls.calls.get_mut(&id) {
                        let owns_call_id = call.direction == RecordDirection::Outbound;
                        let mut rng = sip_stack::rng::Rng::new(rand::random());
                        let delay = sip_stack::dialog::glare_delay(owns_call_id, &mut rng);
                        tracing::debug!(participant = %id, ?delay, "re-INVITE glare: retrying");
                        call.retry_refresh_at = Some(self.now.at + delay);
                    }
                }
                // §10 of RFC 4028: a refresh answered 408 or 481 ends the session.
                (Some(408 | 481) | None, _) => self.end_call(id, Cause::SessionExpired, true),
                _ => tracing::info!(participant = %id, ?code, "session refresh refused"),
            }
        }
        true
    }

    fn refreshed(&mut self, id: ParticipantId, invite_seq: Option<u32>, response: &InboundResponse) {
        let now = self.now.at;
        let Some(call) = self.calls.calls.get_mut(&id) else { return };
        let (interval, refresher) = session_timer::from_response(&response.response)
            .unwrap_or((call.session_interval, Refresher::Uac));
        if let Some(session) = &mut call.session {
            // We sent the refresh, so we are the UAC of this transaction.
            session.refreshed(now, interval, refresher == Refresher::Uac);
        }
        if let Some(seq) = invite_seq {
            let branch = new_branch();
            let via = call.via();
            let ack = call.dialog.ack(seq, &via, &branch);
            let bytes = Bytes::from(sip_stack::message::request_bytes(&ack));
            self.layer.send_stateless(call.peer, bytes);
            if let Some(offer) = call.reoffer.take() {
                self.take_reanswer(id, &offer, &response.response.body);
            }
        }
    }

    /// The answer to our offer within the dialog: new SRTP keys (a phone may re-key in any
    /// answer) or a new address reach the media worker.
    fn take_reanswer(&mut self, id: ParticipantId, offer: &sdp::Session, body: &[u8]) {
        let Some(call) = self.calls.calls.get_mut(&id) else { return };
        let answered = sdp::parse(body).and_then(|answer| sdp::read_answer(offer, &answer, &call.local));
        let stream = match answered {
            Ok(stream) => stream,
            Err(e) => {
                return tracing::warn!(participant = %id, error = %e, "answer to our re-offer not taken")
            }
        };
        if (stream.srtp, stream.remote) == (call.stream.srtp, call.stream.remote) {
            return;
        }
        call.stream.srtp = stream.srtp;
        call.stream.remote = stream.remote;
        self.media.send(MediaCommand::Update {
            id,
            config: leg_config(call.codec, &call.stream),
            remote: call.stream.remote,
            on_hold: call.on_hold,
            srtp: call.stream.srtp,
        });
    }

    /// A digit from RFC 4733, SIP INFO or in-band detection: the PIN in the IVR, a command
    /// in the room.
    fn on_digit(&mut self, id: ParticipantId, digit: char, now: Instant) {
        if let Some(Call { stage: Stage::Pin(entry), .. }) = self.calls.calls.get_mut(&id) {
            let step = entry.digit(now, digit);
            return self.pin_step(id, step, now);
        }
        self.room_command(id, digit);
    }

    /// In the room, `*6` mutes or unmutes oneself (as on most bridges); other digits do
    /// nothing.
    fn room_command(&mut self, id: ParticipantId, digit: char) {
        let starred = self.calls.star.remove(&id);
        if digit == '*' {
            self.calls.star.insert(id);
            return;
        }
        let muted = match (self.calls.calls.get(&id), self.calls.browsers.get(&id)) {
            (Some(call), _) if call.joined() => call.muted,
            (_, Some(browser)) => browser.muted,
            _ => return,
        };
        tracing::debug!(participant = %id, %digit, starred, "digit in the room");
        if starred && digit == '6' {
            let Some((room, _)) = self.calls.view(id) else { return };
            let _ = self.participant_action(&room, id, ParticipantAction::Mute(!muted));
        }
    }

    fn pin_step(&mut self, id: ParticipantId, step: PinStep, now: Instant) {
        let Some(call) = self.calls.calls.get_mut(&id) else { return };
        let source = pin_source(&call.user, &call.from_uri, call.peer.addr.ip());
        match step {
            PinStep::More => {}
            PinStep::Wrong { left } => {
                tracing::info!(participant = %id, left, "wrong PIN");
                self.calls.guard.failure(now, source, &call.room.number);
                self.media.send(MediaCommand::Play(Audience::Leg(id), self.prompts.wrong_pin.clone()));
            }
            PinStep::Failed => {
                tracing::info!(participant = %id, "wrong PIN, no attempts left: goodbye");
                self.calls.guard.failure(now, source, &call.room.number);
                call.stage = Stage::Goodbye;
                self.media.send(MediaCommand::Play(Audience::Leg(id), self.prompts.goodbye.clone()));
            }
            PinStep::Accepted { moderator } => {
                tracing::info!(participant = %id, moderator, room = %call.room.number, "PIN accepted: joined");
                call.stage = Stage::Joined { moderator };
                let room = call.room.number.clone();
                self.media.send(MediaCommand::Join(id));
                // A mute or deafening from the API while in the IVR still holds.
                if call.muted {
                    self.media.send(MediaCommand::SetMuted(id, true));
                }
                if call.deaf {
                    self.media.send(MediaCommand::SetDeaf(id, true));
                }
                self.announce_join(id, &room);
                self.publish(id);
            }
        }
    }

    pub(super) fn on_media_event(&mut self, event: MediaEvent) {
        let now = self.now.at;
        match event {
            MediaEvent::Dtmf { id, digit } => self.on_digit(id, digit, now),
            MediaEvent::Talking { id, talking } => {
                if let Some(call) = self.calls.calls.get_mut(&id) {
                    call.talking = talking;
                }
                if let Some(browser) = self.calls.browsers.get_mut(&id) {
                    browser.talking = talking;
                }
                self.publish(id);
            }
            MediaEvent::PromptFinished { id } => {
                let Some(call) = self.calls.calls.get_mut(&id) else { return };
                match &mut call.stage {
                    Stage::Goodbye => self.end_call(id, Cause::PinFailed, true),
                    Stage::Pin(entry) => entry.restart_timer(now),
                    Stage::Joined { .. } => {}
                }
            }
            MediaEvent::RtpTimeout { id } => {
                tracing::info!(participant = %id, "no RTP: hanging up");
                self.end_call(id, Cause::RtpTimeout, true);
                self.end_browser(id, Cause::RtpTimeout, true);
            }
            MediaEvent::HoldTimeout { id } => {
                tracing::info!(participant = %id, "on hold too long: hanging up");
                self.end_call(id, Cause::HoldTimeout, true);
            }
            MediaEvent::Stats { id, stats, foreign_packets } => {
                let (room, codec, lost_reported, figures) =
                    match (self.calls.calls.get_mut(&id), self.calls.browsers.get_mut(&id)) {
                        (Some(call), _) => {
                            (&call.room.number, call.codec.name(), &mut call.lost_reported, &mut call.stats)
                        }
                        (_, Some(b)) => (&b.room.number, "opus", &mut b.lost_reported, &mut b.stats),
                        _ => return,
                    };
                let labels = RoomCodecLabels { room: room.clone(), codec: codec.into() };
                let metrics = &self.ctx.shared.metrics;
                if stats.lost > *lost_reported {
                    metrics.rtp_lost_packets.get_or_create(&labels).inc_by(stats.lost - *lost_reported);
                    *lost_reported = stats.lost;
                }
                metrics.rtp_jitter_seconds.get_or_create(&labels).observe(stats.jitter_ms / 1000.0);
                *figures = Some(stats);
                if let Some(call) = self.calls.calls.get_mut(&id) {
                    call.talking = stats.talking;
                    call.foreign_packets = foreign_packets;
                }
            }
        }
    }

    pub(super) fn handle_calls_timeout(&mut self, now: Instant) {
        let mut resend = Vec::new();
        let mut end = Vec::new();
        let mut refresh = Vec::new();
        let mut pin = Vec::new();
        for call in self.calls.calls.values_mut() {
            if let Some(ok) = &mut call.ok {
                match ok.timer.handle_timeout(now) {
                    Some(OkAction::Resend) => resend.push((ok.to, ok.bytes.clone())),
                    Some(OkAction::GiveUp) => end.push((call.id, Cause::NoAck)),
                    None => {}
                }
            }
            if call.retry_refresh_at.is_some_and(|at| at <= now) {
                call.retry_refresh_at = None;
                refresh.push(call.id);
            }
            if let Some(session) = &mut call.session {
                match session.handle_timeout(now) {
                    Some(TimerAction::Refresh) => refresh.push(call.id),
                    Some(TimerAction::Expired) => end.push((call.id, Cause::SessionExpired)),
                    None => {}
                }
            }
            if let Stage::Pin(entry) = &mut call.stage {
                if let Some(step) = entry.handle_timeout(now) {
                    pin.push((call.id, step));
                }
            }
        }
        for (to, bytes) in resend {
            self.layer.send_stateless(to, bytes);
        }
        for id in refresh {
            self.send_refresh(id, now);
        }
        for (id, step) in pin {
            self.pin_step(id, step, now);
        }
        for (id, cause) in end {
            self.end_call(id, cause, true);
        }
        self.handle_dial_timeouts(now);
    }

    /// RFC 4028 §7.4: we refresh with UPDATE where the phone allows it, else re-INVITE.
    fn send_refresh(&mut self, id: ParticipantId, now: Instant) {
        let Some(call) = self.calls.calls.get_mut(&id) else { return };
        let via = call.via();
        let method = if call.peer_allows_update { Method::Update } else { Method::Invite };
        let mut request = call.dialog.request(method, &via, &new_branch());
        let seq = request.cseq_header().ok().and_then(|c| c.typed().ok()).map(|c| c.seq);
        request.headers.retain(|h| !matches!(h, Header::ContentLength(_)));
        request.headers.push(Header::Other(
            "Session-Expires".into(),
            format!("{};refresher=uac", call.session_interval),
        ));
        request.headers.push(Header::Supported("timer".into()));
        if method == Method::Invite {
            call.sdp_version += 1;
            let mut local = call.local.clone();
            local.codecs = vec![*sdp_codec(call.codec)];
            if call.on_hold {
                local.direction = call.stream.direction;
            }
            let offer = sdp::reoffer(&local, &call.stream, call.sdp_session, call.sdp_version);
            let body = offer.to_string().into_bytes();
            call.reoffer = Some(Box::new(offer));
            request.headers.push(Header::ContentType("application/sdp".into()));
            request.headers.push(Header::ContentLength((body.len() as u32).into()));
            request.body = body;
        } else {
            request.headers.push(Header::ContentLength(0.into()));
        }
        match self.layer.send_request(now, request, call.peer) {
            Ok(tx) => {
                let invite_seq = (method == Method::Invite).then_some(seq).flatten();
                call.reinvite_pending = method == Method::Invite;
                self.calls.requests.insert(tx, Outgoing::Refresh { id, invite_seq });
            }
            Err(e) => tracing::warn!(participant = %id, error = %e, "session refresh not sent"),
        }
    }

    /// Ends a call: BYE to the phone when `send_bye`, the leg out of the mix, the record
    /// written.
    pub(super) fn end_call(&mut self, id: ParticipantId, cause: Cause, send_bye: bool) {
        let Some(mut call) = self.calls.calls.remove(&id) else { return };
        self.calls.by_dialog.remove(&call.dialog.id);
        if let Some(tx) = call.invite_tx {
            self.calls.answered.remove(&tx);
        }
        if send_bye {
            let via = call.via();
            let bye = call.dialog.request(Method::Bye, &via, &new_branch());
            match self.layer.send_request(self.now.at, bye, call.peer) {
                Ok(tx) => {
                    self.calls.requests.insert(tx, Outgoing::Bye);
                }
                Err(e) => tracing::warn!(participant = %id, error = %e, "BYE not sent"),
            }
        }
        let running = matches!(call.media, Media::Running);
        if running {
            self.media.send(MediaCommand::Remove(id));
            let labels = RoomCodecLabels { room: call.room.number.clone(), codec: call.codec.name().into() };
            self.ctx.shared.metrics.active_legs.get_or_create(&labels).dec();
        }
        if call.joined() && self.calls.joined_in_room(&call.room.number, id) > 0 {
            self.media.send(MediaCommand::Play(
                Audience::Room(call.room.number.clone()),
                self.prompts.leave_tone.clone(),
            ));
        }
        self.count_call(cause.as_str());
        self.calls.star.remove(&id);
        self.publish_left(id, &call.room.number);
        tracing::info!(participant = %id, room = %call.room.number, cause = cause.as_str(), "call ended");
        self.write_record(call.record(Some((self.now.unix_ms, cause.as_str()))));
        call.ok = None;
    }

    /// Writes a call record in the background, trying again until the database takes it
    /// (a record is never only logged); shutdown waits for every write.
    pub(super) fn write_record(&mut self, record: CallRecord) {
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

    /// The record of a call refused with `response` (404, 486, 488, 403…): the response
    /// copies the request's From, To and Call-ID.
    pub(super) fn write_refusal(&mut self, response: &rsip::Response, room: Option<&str>) {
        let header = |pick: fn(&Header) -> Option<&str>| response.headers.iter().find_map(pick).unwrap_or("");
        let uri = |value: &str| NameAddr::parse(value).map(|n| n.uri.to_string()).unwrap_or_default();
        let call_id = header(|h| match h {
            Header::CallId(c) => Some(c.value()),
            _ => None,
        });
        let to = NameAddr::parse(header(|h| match h {
            Header::To(t) => Some(t.value()),
            _ => None,
        }));
        let now = self.now.unix_ms;
        self.write_record(CallRecord {
            leg_id: format!("{call_id}-{}", to.as_ref().ok().and_then(|t| t.tag()).unwrap_or("")),
            call_id: call_id.to_string(),
            direction: RecordDirection::Inbound,
            from_uri: uri(header(|h| match h {
                Header::From(f) => Some(f.value()),
                _ => None,
            })),
            to_uri: to.map(|t| t.uri.to_string()).unwrap_or_default(),
            room_number: room.map(str::to_string),
            started_at_ms: now,
            answered_at_ms: None,
            ended_at_ms: Some(now),
            cause: response.status_code.code().to_string(),
            codec: None,
        });
    }

    /// The call an answered call out becomes; `media` is the negotiated stream, or `None`
    /// when the answer was unusable (the call is then hung up at once).
    pub(super) fn outbound_call(
        &mut self,
        invite_tx: ClientTx,
        d: Dialing,
        dialog: Dialog,
        response: &InboundResponse,
        media: Option<(AudioStream, AudioCodec)>,
    ) -> Call {
        let now = self.now.at;
        let (stream, codec) = media.unwrap_or_else(|| (no_stream_yet(), AudioCodec::G722));
        // RFC 4028 §7.2: the 2xx says who refreshes; we asked to be the refresher.
        let timer = session_timer::from_response(&response.response);
        Call {
            id: d.id,
            direction: RecordDirection::Outbound,
            invite_tx: Some(invite_tx),
            peer: d.peer,
            via_host: d.via_host,
            stage: Stage::Joined { moderator: false },
            ok: None,
            session: timer
                .map(|(interval, refresher)| SessionTimer::new(now, interval, refresher == Refresher::Uac)),
            session_interval: timer.map_or(0, |(interval, _)| interval),
            local: d.local,
            sdp_session: d.sdp_session,
            sdp_version: 1,
            on_hold: !stream.direction.sends(),
            stream,
            codec,
            peer_allows_update: allows(&response.response.headers, "UPDATE"),
            user: d.trunk.unwrap_or_default(),
            display_name: d.target,
            from_uri: d
                .invite
                .headers
                .iter()
                .find_map(|h| match h {
                    Header::From(f) => f.typed().ok().map(|f| f.uri.to_string()),
                    _ => None,
                })
                .unwrap_or_default(),
            to_uri: d.invite.uri.to_string(),
            started_ms: d.started_ms,
            talking: false,
            foreign_packets: 0,
            muted: false,
            deaf: false,
            stats: None,
            lost_reported: 0,
            reinvite_pending: false,
            reoffer: None,
            retry_refresh_at: None,
            // After early media the leg is in the mix already.
            media: match d.ports {
                Some(ports) => Media::Pending(ports),
                None => Media::Running,
            },
            room: d.room,
            dialog,
        }
    }

    /// Hangs up every call, and cancels every call out (shutdown).
    pub(super) fn end_all_calls(&mut self, cause: Cause) {
        self.cancel_all_dialing();
        let ids: Vec<ParticipantId> = self.calls.calls.keys().copied().collect();
        for id in ids {
            self.end_call(id, cause, true);
        }
        let ids: Vec<ParticipantId> = self.calls.browsers.keys().copied().collect();
        for id in ids {
            self.end_browser(id, cause, true);
        }
    }

    /// Mute, deafen, or kick a participant from the API.
    pub(super) fn participant_action(
        &mut self,
        room: &str,
        id: ParticipantId,
        action: ParticipantAction,
    ) -> Result<Option<ParticipantView>, ControlError> {
        if self.calls.browsers.get(&id).is_some_and(|b| b.room.number == room) {
            return Ok(self.browser_action(id, action));
        }
        let Some(call) = self.calls.calls.get_mut(&id).filter(|c| c.room.number == room) else {
            return Err(ControlError::NoSuchParticipant);
        };
        match action {
            ParticipantAction::Mute(muted) => {
                call.muted = muted;
                self.media.send(MediaCommand::SetMuted(id, muted || !call.joined()));
            }
            ParticipantAction::Deaf(deaf) => {
                call.deaf = deaf;
                self.media.send(MediaCommand::SetDeaf(id, deaf || !call.joined()));
            }
            ParticipantAction::Kick => {
                self.end_call(id, Cause::Kicked, true);
                return Ok(None);
            }
        }
        self.publish(id);
        Ok(self.calls.view(id).map(|(_, view)| view))
    }

    fn browser_action(&mut self, id: ParticipantId, action: ParticipantAction) -> Option<ParticipantView> {
        let browser = self.calls.browsers.get_mut(&id)?;
        match action {
            ParticipantAction::Mute(muted) => {
                browser.muted = muted;
                self.media.send(MediaCommand::SetMuted(id, muted));
            }
            ParticipantAction::Deaf(deaf) => {
                browser.deaf = deaf;
                self.media.send(MediaCommand::SetDeaf(id, deaf));
            }
            ParticipantAction::Kick => {
                self.end_browser(id, Cause::Kicked, true);
                return None;
            }
        }
        self.publish(id);
        self.calls.view(id).map(|(_, view)| view)
    }

    /// Tells the room's pages how a participant now stands.
    pub(super) fn publish(&self, id: ParticipantId) {
        if let Some((room, participant)) = self.calls.view(id) {
            // No page listening is no error.
            self.ctx.shared.publish_room_event(RoomEvent::Participant { room, participant });
        }
    }

    pub(super) fn publish_left(&self, id: ParticipantId, room: &str) {
        self.ctx.shared.publish_room_event(RoomEvent::Left { room: room.to_string(), id });
    }

    pub(super) fn count_call(&self, result: &str) {
        self.ctx.shared.metrics.calls.get_or_create(&CallLabels { result: result.into() }).inc();
    }

    /// The address to put in SDP and Contact for a peer at `peer`.
    pub(super) fn advertised_ip(&self, peer: SocketAddr) -> IpAddr {
        let config = &self.ctx.shared.config;
        config
            .sip
            .public_address
            .or((!config.rtp.address.is_unspecified()).then_some(config.rtp.address))
            .or_else(|| super::trunks::route_source(peer))
            .unwrap_or(config.rtp.address)
    }

    pub(super) fn sip_port(&self, transport: Transport) -> u16 {
        let config = &self.ctx.shared.config.sip;
        match transport {
            Transport::Udp => self.transports.udp_local_addr().map_or(5060, |a| a.port()),
            Transport::Tcp => config.tcp.first().map_or(5060, |a| a.port()),
            Transport::Tls => config.tls.first().map_or(5061, |a| a.port()),
        }
    }

    fn contact(&self, user: &str, ip: IpAddr, transport: Transport) -> String {
        let host = SocketAddr::new(ip, self.sip_port(transport));
        format!("sip:{user}@{host}{}", transport.uri_param())
    }
}

impl Call {
    fn via(&self) -> String {
        format!("SIP/2.0/{} {};rport", self.peer.transport.via_token(), self.via_host)
    }

    fn dialog_contact(&self) -> String {
        format!("sip:{}@{}{}", self.room.number, self.via_host, self.peer.transport.uri_param())
    }
}

/// Our side of a call's audio: every codec we take, 20 ms, both ways; SRTP as `srtp` says.
pub(super) fn local_audio(address: IpAddr, port: u16, srtp: Srtp) -> LocalAudio {
    LocalAudio { address, port, codecs: CODECS.to_vec(), ptime: 20, direction: Direction::SendRecv, srtp }
}

/// What the configuration allows of SRTP, with a fresh key we would send with.
pub(super) fn srtp_policy(mode: SrtpMode) -> Srtp {
    let key = || Key(rand::random());
    match mode {
        SrtpMode::Off => Srtp::Off,
        SrtpMode::Optional => Srtp::Optional(key()),
        SrtpMode::Required => Srtp::Required(key()),
    }
}

/// The stream of a call whose SDP answer is not in yet: our first choice, not sending.
fn no_stream_yet() -> AudioStream {
    AudioStream {
        mline: 0,
        remote: None,
        codec: CODECS[0],
        payload_type: CODECS[0].payload_type(),
        fmtp: None,
        telephone_event: None,
        direction: Direction::Inactive,
        ptime: None,
        rtcp_mux: false,
        srtp: None,
    }
}

pub(super) fn new_branch() -> String {
    format!("z9hG4bK{:016x}", rand::random::<u64>())
}

fn direction_name(direction: RecordDirection) -> &'static str {
    match direction {
        RecordDirection::Inbound => "inbound",
        RecordDirection::Outbound => "outbound",
    }
}

fn allows(headers: &rsip::Headers, method: &str) -> bool {
    headers.iter().any(|h| match h {
        Header::Allow(a) => a.value().split(',').any(|m| m.trim().eq_ignore_ascii_case(method)),
        _ => false,
    })
}

pub(super) fn audio_codec(codec: &sdp::Codec) -> Option<AudioCodec> {
    match *codec {
        c if c == sdp::PCMU => Some(AudioCodec::Pcmu),
        c if c == sdp::PCMA => Some(AudioCodec::Pcma),
        c if c == sdp::G722 => Some(AudioCodec::G722),
        c if c == sdp::OPUS => Some(AudioCodec::Opus),
        _ => None,
    }
}

fn sdp_codec(codec: AudioCodec) -> &'static sdp::Codec {
    match codec {
        AudioCodec::Pcmu => &sdp::PCMU,
        AudioCodec::Pcma => &sdp::PCMA,
        AudioCodec::G722 => &sdp::G722,
        AudioCodec::Opus => &sdp::OPUS,
    }
}

pub fn leg_config(codec: AudioCodec, stream: &AudioStream) -> LegConfig {
    LegConfig {
        codec,
        payload_type: stream.payload_type,
        telephone_event: stream.telephone_event,
        // Without telephone-event, digits can only arrive as tones.
        inband_dtmf: stream.telephone_event.is_none(),
        ssrc: rand::random(),
        first_seq: rand::random(),
        first_timestamp: rand::random(),
        // What the phone asked to receive; Opus stays at 20 ms.
        ptime: match stream.ptime {
            Some(p @ (10 | 30 | 40)) if codec.splits() => p,
            _ => 20,
        },
    }
}

/// The digit of a SIP INFO: `application/dtmf-relay` (`Signal=5`) or `application/dtmf` (`5`).
fn info_digit(request: &InboundRequest) -> Option<char> {
    let content_type = request.request.headers.iter().find_map(|h| match h {
        Header::ContentType(c) => Some(c.value().to_ascii_lowercase()),
        _ => None,
    })?;
    let body = std::str::from_utf8(&request.request.body).ok()?;
    let signal = if content_type.starts_with("application/dtmf-relay") {
        body.lines().find_map(|line| {
            let (key, value) = line.split_once('=')?;
            key.trim().eq_ignore_ascii_case("signal").then(|| value.trim())
        })?
    } else if content_type.starts_with("application/dtmf") {
        body.trim()
    } else {
        return None;
    };
    match signal {
        "10" => Some('*'),
        "11" => Some('#'),
        s => s.chars().next().filter(|c| c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D')),
    }
}

/// Who a wrong PIN counts against: a trunk's caller by caller ID (the From user), anyone else
/// by address.
fn pin_source(user: &str, from_uri: &str, addr: IpAddr) -> PinSource {
    match user.strip_prefix("trunk:") {
        Some(trunk) => {
            let caller = from_uri.split_once(':').map_or(from_uri, |(_, rest)| rest);
            let caller = caller.split(['@', ';']).next().unwrap_or("");
            PinSource::Caller { trunk: trunk.to_string(), caller: caller.to_string() }
        }
        None => PinSource::Address(addr),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(content_type: &str, body: &str) -> InboundRequest {
        let text = format!(
            "INFO sip:1000@gw SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\n\
             To: <sip:1000@gw>;tag=2\r\nCall-ID: c\r\nCSeq: 2 INFO\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        match sip_stack::message::parse(text.as_bytes()).unwrap() {
            sip_stack::message::Inbound::Request(r) => r,
            _ => unreachable!(),
        }
    }

    #[test]
    fn info_digits_in_both_content_types() {
        assert_eq!(info_digit(&info("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n")), Some('5'));
        assert_eq!(info_digit(&info("application/dtmf-relay", "Signal= #\r\nDuration=160\r\n")), Some('#'));
        assert_eq!(info_digit(&info("application/dtmf", "11")), Some('#'));
        assert_eq!(info_digit(&info("application/dtmf", "7")), Some('7'));
        assert_eq!(info_digit(&info("text/plain", "7")), None);
        assert_eq!(info_digit(&info("application/dtmf-relay", "Duration=160")), None);
    }

    #[test]
    fn trunk_callers_count_by_caller_id_and_phones_by_address() {
        let ip: IpAddr = [192, 0, 2, 7].into();
        assert_eq!(
            pin_source("trunk:carrier", "sip:+15551230000@carrier.example;user=phone", ip),
            PinSource::Caller { trunk: "carrier".into(), caller: "+15551230000".into() }
        );
        assert_eq!(pin_source("alice", "sip:alice@192.0.2.7", ip), PinSource::Address(ip));
    }
}
