//! A call's video: the answer's video line, the leg in the room's video once it has joined
//! (a caller still at the PIN prompt neither sees the room nor is seen), and keyframes asked
//! by SIP INFO both ways (RFC 5168) for phones that negotiated no RTCP feedback.

use mixer::video::h264_rtp::PacketizationMode;
use mixer::video::room::{FeedbackSupport, VideoCodecKind, VideoLegConfig, VideoLegStats, ViewerLimits};
use sip_stack::sdp::video::{Feedback, LocalVideo, VideoCodec, VideoKind, VideoStream};

use super::*;
use crate::config::{VideoConfig, VideoLayout};
use crate::control::VideoView;
use crate::media::video::{VideoCommand, VideoSetup};

/// The body of an INFO asking for a keyframe (RFC 5168 §3).
const PICTURE_FAST_UPDATE: &str = "<?xml version=\"1.0\" encoding=\"utf-8\" ?>\r\n<media_control>\r\n  \
     <vc_primitive>\r\n    <to_encoder>\r\n      <picture_fast_update/>\r\n    </to_encoder>\r\n  \
     </vc_primitive>\r\n</media_control>\r\n";
const MEDIA_CONTROL: &str = "application/media_control+xml";
/// The H.264 level we take from phones: 3.1, 1280×720 at 30 frames a second.
const H264_LEVEL: u8 = 31;

/// The call's video, when its offer had a stream we answered.
#[derive(Debug)]
pub(in crate::conference) struct CallVideo {
    pub local: LocalVideo,
    pub stream: VideoStream,
    /// The sockets, until the leg joins the room's video.
    pub ports: Option<PortPair>,
    /// Ours towards the phone, random (RFC 3550 §5.1).
    pub ssrc: u32,
    pub first_seq: u16,
    pub first_timestamp: u32,
    pub stats: Option<VideoLegStats>,
    /// The far end is a conference focus (its Contact says `isfocus`): it is sent the room
    /// without its own tile.
    pub cascade: bool,
    /// Pictures decoded a second, from the last two reports.
    pub fps: f64,
    last_report: Option<(Instant, u64)>,
}

impl CallVideo {
    pub fn new(local: LocalVideo, stream: VideoStream, ports: PortPair) -> CallVideo {
        CallVideo {
            local,
            stream,
            ports: Some(ports),
            ssrc: rand::random(),
            first_seq: rand::random(),
            first_timestamp: rand::random(),
            stats: None,
            cascade: false,
            fps: 0.0,
            last_report: None,
        }
    }

    /// The video worker's report at `now`.
    pub fn report(&mut self, now: Instant, stats: VideoLegStats) {
        if let Some((at, frames)) = self.last_report {
            let seconds = now.saturating_duration_since(at).as_secs_f64();
            if seconds > 0.0 {
                self.fps = stats.frames_decoded.saturating_sub(frames) as f64 / seconds;
            }
        }
        self.last_report = Some((now, stats.frames_decoded));
        self.stats = Some(stats);
    }

    pub fn view(&self) -> VideoView {
        let stats = self.stats.unwrap_or_default();
        let (received, lost) = (stats.packets_received, stats.packets_lost);
        VideoView {
            codec: match self.stream.codec {
                VideoCodec::H264(_) => "H264",
                VideoCodec::Vp8(_) => "VP8",
            },
            packetization_mode: match self.stream.codec {
                VideoCodec::H264(h) => h.packetization_mode,
                VideoCodec::Vp8(_) => 0,
            },
            direction: self.stream.direction.token(),
            width: stats.width,
            height: stats.height,
            fps: (self.fps * 10.0).round() / 10.0,
            frames_decoded: stats.frames_decoded,
            packet_loss: if received + lost == 0 { 0.0 } else { lost as f64 / (received + lost) as f64 },
            keyframes_asked: stats.keyframes_asked,
            keyframe_requests: stats.keyframe_requests,
            packets_sent: stats.packets_sent,
            retransmitted: stats.retransmitted,
            max_bitrate_bps: stats.max_bitrate_bps,
            tier: stats.tier,
        }
    }

    /// The room's view of the leg's video.
    pub fn leg_config(&self) -> VideoLegConfig {
        let stream = &self.stream;
        let mode = match stream.codec {
            VideoCodec::H264(h) if h.packetization_mode == 1 => PacketizationMode::NonInterleaved,
            _ => PacketizationMode::SingleNal,
        };
        let fb = stream.feedback;
        let limits = match stream.codec {
            VideoCodec::H264(h) => ViewerLimits {
                max_bitrate_bps: stream.max_send_bps,
                max_frame_macroblocks: Some(h.max_frame_macroblocks()),
                max_macroblocks_per_second: Some(h.max_macroblocks_per_second()),
            },
            VideoCodec::Vp8(v) => ViewerLimits {
                max_bitrate_bps: stream.max_send_bps,
                max_frame_macroblocks: v.max_fs,
                max_macroblocks_per_second: v.max_fs.zip(v.max_fr).map(|(fs, fr)| fs.saturating_mul(fr)),
            },
        };
        VideoLegConfig {
            codec: match stream.codec {
                VideoCodec::H264(_) => VideoCodecKind::H264,
                VideoCodec::Vp8(_) => VideoCodecKind::Vp8,
            },
            payload_type: stream.payload_type,
            mode,
            feedback: FeedbackSupport { nack: fb.nack, pli: fb.pli, fir: fb.fir },
            send: stream.direction.sends() && stream.remote.is_some(),
            receive: stream.direction.receives(),
            ssrc: self.ssrc,
            first_seq: self.first_seq,
            first_timestamp: self.first_timestamp,
            limits,
            cascade: self.cascade,
        }
    }
}

/// Our side of a call's video: H.264 at our level and VP8, the feedback we act on, our
/// bandwidth.
pub(in crate::conference) fn local_video(config: &VideoConfig, port: u16, srtp: Srtp) -> LocalVideo {
    LocalVideo {
        port,
        // H.264 first: what room systems and MCUs have in common; VP8 for what offers only it.
        codecs: vec![VideoKind::H264, VideoKind::Vp8],
        h264_level_idc: H264_LEVEL,
        max_fs: 3600,
        max_fr: config.frame_rate.max(30),
        max_receive_kbps: config.max_receive_kbps,
        direction: Direction::SendRecv,
        feedback: Feedback { nack: true, pli: true, fir: true, remb: false, tmmbr: false },
        srtp,
    }
}

/// Whether a request's or response's Contact is a conference focus's (RFC 4579 §5: an MCU,
/// a conference server, another gateway's room).
pub(in crate::conference) fn is_focus(headers: &rsip::Headers) -> bool {
    headers.iter().any(|h| match h {
        Header::Contact(c) => NameAddr::parse(c.value()).is_ok_and(|n| n.param("isfocus").is_some()),
        _ => false,
    })
}

/// Whether an INFO asks for a keyframe (RFC 5168's `picture_fast_update`).
pub(super) fn asks_keyframe(request: &InboundRequest) -> bool {
    let media_control = request.request.headers.iter().any(|h| match h {
        Header::ContentType(c) => c.value().trim().to_ascii_lowercase().starts_with(MEDIA_CONTROL),
        _ => false,
    });
    media_control
        && std::str::from_utf8(&request.request.body).is_ok_and(|body| body.contains("picture_fast_update"))
}

impl Core {
    /// Ports for the offer's video, when video is on and the offer has some.
    pub(super) fn video_ports(&mut self, offer: Option<&sdp::Session>) -> Option<PortPair> {
        if !self.shared.config.video.enabled || !offer.is_some_and(sdp::video::offers_video) {
            return None;
        }
        match self.ports.allocate() {
            Ok(ports) => Some(ports),
            Err(e) => {
                tracing::warn!(error = %e, "no RTP port for video: the call is answered with audio only");
                None
            }
        }
    }

    /// Whether some call in the room has its video running.
    fn room_has_video(&self, room: &RoomNumber) -> bool {
        self.calls.in_room(room).any(|c| c.video.as_ref().is_some_and(|v| v.ports.is_none()))
    }

    /// A joined participant without video (a call without, a browser) shown by its name in
    /// its room's picture, when the room has video.
    pub(in crate::conference) fn show_without_video(&mut self, id: ParticipantId) {
        let (room, name) = match (self.calls.calls.get(&id), self.calls.browsers.get(&id)) {
            (Some(call), _) if call.video.is_none() && call.joined() => {
                (call.room.number.clone(), call.name())
            }
            (_, Some(browser)) if browser.in_mix() => {
                (browser.room.number.clone(), browser.name().to_string())
            }
            _ => return,
        };
        if self.room_has_video(&room) {
            self.out.media(MediaCommand::Video(VideoCommand::AddWithoutVideo { id, room, name }));
        }
    }

    /// A joined call's video into its room's; the first in a room brings in everyone there
    /// without video, by name.
    pub(in crate::conference) fn start_video(&mut self, id: ParticipantId) {
        let first = self.calls.calls.get(&id).is_some_and(|c| !self.room_has_video(&c.room.number));
        self.start_own_video(id);
        let Some(room) = self.calls.calls.get(&id).map(|c| c.room.number.clone()) else { return };
        if first && self.room_has_video(&room) {
            let others: Vec<ParticipantId> = self
                .calls
                .in_room(&room)
                .map(|c| c.id)
                .chain(self.calls.browsers.values().filter(|b| b.room.number == room).map(|b| b.id))
                .filter(|&other| other != id)
                .collect();
            for other in others {
                self.show_without_video(other);
            }
        }
    }

    fn start_own_video(&mut self, id: ParticipantId) {
        let Some(call) = self.calls.call_mut(id) else { return };
        if !call.joined() || !matches!(call.media, Media::Running) {
            return;
        }
        let name = call.name();
        let room = call.room.number.clone();
        let stored = call.room.layout;
        let Some(video) = &mut call.video else { return };
        let Some(ports) = video.ports.take() else { return };
        let setup = VideoSetup {
            id,
            room,
            config: video.leg_config(),
            rtp: ports.rtp,
            rtcp: (!video.stream.rtcp_mux).then_some(ports.rtcp),
            remote: video.stream.remote,
            srtp: video.stream.srtp,
            name,
        };
        // The room's own layout until the API sets another for this conference.
        if let Some(layout) = stored {
            self.calls.layouts.entry(setup.room.clone()).or_insert((layout, None));
        }
        let set = self.calls.layouts.get(&setup.room).copied();
        let config = setup.config;
        tracing::info!(participant = %id, mode = ?config.mode, send = config.send, receive = config.receive, "video started");
        let room = setup.room.clone();
        self.out.media(MediaCommand::Video(VideoCommand::Add(Box::new(setup))));
        if let Some((layout, presenter)) = set {
            // The room's video may start afresh, in the layout the API set.
            let layout = crate::media::video::layout(layout);
            self.out.media(MediaCommand::Video(VideoCommand::Layout(room.clone(), layout)));
            self.out.media(MediaCommand::Video(VideoCommand::Presenter(room, presenter)));
        }
    }

    /// The layout of rooms the API set none for; `None` with video off.
    pub(in crate::conference) fn default_layout(&self) -> Option<VideoLayout> {
        let video = &self.shared.config.video;
        video.enabled.then_some(video.layout)
    }

    /// A live conference's layout, from the API.
    pub(in crate::conference) fn set_layout(
        &mut self,
        room: RoomNumber,
        layout: VideoLayout,
        presenter: Option<ParticipantId>,
    ) -> Result<ConferenceView, ControlError> {
        let Some(default) = self.default_layout() else { return Err(ControlError::VideoOff) };
        if self.calls.in_room(&room).next().is_none() {
            return Err(ControlError::NoSuchConference);
        }
        if presenter.is_some_and(|id| self.calls.view(id).is_none_or(|(r, _)| r != room)) {
            return Err(ControlError::NoSuchParticipant);
        }
        tracing::info!(room = %room, ?layout, ?presenter, "layout set");
        self.calls.layouts.insert(room.clone(), (layout, presenter));
        let mixer_layout = crate::media::video::layout(layout);
        self.out.media(MediaCommand::Video(VideoCommand::Layout(room.clone(), mixer_layout)));
        self.out.media(MediaCommand::Video(VideoCommand::Presenter(room.clone(), presenter)));
        let view = self.calls.conferences(Some(default)).into_iter().find(|c| c.room == room);
        view.ok_or(ControlError::NoSuchConference)
    }

    /// The answered video stream in force after a re-INVITE or UPDATE; none stops the
    /// leg's video both ways (its m-line refused or gone).
    pub(super) fn use_video_stream(&mut self, id: ParticipantId, stream: Option<VideoStream>) {
        let Some(call) = self.calls.call_mut(id) else { return };
        let Some(video) = &mut call.video else { return };
        let config = match stream {
            Some(stream) => {
                video.stream = stream;
                video.leg_config()
            }
            None => VideoLegConfig { send: false, receive: false, ..video.leg_config() },
        };
        let (remote, srtp) = (video.stream.remote, video.stream.srtp);
        self.out.media(MediaCommand::Video(VideoCommand::Update { id, config, remote, srtp }));
    }

    /// Asks a phone for a keyframe by INFO.
    pub(in crate::conference) fn ask_keyframe_by_info(&mut self, id: ParticipantId) {
        let Some(call) = self.calls.call_mut(id) else { return };
        let via = call.via();
        let mut request = call.dialog.request(Method::Info, &via, &new_branch());
        request.headers.retain(|h| !matches!(h, Header::ContentLength(_)));
        request.headers.push(Header::ContentType(MEDIA_CONTROL.into()));
        request.headers.push(Header::ContentLength((PICTURE_FAST_UPDATE.len() as u32).into()));
        request.body = PICTURE_FAST_UPDATE.as_bytes().to_vec();
        match self.layer.send_request(self.now.at, request, call.peer) {
            Ok(tx) => {
                self.calls.requests.insert(tx, Outgoing::Info);
            }
            Err(e) => tracing::debug!(participant = %id, error = %e, "keyframe INFO not sent"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::info;
    use super::*;

    #[test]
    fn picture_fast_update_is_read_in_its_content_type_only() {
        assert!(asks_keyframe(&info(MEDIA_CONTROL, PICTURE_FAST_UPDATE)));
        assert!(asks_keyframe(&info("Application/Media_Control+XML; charset=utf-8", PICTURE_FAST_UPDATE)));
        assert!(!asks_keyframe(&info("text/plain", PICTURE_FAST_UPDATE)));
        assert!(!asks_keyframe(&info(MEDIA_CONTROL, "<media_control/>")));
    }

    #[test]
    fn a_focus_is_known_by_its_contact() {
        let headers = |contact: &str| {
            let mut headers = rsip::Headers::default();
            headers.push(Header::Contact(contact.into()));
            headers
        };
        assert!(is_focus(&headers("<sip:conf1@192.0.2.4>;isfocus")));
        assert!(is_focus(&headers("\"MCU\" <sip:conf1@192.0.2.4;transport=tcp>;expires=60;isfocus")));
        assert!(
            !is_focus(&headers("<sip:alice@192.0.2.4;isfocus>")),
            "a URI parameter is not the feature tag"
        );
        assert!(!is_focus(&headers("<sip:alice@192.0.2.4>")));
    }
}
