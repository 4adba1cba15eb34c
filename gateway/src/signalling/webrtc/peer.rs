//! One browser's peer connection (webrtc-rs): ICE on the configured addresses, DTLS-SRTP,
//! Opus both ways with RTCP feedback from the default interceptors. Decrypted packets go to
//! the media worker through a bounded channel; the worker's packets for the browser come back
//! through another and are written to the connection's one audio track.

use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;

use rtc::ice::mdns::MulticastDnsMode;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_TELEPHONE_EVENT};
use rtc::peer_connection::transport::RTCDtlsRole;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::rtp_transceiver::RTCRtpTransceiverDirection;
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceCandidate, RTCIceCandidateInit,
    RTCIceCandidateType, RTCIceProtocol, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
    RTCSessionDescription, Registry, SettingEngineBuilder,
};

/// What the connection tells its session.
#[derive(Debug)]
pub enum PeerEvent {
    /// A local candidate to trickle to the page.
    Candidate(RTCIceCandidateInit),
    Connected,
    /// ICE or DTLS failed, or the connection closed.
    Failed,
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("the offer is not usable: {0}")]
    Offer(webrtc::error::Error),
    #[error("the peer connection cannot be set up: {0}")]
    Setup(webrtc::error::Error),
}

/// Everything a connection is built from.
pub struct PeerSetup {
    pub addresses: Vec<IpAddr>,
    pub public_address: Option<IpAddr>,
    pub port: u16,
    pub offer: String,
    /// Our sending SSRC: the one the media worker stamps on the mix.
    pub ssrc: u32,
    pub events: mpsc::Sender<PeerEvent>,
    /// Packets from the browser, to the media worker.
    pub incoming: std_mpsc::SyncSender<rtp::Packet>,
    /// Packets from the media worker, to the browser.
    pub outgoing: mpsc::Receiver<rtp::Packet>,
}

/// A negotiated connection and our answer.
pub struct Peer {
    pub connection: Arc<dyn PeerConnection>,
    pub answer: String,
}

fn opus() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48000,
        channels: 2,
        // DTX (RFC 7587 §3.1.3): a silent browser sends a frame every 400 ms instead of 50
        // a second, and the mixer decodes nothing for it until it talks again.
        sdp_fmtp_line: "minptime=10;useinbandfec=1;usedtx=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

fn media_engine() -> Result<MediaEngine, webrtc::error::Error> {
    let mut engine = MediaEngine::default();
    engine.register_codec(
        RTCRtpCodecParameters { rtp_codec: opus(), payload_type: 111 },
        RtpCodecKind::Audio,
    )?;
    // The page's keypad (RTCDTMFSender) sends RFC 4733 events at the Opus clock.
    let events = RTCRtpCodec {
        mime_type: MIME_TYPE_TELEPHONE_EVENT.to_owned(),
        clock_rate: 48000,
        channels: 1,
        sdp_fmtp_line: "0-15".to_owned(),
        rtcp_feedback: vec![],
    };
    engine.register_codec(
        RTCRtpCodecParameters { rtp_codec: events, payload_type: 126 },
        RtpCodecKind::Audio,
    )?;
    // Chromium marks each packet with its level (RFC 6464): the mixer decodes no frame the
    // browser measured as silence.
    engine.register_header_extension(
        RTCRtpHeaderExtensionCapability { uri: sip_stack::sdp::AUDIO_LEVEL_URI.to_owned() },
        RtpCodecKind::Audio,
        Some(RTCRtpTransceiverDirection::Recvonly),
    )?;
    Ok(engine)
}

/// Answers the page's offer; candidates trickle out as [`PeerEvent::Candidate`].
pub async fn connect(setup: PeerSetup) -> Result<Peer, PeerError> {
    let PeerSetup { addresses, public_address, port, offer, ssrc, events, incoming, outgoing } = setup;
    let mut engine = media_engine().map_err(PeerError::Setup)?;
    let registry = register_default_interceptors(Registry::new(), &mut engine).map_err(PeerError::Setup)?;
    // No mDNS (a loopback-only host cannot multicast, and the gateway's addresses are not
    // secret); answering as DTLS server saves the client's first retransmission timer.
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .with_answering_dtls_role(RTCDtlsRole::Server)
        .with_include_loopback_candidate(addresses.iter().any(IpAddr::is_loopback));
    let (connected_tx, connected) = watch::channel(false);
    let binds: Vec<SocketAddr> = addresses.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
    let connection = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(engine)
        .with_setting_engine(settings.build())
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(Handler { events, incoming, public_address, connected: connected_tx }))
        .with_udp_addrs(binds)
        .build()
        .await
        .map_err(PeerError::Setup)?;
    let connection: Arc<dyn PeerConnection> = Arc::new(connection);
    let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "gateway".into(),
        "conference".into(),
        "conference".into(),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
            codec: opus(),
            ..Default::default()
        }],
    )));
    let negotiated = async {
        connection.add_track(track.clone()).await.map_err(PeerError::Setup)?;
        let offer = RTCSessionDescription::offer(offer).map_err(PeerError::Offer)?;
        connection.set_remote_description(offer).await.map_err(PeerError::Offer)?;
        let answer = connection.create_answer(None).await.map_err(PeerError::Offer)?;
        connection.set_local_description(answer.clone()).await.map_err(PeerError::Setup)?;
        Ok(answer.sdp)
    };
    let answer = match negotiated.await {
        Ok(answer) => answer,
        Err(e) => {
            let _ = connection.close().await;
            return Err(e);
        }
    };
    tokio::spawn(write_mix(track, outgoing, connected));
    Ok(Peer { connection, answer })
}

/// The worker's packets onto the track once DTLS has keyed SRTP (before, they could only be
/// dropped), until either side is gone.
async fn write_mix(
    track: Arc<TrackLocalStaticRTP>,
    mut outgoing: mpsc::Receiver<rtp::Packet>,
    connected: watch::Receiver<bool>,
) {
    while let Some(packet) = outgoing.recv().await {
        if !*connected.borrow() {
            continue;
        }
        if let Err(e) = track.write_rtp(packet).await {
            tracing::debug!(error = %e, "browser track closed");
            break;
        }
    }
}

struct Handler {
    events: mpsc::Sender<PeerEvent>,
    incoming: std_mpsc::SyncSender<rtp::Packet>,
    public_address: Option<IpAddr>,
    connected: watch::Sender<bool>,
}

/// Behind a 1:1 NAT, a host candidate's twin at the public address, as a server-reflexive
/// candidate (RFC 8445 §5.1.1.2) the browser can reach: its checks arrive, translated, on the
/// host socket. (webrtc-rs 0.21 stores a NAT 1:1 setting but does not act on it.)
fn public_candidate(host: &RTCIceCandidate, public: IpAddr) -> Option<String> {
    if host.typ != RTCIceCandidateType::Host || host.protocol != RTCIceProtocol::Udp {
        return None;
    }
    // A public IPv4 address is no twin of an IPv6 host candidate, nor the other way round.
    let address: IpAddr = host.address.parse().ok()?;
    if address.is_ipv4() != public.is_ipv4() {
        return None;
    }
    // RFC 8445 §5.1.2.1 with the recommended type preference for server-reflexive (100).
    let priority = (100u32 << 24) | (65535 << 8) | (256 - u32::from(host.component.clamp(1, 256)));
    let foundation: String = format!("n{}", host.foundation).chars().take(32).collect();
    Some(format!(
        "candidate:{foundation} {} udp {priority} {public} {} typ srflx raddr {} rport {}",
        host.component, host.port, host.address, host.port
    ))
}

impl Handler {
    /// Without waiting: webrtc-rs runs these handlers inline in the connection's driver, so a
    /// session slow to read would stall ICE, DTLS and media. A session that far behind is
    /// closing anyway (its sends time out).
    fn tell(&self, event: PeerEvent) {
        if let Err(e) = self.events.try_send(event) {
            tracing::debug!(error = %e, "browser session not listening: event dropped");
        }
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        let init = match event.candidate.to_json() {
            Ok(init) => init,
            Err(e) => return tracing::debug!(error = %e, "local candidate not sent"),
        };
        let public = self.public_address.and_then(|ip| public_candidate(&event.candidate, ip));
        let twin = public.map(|candidate| RTCIceCandidateInit { candidate, ..init.clone() });
        self.tell(PeerEvent::Candidate(init));
        if let Some(twin) = twin {
            self.tell(PeerEvent::Candidate(twin));
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(%state, "browser connection");
        self.connected.send_replace(state == RTCPeerConnectionState::Connected);
        let event = match state {
            RTCPeerConnectionState::Connected => PeerEvent::Connected,
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => PeerEvent::Failed,
            _ => return,
        };
        self.tell(event);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if track.kind().await != RtpCodecKind::Audio {
            return;
        }
        let incoming = self.incoming.clone();
        tokio::spawn(async move {
            while let Some(event) = track.poll().await {
                let TrackRemoteEvent::OnRtpPacket(packet) = event else { continue };
                // Chromium's padding-only probes carry no audio.
                if packet.payload.is_empty() {
                    continue;
                }
                match incoming.try_send(packet) {
                    // A worker that far behind loses the packet, as a network would.
                    Ok(()) | Err(std_mpsc::TrySendError::Full(_)) => {}
                    Err(std_mpsc::TrySendError::Disconnected(_)) => break,
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(address: &str, port: u16) -> RTCIceCandidate {
        RTCIceCandidate {
            foundation: "2693830880".into(),
            priority: 2130706431,
            address: address.into(),
            protocol: RTCIceProtocol::Udp,
            port,
            typ: RTCIceCandidateType::Host,
            component: 1,
            ..Default::default()
        }
    }

    #[test]
    fn the_public_twin_of_a_host_candidate_is_server_reflexive() {
        let twin = public_candidate(&host("10.0.1.5", 20002), "203.0.113.7".parse().unwrap()).unwrap();
        assert_eq!(
            twin,
            "candidate:n2693830880 1 udp 1694498815 203.0.113.7 20002 typ srflx raddr 10.0.1.5 rport 20002"
        );
        let relay = RTCIceCandidate { typ: RTCIceCandidateType::Relay, ..host("10.0.1.5", 20002) };
        assert_eq!(public_candidate(&relay, "203.0.113.7".parse().unwrap()), None);
        assert_eq!(public_candidate(&host("fd00::5", 20002), "203.0.113.7".parse().unwrap()), None);
    }
}
