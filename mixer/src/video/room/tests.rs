//! A room in virtual time: sources encode solid colours, viewers decode what the room sends.

use rtc_shared::marshal::Unmarshal;
use rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};

use super::*;
use crate::video::h264::{EncoderSettings, H264Encoder};
use crate::video::h264_rtp::Packetizer;

#[allow(clippy::disallowed_methods)] // the origin of virtual time
fn t0() -> Instant {
    Instant::now()
}

const MTU: usize = 1200;

fn room(layout: Layout) -> VideoRoom {
    VideoRoom::new(VideoRoomConfig {
        width: 320,
        height: 240,
        frame_rate: 10,
        bitrate_bps: 400_000,
        layout,
        fit: Fit::Crop,
        background: Yuv::from_rgb(0, 0, 0),
        keyframe_interval: Duration::from_millis(500),
        ask_interval: Duration::from_millis(300),
        mtu: MTU,
        name_tiles: false,
        show_names: false,
        low_tier: None,
    })
    .unwrap()
}

fn leg(ssrc: u32, mode: PacketizationMode, send: bool, receive: bool) -> VideoLegConfig {
    VideoLegConfig {
        codec: VideoCodecKind::H264,
        payload_type: 97,
        mode,
        feedback: FeedbackSupport { nack: true, pli: true, fir: true },
        send,
        receive,
        ssrc,
        first_seq: 65_500,
        first_timestamp: ssrc.wrapping_mul(7),
        limits: ViewerLimits::default(),
        cascade: false,
    }
}

/// A phone: encodes its colour, and decodes what the room sends it.
struct Phone {
    colour: Yuv,
    encoder: H264Encoder,
    ssrc: u32,
    seq: u16,
    depacketizer: Depacketizer,
    decoder: H264Decoder,
    last: Option<Frame>,
    received: Vec<Vec<u8>>,
    rtcp: Vec<Vec<u8>>,
}

impl Phone {
    fn new(colour: Yuv, ssrc: u32) -> Phone {
        Phone {
            colour,
            encoder: H264Encoder::new(EncoderSettings {
                bitrate_bps: 300_000,
                frame_rate: 10,
                max_nal_bytes: None,
            })
            .unwrap(),
            ssrc,
            seq: 1,
            depacketizer: Depacketizer::new(),
            decoder: H264Decoder::new().unwrap(),
            last: None,
            received: Vec::new(),
            rtcp: Vec::new(),
        }
    }

    /// One camera picture as RTP packets in mode 1.
    fn camera(&mut self, frame_no: u32) -> Vec<rtp::Packet> {
        let picture = Frame::filled(160, 120, self.colour);
        let encoded = self.encoder.encode(&picture, u64::from(frame_no) * 100).unwrap();
        let mut payloads = Vec::new();
        Packetizer { mode: PacketizationMode::NonInterleaved, mtu: MTU }
            .packetize(encoded.nals(), &mut payloads)
            .unwrap();
        let count = payloads.len();
        payloads
            .into_iter()
            .enumerate()
            .map(|(n, payload)| {
                self.seq = self.seq.wrapping_add(1);
                rtp::Packet {
                    header: rtp::header::Header {
                        version: 2,
                        marker: n + 1 == count,
                        payload_type: 97,
                        sequence_number: self.seq,
                        timestamp: frame_no * 9000,
                        ssrc: self.ssrc,
                        ..Default::default()
                    },
                    payload,
                }
            })
            .collect()
    }

    fn take(&mut self, datagram: Datagram<'_>) {
        match datagram {
            Datagram::Rtp(bytes) => self.received.push(bytes.to_vec()),
            Datagram::Rtcp(bytes) => self.rtcp.push(bytes.to_vec()),
        }
    }

    /// Decodes the RTP received so far.
    fn decode(&mut self) {
        let mut units = Vec::new();
        for bytes in std::mem::take(&mut self.received) {
            let packet = rtp::Packet::unmarshal(&mut &bytes[..]).unwrap();
            let h = &packet.header;
            self.depacketizer.push(h.sequence_number, h.timestamp, h.marker, &packet.payload, &mut units);
        }
        for unit in units {
            if let Some(frame) = self.decoder.decode(&unit.data).unwrap() {
                self.last = Some(frame);
            }
        }
    }
}

/// Runs the room for `frames` frames of 100 ms with each phone sending its camera.
fn run(room: &mut VideoRoom, t: &mut Instant, phones: &mut [(VideoLegId, Phone)], frames: u32, start: u32) {
    for f in start..start + frames {
        for (id, phone) in phones.iter_mut() {
            if phone.colour != Yuv::from_rgb(0, 0, 0) {
                for packet in phone.camera(f) {
                    room.receive_rtp(*t, *id, &packet);
                }
            }
        }
        let mut out: Vec<(VideoLegId, Vec<u8>, bool)> = Vec::new();
        room.tick(*t, 0, |id, d| out.push(owned(id, d)));
        room.compose(*t);
        room.encode(|id, d| out.push(owned(id, d)));
        for (id, bytes, rtp) in out {
            // A participant without a phone here (no video) gets only its RTCP reports.
            let Some((_, phone)) = phones.iter_mut().find(|(p, _)| *p == id) else { continue };
            phone.take(if rtp { Datagram::Rtp(&bytes) } else { Datagram::Rtcp(&bytes) });
        }
        *t += Duration::from_millis(100);
    }
}

fn owned(id: VideoLegId, d: Datagram<'_>) -> (VideoLegId, Vec<u8>, bool) {
    match d {
        Datagram::Rtp(b) => (id, b.to_vec(), true),
        Datagram::Rtcp(b) => (id, b.to_vec(), false),
    }
}

fn centre(frame: &Frame, x: usize, y: usize, w: usize, h: usize) -> Yuv {
    frame.mean(x + w / 4, y + h / 4, w / 2, h / 2)
}

#[test]
fn every_viewer_sees_the_sources_in_the_grid_in_either_packetization_mode() {
    let (red, blue) = (Yuv::from_rgb(220, 30, 30), Yuv::from_rgb(30, 30, 220));
    let mut room = room(Layout::Grid);
    let mut t = t0();
    let a = room.add_leg(leg(1, PacketizationMode::NonInterleaved, true, true), "");
    let b = room.add_leg(leg(2, PacketizationMode::NonInterleaved, true, true), "");
    let c = room.add_leg(leg(3, PacketizationMode::SingleNal, true, false), "");
    let mut phones =
        [(a, Phone::new(red, 100)), (b, Phone::new(blue, 200)), (c, Phone::new(Yuv::from_rgb(0, 0, 0), 300))];
    run(&mut room, &mut t, &mut phones, 20, 0);
    for (_, phone) in phones.iter_mut() {
        for bytes in &phone.received {
            let packet = rtp::Packet::unmarshal(&mut &bytes[..]).unwrap();
            assert!(packet.payload.len() <= MTU);
        }
    }
    // The mode 0 viewer gets single NAL units only: no STAP-A (24) or FU-A (28).
    assert!(phones[2].1.received.iter().all(|b| !matches!(b[12] & 0x1F, 24..=29)));
    for (_, phone) in phones.iter_mut() {
        phone.decode();
        let frame = phone.last.as_ref().expect("a picture");
        assert_eq!((frame.width, frame.height), (320, 240));
        // Two sources: a 2×2 grid, in join order.
        assert!(centre(frame, 0, 0, 160, 120).distance(red) <= 10, "{:?}", centre(frame, 0, 0, 160, 120));
        assert!(centre(frame, 160, 0, 160, 120).distance(blue) <= 10);
        assert!(centre(frame, 0, 120, 160, 120).distance(Yuv::from_rgb(0, 0, 0)) <= 10);
    }
    // One encode per picture, whatever the number of viewers.
    let stats = room.stats();
    assert_eq!(stats.encodes, stats.pictures);
    assert_eq!(stats.encodes, 20);
    assert_eq!(room.leg_stats(a).unwrap().frames_decoded, 20);
}

#[test]
fn a_layout_change_moves_the_speaker_to_the_whole_canvas() {
    let (red, blue) = (Yuv::from_rgb(220, 30, 30), Yuv::from_rgb(30, 30, 220));
    let mut room = room(Layout::Grid);
    let mut t = t0();
    let a = room.add_leg(leg(1, PacketizationMode::NonInterleaved, true, true), "");
    let b = room.add_leg(leg(2, PacketizationMode::NonInterleaved, true, true), "");
    let mut phones = [(a, Phone::new(red, 100)), (b, Phone::new(blue, 200))];
    run(&mut room, &mut t, &mut phones, 5, 0);
    room.set_layout(Layout::Speaker);
    room.set_talking(b, true);
    run(&mut room, &mut t, &mut phones, 15, 5);
    let phone = &mut phones[0].1;
    phone.decode();
    let frame = phone.last.as_ref().unwrap();
    assert!(frame.mean(40, 40, 240, 160).distance(blue) <= 10, "the one talking fills the picture");
    // A presenter takes the place whoever talks.
    room.set_presenter(Some(a));
    run(&mut room, &mut t, &mut phones, 5, 20);
    let phone = &mut phones[0].1;
    phone.decode();
    let frame = phone.last.as_ref().unwrap();
    assert!(frame.mean(40, 40, 240, 160).distance(red) <= 10, "the presenter fills the picture");
}

#[test]
fn a_flood_of_keyframe_requests_makes_a_bounded_number_of_keyframes() {
    let mut room = room(Layout::Grid);
    let mut t = t0();
    let a = room.add_leg(leg(1, PacketizationMode::NonInterleaved, true, false), "");
    let pli = rtcp_session::encode(&[pli(555, 1)]).unwrap();
    let mut sent = 0;
    // A second: a hundred PLIs, ten pictures.
    for step in 0..100 {
        room.receive_rtcp(t, a, &pli, |_| {});
        if step % 10 == 0 {
            room.tick(t, 0, |_, _| {});
            room.compose(t);
            room.encode(|_, _| sent += 1);
        }
        t += Duration::from_millis(10);
    }
    let stats = room.stats();
    assert_eq!(stats.keyframe_requests, 100);
    // The first picture, then at most one per 500 ms.
    assert!(stats.keyframes <= 3, "{stats:?}");
    assert!(stats.keyframes >= 2, "requests are served: {stats:?}");
    assert!(sent > 0);
}

#[test]
fn a_source_is_asked_for_a_keyframe_by_pli_else_by_info_and_not_more_often_than_allowed() {
    let mut room = room(Layout::Grid);
    let mut t = t0();
    let with_pli = room.add_leg(leg(1, PacketizationMode::NonInterleaved, false, true), "");
    let mut plain = leg(2, PacketizationMode::NonInterleaved, false, true);
    plain.feedback = FeedbackSupport::default();
    let without = room.add_leg(plain, "");
    // A delta picture with no keyframe before it: its decoder needs one.
    let mut phone = Phone::new(Yuv::from_rgb(200, 200, 200), 77);
    phone.camera(0);
    for packet in phone.camera(1) {
        room.receive_rtp(t, with_pli, &packet);
    }
    let mut rtcp = Vec::new();
    for _ in 0..10 {
        room.tick(t, 0, |id, d| rtcp.push(owned(id, d)));
        t += Duration::from_millis(100);
    }
    let plis: usize = rtcp
        .iter()
        .filter(|(id, _, rtp)| *id == with_pli && !rtp)
        .filter_map(|(_, bytes, _)| rtcp_session::decode(bytes))
        .map(|packets| {
            packets
                .iter()
                .filter(|p| {
                    p.as_any()
                        .downcast_ref::<rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication>()
                        .is_some_and(|pli| pli.media_ssrc == 77 && pli.sender_ssrc == 1)
                })
                .count()
        })
        .sum();
    // A second at one request per 300 ms.
    assert!((3..=4).contains(&plis), "{plis} PLIs");
    let infos = std::iter::from_fn(|| room.poll_event())
        .filter(|e| *e == VideoRoomEvent::KeyframeByInfo { leg: without })
        .count();
    assert!((3..=4).contains(&infos), "{infos} INFO requests");
    assert_eq!(room.leg_stats(with_pli).unwrap().keyframes_asked as usize, plis);
}

#[test]
fn a_nack_is_answered_with_the_packet_sent() {
    let mut room = room(Layout::Grid);
    let mut t = t0();
    let a = room.add_leg(leg(1, PacketizationMode::NonInterleaved, true, false), "");
    let mut phones = [(a, Phone::new(Yuv::from_rgb(0, 0, 0), 9))];
    run(&mut room, &mut t, &mut phones, 3, 0);
    let first = phones[0].1.received[1].clone();
    let seq = u16::from_be_bytes([first[2], first[3]]);
    let nack: Box<dyn rtcp::packet::Packet> = Box::new(TransportLayerNack {
        sender_ssrc: 9,
        media_ssrc: 1,
        nacks: vec![NackPair { packet_id: seq, lost_packets: 0 }],
    });
    let nack = rtcp_session::encode(&[nack]).unwrap();
    let mut again = Vec::new();
    room.receive_rtcp(t, a, &nack, |d| again.push(owned(a, d).1));
    assert_eq!(again, vec![first]);
    assert_eq!(room.leg_stats(a).unwrap().retransmitted, 1);
}

/// Bright pixels (letters) in a rectangle of a decoded picture.
fn bright(frame: &Frame, x: usize, y: usize, w: usize, h: usize) -> usize {
    (y..y + h)
        .flat_map(|row| (x..x + w).map(move |col| (row, col)))
        .filter(|&(r, c)| frame.y[r * frame.width + c] > 180)
        .count()
}

#[test]
fn a_participant_without_a_camera_has_a_tile_with_its_name_when_configured() {
    let red = Yuv::from_rgb(220, 30, 30);
    for name_tiles in [true, false] {
        let mut room = VideoRoom::new(VideoRoomConfig { name_tiles, ..room(Layout::Grid).config }).unwrap();
        let mut t = t0();
        let a = room.add_leg(leg(1, PacketizationMode::NonInterleaved, true, true), "Alice");
        let phone = VideoLegConfig {
            send: false,
            receive: false,
            ..leg(2, PacketizationMode::SingleNal, false, false)
        };
        room.add_leg(phone, "Bob");
        let mut phones = [(a, Phone::new(red, 100))];
        run(&mut room, &mut t, &mut phones, 10, 0);
        phones[0].1.decode();
        let frame = phones[0].1.last.as_ref().unwrap();
        if name_tiles {
            // Two tiles: the camera, with no name over it, and Bob's name on the background.
            assert!(centre(frame, 0, 0, 160, 120).distance(red) <= 10);
            assert_eq!(bright(frame, 0, 0, 160, 120), 0, "names over cameras are off");
            assert!(bright(frame, 160, 40, 160, 40) > 30, "Bob's name");
        } else {
            // One camera alone fills the canvas; Bob has no tile.
            assert!(frame.mean(40, 40, 240, 160).distance(red) <= 10);
        }
    }
}

#[test]
fn each_tier_is_encoded_once_per_picture_for_its_viewers_and_remb_moves_a_viewer_down() {
    let low = TierConfig { width: 160, height: 90, frame_rate: 5, bitrate_bps: 100_000 };
    let mut room =
        VideoRoom::new(VideoRoomConfig { low_tier: Some(low), ..room(Layout::Grid).config }).unwrap();
    let mut t = t0();
    let red = Yuv::from_rgb(220, 30, 30);
    let a = room.add_leg(leg(1, PacketizationMode::NonInterleaved, true, true), "");
    // A viewer whose level takes 99 macroblocks (176×144) at most: the low tier.
    let small = ViewerLimits { max_frame_macroblocks: Some(99), ..ViewerLimits::default() };
    let b = room
        .add_leg(VideoLegConfig { limits: small, ..leg(2, PacketizationMode::SingleNal, true, false) }, "");
    let mut phones = [(a, Phone::new(red, 100)), (b, Phone::new(Yuv::from_rgb(0, 0, 0), 200))];
    run(&mut room, &mut t, &mut phones, 10, 0);
    // A second at 10 pictures a second: the canvas 10 times, the low tier 5.
    assert_eq!(room.stats().encodes_per_tier, [10, 5, 0, 0]);
    assert_eq!((room.leg_stats(a).unwrap().tier, room.leg_stats(b).unwrap().tier), (0, 1));
    for (_, phone) in phones.iter_mut() {
        phone.decode();
    }
    let (big, little) = (phones[0].1.last.clone().unwrap(), phones[1].1.last.clone().unwrap());
    assert_eq!((big.width, big.height, little.width, little.height), (320, 240, 160, 90));
    // The low tier is the canvas scaled: the source's colour in the same place.
    assert!(centre(&little, 0, 0, 80, 45).distance(centre(&big, 0, 0, 160, 120)) <= 12);

    // A REMB below the canvas's bitrate moves the first viewer down; the low tier then has
    // both, the canvas's encoder none.
    let remb: Box<dyn rtcp::packet::Packet> = Box::new(
        rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate {
            sender_ssrc: 100,
            bitrate: 200_000.0,
            ssrcs: vec![1],
        },
    );
    room.receive_rtcp(t, a, &rtcp_session::encode(&[remb]).unwrap(), |_| {});
    assert_eq!(room.leg_stats(a).unwrap().tier, 1);
    let before = room.stats().encodes_per_tier;
    run(&mut room, &mut t, &mut phones, 10, 10);
    let after = room.stats().encodes_per_tier;
    assert_eq!((after[0] - before[0], after[1] - before[1]), (0, 5));
    phones[0].1.decode();
    assert_eq!(phones[0].1.last.as_ref().map(|f| (f.width, f.height)), Some((160, 90)));
    assert_eq!(room.stats().tier_changes, 1);
}

#[test]
fn a_cascade_is_sent_the_room_without_its_own_tile_by_an_encode_of_its_own() {
    let (red, blue, green) =
        (Yuv::from_rgb(220, 30, 30), Yuv::from_rgb(30, 30, 220), Yuv::from_rgb(30, 200, 30));
    let mut room = room(Layout::Grid);
    let mut t = t0();
    let a = room.add_leg(leg(1, PacketizationMode::NonInterleaved, true, true), "");
    let b = room.add_leg(leg(2, PacketizationMode::NonInterleaved, true, true), "");
    // The other room's picture comes in green, as one tile.
    let c = room.add_leg(
        VideoLegConfig { cascade: true, ..leg(3, PacketizationMode::NonInterleaved, true, true) },
        "",
    );
    let mut phones = [(a, Phone::new(red, 100)), (b, Phone::new(blue, 200)), (c, Phone::new(green, 300))];
    run(&mut room, &mut t, &mut phones, 10, 0);
    for (_, phone) in phones.iter_mut() {
        phone.decode();
    }
    // The phones see all three, the other room among them.
    let seen = phones[0].1.last.as_ref().unwrap();
    assert!(centre(seen, 0, 0, 160, 120).distance(red) <= 10);
    assert!(centre(seen, 160, 0, 160, 120).distance(blue) <= 10);
    assert!(centre(seen, 0, 120, 160, 120).distance(green) <= 10);
    // The cascade sees the two phones and not itself.
    let cascade = phones[2].1.last.as_ref().unwrap();
    assert!(centre(cascade, 0, 0, 160, 120).distance(red) <= 10);
    assert!(centre(cascade, 160, 0, 160, 120).distance(blue) <= 10);
    assert!(centre(cascade, 0, 120, 160, 120).distance(Yuv::from_rgb(0, 0, 0)) <= 10, "no tile of its own");
    let stats = room.stats();
    assert_eq!((stats.encodes, stats.cascade_encodes), (20, 10), "one shared encode and the cascade's own");
}

#[test]
fn vp8_and_h264_legs_share_one_room_with_one_encode_per_codec() {
    use crate::video::vp8::{Vp8Decoder, Vp8Encoder};
    use crate::video::vp8_rtp;
    let (red, blue) = (Yuv::from_rgb(220, 30, 30), Yuv::from_rgb(30, 30, 220));
    let mut room = room(Layout::Grid);
    let mut t = t0();
    let a = room.add_leg(leg(1, PacketizationMode::NonInterleaved, true, true), "");
    let vp8 = |ssrc| VideoLegConfig {
        codec: VideoCodecKind::Vp8,
        payload_type: 96,
        ..leg(ssrc, PacketizationMode::SingleNal, true, true)
    };
    let b = room.add_leg(vp8(2), "");
    let mut phone = Phone::new(red, 100);
    let settings = EncoderSettings { bitrate_bps: 300_000, frame_rate: 10, max_nal_bytes: None };
    let mut camera = Vp8Encoder::new(settings);
    let mut packetizer = vp8_rtp::Packetizer { mtu: MTU, picture_id: 1 };
    let (mut depacketizer, mut decoder) = (vp8_rtp::Depacketizer::default(), Vp8Decoder::new().unwrap());
    let mut seen = Frame::filled(0, 0, red);
    let mut seq = 0u16;
    for f in 0..10u32 {
        for packet in phone.camera(f) {
            room.receive_rtp(t, a, &packet);
        }
        let encoded = camera.encode(&Frame::filled(160, 120, blue), u64::from(f) * 100).unwrap();
        let mut payloads = Vec::new();
        packetizer.packetize(encoded.data, &mut payloads);
        let count = payloads.len();
        for (n, payload) in payloads.into_iter().enumerate() {
            seq = seq.wrapping_add(1);
            let header = rtp::header::Header {
                version: 2,
                marker: n + 1 == count,
                payload_type: 96,
                sequence_number: seq,
                timestamp: f * 9000,
                ssrc: 200,
                ..Default::default()
            };
            room.receive_rtp(t, b, &rtp::Packet { header, payload });
        }
        let mut out: Vec<(VideoLegId, Vec<u8>, bool)> = Vec::new();
        room.tick(t, 0, |id, d| out.push(owned(id, d)));
        room.compose(t);
        room.encode(|id, d| out.push(owned(id, d)));
        let mut frames = Vec::new();
        for (id, bytes, rtp) in out {
            if id == a {
                phone.take(if rtp { Datagram::Rtp(&bytes) } else { Datagram::Rtcp(&bytes) });
            } else if rtp {
                let packet = rtp::Packet::unmarshal(&mut &bytes[..]).unwrap();
                assert_eq!(packet.header.payload_type, 96);
                let h = &packet.header;
                depacketizer.push(h.sequence_number, h.timestamp, h.marker, &packet.payload, &mut frames);
            }
        }
        for frame in frames {
            decoder.decode_into(&frame.data, &mut seen).unwrap();
        }
        t += Duration::from_millis(100);
    }
    phone.decode();
    // Both viewers see both cameras, whichever codec each sent and takes.
    for picture in [phone.last.as_ref().unwrap(), &seen] {
        assert_eq!((picture.width, picture.height), (320, 240));
        assert!(centre(picture, 0, 0, 160, 120).distance(red) <= 12);
        assert!(centre(picture, 160, 0, 160, 120).distance(blue) <= 12);
    }
    let stats = room.stats();
    // No low tier here: the canvas in H.264, then in VP8.
    assert_eq!(stats.encodes_per_tier, [10, 10, 0, 0], "one encode per codec per picture");
}

#[test]
fn a_viewer_that_changes_codec_by_reinvite_is_sent_the_other_codecs_encode() {
    use crate::video::vp8::Vp8Decoder;
    use crate::video::vp8_rtp;
    let red = Yuv::from_rgb(220, 30, 30);
    let mut room = room(Layout::Grid);
    let mut t = t0();
    let a = room.add_leg(leg(1, PacketizationMode::NonInterleaved, true, true), "");
    let v = room.add_leg(leg(2, PacketizationMode::NonInterleaved, true, false), "");
    let mut phones = [(a, Phone::new(red, 100)), (v, Phone::new(Yuv::from_rgb(0, 0, 0), 200))];
    run(&mut room, &mut t, &mut phones, 5, 0);
    assert_eq!(room.stats().encodes_per_tier, [5, 0, 0, 0]);
    let vp8 = VideoLegConfig {
        codec: VideoCodecKind::Vp8,
        payload_type: 96,
        ..leg(2, PacketizationMode::NonInterleaved, true, false)
    };
    room.update_leg(v, vp8);
    phones[1].1.received.clear();
    run(&mut room, &mut t, &mut phones, 5, 5);
    // No low tier: H.264's canvas is tier 0, VP8's tier 1.
    assert_eq!(room.stats().encodes_per_tier, [10, 5, 0, 0]);
    let (mut depacketizer, mut decoder) = (vp8_rtp::Depacketizer::default(), Vp8Decoder::new().unwrap());
    let (mut frames, mut seen) = (Vec::new(), Frame::filled(0, 0, red));
    for bytes in &phones[1].1.received {
        let packet = rtp::Packet::unmarshal(&mut &bytes[..]).unwrap();
        assert_eq!(packet.header.payload_type, 96);
        let h = &packet.header;
        depacketizer.push(h.sequence_number, h.timestamp, h.marker, &packet.payload, &mut frames);
    }
    for frame in frames {
        decoder.decode_into(&frame.data, &mut seen).unwrap();
    }
    assert!(seen.mean(40, 40, 240, 160).distance(red) <= 12, "the camera, now in VP8");
}
