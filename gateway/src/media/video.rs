//! Video workers: threads apart from the audio ones, so that decoding and encoding pictures
//! never delays a 20 ms audio tick. Each owns some rooms' video ([`VideoRoom`]) and their video
//! legs' sockets: it sleeps in `poll` until a socket has data or a room's next deadline (a
//! picture to compose, a gap given up, a keyframe to ask for, an RTCP report), drains the
//! sockets that have data, and runs the rooms that are due.
//!
//! A leg's packets are checked as the audio worker checks them: SRTP authenticated first,
//! then only from the learnt source ([`SourceGuard`]); symmetric RTP sends the room's picture
//! back to where the leg's packets come from.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use mio::{Events, Poll};
use mixer::source::{SourceGuard, SourcePolicy, Verdict};
use mixer::video::compose::{Fit, Layout};
use mixer::video::frame::Yuv;
use mixer::video::room::{
    Datagram, TierConfig, VideoLegConfig, VideoLegId, VideoRoom, VideoRoomConfig, VideoRoomEvent,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use rtc_shared::marshal::Unmarshal;
use rustc_hash::FxHashMap;
use sip_stack::sdp::sdes::SrtpKeys;
use tokio::sync::mpsc;

use super::srtp::Srtp;
use super::worker::{deregister, emit, is_rtcp, ntp_now, register, send, take_ready, EVENTS};
use super::{rtcp_beside, MediaEvent, ParticipantId};
use crate::config::{VideoConfig, VideoFit, VideoLayout};
use crate::ids::RoomNumber;
use crate::limits::shrink_sparse;
use crate::metrics::{HistogramFamily, RoomLabels, VideoStageLabels};

/// The longest a command from call control waits for the worker to look.
const COMMAND_LATENCY: Duration = Duration::from_millis(10);
/// How often each leg's figures go to call control.
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// Datagrams taken from one socket before the others get their turn: a flood on one leg
/// cannot starve the rest.
const DRAIN_BATCH: usize = 256;
/// How often a source that owes us a keyframe is asked again.
const KEYFRAME_ASK_INTERVAL: Duration = Duration::from_millis(500);
/// The largest RTP payload we send: with the headers, within a 1500-byte Ethernet MTU on
/// every path, tunnels included.
const MTU: usize = 1200;

/// Each room's picture as the configuration describes it.
pub fn room_config(config: &VideoConfig) -> VideoRoomConfig {
    VideoRoomConfig {
        width: config.width as usize,
        height: config.height as usize,
        frame_rate: config.frame_rate,
        bitrate_bps: config.bitrate_kbps.saturating_mul(1000),
        layout: layout(config.layout),
        fit: match config.fit {
            VideoFit::Crop => Fit::Crop,
            VideoFit::Letterbox => Fit::Letterbox,
        },
        background: Yuv::from_rgb(16, 16, 16),
        keyframe_interval: Duration::from_millis(u64::from(config.keyframe_interval_ms)),
        ask_interval: KEYFRAME_ASK_INTERVAL,
        mtu: MTU,
        name_tiles: config.name_tiles,
        show_names: config.show_names,
        low_tier: config.low.enabled.then(|| TierConfig {
            width: config.low.width as usize,
            height: config.low.height as usize,
            frame_rate: config.low.frame_rate,
            bitrate_bps: config.low.bitrate_kbps.saturating_mul(1000),
        }),
    }
}

pub fn layout(layout: VideoLayout) -> Layout {
    match layout {
        VideoLayout::Speaker => Layout::Speaker,
        VideoLayout::Grid => Layout::Grid,
        VideoLayout::SpeakerStrip | VideoLayout::Presenter => Layout::SpeakerStrip,
    }
}

/// A new video leg: its sockets, its peer, and how its RTP looks.
#[derive(Debug)]
pub struct VideoSetup {
    pub id: ParticipantId,
    pub room: RoomNumber,
    pub config: VideoLegConfig,
    pub rtp: UdpSocket,
    /// None with `rtcp-mux`.
    pub rtcp: Option<UdpSocket>,
    pub remote: Option<SocketAddr>,
    pub srtp: Option<SrtpKeys>,
    /// Whose name the leg's tile shows.
    pub name: String,
}

#[derive(Debug)]
pub enum VideoCommand {
    Add(Box<VideoSetup>),
    /// A participant without video, in a room with some: shown by its name.
    AddWithoutVideo {
        id: ParticipantId,
        room: RoomNumber,
        name: String,
    },
    Remove(ParticipantId),
    /// After a re-INVITE: direction, packetization, the peer's address, the keys.
    Update {
        id: ParticipantId,
        config: VideoLegConfig,
        remote: Option<SocketAddr>,
        srtp: Option<SrtpKeys>,
    },
    /// Voice activity from the audio mix.
    Talking(ParticipantId, bool),
    VideoMuted(ParticipantId, bool),
    /// SIP INFO `picture_fast_update` from the leg.
    KeyframeRequested(ParticipantId),
    Layout(RoomNumber, Layout),
    /// Who is shown large whoever talks (`None`: the active speaker).
    Presenter(RoomNumber, Option<ParticipantId>),
}

impl VideoCommand {
    /// The leg the command is about (`None`: a room's).
    pub(super) fn participant(&self) -> Option<ParticipantId> {
        match self {
            VideoCommand::Add(setup) => Some(setup.id),
            VideoCommand::AddWithoutVideo { id, .. }
            | VideoCommand::Remove(id)
            | VideoCommand::Update { id, .. }
            | VideoCommand::Talking(id, _)
            | VideoCommand::VideoMuted(id, _)
            | VideoCommand::KeyframeRequested(id) => Some(*id),
            VideoCommand::Layout(..) | VideoCommand::Presenter(..) => None,
        }
    }
}

/// What every video worker is started with.
#[derive(Clone)]
pub(super) struct VideoWorkerConfig {
    pub room: VideoRoomConfig,
    pub source_policy: SourcePolicy,
    pub events: mpsc::Sender<MediaEvent>,
    pub foreign_packets: Counter,
    pub stage_seconds: HistogramFamily<VideoStageLabels>,
    pub encodes: Family<RoomLabels, Counter>,
}

struct Room {
    room: VideoRoom,
    participants: FxHashMap<VideoLegId, ParticipantId>,
    /// Receiving and decoding since the last picture.
    decode_time: Duration,
    decode_seconds: Histogram,
    compose_seconds: Histogram,
    encode_seconds: Histogram,
    encodes: Counter,
}

struct Leg {
    room: RoomNumber,
    leg: VideoLegId,
    rtp: UdpSocket,
    rtcp: Option<UdpSocket>,
    remote: Option<SocketAddr>,
    remote_rtcp: Option<SocketAddr>,
    sdp_remote: Option<SocketAddr>,
    sdp_rtcp: Option<SocketAddr>,
    srtp: Option<Srtp>,
    source: SourceGuard,
    foreign_reported: u64,
    ready: [bool; 2],
    next_stats: Instant,
}

pub(super) struct VideoWorker {
    config: VideoWorkerConfig,
    commands: std_mpsc::Receiver<VideoCommand>,
    rooms: FxHashMap<RoomNumber, Room>,
    legs: FxHashMap<ParticipantId, Leg>,
    /// Participants without video, by their room's leg.
    without_video: FxHashMap<ParticipantId, (RoomNumber, VideoLegId)>,
    poll: Poll,
    events: Events,
    buffer: Vec<u8>,
}

impl VideoWorker {
    pub(super) fn new(
        config: VideoWorkerConfig,
        commands: std_mpsc::Receiver<VideoCommand>,
    ) -> std::io::Result<VideoWorker> {
        Ok(VideoWorker {
            config,
            commands,
            rooms: FxHashMap::default(),
            legs: FxHashMap::default(),
            without_video: FxHashMap::default(),
            poll: Poll::new()?,
            events: Events::with_capacity(EVENTS),
            buffer: vec![0; 2048],
        })
    }

    /// Runs until call control drops its handle.
    #[allow(clippy::disallowed_methods)] // the video worker's loop keeps its rooms' time
    pub(super) fn run(mut self) {
        loop {
            let now = Instant::now();
            if !self.take_commands(now) {
                return;
            }
            let next = self.rooms.values().map(|r| r.room.poll_timeout(now)).min();
            let wait =
                next.map_or(COMMAND_LATENCY, |at| at.saturating_duration_since(now).min(COMMAND_LATENCY));
            self.wait_for_sockets(wait);
            let now = Instant::now();
            self.receive(now);
            self.run_rooms(now);
            self.report(now);
        }
    }

    fn take_commands(&mut self, now: Instant) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(command) => self.apply(now, command),
                Err(std_mpsc::TryRecvError::Empty) => return true,
                Err(std_mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn apply(&mut self, now: Instant, command: VideoCommand) {
        match command {
            VideoCommand::Add(setup) => self.add(now, *setup),
            VideoCommand::AddWithoutVideo { id, room, name } => self.add_without_video(id, room, &name),
            VideoCommand::Remove(id) => self.remove(id),
            VideoCommand::Update { id, config, remote, srtp } => {
                let Some(leg) = self.legs.get_mut(&id) else { return };
                if let Err(e) = Srtp::rekey(&mut leg.srtp, srtp) {
                    tracing::error!(participant = %id, error = %e, "video SRTP keys not taken");
                }
                if let Some(new) = remote.filter(|new| leg.sdp_remote != Some(*new)) {
                    leg.sdp_remote = Some(new);
                    leg.sdp_rtcp = rtcp_beside(new);
                    leg.source.expect(new);
                    leg.remote = Some(new);
                    leg.remote_rtcp = if leg.rtcp.is_some() { rtcp_beside(new) } else { Some(new) };
                }
                leg.source.set_held(!config.receive);
                if let Some(room) = self.rooms.get_mut(&leg.room) {
                    room.room.update_leg(leg.leg, config);
                }
            }
            VideoCommand::Talking(id, talking) => {
                self.with_leg(id, |room, leg| room.set_talking(leg, talking))
            }
            VideoCommand::VideoMuted(id, muted) => {
                self.with_leg(id, |room, leg| room.set_video_muted(leg, muted))
            }
            VideoCommand::KeyframeRequested(id) => {
                self.with_leg(id, |room, leg| room.keyframe_requested(leg))
            }
            VideoCommand::Layout(room, layout) => {
                if let Some(room) = self.rooms.get_mut(&room) {
                    room.room.set_layout(layout);
                }
            }
            VideoCommand::Presenter(number, presenter) => {
                let leg = presenter.and_then(|id| match (self.legs.get(&id), self.without_video.get(&id)) {
                    (Some(leg), _) if leg.room == number => Some(leg.leg),
                    (_, Some((room, leg))) if *room == number => Some(*leg),
                    _ => None,
                });
                if let Some(room) = self.rooms.get_mut(&number) {
                    room.room.set_presenter(leg);
                }
            }
        }
    }

    fn with_leg(&mut self, id: ParticipantId, f: impl FnOnce(&mut VideoRoom, VideoLegId)) {
        let found = match (self.legs.get(&id), self.without_video.get(&id)) {
            (Some(leg), _) => Some((&leg.room, leg.leg)),
            (_, Some((room, leg))) => Some((room, *leg)),
            _ => None,
        };
        if let Some((room, leg)) = found {
            if let Some(room) = self.rooms.get_mut(room) {
                f(&mut room.room, leg);
            }
        }
    }

    /// The room's video on this worker, started with its first leg.
    fn room(&mut self, number: &RoomNumber) -> Option<&mut Room> {
        if !self.rooms.contains_key(number) {
            let room = match VideoRoom::new(self.config.room) {
                Ok(room) => room,
                Err(e) => {
                    tracing::error!(room = %number, error = %e, "room's video cannot start");
                    return None;
                }
            };
            let stage = |stage: &'static str| {
                let labels = VideoStageLabels { room: number.to_string(), stage };
                self.config.stage_seconds.get_or_create(&labels).clone()
            };
            let room = Room {
                room,
                participants: FxHashMap::default(),
                decode_time: Duration::ZERO,
                decode_seconds: stage("decode"),
                compose_seconds: stage("compose"),
                encode_seconds: stage("encode"),
                encodes: self.config.encodes.get_or_create(&RoomLabels { room: number.to_string() }).clone(),
            };
            self.rooms.insert(number.clone(), room);
        }
        self.rooms.get_mut(number)
    }

    fn add_without_video(&mut self, id: ParticipantId, number: RoomNumber, name: &str) {
        if self.legs.contains_key(&id) || self.without_video.contains_key(&id) {
            return;
        }
        let Some(room) = self.room(&number) else { return };
        let none = VideoLegConfig {
            codec: mixer::video::room::VideoCodecKind::H264,
            payload_type: 0,
            mode: mixer::video::h264_rtp::PacketizationMode::SingleNal,
            feedback: Default::default(),
            send: false,
            receive: false,
            ssrc: 0,
            first_seq: 0,
            first_timestamp: 0,
            limits: Default::default(),
            cascade: false,
        };
        let leg = room.room.add_leg(none, name);
        room.participants.insert(leg, id);
        self.without_video.insert(id, (number, leg));
    }

    fn add(&mut self, now: Instant, setup: VideoSetup) {
        if self.legs.contains_key(&setup.id) {
            return;
        }
        // Shown by its name until now (video added by re-INVITE): its camera takes the tile.
        if self.without_video.contains_key(&setup.id) {
            self.remove(setup.id);
        }
        let srtp = match setup.srtp.map(Srtp::new).transpose() {
            Ok(srtp) => srtp,
            Err(e) => {
                tracing::error!(participant = %setup.id, error = %e, "video SRTP keys not taken; no video");
                return;
            }
        };
        if let Err(e) = register(&self.poll, setup.id, &setup.rtp, setup.rtcp.as_ref()) {
            tracing::error!(error = %e, "video socket cannot be polled; no video");
            return;
        }
        if self.room(&setup.room).is_none() {
            deregister(&self.poll, &setup.rtp, setup.rtcp.as_ref());
            return;
        }
        let Some(room) = self.rooms.get_mut(&setup.room) else { return };
        let leg = room.room.add_leg(setup.config, &setup.name);
        room.participants.insert(leg, setup.id);
        tracing::debug!(participant = %setup.id, room = %setup.room, name = setup.name, "video leg added");
        let remote_rtcp = match (&setup.rtcp, setup.remote) {
            (Some(_), remote) => remote.and_then(rtcp_beside),
            (None, remote) => remote,
        };
        self.legs.insert(
            setup.id,
            Leg {
                room: setup.room,
                leg,
                rtp: setup.rtp,
                rtcp: setup.rtcp,
                remote: setup.remote,
                remote_rtcp,
                sdp_remote: setup.remote,
                sdp_rtcp: setup.remote.and_then(rtcp_beside),
                srtp,
                source: SourceGuard::new(self.config.source_policy, setup.remote),
                foreign_reported: 0,
                ready: [true, true],
                next_stats: now + STATS_INTERVAL,
            },
        );
    }

    fn remove(&mut self, id: ParticipantId) {
        let (number, leg) = if let Some(leg) = self.legs.remove(&id) {
            deregister(&self.poll, &leg.rtp, leg.rtcp.as_ref());
            shrink_sparse(&mut self.legs);
            (leg.room, leg.leg)
        } else if let Some(found) = self.without_video.remove(&id) {
            shrink_sparse(&mut self.without_video);
            found
        } else {
            return;
        };
        if let Some(room) = self.rooms.get_mut(&number) {
            room.room.remove_leg(leg);
            room.participants.remove(&leg);
            if room.room.is_empty() {
                self.rooms.remove(&number);
                shrink_sparse(&mut self.rooms);
            }
        }
    }

    fn wait_for_sockets(&mut self, wait: Duration) {
        let legs = &mut self.legs;
        take_ready(&mut self.poll, &mut self.events, wait, |id, kind| {
            if let Some(leg) = legs.get_mut(&id) {
                leg.ready[kind] = true;
            }
        });
    }

    /// Drains the sockets that have data into their rooms; a socket left with data after its
    /// batch stays marked for the next round.
    fn receive(&mut self, now: Instant) {
        for (&id, leg) in &mut self.legs {
            let [rtp_ready, rtcp_ready] = std::mem::take(&mut leg.ready);
            if !rtp_ready && !rtcp_ready {
                continue;
            }
            let Some(room) = self.rooms.get_mut(&leg.room) else { continue };
            #[allow(clippy::disallowed_methods)] // decode time, for the metric
            let started = Instant::now();
            if rtp_ready {
                leg.ready[0] = drain_rtp(now, id, leg, &mut room.room, &mut self.buffer);
            }
            if rtcp_ready && leg.rtcp.is_some() {
                leg.ready[1] = drain_rtcp(now, leg, &mut room.room, &mut self.buffer);
            }
            room.decode_time += started.elapsed();
        }
    }

    /// Each room that is due: housekeeping, and its picture composed, encoded and sent.
    #[allow(clippy::disallowed_methods)] // stage times, for the metrics
    fn run_rooms(&mut self, now: Instant) {
        let ntp = ntp_now();
        for room in self.rooms.values_mut() {
            if room.room.poll_timeout(now) > now {
                continue;
            }
            let (legs, participants) = (&mut self.legs, &room.participants);
            room.room.tick(now, ntp, |leg, datagram| transmit(legs, participants, leg, datagram));
            if room.room.frame_due(now) {
                let started = Instant::now();
                room.room.compose(now);
                let composed = Instant::now();
                let encodes = room.room.stats().encodes;
                room.room.encode(|leg, datagram| transmit(legs, participants, leg, datagram));
                room.encode_seconds.observe(composed.elapsed().as_secs_f64());
                room.compose_seconds.observe((composed - started).as_secs_f64());
                room.decode_seconds.observe(std::mem::take(&mut room.decode_time).as_secs_f64());
                room.encodes.inc_by(room.room.stats().encodes - encodes);
            }
            while let Some(event) = room.room.poll_event() {
                match event {
                    VideoRoomEvent::KeyframeByInfo { leg } => {
                        if let Some(&id) = room.participants.get(&leg) {
                            emit(&self.config.events, MediaEvent::VideoKeyframeByInfo { id });
                        }
                    }
                }
            }
        }
    }

    /// Each leg's figures, once a second.
    fn report(&mut self, now: Instant) {
        for (&id, leg) in &mut self.legs {
            if now < leg.next_stats {
                continue;
            }
            leg.next_stats = now + STATS_INTERVAL;
            let foreign = leg.source.foreign_packets();
            self.config.foreign_packets.inc_by(foreign - leg.foreign_reported);
            leg.foreign_reported = foreign;
            let room = self.rooms.get(&leg.room);
            if let Some((stats, room)) =
                room.and_then(|room| Some((room.room.leg_stats(leg.leg)?, room.room.stats())))
            {
                tracing::trace!(participant = %id, ?stats, ?room, remote = ?leg.remote, "video leg");
                emit(&self.config.events, MediaEvent::VideoStats { id, stats });
            }
        }
    }
}

/// Reads one batch of a leg's RTP socket (with RTCP on it under `rtcp-mux`); true when the
/// batch ended with data still there.
fn drain_rtp(
    now: Instant,
    id: ParticipantId,
    leg: &mut Leg,
    room: &mut VideoRoom,
    buffer: &mut [u8],
) -> bool {
    for _ in 0..DRAIN_BATCH {
        let (n, src) = match leg.rtp.recv_from(buffer) {
            Ok(got) => got,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => continue,
            Err(e) => {
                tracing::debug!(error = %e, "video RTP receive failed");
                return false;
            }
        };
        let datagram = &buffer[..n];
        if is_rtcp(datagram) {
            if leg.source.check_rtcp(src, leg.sdp_rtcp) {
                receive_rtcp(now, leg, room, datagram);
            }
            continue;
        }
        let mut bytes = match &mut leg.srtp {
            Some(srtp) => match srtp.unprotect_rtp(datagram) {
                Some(plain) => plain.freeze(),
                None => continue,
            },
            None => bytes::Bytes::copy_from_slice(datagram),
        };
        let Ok(packet) = rtp::Packet::unmarshal(&mut bytes) else { continue };
        if packet.header.version != 2 {
            continue;
        }
        match leg.source.check_rtp(now, src, packet.header.ssrc, packet.header.sequence_number) {
            Verdict::Accept => {}
            Verdict::Learned => {
                tracing::debug!(participant = %id, remote = %src, "video RTP source learned");
                leg.remote = Some(src);
                if leg.rtcp.is_none() {
                    leg.remote_rtcp = Some(src);
                }
            }
            Verdict::Drop => continue,
        }
        room.receive_rtp(now, leg.leg, &packet);
    }
    true
}

/// Reads one batch of a leg's own RTCP socket; true when data is left.
fn drain_rtcp(now: Instant, leg: &mut Leg, room: &mut VideoRoom, buffer: &mut [u8]) -> bool {
    for _ in 0..DRAIN_BATCH {
        let Some(socket) = &leg.rtcp else { return false };
        let (n, src) = match socket.recv_from(buffer) {
            Ok(got) => got,
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => continue,
            Err(_) => return false,
        };
        if leg.source.check_rtcp(src, leg.sdp_rtcp) && receive_rtcp(now, leg, room, &buffer[..n]) {
            leg.remote_rtcp = Some(src);
        }
    }
    true
}

/// One RTCP datagram into the room, unprotected first on an SRTP leg; retransmissions it
/// asks for go out at once. False when it does not authenticate.
fn receive_rtcp(now: Instant, leg: &mut Leg, room: &mut VideoRoom, datagram: &[u8]) -> bool {
    let plain = match &mut leg.srtp {
        Some(srtp) => match srtp.unprotect_rtcp(datagram) {
            Some(plain) => plain.freeze(),
            None => return false,
        },
        None => bytes::Bytes::copy_from_slice(datagram),
    };
    let Leg { rtp, remote, srtp, leg: id, .. } = leg;
    room.receive_rtcp(now, *id, &plain, |datagram| {
        if let (Datagram::Rtp(packet), Some(remote)) = (datagram, *remote) {
            send(rtp, remote, packet, srtp, Srtp::protect_rtp);
        }
    });
    true
}

/// A room's datagram to its leg's peer: RTP to where its packets come from, RTCP to its
/// RTCP address.
fn transmit(
    legs: &mut FxHashMap<ParticipantId, Leg>,
    participants: &FxHashMap<VideoLegId, ParticipantId>,
    leg: VideoLegId,
    datagram: Datagram<'_>,
) {
    let Some(leg) = participants.get(&leg).and_then(|id| legs.get_mut(id)) else { return };
    match datagram {
        Datagram::Rtp(packet) => {
            if let Some(remote) = leg.remote {
                send(&leg.rtp, remote, packet, &mut leg.srtp, Srtp::protect_rtp);
            }
        }
        Datagram::Rtcp(packet) => {
            let target = leg.remote_rtcp.or(leg.remote.and_then(rtcp_beside));
            if let Some(target) = target {
                let socket = leg.rtcp.as_ref().unwrap_or(&leg.rtp);
                send(socket, target, packet, &mut leg.srtp, Srtp::protect_rtcp);
            }
        }
    }
}
