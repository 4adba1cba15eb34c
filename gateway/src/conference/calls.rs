//! Calls into conferences, inside the SIP core: the answer to an admitted INVITE, the dialog
//! and its in-dialog requests (ACK, BYE, re-INVITE, UPDATE, INFO), the IVR that asks for the
//! PIN, session timers, and the end of each call with its record.
//!
//! Every call is a [`Call`] in [`Calls`]; its media is a leg of the room's conference in the
//! media worker. A caller to a room with a PIN starts muted and deaf, hearing only the IVR's
//! prompts; the right PIN joins it to the mix.
//!
//! Here: the types, the table of calls and what the API asks of them. A new INVITE's way to an
//! answer is in `admission`, the dialog's requests and our refreshes in `in_dialog`, the keypad,
//! the media worker's reports and the timers in `events`, hanging up and records in `teardown`.

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
use sip_stack::sdp::video::{LocalVideo, VideoStream};
use sip_stack::sdp::{self, AudioStream, Direction, LocalAudio, SdpError};
use sip_stack::transaction::{ClientTx, ServerTx, TxEvent};
use sip_stack::transport::{Peer, Transport};

use super::browsers::Browser;
use super::core::{Core, Lookup, Output, ALLOW};
use super::dialout::Dialing;
use super::invite::{Admission, Caller};
use super::schedule::Schedule;
use crate::conference::ivr::{PinBlock, PinEntry, PinGuard, PinSource, PinStep};
use crate::config::{SrtpMode, VideoLayout};
use crate::control::{
    Cause, ConferenceView, ControlError, MediaView, ParticipantAction, ParticipantFlags, ParticipantView,
    RoomEvent,
};
use crate::ids::RoomNumber;
use crate::limits::{shrink_sparse, shrink_sparse_set};
use crate::media::ports::PortPair;
use crate::media::video::VideoCommand;
use crate::media::{Audience, LegSetup, MediaCommand, MediaEvent, ParticipantId, Wire};
use crate::metrics::{CallLabels, RoomCodecLabels};
use crate::signalling::sip::new_tag;
use crate::storage::{CallRecord, Direction as RecordDirection, Room, IN_PROGRESS};

mod admission;
mod events;
mod in_dialog;
mod teardown;
pub(super) mod video;

/// Codecs we answer with, most preferred first: wideband before narrowband, and G.722 before
/// Opus where a phone has both (as good at a 16 kHz mix, and far cheaper to decode).
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
    /// For a call out: the transaction of our INVITE, whose 2xx retransmissions get ACKs.
    invite_tx: Option<ClientTx>,
    dialog: Dialog,
    /// Where the INVITE came from: in-dialog requests go back there (phones behind NAT).
    peer: Peer,
    via_host: String,
    /// The phone said it takes UPDATE: our refreshes use it instead of re-INVITE.
    peer_allows_update: bool,
    room: Room,
    stage: Stage,
    media: Media,
    party: Party,
    sdp: Negotiation,
    /// None for an audio call.
    video: Option<video::CallVideo>,
    timers: Timers,
    leg: LegState,
}

/// Who called whom and when: the call record and the API view.
#[derive(Debug)]
struct Party {
    direction: RecordDirection,
    user: String,
    /// Who a wrong PIN from this call counts against.
    guessing: PinSource,
    display_name: String,
    from_uri: String,
    to_uri: String,
    started_ms: i64,
}

/// Offer and answer of the call's audio.
#[derive(Debug)]
struct Negotiation {
    local: LocalAudio,
    sdp_session: u64,
    sdp_version: u64,
    stream: AudioStream,
    codec: AudioCodec,
    /// Our offer within the dialog (a refresh re-INVITE, or the 2xx to an offerless
    /// re-INVITE), until its answer comes.
    reoffer: Option<Box<sdp::Session>>,
    /// The session's m-lines, which every re-offer keeps (RFC 3264 §8).
    mline_kinds: Vec<String>,
}

/// The dialog's clocks: the 2xx until its ACK, the session timer and our refreshes.
#[derive(Debug)]
struct Timers {
    ok: Option<PendingOk>,
    session: Option<SessionTimer>,
    session_interval: u32,
    /// Our re-INVITE (session refresh) is out: a re-INVITE from the phone now is glare.
    reinvite_pending: bool,
    /// A refresh refused with 491, to try again at this time (RFC 3261 §14.1).
    retry_refresh_at: Option<Instant>,
}

/// The leg as the room sees it.
#[derive(Debug, Default)]
struct LegState {
    talking: bool,
    /// Packets from strangers the media worker dropped (source security).
    foreign_packets: u64,
    muted: bool,
    deaf: bool,
    on_hold: bool,
    video_muted: bool,
    stats: Option<LegStats>,
    /// Lost packets already counted in the metrics.
    lost_reported: u64,
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
    /// The earliest of the call's timers: the 2xx resent until ACKed, the session timer, the
    /// PIN digit timeout, a refresh to retry after glare.
    fn poll_timeout(&self) -> Option<Instant> {
        let pin = match &self.stage {
            Stage::Pin(entry) => Some(entry.poll_timeout()),
            _ => None,
        };
        [
            self.timers.ok.as_ref().and_then(|o| o.timer.poll_timeout()),
            self.timers.session.as_ref().map(|s| s.poll_timeout()),
            pin,
            self.timers.retry_refresh_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub(super) fn id(&self) -> ParticipantId {
        self.id
    }

    fn joined(&self) -> bool {
        matches!(self.stage, Stage::Joined { .. })
    }

    /// What the room's picture calls it: its display name, else its user.
    fn name(&self) -> String {
        let name =
            if self.party.display_name.is_empty() { &self.party.user } else { &self.party.display_name };
        name.clone()
    }

    /// The call's record: open (`end` None) or ended at `end`'s time for its cause.
    pub(super) fn record(&self, end: Option<(i64, &str)>) -> CallRecord {
        CallRecord {
            leg_id: format!("{}-{}", self.dialog.id.call_id, self.dialog.id.local_tag),
            call_id: self.dialog.id.call_id.clone(),
            direction: self.party.direction,
            from_uri: self.party.from_uri.clone(),
            to_uri: self.party.to_uri.clone(),
            room_number: Some(self.room.number.to_string()),
            started_at_ms: self.party.started_ms,
            answered_at_ms: Some(self.party.started_ms),
            ended_at_ms: end.map(|(at, _)| at),
            cause: end.map_or(IN_PROGRESS, |(_, cause)| cause).into(),
            codec: Some(self.sdp.codec.name().into()),
        }
    }

    fn view(&self) -> ParticipantView {
        ParticipantView {
            id: self.id,
            display_name: self.party.display_name.clone(),
            user: self.party.user.clone(),
            direction: direction_name(self.party.direction),
            state: if self.joined() { "joined" } else { "pin" },
            started_at_ms: self.party.started_ms,
            flags: ParticipantFlags {
                joined: self.joined(),
                moderator: matches!(self.stage, Stage::Joined { moderator: true }),
                talking: self.leg.talking,
                muted: self.leg.muted,
                deaf: self.leg.deaf,
                on_hold: self.leg.on_hold,
                video_muted: self.leg.video_muted,
            },
            media: MediaView {
                video: self.video.as_ref().map(|v| Box::new(v.view())),
                ..MediaView::new(
                    self.sdp.codec.name(),
                    self.sdp.stream.srtp.is_some(),
                    self.leg.stats.as_ref(),
                    self.leg.foreign_packets,
                )
            },
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
    /// Layouts the API set for live conferences (one entry per room at most, gone with the
    /// room's last call).
    layouts: HashMap<RoomNumber, (VideoLayout, Option<ParticipantId>)>,
    /// Each call's next deadline.
    schedule: Schedule<ParticipantId>,
    /// The ring deadline of each call out still ringing.
    ringing: Schedule<ClientTx>,
    /// Calls the input being handled changed, whose deadlines may have moved.
    touched: HashSet<ParticipantId>,
    next_id: u64,
    pub(super) guard: PinGuard,
}

#[derive(Debug, Clone, Copy)]
enum Outgoing {
    Refresh {
        id: ParticipantId,
        invite_seq: Option<u32>,
    },
    Bye,
    /// A keyframe asked by INFO: its answer changes nothing.
    Info,
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
            layouts: HashMap::new(),
            schedule: Schedule::default(),
            ringing: Schedule::default(),
            touched: HashSet::new(),
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
        shrink_sparse(&mut self.layouts);
        self.schedule.compact();
        self.ringing.compact();
    }

    pub(super) fn new_id(&mut self) -> ParticipantId {
        let id = ParticipantId(self.next_id);
        self.next_id += 1;
        id
    }

    /// A call to change: its deadlines are looked at again after this input.
    pub(super) fn call_mut(&mut self, id: ParticipantId) -> Option<&mut Call> {
        let call = self.calls.get_mut(&id)?;
        self.touched.insert(id);
        Some(call)
    }

    /// Puts the deadlines of the calls this input changed into the schedule.
    pub(super) fn reschedule(&mut self) {
        for id in self.touched.drain() {
            self.schedule.set(id, self.calls.get(&id).and_then(Call::poll_timeout));
        }
    }

    /// The calls whose deadline has come by `now`, taken off the schedule.
    fn due(&mut self, now: Instant) -> Vec<ParticipantId> {
        let due = self.schedule.due(now);
        self.touched.extend(due.iter().copied());
        due
    }

    /// A call out sent: it rings until its deadline.
    pub(super) fn start_dialing(&mut self, tx: ClientTx, dialing: Dialing) {
        self.ringing.set(tx, Some(dialing.ring_deadline));
        self.dialing.insert(tx, dialing);
    }

    /// A call out answered, failed or sent again under another transaction.
    pub(super) fn stop_dialing(&mut self, tx: ClientTx) -> Option<Dialing> {
        self.ringing.set(tx, None);
        self.dialing.remove(&tx)
    }

    /// Calls out whose ring deadline has come by `now`, taken off the schedule.
    pub(super) fn ring_timeouts(&mut self, now: Instant) -> Vec<ClientTx> {
        self.ringing.due(now)
    }

    pub(super) fn insert(&mut self, call: Call) {
        self.touched.insert(call.id);
        self.by_dialog.insert(call.dialog.id.clone(), call.id);
        self.calls.insert(call.id, call);
    }

    /// BYEs still waiting for their answer.
    pub fn byes_in_flight(&self) -> usize {
        self.requests.values().filter(|o| matches!(o, Outgoing::Bye)).count()
    }

    /// The earliest deadline of any call, or of any call out still ringing.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.schedule.next().into_iter().chain(self.ringing.next()).min()
    }

    fn in_room<'a>(&'a self, room: &'a str) -> impl Iterator<Item = &'a Call> + 'a {
        self.calls.values().filter(move |c| c.room.number == *room)
    }

    /// Everyone a room's limit counts: calls (in the IVR too) and browsers.
    pub(super) fn occupancy(&self, room: &RoomNumber) -> usize {
        self.in_room(room).count() + self.browsers.values().filter(|b| b.room.number == *room).count()
    }

    /// Participants in a room's mix, other than `except`.
    pub(super) fn joined_in_room(&self, room: &RoomNumber, except: ParticipantId) -> usize {
        let calls = self.in_room(room).filter(|c| c.joined() && c.id != except).count();
        let browsers =
            self.browsers.values().filter(|b| b.room.number == *room && b.in_mix() && b.id != except).count();
        calls + browsers
    }

    /// What the API shows of one participant, call or browser.
    pub(super) fn view(&self, id: ParticipantId) -> Option<(RoomNumber, ParticipantView)> {
        match (self.calls.get(&id), self.browsers.get(&id)) {
            (Some(call), _) => Some((call.room.number.clone(), call.view())),
            (_, Some(browser)) => Some((browser.room.number.clone(), browser.view())),
            _ => None,
        }
    }

    /// Every live conference; `default_layout` is the layout of rooms the API set none for
    /// (`None` with video off).
    pub fn conferences<'a>(&'a self, default_layout: Option<VideoLayout>) -> Vec<ConferenceView> {
        // Each room's participants, and the layout its record names.
        let mut rooms: HashMap<&RoomNumber, (Option<VideoLayout>, Vec<ParticipantView>)> = HashMap::new();
        let mut add = |room: &'a Room, view: ParticipantView| {
            rooms.entry(&room.number).or_insert_with(|| (room.layout, Vec::new())).1.push(view);
        };
        for call in self.calls.values() {
            add(&call.room, call.view());
        }
        for browser in self.browsers.values() {
            add(&browser.room, browser.view());
        }
        for d in self.dialing.values() {
            add(
                &d.room,
                ParticipantView {
                    id: d.id,
                    display_name: d.target.clone(),
                    user: d.trunk.as_deref().unwrap_or_default().to_string(),
                    direction: "outbound",
                    state: d.state.as_str(),
                    started_at_ms: d.started_ms,
                    flags: ParticipantFlags::default(),
                    media: MediaView {
                        codec: d.sdp.early.as_ref().map_or("", |(_, codec)| codec.name()),
                        ..MediaView::default()
                    },
                },
            );
        }
        let mut views: Vec<ConferenceView> = rooms
            .into_iter()
            .map(|(room, (stored, mut participants))| {
                participants.sort_by_key(|p| p.id);
                let set = self.layouts.get(room).copied();
                let layout = default_layout.map(|d| set.map_or(stored.unwrap_or(d), |(layout, _)| layout));
                let presenter = set.and_then(|(_, presenter)| presenter);
                ConferenceView { room: room.clone(), layout, presenter, participants }
            })
            .collect();
        views.sort_by(|a, b| a.room.cmp(&b.room));
        views
    }
}

impl Core {
    /// The call an answered call out becomes; `media` is the negotiated stream, or `None`
    /// when the answer was unusable (the call is then hung up at once).
    pub(super) fn outbound_call(
        &mut self,
        invite_tx: ClientTx,
        d: Dialing,
        dialog: Dialog,
        response: &InboundResponse,
        media: Option<(AudioStream, AudioCodec)>,
        video: Option<video::CallVideo>,
    ) -> Call {
        let now = self.now.at;
        let (stream, codec) = media.unwrap_or_else(|| (no_stream_yet(), AudioCodec::G722));
        // RFC 4028 §7.2: the 2xx says who refreshes; we asked to be the refresher.
        let timer = session_timer::from_response(&response.response);
        let on_hold = !stream.direction.sends();
        Call {
            id: d.id,
            invite_tx: Some(invite_tx),
            peer: d.peer,
            via_host: d.via_host,
            peer_allows_update: allows(&response.response.headers, "UPDATE"),
            stage: Stage::Joined { moderator: false },
            // After early media the leg is in the mix already.
            media: match d.sdp.ports {
                Some(ports) => Media::Pending(ports),
                None => Media::Running,
            },
            party: Party {
                direction: RecordDirection::Outbound,
                user: d.trunk.map(String::from).unwrap_or_default(),
                // Calls out are not asked for a PIN.
                guessing: PinSource::Address(d.peer.addr.ip()),
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
            },
            sdp: Negotiation {
                local: d.sdp.local,
                sdp_session: d.sdp.sdp_session,
                sdp_version: 1,
                stream,
                codec,
                reoffer: None,
                mline_kinds: sdp::mline_kinds(&d.sdp.offer),
            },
            video,
            timers: Timers {
                ok: None,
                session: timer.map(|(interval, refresher)| {
                    SessionTimer::new(now, interval, refresher == Refresher::Uac)
                }),
                session_interval: timer.map_or(0, |(interval, _)| interval),
                reinvite_pending: false,
                retry_refresh_at: None,
            },
            leg: LegState { on_hold, ..LegState::default() },
            room: d.room,
            dialog,
        }
    }

    /// Mute, deafen, or kick a participant from the API.
    pub(super) fn participant_action(
        &mut self,
        room: &RoomNumber,
        id: ParticipantId,
        action: ParticipantAction,
    ) -> Result<Option<ParticipantView>, ControlError> {
        if self.calls.browsers.get(&id).is_some_and(|b| b.room.number == *room) {
            return Ok(self.browser_action(id, action));
        }
        let Some(call) = self.calls.call_mut(id).filter(|c| c.room.number == *room) else {
            return Err(ControlError::NoSuchParticipant);
        };
        match action {
            ParticipantAction::Mute(muted) => {
                call.leg.muted = muted;
                self.out.media(MediaCommand::SetMuted(id, muted || !call.joined()));
            }
            ParticipantAction::Deaf(deaf) => {
                call.leg.deaf = deaf;
                self.out.media(MediaCommand::SetDeaf(id, deaf || !call.joined()));
            }
            ParticipantAction::VideoMute(muted) => {
                call.leg.video_muted = muted;
                self.out.media(MediaCommand::Video(VideoCommand::VideoMuted(id, muted)));
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
                self.out.media(MediaCommand::SetMuted(id, muted));
            }
            ParticipantAction::Deaf(deaf) => {
                browser.deaf = deaf;
                self.out.media(MediaCommand::SetDeaf(id, deaf));
            }
            // Browsers send no video yet.
            ParticipantAction::VideoMute(_) => {}
            ParticipantAction::Kick => {
                self.end_browser(id, Cause::Kicked, true);
                return None;
            }
        }
        self.publish(id);
        self.calls.view(id).map(|(_, view)| view)
    }

    /// Tells the room's pages how a participant now stands.
    pub(super) fn publish(&mut self, id: ParticipantId) {
        if let Some((room, participant)) = self.calls.view(id) {
            self.out.push(Output::Room(RoomEvent::Participant { room, participant }));
        }
    }

    pub(super) fn publish_left(&mut self, id: ParticipantId, room: &RoomNumber) {
        self.out.push(Output::Room(RoomEvent::Left { room: room.clone(), id }));
    }

    pub(super) fn count_call(&self, result: &str) {
        self.shared.metrics.calls.get_or_create(&CallLabels { result: result.into() }).inc();
    }

    /// The address to put in SDP and Contact for a peer at `peer`.
    pub(super) fn advertised_ip(&self, peer: SocketAddr) -> IpAddr {
        let config = &self.shared.config;
        config
            .sip
            .public_address
            .or((!config.rtp.address.is_unspecified()).then_some(config.rtp.address))
            .or_else(|| crate::signalling::sip::trunks::route_source(peer))
            .unwrap_or(config.rtp.address)
    }

    pub(super) fn sip_port(&self, transport: Transport) -> u16 {
        let config = &self.shared.config.sip;
        match transport {
            Transport::Udp => self.local.port(),
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
        audio_level: None,
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
        audio_level: stream.audio_level,
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
fn pin_source(caller: &Caller, from_uri: &str, addr: IpAddr) -> PinSource {
    match caller {
        Caller::Trunk(trunk) => {
            let caller = from_uri.split_once(':').map_or(from_uri, |(_, rest)| rest);
            let caller = caller.split(['@', ';']).next().unwrap_or("");
            PinSource::Caller { trunk: trunk.clone(), caller: caller.to_string() }
        }
        Caller::User(_) => PinSource::Address(addr),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An in-dialog INFO with a body.
    pub(super) fn info(content_type: &str, body: &str) -> InboundRequest {
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
            pin_source(&Caller::Trunk("carrier".into()), "sip:+15551230000@carrier.example;user=phone", ip),
            PinSource::Caller { trunk: "carrier".into(), caller: "+15551230000".into() }
        );
        assert_eq!(
            pin_source(&Caller::User("alice".into()), "sip:alice@192.0.2.7", ip),
            PinSource::Address(ip)
        );
    }
}
