//! One media worker: a thread owning some rooms' mixers and their legs' RTP sockets.
//!
//! Each 20 ms tick it takes the commands call control queued for it, drains its legs' sockets
//! (no task wake-up or channel hop per packet), runs each of its conferences' tick, and sends
//! each leg its packet. Symmetric RTP: a leg sends to where its packets come from, so phones
//! behind NAT are reached through the binding their own packets opened. A browser's leg has
//! no sockets here: its peer connection (DTLS-SRTP, ICE, RTCP) hands packets in and out
//! through a pair of channels, drained on the same tick. What call control must know (digits,
//! talk spurts, finished prompts, silent legs, statistics) goes back as [`MediaEvent`]s.
//!
//! Workers share nothing on the packet path: a room and all its legs live on one worker. The
//! tables here are keyed by our own ids and the rooms' numbers, never by what a packet says,
//! so they use a fast hash rather than a keyed one.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use mixer::conference::{Conference, ConferenceEvent, LegConfig, LegId, PlayTarget};
use mixer::source::{SourceGuard, SourcePolicy, Verdict};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use rtc_shared::marshal::{Marshal, Unmarshal};
use rustc_hash::FxHashMap;
use tokio::sync::mpsc;

use super::srtp::Srtp;
use super::{rtcp_beside, Audience, LegSetup, MediaCommand, MediaEvent, ParticipantId, Wire};
use crate::ids::RoomNumber;
use crate::limits::shrink_sparse;

const TICK: Duration = Duration::from_millis(20);
/// How often each leg sends an RTCP report (RFC 3550 §6.2 suggests 5 s at the least).
const RTCP_INTERVAL: Duration = Duration::from_secs(5);
/// How often each leg's figures go to call control.
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// Ticks run late by more than this are skipped rather than caught up in a burst.
const MAX_LATENESS: Duration = Duration::from_millis(200);
/// Readiness events taken from the kernel at a time.
pub(super) const EVENTS: usize = 1024;

/// What every worker is started with.
#[derive(Clone)]
pub(super) struct WorkerConfig {
    pub rate: u32,
    pub rtp_timeout: Duration,
    pub hold_timeout: Option<Duration>,
    pub source_policy: SourcePolicy,
    pub events: mpsc::Sender<MediaEvent>,
    pub foreign_packets: Counter,
    pub shared_encodes: Counter,
    pub personal_encodes: Counter,
}

/// One conference and which participant each of its legs is.
struct Room {
    conference: Conference,
    participants: FxHashMap<LegId, ParticipantId>,
}

struct WorkerLeg {
    room: RoomNumber,
    leg: LegId,
    config: LegConfig,
    wire: Wire,
    srtp: Option<Srtp>,
    /// Which address RTP and RTCP may come from ([`Wire::Udp`] legs).
    source: SourceGuard,
    /// The address the SDP named last: a re-INVITE naming another one moves the leg.
    sdp_remote: Option<SocketAddr>,
    /// Where the SDP said RTCP comes from (`a=rtcp`, or the port above RTP's).
    sdp_rtcp: Option<SocketAddr>,
    /// Foreign packets already counted in the metric.
    foreign_reported: u64,
    /// The RTP and the RTCP socket have had data since they were last drained.
    ready: [bool; 2],
    last_rtp: Instant,
    timed_out: bool,
    /// Since when the leg is on hold (None: not on hold).
    on_hold: Option<Instant>,
    next_rtcp: Instant,
    next_stats: Instant,
}

pub(super) struct Worker {
    config: WorkerConfig,
    /// This worker's series of `mixer_tick_seconds`.
    tick_seconds: Histogram,
    commands: std_mpsc::Receiver<MediaCommand>,
    rooms: FxHashMap<RoomNumber, Room>,
    legs: FxHashMap<ParticipantId, WorkerLeg>,
    /// Which of the legs' sockets have data: a tick reads only those.
    poll: Poll,
    events: Events,
    buffer: Vec<u8>,
    /// Where received RTP is kept for the mixer: each packet is a `Bytes` view of it (its
    /// payload too, without a copy), and once the mixer has dropped them all the space is
    /// taken again, so receiving allocates nothing per packet (SRTP's decryption does).
    inbound: BytesMut,
}

/// [`Worker::inbound`]'s size: about 80 G.711 packets between reclaims.
const INBOUND: usize = 16 * 1024;

impl Worker {
    pub(super) fn new(
        config: WorkerConfig,
        tick_seconds: Histogram,
        commands: std_mpsc::Receiver<MediaCommand>,
    ) -> std::io::Result<Worker> {
        Ok(Worker {
            config,
            tick_seconds,
            commands,
            rooms: FxHashMap::default(),
            legs: FxHashMap::default(),
            poll: Poll::new()?,
            events: Events::with_capacity(EVENTS),
            buffer: vec![0; 2048],
            inbound: BytesMut::with_capacity(INBOUND),
        })
    }

    /// Ticks until call control drops its handle.
    #[allow(clippy::disallowed_methods)] // the media worker's loop paces the ticks
    pub(super) fn run(mut self) {
        let mut next = Instant::now() + TICK;
        loop {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
            let now = Instant::now();
            if now > next + MAX_LATENESS {
                tracing::warn!(late_ms = (now - next).as_millis() as u64, "media ticks skipped");
                next = now;
            }
            next += TICK;
            if !self.take_commands(now) {
                return;
            }
            self.receive(now);
            self.tick_all();
            self.housekeeping(now);
            self.tick_seconds.observe(now.elapsed().as_secs_f64());
        }
    }

    /// Applies queued commands; false when call control is gone.
    fn take_commands(&mut self, now: Instant) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(command) => self.apply(now, command),
                Err(std_mpsc::TryRecvError::Empty) => return true,
                Err(std_mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn apply(&mut self, now: Instant, command: MediaCommand) {
        match command {
            MediaCommand::Add(setup) => self.add(now, *setup),
            MediaCommand::Remove(id) => {
                if let Some(leg) = self.legs.remove(&id) {
                    if let Wire::Udp { rtp, rtcp, .. } = &leg.wire {
                        deregister(&self.poll, rtp, rtcp.as_ref());
                    }
                    shrink_sparse(&mut self.legs);
                    if let Some(room) = self.rooms.get_mut(&leg.room) {
                        room.conference.remove_leg(leg.leg);
                        room.participants.remove(&leg.leg);
                        shrink_sparse(&mut room.participants);
                        if room.conference.is_empty() {
                            self.rooms.remove(&leg.room);
                            shrink_sparse(&mut self.rooms);
                        }
                    }
                }
            }
            MediaCommand::Update { id, config, remote, on_hold, srtp } => {
                let Some(leg) = self.legs.get_mut(&id) else { return };
                if let Err(e) = Srtp::rekey(&mut leg.srtp, srtp) {
                    tracing::error!(participant = %id, error = %e, "SRTP keys not taken");
                }
                let Some(room) = self.rooms.get_mut(&leg.room) else { return };
                // A new codec or payload type restarts the leg's codec state; keep its flags.
                let changed = (config.codec, config.payload_type, config.telephone_event)
                    != (leg.config.codec, leg.config.payload_type, leg.config.telephone_event);
                if changed {
                    let stats = room.conference.stats(leg.leg);
                    let (muted, deaf) = stats.map_or((false, false), |s| (s.muted, s.deaf));
                    room.conference.remove_leg(leg.leg);
                    room.participants.remove(&leg.leg);
                    leg.config = config.clone();
                    leg.leg = room.conference.add_leg(config);
                    room.conference.set_muted(leg.leg, muted);
                    room.conference.set_deaf(leg.leg, deaf);
                    room.participants.insert(leg.leg, id);
                }
                // The SDP moved the media (not a refresh repeating the same address, which
                // behind NAT is not where the packets come from): learn the peer again.
                if let (Some(new), Wire::Udp { remote, .. }) = (remote, &mut leg.wire) {
                    if leg.sdp_remote != Some(new) {
                        leg.sdp_remote = Some(new);
                        leg.sdp_rtcp = rtcp_beside(new);
                        leg.source.expect(new);
                        *remote = Some(new);
                    }
                }
                leg.source.set_held(on_hold);
                leg.on_hold = match (on_hold, leg.on_hold) {
                    (true, Some(since)) => Some(since),
                    (true, None) => Some(now),
                    (false, _) => None,
                };
                leg.last_rtp = now;
                leg.timed_out = false;
                room.conference.set_on_hold(leg.leg, on_hold);
            }
            MediaCommand::Join(id) => {
                self.with_leg(id, |c, leg| {
                    c.set_muted(leg, false);
                    c.set_deaf(leg, false);
                });
            }
            MediaCommand::SetMuted(id, muted) => self.with_leg(id, |c, leg| {
                c.set_muted(leg, muted);
            }),
            MediaCommand::SetDeaf(id, deaf) => self.with_leg(id, |c, leg| {
                c.set_deaf(leg, deaf);
            }),
            MediaCommand::Play(Audience::Leg(id), samples) => self.with_leg(id, |c, leg| {
                c.play(PlayTarget::Leg(leg), samples);
            }),
            MediaCommand::Play(Audience::Room(room), samples) => {
                if let Some(room) = self.rooms.get_mut(&room) {
                    room.conference.play(PlayTarget::Everyone, samples);
                }
            }
            // Routed to the video workers before it gets here.
            MediaCommand::Video(_) => {}
        }
    }

    fn add(&mut self, now: Instant, setup: LegSetup) {
        let srtp = match setup.srtp.map(Srtp::new).transpose() {
            Ok(srtp) => srtp,
            Err(e) => {
                tracing::error!(participant = %setup.id, error = %e, "SRTP keys not taken; leg not added");
                return;
            }
        };
        if let Wire::Udp { rtp, rtcp, .. } = &setup.wire {
            if let Err(e) = register(&self.poll, setup.id, rtp, rtcp.as_ref()) {
                tracing::error!(error = %e, "RTP socket cannot be polled; leg not added");
                return;
            }
        }
        let rate = self.config.rate;
        let room = self.rooms.entry(setup.room.clone()).or_insert_with(|| Room {
            conference: Conference::new(rate),
            participants: FxHashMap::default(),
        });
        let leg = room.conference.add_leg(setup.config.clone());
        if !setup.joined {
            room.conference.set_muted(leg, true);
            room.conference.set_deaf(leg, true);
        }
        room.participants.insert(leg, setup.id);
        let (sdp_remote, sdp_rtcp) = match &setup.wire {
            Wire::Udp { remote, remote_rtcp, .. } => (*remote, *remote_rtcp),
            Wire::Channel { .. } => (None, None),
        };
        self.legs.insert(
            setup.id,
            WorkerLeg {
                room: setup.room,
                leg,
                config: setup.config,
                wire: setup.wire,
                srtp,
                source: SourceGuard::new(self.config.source_policy, sdp_remote),
                sdp_remote,
                sdp_rtcp,
                foreign_reported: 0,
                // Whatever came before the sockets were polled is read on the first tick.
                ready: [true, true],
                last_rtp: now,
                timed_out: false,
                on_hold: None,
                next_rtcp: now + RTCP_INTERVAL,
                next_stats: now + STATS_INTERVAL,
            },
        );
    }

    fn with_leg(&mut self, id: ParticipantId, f: impl FnOnce(&mut Conference, LegId)) {
        if let Some(leg) = self.legs.get(&id) {
            if let Some(room) = self.rooms.get_mut(&leg.room) {
                f(&mut room.conference, leg.leg);
            }
        }
    }

    /// Drains every leg's sockets (or channel) into its conference.
    fn receive(&mut self, now: Instant) {
        self.take_readiness();
        for leg in self.legs.values_mut() {
            let [rtp_ready, rtcp_ready] = std::mem::take(&mut leg.ready);
            if matches!(leg.wire, Wire::Udp { .. }) && !rtp_ready && !rtcp_ready {
                continue;
            }
            let Some(room) = self.rooms.get_mut(&leg.room) else { continue };
            match &mut leg.wire {
                Wire::Udp { .. } if !rtp_ready => {}
                Wire::Udp { rtp, rtcp, remote, remote_rtcp } => loop {
                    let (n, src) = match rtp.recv_from(&mut self.buffer) {
                        Ok(got) => got,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        // ICMP port unreachable from an earlier send, and the like: keep reading.
                        Err(e) if e.kind() == ErrorKind::ConnectionRefused => continue,
                        Err(e) => {
                            tracing::debug!(error = %e, "RTP receive failed");
                            break;
                        }
                    };
                    let datagram = &self.buffer[..n];
                    if is_rtcp(datagram) {
                        if leg.source.check_rtcp(src, leg.sdp_rtcp) {
                            let _ = receive_rtcp(&mut room.conference, now, leg.leg, &mut leg.srtp, datagram);
                        }
                        continue;
                    }
                    // SRTP that does not authenticate is dropped before anything reads it, so
                    // nobody without the key is ever learnt as the source.
                    let plain = match &mut leg.srtp {
                        Some(srtp) => match srtp.unprotect_rtp(datagram) {
                            Some(plain) => Some(plain),
                            None => continue,
                        },
                        None => None,
                    };
                    let mut bytes = match plain {
                        Some(plain) => plain.freeze(),
                        None => {
                            // Gives back the space of packets already dropped.
                            self.inbound.reserve(datagram.len());
                            self.inbound.extend_from_slice(datagram);
                            self.inbound.split().freeze()
                        }
                    };
                    let Ok(packet) = rtp::Packet::unmarshal(&mut bytes) else { continue };
                    if packet.header.version != 2 {
                        continue;
                    }
                    // Symmetric RTP (RFC 4961) to the learnt source only: answer to where the
                    // peer's packets come from, never to whoever sent last.
                    match leg.source.check_rtp(now, src, packet.header.ssrc, packet.header.sequence_number) {
                        Verdict::Accept => {}
                        Verdict::Learned => {
                            tracing::debug!(remote = %src, "RTP source learned");
                            *remote = Some(src);
                            if rtcp.is_none() {
                                *remote_rtcp = Some(src);
                            }
                        }
                        Verdict::Drop => continue,
                    }
                    leg.last_rtp = now;
                    room.conference.receive(now, leg.leg, &packet);
                },
                Wire::Channel { incoming, .. } => {
                    while let Ok(packet) = incoming.try_recv() {
                        leg.last_rtp = now;
                        room.conference.receive(now, leg.leg, &packet);
                    }
                }
            }
            if let (true, Wire::Udp { rtcp: Some(rtcp), remote_rtcp, .. }) = (rtcp_ready, &mut leg.wire) {
                // Drained until it would block, as readiness is reported once per arrival; an
                // ICMP error from an earlier send does not end the drain.
                loop {
                    let (n, src) = match rtcp.recv_from(&mut self.buffer) {
                        Ok(got) => got,
                        Err(e) if e.kind() == ErrorKind::ConnectionRefused => continue,
                        Err(_) => break,
                    };
                    // Reports go back to where authentic ones from the peer's host come from.
                    if leg.source.check_rtcp(src, leg.sdp_rtcp)
                        && receive_rtcp(&mut room.conference, now, leg.leg, &mut leg.srtp, &self.buffer[..n])
                    {
                        *remote_rtcp = Some(src);
                    }
                }
            }
        }
    }

    /// Marks the sockets the kernel says have data.
    fn take_readiness(&mut self) {
        let legs = &mut self.legs;
        take_ready(&mut self.poll, &mut self.events, Duration::ZERO, |id, kind| {
            if let Some(leg) = legs.get_mut(&id) {
                leg.ready[kind] = true;
            }
        });
    }

    /// Every conference's tick; each leg's packet goes out on its socket.
    fn tick_all(&mut self) {
        for room in self.rooms.values_mut() {
            let legs = &mut self.legs;
            let participants = &room.participants;
            let wire = &mut self.buffer;
            room.conference.tick(|leg, packet| {
                let Some(worker_leg) = participants.get(&leg).and_then(|id| legs.get_mut(id)) else { return };
                match &worker_leg.wire {
                    Wire::Udp { rtp, remote: Some(remote), .. } => {
                        // Into the worker's buffer: no allocation per packet (but for SRTP's).
                        let n = match packet.marshal_to(wire) {
                            Ok(n) => n,
                            Err(e) => return tracing::debug!(error = %e, "RTP packet does not marshal"),
                        };
                        send(rtp, *remote, &wire[..n], &mut worker_leg.srtp, Srtp::protect_rtp);
                    }
                    Wire::Udp { remote: None, .. } => {}
                    // The payload is shared, not copied; a connection that is behind loses
                    // this packet only.
                    Wire::Channel { outgoing, .. } => drop(outgoing.try_send(packet.clone())),
                }
            });
            let stats = room.conference.tick_stats();
            self.config.shared_encodes.inc_by(u64::from(stats.shared_encodes));
            self.config.personal_encodes.inc_by(u64::from(stats.personal_encodes));
            while let Some(event) = room.conference.poll_event() {
                let event = match event {
                    ConferenceEvent::Dtmf { leg, digit } => {
                        participants.get(&leg).map(|&id| MediaEvent::Dtmf { id, digit })
                    }
                    ConferenceEvent::SpeakingStarted { leg } => {
                        participants.get(&leg).map(|&id| MediaEvent::Talking { id, talking: true })
                    }
                    ConferenceEvent::SpeakingStopped { leg } => {
                        participants.get(&leg).map(|&id| MediaEvent::Talking { id, talking: false })
                    }
                    ConferenceEvent::PromptFinished { leg: Some(leg) } => {
                        participants.get(&leg).map(|&id| MediaEvent::PromptFinished { id })
                    }
                    ConferenceEvent::PromptFinished { leg: None } => None,
                };
                if let Some(event) = event {
                    emit(&self.config.events, event);
                }
            }
        }
    }

    /// RTCP reports, statistics and RTP timeouts.
    fn housekeeping(&mut self, now: Instant) {
        for (&id, leg) in &mut self.legs {
            let Some(room) = self.rooms.get_mut(&leg.room) else { continue };
            // A peer connection sends its own RTCP.
            if let (true, Wire::Udp { rtp, rtcp, remote, remote_rtcp }) = (now >= leg.next_rtcp, &leg.wire) {
                leg.next_rtcp = now + RTCP_INTERVAL;
                let target = remote_rtcp.or(remote.and_then(rtcp_beside));
                if let (Some(report), Some(target)) =
                    (room.conference.rtcp_report(leg.leg, now, ntp_now()), target)
                {
                    let socket = rtcp.as_ref().unwrap_or(rtp);
                    send(socket, target, &report, &mut leg.srtp, Srtp::protect_rtcp);
                }
            }
            if now >= leg.next_stats {
                leg.next_stats = now + STATS_INTERVAL;
                if let Some(stats) = room.conference.stats(leg.leg) {
                    let foreign_packets = leg.source.foreign_packets();
                    self.config.foreign_packets.inc_by(foreign_packets - leg.foreign_reported);
                    leg.foreign_reported = foreign_packets;
                    emit(&self.config.events, MediaEvent::Stats { id, stats, foreign_packets });
                }
            }
            if leg.on_hold.is_none()
                && !leg.timed_out
                && now.duration_since(leg.last_rtp) >= self.config.rtp_timeout
            {
                leg.timed_out = true;
                emit(&self.config.events, MediaEvent::RtpTimeout { id });
            }
            let held_too_long =
                leg.on_hold.zip(self.config.hold_timeout).is_some_and(|(since, limit)| now - since >= limit);
            if held_too_long && !leg.timed_out {
                leg.timed_out = true;
                emit(&self.config.events, MediaEvent::HoldTimeout { id });
            }
        }
    }
}

/// Hands `ready` each socket the kernel says has data, waiting up to `wait` for the first:
/// the leg's id and which of its sockets (0 RTP, 1 RTCP). Readiness is edge-triggered: a socket
/// is reported once when data arrives, so each is to be drained until it would block.
pub(super) fn take_ready(
    poll: &mut Poll,
    events: &mut Events,
    wait: Duration,
    mut ready: impl FnMut(ParticipantId, usize),
) {
    let mut wait = Some(wait);
    loop {
        if let Err(e) = poll.poll(events, wait) {
            if e.kind() != ErrorKind::Interrupted {
                tracing::warn!(error = %e, "media sockets not polled");
            }
            return;
        }
        let mut n = 0;
        for event in events.iter() {
            n += 1;
            ready(ParticipantId((event.token().0 / 2) as u64), event.token().0 % 2);
        }
        if n < EVENTS {
            return;
        }
        wait = Some(Duration::ZERO);
    }
}

/// Registers a leg's RTP socket and, without `rtcp-mux`, its RTCP one for readiness, made
/// non-blocking; on failure none stays registered.
pub(super) fn register(
    poll: &Poll,
    id: ParticipantId,
    rtp: &UdpSocket,
    rtcp: Option<&UdpSocket>,
) -> std::io::Result<()> {
    for (socket, kind) in std::iter::once(rtp).chain(rtcp).zip(0..) {
        let fd = socket.as_raw_fd();
        let registered = socket
            .set_nonblocking(true)
            .and_then(|()| poll.registry().register(&mut SourceFd(&fd), token(id, kind), Interest::READABLE));
        if let Err(e) = registered {
            if kind == 1 {
                let _ = poll.registry().deregister(&mut SourceFd(&rtp.as_raw_fd()));
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Stops polling a leg's sockets.
pub(super) fn deregister(poll: &Poll, rtp: &UdpSocket, rtcp: Option<&UdpSocket>) {
    for socket in std::iter::once(rtp).chain(rtcp) {
        let _ = poll.registry().deregister(&mut SourceFd(&socket.as_raw_fd()));
    }
}

/// A leg's RTP (`kind` 0) or RTCP (1) socket's token.
pub(super) fn token(id: ParticipantId, kind: usize) -> Token {
    Token(id.0 as usize * 2 + kind)
}

/// RTP or RTCP to the peer, protected first on an SRTP leg by `protect`. A full send buffer,
/// an unreachable peer or a packet that does not protect loses this packet only.
pub(super) fn send(
    socket: &UdpSocket,
    target: SocketAddr,
    packet: &[u8],
    srtp: &mut Option<Srtp>,
    protect: fn(&mut Srtp, &[u8]) -> Option<bytes::BytesMut>,
) {
    match srtp {
        Some(srtp) => {
            if let Some(protected) = protect(srtp, packet) {
                let _ = socket.send_to(&protected, target);
            }
        }
        None => {
            let _ = socket.send_to(packet, target);
        }
    }
}

/// The peer's RTCP into its conference, unprotected first on an SRTP leg; false when it does
/// not authenticate (and is dropped).
fn receive_rtcp(
    conference: &mut Conference,
    now: Instant,
    leg: LegId,
    srtp: &mut Option<Srtp>,
    datagram: &[u8],
) -> bool {
    match srtp {
        Some(srtp) => match srtp.unprotect_rtcp(datagram) {
            Some(plain) => {
                conference.receive_rtcp(now, leg, &plain);
                true
            }
            None => false,
        },
        None => {
            conference.receive_rtcp(now, leg, datagram);
            true
        }
    }
}

/// Events never block the media thread: when call control is that far behind, figures are
/// dropped (the next ones follow within a second) and the loss is logged.
pub(super) fn emit(events: &mpsc::Sender<MediaEvent>, event: MediaEvent) {
    if let Err(mpsc::error::TrySendError::Full(event)) = events.try_send(event) {
        tracing::warn!(?event, "media event dropped: call control is behind");
    }
}

/// The wall clock as a 64-bit NTP timestamp (RFC 3550 §4).
#[allow(clippy::disallowed_methods)] // RTCP sender reports carry the wall clock
pub(super) fn ntp_now() -> u64 {
    const UNIX_TO_NTP_SECS: u64 = 2_208_988_800;
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() + UNIX_TO_NTP_SECS;
    let frac = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// RFC 5761 §4: RTCP packet types 192–223 in the second byte tell RTCP from RTP on one port.
pub(super) fn is_rtcp(datagram: &[u8]) -> bool {
    datagram.len() >= 2 && (192..=223).contains(&datagram[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtcp_is_told_from_rtp_by_packet_type() {
        assert!(is_rtcp(&[0x80, 200, 0, 6]), "SR");
        assert!(is_rtcp(&[0x81, 201, 0, 7]), "RR");
        assert!(!is_rtcp(&[0x80, 0, 0, 1]), "PCMU");
        assert!(!is_rtcp(&[0x80, 0x80 | 101]), "telephone-event with marker");
        assert!(!is_rtcp(&[0x80]));
    }
}
