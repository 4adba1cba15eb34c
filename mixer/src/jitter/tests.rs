//! The jitter buffer under seeded network simulations.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use super::*;

/// SplitMix64, for seeded simulations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Run {
    sent: u64,
    dropped: u64,
    /// Still on the wire when the run ended.
    in_flight: u64,
    stats: JitterStats,
    /// Target delay once per second.
    targets: Vec<Duration>,
    /// Frames played or concealed after the start, in order: true = played.
    played: Vec<bool>,
}

/// 20 ms G.711 frames for `seconds`; each packet is lost with `loss`, delayed 20 ms plus
/// uniform jitter up to `jitter` (so they reorder); the mixer ticks every 20 ms.
fn simulate(seed: u64, seconds: u32, loss: f64, jitter: Duration, start_ts: u32) -> Run {
    simulate_with(seed, seconds, loss, start_ts, |_, rng| {
        Duration::from_millis(20) + jitter.mul_f64(rng.next())
    })
}

/// As [`simulate`], with the one-way delay of the packet sent at each tick given by `delay`.
#[allow(clippy::disallowed_methods)] // the origin of virtual time
fn simulate_with(
    seed: u64,
    seconds: u32,
    loss: f64,
    start_ts: u32,
    delay: impl Fn(u32, &mut Rng) -> Duration,
) -> Run {
    let mut rng = Rng(seed);
    let t0 = Instant::now();
    let frame = Duration::from_millis(20);
    let mut jb = JitterBuffer::new(8000, frame);
    let mut in_flight = BinaryHeap::new();
    let (mut sent, mut dropped) = (0, 0);
    let mut played = Vec::new();
    let mut targets = Vec::new();
    let ticks = seconds * 50;
    for tick in 0..ticks {
        let now = t0 + frame * tick;
        // The sender emits one packet per tick.
        let ts = start_ts.wrapping_add(160 * tick);
        sent += 1;
        if rng.next() < loss {
            dropped += 1;
        } else {
            let arrival = now + delay(tick, &mut rng);
            in_flight.push(Reverse((arrival, tick, ts)));
        }
        // Deliver what has arrived, then play one frame.
        while let Some(Reverse((at, _, ts))) = in_flight.peek().copied() {
            if at > now {
                break;
            }
            in_flight.pop();
            jb.push(at, ts, &[0xff; 160], None);
        }
        match jb.pop_due() {
            Playout::Frame { payload, .. } => {
                assert_eq!(payload.len(), 160);
                played.push(true);
            }
            Playout::Lost { .. } => played.push(false),
            Playout::Wait => {}
        }
        if tick % 50 == 0 {
            targets.push(jb.target_delay());
        }
    }
    Run { sent, dropped, in_flight: in_flight.len() as u64, stats: jb.stats(), targets, played }
}

#[test]
fn loss_jitter_and_reordering_cost_no_more_than_the_loss() {
    for seed in 0..20 {
        let run = simulate(seed, 60, 0.05, Duration::from_millis(60), 1000);
        let s = run.stats;
        // Every frame that arrived in time is played; what is concealed is what the network lost,
        // plus at most a handful while the delay adapts at the start.
        let concealed_beyond_loss = s.lost as i64 - run.dropped as i64;
        assert!(concealed_beyond_loss <= 5, "seed {seed}: {s:?}, network dropped {}", run.dropped);
        assert!(s.late <= 5, "seed {seed}: {} late packets", s.late);
        assert_eq!(s.received, run.sent - run.dropped - run.in_flight);
        // After the first 10 s the target is steady, and covers the 60 ms of jitter.
        let steady = &run.targets[10..];
        let (lo, hi) = (steady.iter().min().unwrap(), steady.iter().max().unwrap());
        assert!(
            *lo >= Duration::from_millis(60) && *hi <= Duration::from_millis(90),
            "seed {seed}: target {lo:?}..{hi:?}"
        );
        assert!(*hi - *lo <= Duration::from_millis(10), "seed {seed}: target wanders {lo:?}..{hi:?}");
        assert!(run.played.len() as u64 + s.stalls >= 2900, "seed {seed}: playout stopped");
    }
}

#[test]
fn steady_network_keeps_a_small_delay_and_loses_nothing() {
    let run = simulate(1, 20, 0.0, Duration::from_millis(2), 0);
    assert_eq!((run.stats.lost, run.stats.late), (0, 0), "{:?}", run.stats);
    assert!(run.targets.last().unwrap() <= &Duration::from_millis(30));
}

#[test]
fn timestamps_wrap_around() {
    // Start 1 s before the 32-bit timestamp wraps.
    let run = simulate(3, 5, 0.0, Duration::from_millis(10), u32::MAX - 8000);
    assert_eq!(run.stats.lost, 0, "{:?}", run.stats);
    assert!(run.played.iter().all(|p| *p));
}

#[test]
fn a_burst_of_late_packets_grows_the_delay_then_it_drains() {
    // Steady 20 ms for 4 s, then 100 ms more for 1 s, then steady again.
    let burst = |tick: u32, _: &mut Rng| {
        let extra = if (200..250).contains(&tick) { 100 } else { 0 };
        Duration::from_millis(20 + extra)
    };
    let run = simulate_with(9, 12, 0.0, 0, burst);
    let (calm, during, after) = (run.targets[3], run.targets[5], *run.targets.last().unwrap());
    assert!(during >= calm + Duration::from_millis(90), "target {calm:?} -> {during:?}");
    // Playout waited for the late packets instead of dropping them…
    assert!(run.stats.stalls > 0 && run.stats.lost == 0 && run.stats.late == 0, "{:?}", run.stats);
    // …and once the burst left the window, the extra delay was drained by skipping frames.
    assert!(after <= calm + Duration::from_millis(5), "target after {after:?}");
    assert!(run.stats.skips > 0, "{:?}", run.stats);
}

#[test]
fn the_sliding_range_is_the_least_and_greatest_of_the_last_window() {
    let mut range = SlidingRange::default();
    let mut all = Vec::new();
    // A walk with jumps both ways, longer than several windows.
    let mut value: i64 = 0;
    for n in 0..1000u64 {
        value += ((n * 7919) % 23) as i64 - 11 + if n % 97 == 0 { 500 } else { 0 };
        all.push(value);
        let window = &all[all.len().saturating_sub(WINDOW)..];
        let expected = (*window.iter().min().unwrap(), *window.iter().max().unwrap());
        assert_eq!(range.push(value), expected, "after {} values", n + 1);
    }
}
