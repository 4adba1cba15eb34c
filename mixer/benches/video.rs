//! A video room's frame: four 1280×720 H.264 sources decoded, composed into a 2×2 grid on a
//! 1280×720 canvas, and that canvas encoded once (Constrained Baseline, 1.5 Mbit/s), as one
//! tick of a room at 30 frames a second does it. Each source is a moving picture (a bar that
//! sweeps across a colour), encoded beforehand. Reported per frame; a room's share of a core
//! at 30 frames a second is 30 × that time.
//!
//! `cargo bench -p mixer --bench video`; figures are in the README.

use criterion::{criterion_group, criterion_main, Criterion};
use mixer::video::compose::{Compositor, Fit, Layout};
use mixer::video::frame::{Frame, Yuv};
use mixer::video::h264::{EncoderSettings, H264Decoder, H264Encoder};

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

criterion_group!(video, benches);
criterion_main!(video);
