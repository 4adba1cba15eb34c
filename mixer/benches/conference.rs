//! The conference tick: N participants on G.711 (16 kHz mix) or Opus (48 kHz mix) with 3
//! talkers, everything a tick does (RTP in through the jitter buffer, decoding, voice
//! activity, mixing, encoding, RTP out).
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

struct Room {
    conference: Conference,
    legs: Vec<(LegId, RtpSender, Bytes)>,
    ticks: u32,
    /// Silent legs send as browsers with DTX do: a DTX frame every 400 ms, nothing between.
    dtx: bool,
    tick: u64,
    now: Instant,
}

fn room(codec: AudioCodec, participants: usize, talkers: usize, dtx: bool) -> Room {
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
            });
            let payload = match (i < talkers, dtx) {
                (true, _) => encode(Some(400.0 + 300.0 * i as f64)),
                (false, false) => silence.clone(),
                (false, true) => Bytes::from_static(&[0xF8]),
            };
            (leg, RtpSender::new(10_000 + i as u32, codec.static_payload_type(), 0, 0), payload)
        })
        .collect();
    Room { conference, legs, ticks: codec.frame_ticks(), dtx, tick: 0, now: Instant::now() }
}

impl Room {
    fn tick(&mut self) -> usize {
        for (leg, sender, payload) in &mut self.legs {
            let packet = sender.packet(payload.clone(), self.ticks);
            if !self.dtx || payload.len() > 2 || self.tick % 20 == 0 {
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
    let mut r = room(AudioCodec::Pcmu, 1000, 3, false);
    for _ in 0..100 {
        r.tick();
    }
    let after = LIVE.load(Ordering::Relaxed);
    println!("memory: {} bytes per G.711 leg (1000 legs, after 2 s of traffic)", (after - before) / 1000);
    drop(r);
}

fn benches(c: &mut Criterion) {
    memory_per_leg();
    for (name, codec, sizes, dtx) in [
        ("conference_tick_g711_3_talkers", AudioCodec::Pcmu, [10usize, 100, 1000], false),
        ("conference_tick_opus_3_talkers", AudioCodec::Opus, [10, 100, 500], false),
        ("conference_tick_opus_3_talkers_dtx", AudioCodec::Opus, [10, 100, 1500], true),
    ] {
        let mut group = c.benchmark_group(name);
        for n in sizes {
            let mut r = room(codec, n, 3, dtx);
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
