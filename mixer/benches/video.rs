//! A video room's frame: four 1280×720 H.264 sources decoded, composed into a 2×2 grid on a
//! 1280×720 canvas, and that canvas encoded once (Constrained Baseline, 1.5 Mbit/s), as one
//! tick of a room at 30 frames a second does it. Each source is a moving picture (a bar that
//! sweeps across a colour), encoded beforehand. Reported per frame; a room's share of a core
//! at 30 frames a second is 30 × that time.
//!
//! The same room through [`VideoRoom`] with its sources arriving as RTP, with 10 and with 100
//! viewers in one tier: the difference is what viewers cost (packetization and sending only,
//! the encode is shared). And 50 viewers in two tiers, counting encodes per picture.
//!
//! `cargo bench -p mixer --bench video`; figures are in the README.

use criterion::{criterion_group, criterion_main, Criterion};
use mixer::video::compose::{Compositor, Fit, Layout};
use mixer::video::frame::{Frame, Yuv};
use std::time::{Duration, Instant};

use mixer::video::h264::{EncoderSettings, H264Decoder, H264Encoder};
use mixer::video::h264_rtp::{annex_b_nals, PacketizationMode, Packetizer};
use mixer::video::room::{
    FeedbackSupport, TierConfig, VideoCodecKind, VideoLegConfig, VideoRoom, VideoRoomConfig, ViewerLimits,
};

const WIDTH: usize = 1280;
const HEIGHT: usize = 720;
/// Pictures of each source, looped (the first is the keyframe the loop restarts at).
const PICTURES: usize = 30;

/// A source's pictures, encoded: one colour, with a white bar sweeping across it.
fn source(colour: Yuv) -> Vec<Vec<u8>> {
    let settings = EncoderSettings { bitrate_bps: 1_500_000, frame_rate: 30, max_nal_bytes: None };
    let mut encoder = H264Encoder::new(settings).expect("encoder");
    (0..PICTURES)
        .map(|i| {
            let mut picture = Frame::filled(WIDTH, HEIGHT, colour);
            picture.fill_rect(i * WIDTH / PICTURES, 0, 64, HEIGHT, Yuv::from_rgb(240, 240, 240));
            if i == 0 {
                encoder.ask_keyframe();
            }
            encoder.encode(&picture, i as u64 * 33).expect("encoded").annex_b().to_vec()
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let colours = [(220, 40, 40), (40, 200, 40), (40, 40, 220), (230, 230, 40)];
    let sources: Vec<Vec<Vec<u8>>> =
        colours.iter().map(|&(r, g, b)| source(Yuv::from_rgb(r, g, b))).collect();
    let mut decoders: Vec<H264Decoder> =
        sources.iter().map(|_| H264Decoder::new().expect("decoder")).collect();
    let mut compositor = Compositor::new(WIDTH, HEIGHT, Yuv::from_rgb(16, 16, 16), Fit::Crop);
    let settings = EncoderSettings { bitrate_bps: 1_500_000, frame_rate: 30, max_nal_bytes: None };
    let mut encoder = H264Encoder::new(settings).expect("encoder");
    let mut latest: Vec<Option<Frame>> = vec![None; sources.len()];
    let mut n = 0usize;
    let mut group = c.benchmark_group("video_room_720p30");
    group.sample_size(30);
    let mut frame = || {
        for (i, decoder) in decoders.iter_mut().enumerate() {
            if let Ok(Some(picture)) = decoder.decode(&sources[i][n % PICTURES]) {
                latest[i] = Some(picture);
            }
        }
        let refs: Vec<Option<&Frame>> = latest.iter().map(Option::as_ref).collect();
        let canvas = compositor.compose(Layout::Grid, &refs).expect("composed");
        let bytes = encoder.encode(canvas, n as u64 * 33).expect("encoded").annex_b().len();
        n += 1;
        bytes
    };
    group.bench_function("decode_4_compose_encode_1", |b| b.iter(&mut frame));
    group.finish();
}

/// Each source's pictures as RTP packets, in mode 1.
fn packets(source: &[Vec<u8>], ssrc: u32) -> Vec<Vec<rtp::Packet>> {
    let packetizer = Packetizer { mode: PacketizationMode::NonInterleaved, mtu: 1200 };
    let mut seq = 0u16;
    source
        .iter()
        .enumerate()
        .map(|(i, au)| {
            let mut payloads = Vec::new();
            packetizer.packetize(annex_b_nals(au), &mut payloads).expect("packetized");
            let count = payloads.len();
            payloads
                .into_iter()
                .enumerate()
                .map(|(n, payload)| {
                    seq = seq.wrapping_add(1);
                    let header = rtp::header::Header {
                        version: 2,
                        marker: n + 1 == count,
                        payload_type: 96,
                        sequence_number: seq,
                        timestamp: i as u32 * 3000,
                        ssrc,
                        ..Default::default()
                    };
                    rtp::Packet { header, payload }
                })
                .collect()
        })
        .collect()
}

fn leg(ssrc: u32, send: bool, receive: bool, limits: ViewerLimits) -> VideoLegConfig {
    VideoLegConfig {
        codec: VideoCodecKind::H264,
        payload_type: 96,
        mode: PacketizationMode::NonInterleaved,
        feedback: FeedbackSupport { nack: true, pli: true, fir: false },
        send,
        receive,
        ssrc,
        first_seq: 0,
        first_timestamp: 0,
        limits,
        cascade: false,
    }
}

/// A 720p30 room with the four sources and `viewers` viewers besides (`small` of them in the
/// low tier), ready to run frame by frame from `t`.
fn room(viewers: usize, small: usize) -> VideoRoom {
    let config = VideoRoomConfig {
        width: WIDTH,
        height: HEIGHT,
        frame_rate: 30,
        bitrate_bps: 1_500_000,
        layout: Layout::Grid,
        fit: Fit::Crop,
        background: Yuv::from_rgb(16, 16, 16),
        keyframe_interval: Duration::from_millis(500),
        ask_interval: Duration::from_millis(500),
        mtu: 1200,
        name_tiles: true,
        show_names: true,
        low_tier: Some(TierConfig { width: 640, height: 360, frame_rate: 30, bitrate_bps: 500_000 }),
    };
    let mut room = VideoRoom::new(config).expect("room");
    for i in 0..4 {
        room.add_leg(leg(i, false, true, ViewerLimits::default()), "camera");
    }
    let level30 = ViewerLimits { max_frame_macroblocks: Some(1620), ..ViewerLimits::default() };
    for i in 0..viewers {
        let limits = if i < small { level30 } else { ViewerLimits::default() };
        room.add_leg(leg(100 + i as u32, true, false, limits), "viewer");
    }
    room
}

fn viewers(c: &mut Criterion) {
    let colours = [(220, 40, 40), (40, 200, 40), (40, 40, 220), (230, 230, 40)];
    let sources: Vec<Vec<Vec<rtp::Packet>>> = colours
        .iter()
        .enumerate()
        .map(|(i, &(r, g, b))| packets(&source(Yuv::from_rgb(r, g, b)), i as u32))
        .collect();
    #[allow(clippy::disallowed_methods)] // the origin of the room's virtual time
    let start = Instant::now();
    let mut group = c.benchmark_group("video_room_720p30_rtp");
    group.sample_size(20);
    for count in [10, 100] {
        let mut room = room(count, 0);
        let (mut n, mut t) = (0usize, start);
        let mut bytes = 0usize;
        group.bench_function(format!("viewers_{count}"), |b| {
            b.iter(|| {
                // The loop of pictures restarts at its keyframe: sequence numbers run on.
                for (leg, source) in sources.iter().enumerate() {
                    let per_loop: usize = source.iter().map(Vec::len).sum();
                    for packet in &source[n % PICTURES] {
                        let mut packet = packet.clone();
                        let offset = (n / PICTURES * per_loop) as u16;
                        packet.header.sequence_number = packet.header.sequence_number.wrapping_add(offset);
                        room.receive_rtp(t, mixer::video::room::VideoLegId(leg as u32), &packet);
                    }
                }
                room.tick(t, 0, |_, d| bytes += datagram_len(d));
                room.compose(t);
                room.encode(|_, d| bytes += datagram_len(d));
                n += 1;
                t += Duration::from_micros(33_334);
            })
        });
        let stats = room.stats();
        let decoded: Vec<u64> = (0..4)
            .map(|leg| room.leg_stats(mixer::video::room::VideoLegId(leg)).map_or(0, |s| s.frames_decoded))
            .collect();
        eprintln!(
            "{count} viewers: {} pictures, {} encodes ({:?} per tier), {decoded:?} pictures decoded, \
             {bytes} bytes sent",
            stats.pictures, stats.encodes, stats.encodes_per_tier
        );
    }
    group.finish();
    // Fifty viewers in two tiers: two encodes a picture.
    let mut room = room(50, 20);
    let mut t = start;
    for _ in 0..30 {
        room.tick(t, 0, |_, _| {});
        room.compose(t);
        room.encode(|_, _| {});
        t += Duration::from_micros(33_334);
    }
    let stats = room.stats();
    eprintln!(
        "50 viewers in two tiers: {} pictures, {} encodes ({:?} per tier)",
        stats.pictures, stats.encodes, stats.encodes_per_tier
    );
}

fn datagram_len(d: mixer::video::room::Datagram<'_>) -> usize {
    match d {
        mixer::video::room::Datagram::Rtp(b) | mixer::video::room::Datagram::Rtcp(b) => b.len(),
    }
}

criterion_group!(video, benches, viewers);
criterion_main!(video);
