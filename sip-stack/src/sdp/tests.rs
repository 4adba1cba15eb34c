//! Offer/answer against offers shaped like real peers' (baresip, Chromium).

use std::net::SocketAddr;

use super::*;

const BARESIP_OFFER: &str = "v=0\r\n\
o=- 1285392563 3411431744 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 10000 RTP/AVP 0 8 9 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=sendrecv\r\n\
a=rtcp-mux\r\n\
a=ptime:20\r\n";

const CHROME_OFFER: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
m=audio 9 RTP/AVP 111 63 9 0 8 110 126\r\n\
c=IN IP4 192.0.2.7\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:63 red/48000/2\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:110 telephone-event/48000\r\n\
a=rtpmap:126 telephone-event/8000\r\n\
a=sendrecv\r\n\
m=video 9 RTP/AVP 96\r\n\
c=IN IP4 192.0.2.7\r\n\
a=rtpmap:96 VP8/90000\r\n";

fn local(codecs: &[Codec]) -> LocalAudio {
    LocalAudio {
        address: "127.0.0.1".parse().unwrap(),
        port: 20000,
        codecs: codecs.to_vec(),
        ptime: 20,
        direction: Direction::SendRecv,
        srtp: Srtp::Off,
    }
}

fn sdp(text: &str) -> Session {
    parse(text.as_bytes()).unwrap()
}

#[test]
fn answers_baresip_with_our_preferred_codec_and_dtmf() {
    let (answer, stream) = answer(&sdp(BARESIP_OFFER), &local(&[G722, PCMU]), 1, 1).unwrap();
    assert_eq!((stream.codec, stream.payload_type), (G722, 9));
    assert_eq!(stream.telephone_event, Some(101));
    assert_eq!(stream.remote, Some("127.0.0.1:10000".parse::<SocketAddr>().unwrap()));
    assert_eq!((stream.direction, stream.ptime, stream.rtcp_mux), (Direction::SendRecv, Some(20), true));
    let text = answer.to_string();
    assert!(text.contains("m=audio 20000 RTP/AVP 9 101\r\n"), "{text}");
    assert!(
        text.contains("a=rtpmap:9 G722/8000\r\n") && text.contains("a=rtpmap:101 telephone-event/8000\r\n"),
        "{text}"
    );
    assert!(text.contains("c=IN IP4 127.0.0.1\r\n") && text.contains("a=rtcp-mux\r\n"), "{text}");
    // Our answer is valid SDP.
    assert_eq!(parse(text.as_bytes()).unwrap(), answer);
}

#[test]
fn answers_chrome_with_opus_under_its_payload_type_and_refuses_video() {
    let (answer, stream) = answer(&sdp(CHROME_OFFER), &local(&[OPUS, G722, PCMU]), 1, 1).unwrap();
    assert_eq!((stream.codec, stream.payload_type), (OPUS, 111));
    assert_eq!(stream.fmtp.as_deref(), Some("minptime=10;useinbandfec=1"));
    assert_eq!(stream.telephone_event, Some(110), "the telephone-event at the codec's clock");
    assert_eq!(stream.remote, Some("192.0.2.7:9".parse::<SocketAddr>().unwrap()));
    let text = answer.to_string();
    assert!(text.contains("a=rtpmap:111 opus/48000/2\r\n"), "{text}");
    assert_eq!(answer.medias.len(), 2, "one answer m-line per offered one");
    assert_eq!((answer.medias[1].media.as_str(), answer.medias[1].port), ("video", 0));
    // A phone-only gateway picks G.722 from the same offer.
    let (_, narrow) = super::answer(&sdp(CHROME_OFFER), &local(&[G722, PCMU]), 1, 1).unwrap();
    assert_eq!(narrow.codec, G722);
}

#[test]
fn no_common_codec_names_the_mline() {
    let gsm_only = BARESIP_OFFER
        .replace("RTP/AVP 0 8 9 101", "RTP/AVP 3")
        .replace("a=rtpmap:0", "a=rtpmap:3 GSM/8000\r\na=x:0");
    assert_eq!(
        answer(&sdp(&gsm_only), &local(&[PCMU]), 1, 1).unwrap_err(),
        SdpError::NoCommonCodec { mline: 0 }
    );
    let video_only = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n";
    assert_eq!(answer(&sdp(video_only), &local(&[PCMU]), 1, 1).unwrap_err(), SdpError::NoAudio);
    assert!(matches!(parse(b"this is not sdp"), Err(SdpError::Parse(_))));
}

#[test]
fn hold_offers_are_mirrored() {
    let sendonly = BARESIP_OFFER.replace("a=sendrecv", "a=sendonly");
    let (answer, stream) = answer(&sdp(&sendonly), &local(&[PCMU]), 1, 2).unwrap();
    assert_eq!(stream.direction, Direction::RecvOnly);
    assert!(answer.to_string().contains("a=recvonly\r\n"));
    // RFC 2543 hold: c=0.0.0.0 means the peer stopped receiving.
    let old_hold = BARESIP_OFFER.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0");
    let (_, stream) = super::answer(&sdp(&old_hold), &local(&[PCMU]), 1, 2).unwrap();
    assert_eq!((stream.remote, stream.direction), (None, Direction::RecvOnly));
    let inactive = BARESIP_OFFER.replace("a=sendrecv", "a=inactive");
    assert_eq!(
        super::answer(&sdp(&inactive), &local(&[PCMU]), 1, 2).unwrap().1.direction,
        Direction::Inactive
    );
    // Our own hold: we offer sendonly, the peer answers recvonly.
    let mut holding = local(&[PCMU]);
    holding.direction = Direction::SendOnly;
    let (_, stream) = super::answer(&sdp(BARESIP_OFFER), &holding, 1, 2).unwrap();
    assert_eq!(stream.direction, Direction::SendOnly);
}

#[test]
fn dynamic_payload_types_are_followed() {
    let offer = BARESIP_OFFER
        .replace("RTP/AVP 0 8 9 101", "RTP/AVP 96 101")
        .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:96 opus/48000/2");
    let (answer, stream) = answer(&sdp(&offer), &local(&[OPUS]), 1, 1).unwrap();
    assert_eq!(stream.payload_type, 96);
    assert!(answer.to_string().contains("a=rtpmap:96 opus/48000/2\r\n"));
}

#[test]
fn our_offer_round_trips_through_a_peer() {
    let ours = local(&[OPUS, G722, PCMU]);
    let offer = offer(&ours, 42, 1);
    let text = offer.to_string();
    assert!(text.contains("m=audio 20000 RTP/AVP 111 9 0 101\r\n"), "{text}");
    assert!(text.contains("a=fmtp:101 0-16\r\n") && text.contains("a=rtcp-mux\r\n"), "{text}");
    // A G.711-only peer answers; we read PCMU back.
    let peer = LocalAudio { port: 30000, ..local(&[PCMU]) };
    let (peer_answer, _) = answer(&parse(text.as_bytes()).unwrap(), &peer, 7, 1).unwrap();
    let stream = read_answer(&offer, &peer_answer, &ours).unwrap();
    assert_eq!((stream.codec, stream.payload_type, stream.telephone_event), (PCMU, 0, Some(101)));
    assert_eq!(stream.remote, Some("127.0.0.1:30000".parse::<SocketAddr>().unwrap()));
    let mut long = peer_answer.clone();
    long.medias.push(long.medias[0].clone());
    assert!(matches!(read_answer(&offer, &long, &ours), Err(SdpError::MlineCount { .. })));
    // Our offer with video, answered by a far end that leaves the video line off: audio.
    let mut with_video = offer.clone();
    with_video.medias.push(with_video.medias[0].clone());
    assert_eq!(read_answer(&with_video, &peer_answer, &ours).unwrap().codec, PCMU);
}

#[test]
fn a_webrtc_offer_is_read_whatever_its_transport() {
    let webrtc = CHROME_OFFER.replace("RTP/AVP", "UDP/TLS/RTP/SAVPF");
    let offer = sdp(&webrtc);
    assert!(
        matches!(answer(&offer, &local(&[OPUS]), 1, 1), Err(SdpError::NoCommonCodec { mline: 0 })),
        "a SIP answer takes plain RTP only"
    );
    let stream = choose(&offer, &local(&[OPUS])).unwrap();
    assert_eq!((stream.codec, stream.payload_type, stream.telephone_event), (OPUS, 111, Some(110)));
    let pcma_only = choose(&offer, &local(&[PCMA])).unwrap();
    assert_eq!(pcma_only.payload_type, 8);
    let no_audio = sdp(&webrtc[..webrtc.find("m=audio").unwrap()]);
    assert_eq!(choose(&no_audio, &local(&[OPUS])), Err(SdpError::NoAudio));
}

/// baresip with `mediaenc=srtp-mand`: RTP/SAVP with a suite we lack first.
const BARESIP_SRTP_OFFER: &str = "v=0\r\n\
o=- 1285392563 3411431744 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 10000 RTP/SAVP 9 0 101\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBRPS1uQCVeeCFCanVmcjkpPw==\r\n\
a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n\
a=crypto:3 AES_CM_128_HMAC_SHA1_32 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n\
a=sendrecv\r\n";

fn with_srtp(srtp: Srtp) -> LocalAudio {
    LocalAudio { srtp, ..local(&[G722, PCMU]) }
}

const OUR_KEY: sdes::Key = sdes::Key([9; sdes::KEY_LEN]);

#[test]
fn an_srtp_offer_is_answered_with_its_first_usable_crypto_line_and_our_key() {
    let (answer, stream) =
        answer(&sdp(BARESIP_SRTP_OFFER), &with_srtp(Srtp::Optional(OUR_KEY)), 1, 1).unwrap();
    let text = answer.to_string();
    assert!(text.contains("m=audio 20000 RTP/SAVP 9 101\r\n"), "{text}");
    let ours = sdes::Crypto { tag: 2, suite: sdes::Suite::AesCm128HmacSha1_80, key: OUR_KEY };
    assert!(text.contains(&format!("a=crypto:{}\r\n", ours.value())), "{text}");
    assert_eq!(text.matches("a=crypto").count(), 1, "{text}");
    let keys = stream.srtp.expect("SRTP keys");
    assert_eq!(keys.suite, sdes::Suite::AesCm128HmacSha1_80);
    assert_eq!(&keys.remote.0[..4], &[0x3d, 0x2d, 0x6e, 0x40]);
    assert_eq!(keys.local, OUR_KEY);
    // Our answer reads back as SDP.
    parse(text.as_bytes()).unwrap();
}

#[test]
fn srtp_policy_decides_between_plain_and_secure_offers() {
    let plain = sdp(BARESIP_OFFER);
    let secure = sdp(BARESIP_SRTP_OFFER);
    // Optional: plain stays plain.
    let (answer_text, stream) = answer(&plain, &with_srtp(Srtp::Optional(OUR_KEY)), 1, 1).unwrap();
    assert_eq!(stream.srtp, None);
    assert!(!answer_text.to_string().contains("crypto"));
    // Required: plain is refused (488), secure is taken.
    let required = with_srtp(Srtp::Required(OUR_KEY));
    assert!(matches!(answer(&plain, &required, 1, 1), Err(SdpError::Srtp { mline: 0, .. })));
    assert!(answer(&secure, &required, 1, 1).unwrap().1.srtp.is_some());
    // Off: secure is refused.
    assert!(matches!(answer(&secure, &with_srtp(Srtp::Off), 1, 1), Err(SdpError::Srtp { mline: 0, .. })));
    // RTP/SAVP with no line we can keep to is refused too.
    let unkeyed: String =
        BARESIP_SRTP_OFFER.split("\r\n").filter(|l| !l.contains("_128_")).collect::<Vec<_>>().join("\r\n");
    let error = answer(&sdp(&unkeyed), &with_srtp(Srtp::Optional(OUR_KEY)), 1, 1).unwrap_err();
    assert_eq!(error, SdpError::Srtp { mline: 0, proto: "RTP/SAVP".into() });
}

#[test]
fn a_required_srtp_offer_carries_our_key_and_reads_the_answerers() {
    let ours = with_srtp(Srtp::Required(OUR_KEY));
    let offer = offer(&ours, 42, 1);
    let text = offer.to_string();
    assert!(text.contains("m=audio 20000 RTP/SAVP "), "{text}");
    assert!(text.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"), "{text}");
    // The peer answers with its own key, as `answer` does.
    let their_key = sdes::Key([4; sdes::KEY_LEN]);
    let peer = LocalAudio { port: 30000, ..with_srtp(Srtp::Optional(their_key)) };
    let (peer_answer, _) = answer(&parse(text.as_bytes()).unwrap(), &peer, 7, 1).unwrap();
    let keys = read_answer(&offer, &peer_answer, &ours).unwrap().srtp.expect("keys");
    assert_eq!((keys.remote, keys.local), (their_key, OUR_KEY));
    // An answer that drops to plain RTP is no answer to an SRTP offer.
    let plain = sdp(&peer_answer.to_string().replace("RTP/SAVP", "RTP/AVP"));
    assert!(matches!(read_answer(&offer, &plain, &ours), Err(SdpError::Srtp { .. })));
    // Plain offers stay plain, and take no SRTP answer.
    let plain_offer = super::offer(&with_srtp(Srtp::Optional(OUR_KEY)), 1, 1);
    assert!(!plain_offer.to_string().contains("SAVP"));
    assert!(matches!(read_answer(&plain_offer, &peer_answer, &ours), Err(SdpError::Srtp { .. })));
}

#[test]
fn a_reoffer_keeps_an_srtp_streams_suite_and_our_key() {
    let (_, stream) = answer(&sdp(BARESIP_SRTP_OFFER), &with_srtp(Srtp::Optional(OUR_KEY)), 1, 1).unwrap();
    let local = with_srtp(Srtp::Optional(OUR_KEY));
    let text = reoffer(&local, &stream, 1, 2).to_string();
    let ours = sdes::Crypto { tag: 1, suite: sdes::Suite::AesCm128HmacSha1_80, key: OUR_KEY };
    assert!(text.contains("RTP/SAVP") && text.contains(&format!("a=crypto:{}", ours.value())), "{text}");
    let plain = AudioStream { srtp: None, ..stream };
    assert!(!reoffer(&local, &plain, 1, 3).to_string().contains("crypto"));
}

/// An offer with RFC 8285 extension lines after its codecs, `extmap` the lines to add.
fn offer_with_extmap(extmap: &str) -> Session {
    sdp(&format!("{BARESIP_OFFER}{extmap}"))
}

#[test]
fn the_audio_level_extension_offered_is_read_and_answered_for_receiving_only() {
    let uri = AUDIO_LEVEL_URI;
    let offer =
        offer_with_extmap(&format!("a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=extmap:1 {uri}\r\n"));
    let (ours, stream) = answer(&offer, &local(&[PCMU]), 1, 1).unwrap();
    assert_eq!(stream.audio_level, Some(1));
    let text = ours.to_string();
    assert!(text.contains(&format!("a=extmap:1/recvonly {uri}\r\n")), "{text}");
    assert!(!text.contains("sdes:mid"), "an extension we do not read is answered: {text}");
    // As written by a stack that answered for us (a browser's offer answered by webrtc-rs).
    assert_eq!(answered_audio_level(&ours), Some(1));
    // With a direction, and in the two-byte range.
    let sendonly = offer_with_extmap(&format!("a=extmap:200/sendonly {uri} attr\r\n"));
    assert_eq!(answer(&sendonly, &local(&[PCMU]), 1, 1).unwrap().1.audio_level, Some(200));
}

#[test]
fn an_audio_level_extension_the_peer_will_not_send_or_cannot_name_is_ignored() {
    let uri = AUDIO_LEVEL_URI;
    for extmap in [
        format!("a=extmap:1/recvonly {uri}\r\n"),
        format!("a=extmap:1/inactive {uri}\r\n"),
        format!("a=extmap:15 {uri}\r\n"),
        format!("a=extmap:0 {uri}\r\n"),
        format!("a=extmap:300 {uri}\r\n"),
        format!("a=extmap:1/sideways {uri}\r\n"),
        "a=extmap:1\r\n".to_string(),
        "a=extmap:1 urn:ietf:params:rtp-hdrext:toffset\r\n".to_string(),
    ] {
        let (ours, stream) = answer(&offer_with_extmap(&extmap), &local(&[PCMU]), 1, 1).unwrap();
        assert_eq!(stream.audio_level, None, "{extmap}");
        assert!(!ours.to_string().contains("extmap"), "{extmap}");
    }
    // Our offers name no extension, so one in an answer is not taken.
    let ours = local(&[PCMU]);
    let ours_offer = offer(&ours, 1, 1);
    let reply = sdp(&format!("{BARESIP_OFFER}a=extmap:1 {uri}\r\n"));
    assert_eq!(read_answer(&ours_offer, &reply, &ours).unwrap().audio_level, None);
}

/// A room system's offer: H.264 High, then Constrained Baseline in both packetization modes
/// with the extended limits, H.263, feedback for every payload type, a presentation line.
const ROOM_SYSTEM_OFFER: &str = "v=0\r\n\
o=room 1 1 IN IP4 192.0.2.20\r\n\
s=-\r\n\
c=IN IP4 192.0.2.20\r\n\
b=AS:2048\r\n\
t=0 0\r\n\
m=audio 49200 RTP/AVP 9 0 101\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=sendrecv\r\n\
m=video 49202 RTP/AVP 109 110 96 34\r\n\
b=TIAS:1920000\r\n\
a=rtpmap:109 H264/90000\r\n\
a=fmtp:109 profile-level-id=640020;packetization-mode=1;max-fs=8160\r\n\
a=rtpmap:110 H264/90000\r\n\
a=fmtp:110 profile-level-id=42e016; packetization-mode=1; max-mbps=245000; max-fs=8160\r\n\
a=rtpmap:96 H264/90000\r\n\
a=fmtp:96 profile-level-id=42e016;max-mbps=245000;max-fs=8160\r\n\
a=rtpmap:34 H263/90000\r\n\
a=rtcp-fb:* ccm fir\r\n\
a=rtcp-fb:* nack pli\r\n\
a=content:main\r\n\
a=sendrecv\r\n\
m=video 49204 RTP/AVP 110\r\n\
a=rtpmap:110 H264/90000\r\n\
a=fmtp:110 profile-level-id=42e016;packetization-mode=1\r\n\
a=content:slides\r\n\
a=sendrecv\r\n";

/// A browser-shaped video line: VP8, then H.264 Constrained Baseline at 3.1 in mode 1 with
/// level asymmetry and Baseline in mode 0, the feedback Chromium lists.
const BROWSER_VIDEO_OFFER: &str = "v=0\r\n\
o=- 2 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 192.0.2.7\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 0\r\n\
a=sendrecv\r\n\
m=video 40002 RTP/AVP 96 102 127\r\n\
b=AS:2500\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtcp-fb:96 goog-remb\r\n\
a=rtcp-fb:96 transport-cc\r\n\
a=rtcp-fb:96 ccm fir\r\n\
a=rtcp-fb:96 nack\r\n\
a=rtcp-fb:96 nack pli\r\n\
a=rtpmap:102 H264/90000\r\n\
a=rtcp-fb:102 goog-remb\r\n\
a=rtcp-fb:102 nack\r\n\
a=rtcp-fb:102 nack pli\r\n\
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
a=rtpmap:127 H264/90000\r\n\
a=fmtp:127 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f\r\n\
a=rtcp-mux\r\n\
a=sendrecv\r\n";

fn local_video(codecs: &[video::VideoKind]) -> video::LocalVideo {
    video::LocalVideo {
        port: 20002,
        codecs: codecs.to_vec(),
        h264_level_idc: 31,
        max_fs: 3600,
        max_fr: 30,
        max_receive_kbps: 2000,
        direction: Direction::SendRecv,
        feedback: video::Feedback::ALL,
        srtp: Srtp::Off,
    }
}

fn video_line(session: &Session, mline: usize) -> String {
    let mut text = session.to_string();
    let start = text.match_indices("m=").nth(mline).expect("the m-line").0;
    text.drain(..start);
    match text[2..].find("m=") {
        Some(end) => text[..end + 2].to_string(),
        None => text,
    }
}

#[test]
fn a_room_system_gets_constrained_baseline_in_mode_1_and_its_slides_are_refused() {
    use video::{VideoCodec, VideoKind::*};
    let video = local_video(&[H264, Vp8]);
    let (answer, audio, stream) =
        answer_av(&sdp(ROOM_SYSTEM_OFFER), &local(&[G722, PCMU]), Some(&video), 1, 1).unwrap();
    assert_eq!(audio.codec, G722);
    let stream = stream.expect("video agreed");
    assert_eq!((stream.mline, stream.payload_type), (1, 110), "CB in mode 1, not High, not mode 0");
    let VideoCodec::H264(theirs) = stream.codec else { panic!("{:?}", stream.codec) };
    assert_eq!((theirs.level_idc, theirs.packetization_mode), (22, 1));
    // What the room system takes: its max-fs over level 2.2's 1,620 macroblocks.
    assert_eq!((theirs.max_frame_macroblocks(), theirs.max_macroblocks_per_second()), (8160, 245_000));
    assert_eq!(stream.max_send_bps, Some(1_920_000), "b=TIAS of the m-line before the session's b=AS");
    assert_eq!(stream.feedback, video::Feedback { pli: true, fir: true, ..video::Feedback::default() });
    assert_eq!(stream.remote, Some("192.0.2.20:49202".parse().unwrap()));
    let line = video_line(&answer, 1);
    assert!(line.starts_with("m=video 20002 RTP/AVP 110\r\n"), "{line}");
    // Without asymmetry the answer's level is the lower one: the room system's 2.2.
    assert!(line.contains("a=fmtp:110 profile-level-id=42e016;packetization-mode=1\r\n"), "{line}");
    assert!(
        line.contains("a=rtcp-fb:110 nack pli\r\n") && line.contains("a=rtcp-fb:110 ccm fir\r\n"),
        "{line}"
    );
    assert!(
        !line.contains("goog-remb") && !line.contains("rtcp-fb:110 nack\r\n"),
        "only what was offered: {line}"
    );
    assert!(line.contains("b=AS:2000\r\n") && line.contains("b=TIAS:2000000\r\n"), "{line}");
    assert!(line.contains("a=content:main\r\n") && line.contains("a=sendrecv\r\n"), "{line}");
    assert!(video_line(&answer, 2).starts_with("m=video 0 "), "the presentation line is refused");
}

#[test]
fn a_browser_gets_its_vp8_or_h264_at_our_level_with_the_feedback_we_share() {
    use video::{VideoCodec, VideoKind::*};
    let offer = sdp(BROWSER_VIDEO_OFFER);
    let (answer, _, stream) =
        answer_av(&offer, &local(&[PCMU]), Some(&local_video(&[H264, Vp8])), 1, 1).unwrap();
    let stream = stream.unwrap();
    assert_eq!(stream.payload_type, 102);
    let line = video_line(&answer, 1);
    // Both allow level asymmetry: the answer names the level we decode.
    assert!(
        line.contains(
            "a=fmtp:102 profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1\r\n"
        ),
        "{line}"
    );
    assert_eq!(
        stream.feedback,
        video::Feedback { nack: true, pli: true, remb: true, ..video::Feedback::default() }
    );
    assert!(stream.rtcp_mux && line.contains("a=rtcp-mux\r\n"));
    assert_eq!(stream.max_send_bps, Some(2_500_000));

    let (answer, _, stream) =
        answer_av(&offer, &local(&[PCMU]), Some(&local_video(&[Vp8, H264])), 1, 1).unwrap();
    let stream = stream.unwrap();
    assert_eq!((stream.payload_type, stream.codec), (96, VideoCodec::Vp8(video::Vp8::default())));
    let line = video_line(&answer, 1);
    assert!(line.contains("a=rtpmap:96 VP8/90000\r\na=fmtp:96 max-fr=30;max-fs=3600\r\n"), "{line}");
    assert!(!line.contains("transport-cc"), "{line}");
}

#[test]
fn a_high_profile_only_offer_stays_an_audio_call() {
    let offer = BROWSER_VIDEO_OFFER
        .replace("profile-level-id=42e01f", "profile-level-id=640c1f")
        .replace("profile-level-id=42001f", "profile-level-id=64001f");
    let h264_only = local_video(&[video::VideoKind::H264]);
    let (answer, audio, stream) = answer_av(&sdp(&offer), &local(&[PCMU]), Some(&h264_only), 1, 1).unwrap();
    assert_eq!((audio.codec, stream), (PCMU, None));
    assert!(video_line(&answer, 1).starts_with("m=video 0 "), "{answer}");
}

#[test]
fn mode_0_only_and_defaults_are_kept_and_broken_parameters_skip_a_payload_type() {
    let offer = "v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n\
        m=audio 5000 RTP/AVP 0\r\nm=video 5002 RTP/AVP 100 101 99\r\n\
        a=rtpmap:100 H264/90000\r\na=fmtp:100 profile-level-id=zz;packetization-mode=1\r\n\
        a=rtpmap:101 H264/90000\r\na=fmtp:101 profile-level-id=42e01f;packetization-mode=7\r\n\
        a=rtpmap:99 H264/90000\r\na=fmtp:99 profile-level-id=42801f\r\n";
    let h264_only = local_video(&[video::VideoKind::H264]);
    let (answer, _, stream) = answer_av(&sdp(offer), &local(&[PCMU]), Some(&h264_only), 1, 1).unwrap();
    let stream = stream.unwrap();
    assert_eq!(stream.payload_type, 99);
    let video::VideoCodec::H264(h) = stream.codec else { panic!() };
    assert_eq!((h.profile, h.packetization_mode, h.level_idc), (video::H264Profile::Baseline, 0, 31));
    assert!(video_line(&answer, 1).contains("a=fmtp:99 profile-level-id=42801f;packetization-mode=0\r\n"));
    // Without a profile-level-id, RFC 6184's default: Baseline, level 1.
    assert_eq!(
        video::H264::parse(None).map(|h| (h.profile, h.level_idc)),
        Some((video::H264Profile::Baseline, 10))
    );
    // Level 1b as the Baseline family writes it.
    assert_eq!(video::H264::parse(Some("profile-level-id=42f00b")).unwrap().level_idc, 9);
}

#[test]
fn without_local_video_or_with_a_broken_video_line_the_call_is_audio_only() {
    let (answer, audio, stream) = answer_av(&sdp(BROWSER_VIDEO_OFFER), &local(&[PCMU]), None, 1, 1).unwrap();
    assert_eq!((audio.codec, stream), (PCMU, None));
    assert!(video_line(&answer, 1).starts_with("m=video 0 "));
    // A video line whose address is a name, not an address: video refused, the call goes on.
    let broken = "v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nt=0 0\r\n\
        m=audio 5000 RTP/AVP 0\r\nc=IN IP4 192.0.2.9\r\n\
        m=video 5002 RTP/AVP 96\r\nc=IN IP4 camera.example\r\na=rtpmap:96 VP8/90000\r\n";
    let video = local_video(&[video::VideoKind::Vp8]);
    let (answer, audio, stream) = answer_av(&sdp(broken), &local(&[PCMU]), Some(&video), 1, 1).unwrap();
    assert_eq!((audio.remote, stream), (Some("192.0.2.9:5000".parse().unwrap()), None));
    assert!(video_line(&answer, 1).starts_with("m=video 0 "));
}

#[test]
fn our_video_offer_is_read_back_from_an_answer() {
    use video::VideoKind::*;
    let video = local_video(&[H264, Vp8]);
    let mut offer = super::offer(&local(&[PCMU]), 7, 1);
    offer.medias.push(video::offer_media(&video, None));
    let text = offer.to_string();
    assert!(text.contains("m=video 20002 RTP/AVP 97 98 96\r\n"), "{text}");
    assert!(
        text.contains("a=fmtp:97 profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1\r\n")
    );
    assert!(
        text.contains("a=fmtp:98 profile-level-id=42e01f;packetization-mode=0;level-asymmetry-allowed=1\r\n")
    );
    assert!(text.contains("a=rtcp-fb:* nack pli\r\n") && text.contains("a=content:main\r\n"), "{text}");
    assert!(text.contains("b=AS:") && !text.contains("b=TIAS"), "one bandwidth line in offers: {text}");
    // A peer's answer keeping mode 0 only.
    let answer = sdp("v=0\r\no=- 3 3 IN IP4 192.0.2.30\r\ns=-\r\nc=IN IP4 192.0.2.30\r\nt=0 0\r\n\
        m=audio 6000 RTP/AVP 0\r\na=sendrecv\r\n\
        m=video 6002 RTP/AVP 98\r\na=rtpmap:98 H264/90000\r\n\
        a=fmtp:98 profile-level-id=42e01f;packetization-mode=0\r\na=rtcp-fb:98 ccm fir\r\na=recvonly\r\n");
    let stream = video::read_answer(&parse(text.as_bytes()).unwrap(), &answer, 1, &video).unwrap().unwrap();
    assert_eq!((stream.payload_type, stream.direction), (98, Direction::SendOnly));
    assert_eq!(stream.feedback, video::Feedback { fir: true, ..video::Feedback::default() });
    assert_eq!(stream.remote, Some(SocketAddr::from(([192, 0, 2, 30], 6002))));
    // A refused video line reads as none.
    let refused = sdp("v=0\r\no=- 3 4 IN IP4 192.0.2.30\r\ns=-\r\nc=IN IP4 192.0.2.30\r\nt=0 0\r\n\
        m=audio 6000 RTP/AVP 0\r\nm=video 0 RTP/AVP 98\r\n");
    assert_eq!(video::read_answer(&offer, &refused, 1, &video).unwrap(), None);
}

#[test]
fn a_reoffer_keeps_every_m_line_with_the_streams_in_force() {
    use video::VideoKind::*;
    let video = local_video(&[H264, Vp8]);
    let offer = sdp(ROOM_SYSTEM_OFFER);
    let ours = local(&[G722, PCMU]);
    let (_, audio, stream) = answer_av(&offer, &ours, Some(&video), 1, 1).unwrap();
    let stream = stream.unwrap();
    let kinds = mline_kinds(&offer);
    assert_eq!(kinds, ["audio", "video", "video"]);
    let reoffer = reoffer_av(&ours, &audio, Some((&video, &stream)), &kinds, 1, 2);
    assert_eq!(reoffer.medias.len(), 3, "{reoffer}");
    assert!(video_line(&reoffer, 0).starts_with("m=audio 20000 "), "{reoffer}");
    // The agreed payload type and codec, not our first offer's.
    let line = video_line(&reoffer, 1);
    assert!(line.starts_with("m=video 20002 RTP/AVP 110\r\n"), "{line}");
    assert!(line.contains("a=fmtp:110 profile-level-id=42e016;packetization-mode=1\r\n"), "{line}");
    assert!(line.contains("a=rtcp-fb:110 nack pli\r\n"), "{line}");
    assert!(video_line(&reoffer, 2).starts_with("m=video 0 "), "the refused slides stay refused");
    // The room system answers the re-offer as it answered the offer.
    let room_system = LocalAudio { port: 49200, ..local(&[G722]) };
    let (answer, _) =
        super::answer(&parse(reoffer.to_string().as_bytes()).unwrap(), &room_system, 3, 3).unwrap();
    assert_eq!(answer.medias.len(), 3);
    // An audio call whose phone offered video keeps the refused line too.
    let plain = reoffer_av(&ours, &audio, None, &kinds, 1, 3);
    assert_eq!(plain.medias.iter().map(|m| m.port).collect::<Vec<_>>(), [20000, 0, 0]);
}
