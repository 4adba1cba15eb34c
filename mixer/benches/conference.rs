//! The conference tick: N participants on G.711 (16 kHz mix) or Opus (48 kHz mix) with 3
//! talkers, everything a tick does (RTP in through the jitter buffer, decoding, voice
//! activity, mixing, encoding, RTP out). Opus listeners are silent three ways: a frame every
//! tick, DTX, or a frame every tick marked silent by its audio level (RFC 6464).
//! Reported as time per tick; participants per core = N × 20 ms / that time.
//!
//! `cargo bench -p mixer --bench conference`; also prints the memory one leg takes. Figures
//! are in the README.

#![allow(clippy::disallowed_methods)] // Instant::now() as the origin of virtual time.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mixer::codec::{AudioCodec, Encoder};
use mixer::conference::{Conference, LegConfig, LegId};
use mixer::rtp_stream::RtpSender;
use mixer::tone::Sine;

/// Counts live heap bytes, to measure memory per leg.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// How listeners send their silence.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Silent {
    /// An encoded frame of silence every tick, as a phone does.
    Frames,
    /// As browsers with DTX do: a DTX frame every 400 ms, nothing between.
    Dtx,
    /// A frame every tick, each marked with its level (RFC 6464): talkers −20 dBov, listeners
    /// −127, as Chromium marks its packets.
    Levels,
}

/// The audio-level extension's id in the packets.
const LEVEL_ID: u8 = 1;

struct Room {
    conference: Conference,
    legs: Vec<(LegId, RtpSender, Bytes, bool)>,
    ticks: u32,
    silent: Silent,
    tick: u64,
    now: Instant,
}

fn room(codec: AudioCodec, participants: usize, talkers: usize, silent: Silent) -> Room {
    let rate = if codec == AudioCodec::Opus { 48000 } else { 16000 };
    let mut conference = Conference::new(rate);
    let frame = codec.pcm_rate() as usize / 50;
    let encode = |f: Option<f64>| {
        let mut pcm = vec![0i16; frame];
        if let Some(f) = f {
            Sine::new(codec.pcm_rate(), f, 0.25).fill(&mut pcm);
        }
        let mut payload = vec![0u8; 1500];
        let n = Encoder::new(codec).encode(&pcm, &mut payload);
        payload.truncate(n);
        Bytes::from(payload)
    };
    let silence = encode(None);
    let legs = (0..participants)
        .map(|i| {
            let leg = conference.add_leg(LegConfig {
                codec,
                payload_type: codec.static_payload_type(),
                telephone_event: Some(101),
                inband_dtmf: false,
                ssrc: i as u32,
                first_seq: 0,
                first_timestamp: 0,
                ptime: 20,
                audio_level: (silent == Silent::Levels).then_some(LEVEL_ID),
            });
            let talks = i < talkers;
            let payload = match (talks, silent) {
                (true, _) => encode(Some(400.0 + 300.0 * i as f64)),
                (false, Silent::Frames | Silent::Levels) => silence.clone(),
                (false, Silent::Dtx) => Bytes::from_static(&[0xF8]),
            };
            (leg, RtpSender::new(10_000 + i as u32, codec.static_payload_type(), 0, 0), payload, talks)
        })
        .collect();
    Room { conference, legs, ticks: codec.frame_ticks(), silent, tick: 0, now: Instant::now() }
}

impl Room {
    fn tick(&mut self) -> usize {
        for (leg, sender, payload, talks) in &mut self.legs {
            let mut packet = sender.packet(payload.clone(), self.ticks);
            if self.silent == Silent::Levels {
                let level = Bytes::from_static(if *talks { &[20] } else { &[127] });
                packet.header.set_extension(LEVEL_ID, level).expect("a one-byte extension");
            }
            if self.silent != Silent::Dtx || payload.len() > 2 || self.tick % 20 == 0 {
                self.conference.receive(self.now, *leg, &packet);
            }
        }
        self.tick += 1;
        let mut sent = 0;
        self.conference.tick(|leg, packet| {
            black_box((leg, packet));
            sent += 1;
        });
        self.now += Duration::from_millis(20);
        sent
    }
}

fn memory_per_leg() {
    let before = LIVE.load(Ordering::Relaxed);
    let mut r = room(AudioCodec::Pcmu, 1000, 3, Silent::Frames);
    for _ in 0..100 {
        r.tick();
    }
    let after = LIVE.load(Ordering::Relaxed);
    println!("memory: {} bytes per G.711 leg (1000 legs, after 2 s of traffic)", (after - before) / 1000);
    drop(r);
}

fn benches(c: &mut Criterion) {
    memory_per_leg();
    for (name, codec, sizes, silent) in [
        ("conference_tick_g711_3_talkers", AudioCodec::Pcmu, [10usize, 100, 1000], Silent::Frames),
        ("conference_tick_opus_3_talkers", AudioCodec::Opus, [10, 100, 500], Silent::Frames),
        ("conference_tick_opus_3_talkers_dtx", AudioCodec::Opus, [10, 100, 1500], Silent::Dtx),
        ("conference_tick_opus_3_talkers_levels", AudioCodec::Opus, [10, 100, 1500], Silent::Levels),
    ] {
        let mut group = c.benchmark_group(name);
        for n in sizes {
            let mut r = room(codec, n, 3, silent);
            for _ in 0..50 {
                r.tick(); // fill jitter buffers, settle voice activity
            }
            let stats = r.conference.tick_stats();
            println!(
                "{name}/{n}: {} encodes per tick ({} personal, {} shared)",
                stats.personal_encodes + stats.shared_encodes,
                stats.personal_encodes,
                stats.shared_encodes
            );
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| b.iter(|| r.tick()));
        }
        group.finish();
    }
}

criterion_group!(conference, benches);
criterion_main!(conference);
