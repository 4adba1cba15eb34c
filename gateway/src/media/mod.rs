//! The media plane: media workers, one thread each (one per core by default), that own the
//! rooms' mixers and their legs' RTP (see [`worker`]), and call control's handle on them,
//! [`Media`], which places each room on a worker and sends every command to the worker that
//! carries its leg or room. What the workers report comes back on one channel as
//! [`MediaEvent`]s.

mod placement;
pub mod ports;
pub mod prompts;
pub mod srtp;
pub mod video;
mod worker;

use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::Duration;

use mixer::conference::{LegConfig, LegStats};
use mixer::source::SourcePolicy;
use mixer::video::room::{VideoLegStats, VideoRoomConfig};
use prometheus_client::metrics::gauge::Gauge;
use sip_stack::sdp::sdes::SrtpKeys;
use tokio::sync::mpsc;

use self::placement::Placement;
use self::video::{VideoCommand, VideoWorker, VideoWorkerConfig};
use self::worker::{Worker, WorkerConfig};
use crate::ids::RoomNumber;
use crate::metrics::{EncodeLabels, Metrics, WorkerLabels};

/// A participant: one leg of one conference, named by call control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ParticipantId(pub u64);

impl std::fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A new leg: how its packets travel, and how its RTP looks.
#[derive(Debug)]
pub struct LegSetup {
    pub id: ParticipantId,
    pub room: RoomNumber,
    pub config: LegConfig,
    pub wire: Wire,
    /// SRTP keys from SDP (SDES) for a [`Wire::Udp`] leg; `None` for plain RTP.
    pub srtp: Option<SrtpKeys>,
    /// False while in the IVR: not mixed in, hears only its prompts.
    pub joined: bool,
}

/// How a leg's packets reach the worker and leave it.
#[derive(Debug)]
pub enum Wire {
    /// Plain RTP/RTCP on our own sockets (SIP phones, trunks, MCUs).
    Udp {
        rtp: UdpSocket,
        /// None with `rtcp-mux`: RTCP shares the RTP socket.
        rtcp: Option<UdpSocket>,
        /// From the peer's SDP, until its packets show where it really is.
        remote: Option<SocketAddr>,
        remote_rtcp: Option<SocketAddr>,
    },
    /// Packets already decrypted by a peer connection, which also does the leg's RTCP.
    Channel {
        incoming: std_mpsc::Receiver<rtp::Packet>,
        /// Full means the connection is behind: the packet is dropped, never waited for.
        outgoing: mpsc::Sender<rtp::Packet>,
    },
}

/// Who hears a prompt.
#[derive(Debug, Clone)]
pub enum Audience {
    Leg(ParticipantId),
    Room(RoomNumber),
}

#[derive(Debug)]
pub enum MediaCommand {
    Add(Box<LegSetup>),
    Remove(ParticipantId),
    /// After a re-INVITE/UPDATE: a new codec (the leg restarts), a new remote, hold or resume.
    Update {
        id: ParticipantId,
        config: LegConfig,
        remote: Option<SocketAddr>,
        on_hold: bool,
        /// New keys restart the SRTP contexts; the same keys keep them (and their counters).
        srtp: Option<SrtpKeys>,
    },
    /// Out of the IVR into the mix.
    Join(ParticipantId),
    SetMuted(ParticipantId, bool),
    SetDeaf(ParticipantId, bool),
    Play(Audience, Arc<[i16]>),
    /// For the video workers.
    Video(VideoCommand),
}

#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    Dtmf {
        id: ParticipantId,
        digit: char,
    },
    Talking {
        id: ParticipantId,
        talking: bool,
    },
    /// A prompt to one leg finished.
    PromptFinished {
        id: ParticipantId,
    },
    /// No RTP for the configured time from a leg that is not on hold.
    RtpTimeout {
        id: ParticipantId,
    },
    /// On hold for longer than the configured time: a held call must not keep its slot and
    /// ports forever.
    HoldTimeout {
        id: ParticipantId,
    },
    Stats {
        id: ParticipantId,
        stats: LegStats,
        /// RTP and RTCP packets dropped because they came from another address than the
        /// leg's learnt source.
        foreign_packets: u64,
    },
    /// Ask the leg's phone for a keyframe by SIP INFO (it negotiated no RTCP feedback).
    VideoKeyframeByInfo {
        id: ParticipantId,
    },
    VideoStats {
        id: ParticipantId,
        stats: VideoLegStats,
    },
}

/// Call control's handle on the workers. The workers stop when it is dropped.
pub struct Media {
    workers: Vec<std_mpsc::Sender<MediaCommand>>,
    placement: Placement,
    /// Legs on each worker, as the metric shows them.
    legs: Vec<Gauge>,
    /// The video workers (none with video off), and which carries each room's video.
    video: Vec<std_mpsc::Sender<VideoCommand>>,
    video_placement: Placement,
}

/// How many video workers to start, and each room's picture.
#[derive(Debug, Clone, Copy)]
pub struct VideoPlane {
    pub workers: usize,
    pub room: VideoRoomConfig,
}

impl Media {
    /// Starts `workers` media threads (at least one); every conference mixes at `rate`
    /// (16000 or 48000). With `video`, its video workers too.
    pub fn start(
        workers: usize,
        rate: u32,
        rtp_timeout: Duration,
        hold_timeout: Option<Duration>,
        source_policy: SourcePolicy,
        video: Option<VideoPlane>,
        metrics: &Metrics,
    ) -> std::io::Result<(Media, mpsc::Receiver<MediaEvent>)> {
        let (events, event_rx) = mpsc::channel(8192);
        // One at a time: a family's guard held across a second `get_or_create` deadlocks.
        let shared_encodes = metrics.media.encodes.get_or_create(&EncodeLabels { kind: "shared" }).clone();
        let personal_encodes =
            metrics.media.encodes.get_or_create(&EncodeLabels { kind: "personal" }).clone();
        let config = WorkerConfig {
            rate,
            rtp_timeout,
            hold_timeout,
            source_policy,
            events: events.clone(),
            foreign_packets: metrics.media.rtp_foreign_packets.clone(),
            shared_encodes,
            personal_encodes,
        };
        let workers = workers.max(1);
        let video_workers = video.map_or(0, |v| v.workers.max(1));
        let mut media = Media {
            workers: Vec::new(),
            placement: Placement::new(workers),
            legs: Vec::new(),
            video: Vec::new(),
            video_placement: Placement::new(video_workers.max(1)),
        };
        for n in 0..workers {
            let (commands, command_rx) = std_mpsc::channel();
            let labels = WorkerLabels { worker: n.to_string() };
            let tick_seconds = metrics.media.tick_seconds.get_or_create(&labels).clone();
            let worker = Worker::new(config.clone(), tick_seconds, command_rx)?;
            std::thread::Builder::new().name(format!("media-{n}")).spawn(move || worker.run())?;
            media.workers.push(commands);
            let gauge = metrics.media.worker_legs.get_or_create(&labels).clone();
            gauge.set(0);
            media.legs.push(gauge);
        }
        if let Some(video) = video {
            let config = VideoWorkerConfig {
                room: video.room,
                source_policy,
                events,
                foreign_packets: metrics.media.rtp_foreign_packets.clone(),
                stage_seconds: metrics.media.video_seconds.clone(),
                encodes: metrics.media.video_encodes.clone(),
            };
            for n in 0..video_workers {
                let (commands, command_rx) = std_mpsc::channel();
                let worker = VideoWorker::new(config.clone(), command_rx)?;
                std::thread::Builder::new().name(format!("video-{n}")).spawn(move || worker.run())?;
                media.video.push(commands);
            }
        }
        tracing::info!(workers, video_workers, "media workers started");
        Ok((media, event_rx))
    }

    /// Queues a command for the next tick of the worker that carries its leg or room (a new
    /// leg's room is placed first); false once that worker is gone. A command for a leg or
    /// room no worker carries is dropped.
    pub fn send(&mut self, command: MediaCommand) -> bool {
        let command = match command {
            MediaCommand::Video(command) => return self.send_video(command),
            command => command,
        };
        let worker = match &command {
            MediaCommand::Video(_) => None,
            MediaCommand::Add(setup) => Some(self.placement.add(setup.id, &setup.room)),
            MediaCommand::Remove(id) => self.placement.remove(*id),
            MediaCommand::Update { id, .. }
            | MediaCommand::Join(id)
            | MediaCommand::SetMuted(id, _)
            | MediaCommand::SetDeaf(id, _)
            | MediaCommand::Play(Audience::Leg(id), _) => self.placement.worker_of(*id),
            MediaCommand::Play(Audience::Room(room), _) => self.placement.room_worker(room),
        };
        if let MediaCommand::Remove(id) = command {
            // A leg's video goes with it.
            self.send_video(VideoCommand::Remove(id));
        }
        let Some(worker) = worker else { return true };
        if matches!(command, MediaCommand::Add(_) | MediaCommand::Remove(_)) {
            self.legs[worker].set(self.placement.load(worker) as i64);
        }
        self.workers[worker].send(command).is_ok()
    }

    /// [`Media::send`] for the video workers: a room's video is placed on the one with the
    /// fewest legs. Dropped with video off, or for a leg without video.
    fn send_video(&mut self, command: VideoCommand) -> bool {
        if self.video.is_empty() {
            return true;
        }
        let worker = match (&command, command.participant()) {
            (VideoCommand::Add(setup), _) => Some(self.video_placement.add(setup.id, &setup.room)),
            (VideoCommand::AddWithoutVideo { id, room, .. }, _) => Some(self.video_placement.add(*id, room)),
            (VideoCommand::Remove(id), _) => self.video_placement.remove(*id),
            (VideoCommand::Layout(room, _) | VideoCommand::Presenter(room, _), _) => {
                self.video_placement.room_worker(room)
            }
            (_, Some(id)) => self.video_placement.worker_of(id),
            (_, None) => None,
        };
        let Some(worker) = worker else { return true };
        self.video[worker].send(command).is_ok()
    }
}

/// RFC 3550 §11: without `rtcp-mux` or `a=rtcp`, RTCP goes to the RTP port + 1 (none when the
/// RTP port is the last one).
pub fn rtcp_beside(rtp: SocketAddr) -> Option<SocketAddr> {
    rtp.port().checked_add(1).map(|port| SocketAddr::new(rtp.ip(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtcp_goes_beside_rtp_except_past_the_last_port() {
        let rtp: SocketAddr = "192.0.2.1:40000".parse().unwrap();
        assert_eq!(rtcp_beside(rtp), Some("192.0.2.1:40001".parse().unwrap()));
        assert_eq!(rtcp_beside("192.0.2.1:65535".parse().unwrap()), None, "no overflow from the network");
    }
}
