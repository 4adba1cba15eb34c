//! The conference tick: N participants on G.711 with 3 talkers, everything a tick does (RTP
//! in through the jitter buffer, decoding, voice activity, mixing, encoding, RTP out).
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
    now: Instant,
}

fn room(participants: usize, talkers: usize) -> Room {
    let mut conference = Conference::new(16000);
    let tone = |f: f64| {
        let mut pcm = vec![0i16; 160];
        Sine::new(8000, f, 0.25).fill(&mut pcm);
        let mut payload = vec![0u8; 160];
        Encoder::new(AudioCodec::Pcmu).encode(&pcm, &mut payload);
        Bytes::from(payload)
    };
    let silence = Bytes::from(vec![0xffu8; 160]);
    let legs = (0..participants)
        .map(|i| {
            let leg = conference.add_leg(LegConfig {
                codec: AudioCodec::Pcmu,
                payload_type: 0,
                telephone_event: Some(101),
                inband_dtmf: false,
                ssrc: i as u32,
                first_seq: 0,
                first_timestamp: 0,
            });
            let payload = if i < talkers { tone(400.0 + 300.0 * i as f64) } else { silence.clone() };
            (leg, RtpSender::new(10_000 + i as u32, 0, 0, 0), payload)
        })
        .collect();
    Room { conference, legs, now: Instant::now() }
}

impl Room {
    fn tick(&mut self) -> usize {
        for (leg, sender, payload) in &mut self.legs {
            let packet = sender.packet(payload.clone(), 160);
            self.conference.receive(self.now, *leg, &packet);
        }
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
    let mut r = room(1000, 3);
    for _ in 0..100 {
        r.tick();
    }
    let after = LIVE.load(Ordering::Relaxed);
    println!("memory: {} bytes per G.711 leg (1000 legs, after 2 s of traffic)", (after - before) / 1000);
    drop(r);
}

fn benches(c: &mut Criterion) {
    memory_per_leg();
    let mut group = c.benchmark_group("conference_tick_g711_3_talkers");
    for n in [10usize, 100, 1000] {
        let mut r = room(n, 3);
        for _ in 0..50 {
            r.tick(); // fill jitter buffers, settle voice activity
        }
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| b.iter(|| r.tick()));
    }
    group.finish();
}

criterion_group!(conference, benches);
criterion_main!(conference);
