//! A media load generator: holds `--legs` calls in one room, each an authenticated call from
//! its own SIP and RTP sockets, streaming PCMU every 20 ms (the first `--talkers` a tone each,
//! the others silence) and reading what the gateway sends back. After a warm-up it measures,
//! over `--seconds`: the gateway's CPU from `/proc/PID/stat`, its resident memory per leg, the
//! packets each leg got against the 50 a second it should, and whether each leg heard the
//! talkers. It also reports its own CPU and how late its ticks ran, so a run where the
//! generator could not keep up is seen as such.
//!
//! Mouth to ear: the first talker sends its tone in half-second bursts, and the last leg (a
//! listener) is read every millisecond; the time from a burst's first packet sent to the first
//! packet heard carrying that tone is the delay through the gateway (its jitter buffer, the
//! mix's tick, encoding) on loopback.
//!
//! ```sh
//! legload --gateway 127.0.0.1:5060 --room 1000 --users 100 --password secret --legs 1000 --pid PID
//! ```
//! `ops/legload.sh` starts a release gateway with a given number of media workers and runs it.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use e2e::load::{cpu_seconds, or_exit, parse_flags, rss_kib, thread_cpu, value, Target};
use e2e::sipua::{self, ScriptedCall, ToneStream};

struct Options {
    to: Target,
    legs: usize,
    talkers: usize,
    warmup: u64,
    seconds: u64,
    pid: u32,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        to: Target::new(100, "load", "load-password"),
        legs: 100,
        talkers: 3,
        warmup: 5,
        seconds: 20,
        pid: 0,
    };
    parse_flags(1, |flag, v| {
        if o.to.set(flag, v)? {
            return Ok(true);
        }
        match flag {
            "--legs" => o.legs = value(flag, v)?,
            "--talkers" => o.talkers = value(flag, v)?,
            "--warmup" => o.warmup = value(flag, v)?,
            "--seconds" => o.seconds = value(flag, v)?,
            "--pid" => o.pid = value(flag, v)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if o.pid == 0 {
        return Err("--pid (the gateway's) is needed to read its CPU".into());
    }
    Ok(o)
}

/// One held call and its media.
struct Leg {
    call: ScriptedCall,
    rtp: UdpSocket,
    /// A tone for talkers; silence (a tone of 0 Hz) otherwise.
    stream: ToneStream,
    /// Packets received in the measured window.
    received: u64,
    /// Packets in the window whose audio was looked at, and those louder than silence.
    checked: u64,
    loud: u64,
}

/// Whether a PCMU packet carries `frequency` as a good part of its audio.
fn carries(datagram: &[u8], frequency: f64) -> bool {
    let Some(payload) = datagram.get(12..) else { return false };
    let pcm: Vec<i16> = payload.iter().map(|&b| mixer::g711::ulaw_decode(b)).collect();
    pcm.len() >= 80 && mixer::tone::tone_share_db(&pcm, 8000, frequency) > -10.0
}

/// The listener whose delay is measured: when the current burst began, and what was heard.
#[derive(Default)]
struct Ear {
    burst_at: Option<Instant>,
    heard_burst: bool,
    delays: Vec<Duration>,
}

impl Ear {
    /// Reads what waits on the listener's socket.
    fn listen(&mut self, socket: &UdpSocket, frequency: f64, counted: &mut u64) {
        let mut buf = [0u8; 2048];
        while let Ok(len) = socket.recv(&mut buf) {
            *counted += 1;
            if let (Some(at), false) = (self.burst_at, self.heard_burst) {
                if carries(&buf[..len], frequency) {
                    self.heard_burst = true;
                    self.delays.push(at.elapsed());
                }
            }
        }
    }
}

/// Whether a PCMU packet's audio is louder than a whisper.
fn is_loud(datagram: &[u8]) -> bool {
    let Some(payload) = datagram.get(12..) else { return false };
    if payload.is_empty() {
        return false;
    }
    let energy: f64 = payload.iter().map(|&b| f64::from(mixer::g711::ulaw_decode(b)).powi(2)).sum();
    (energy / payload.len() as f64).sqrt() > 300.0
}

fn set_up(o: &Options) -> Vec<Leg> {
    let started = Instant::now();
    let mut legs = Vec::with_capacity(o.legs);
    for i in 0..o.legs {
        let rtp = UdpSocket::bind("127.0.0.1:0").expect("RTP socket");
        rtp.set_nonblocking(true).expect("non-blocking");
        let local = rtp.local_addr().expect("local address");
        let user = o.to.user(i);
        match sipua::call(o.to.gateway, &user, &o.to.password, &o.to.room, local) {
            Ok(call) => {
                let frequency = if i < o.talkers { 400.0 + 300.0 * i as f64 } else { 0.0 };
                let stream = ToneStream::new(0x1000_0000 + i as u32, frequency);
                legs.push(Leg { call, rtp, stream, received: 0, checked: 0, loud: 0 });
            }
            Err(e) => eprintln!("leg {i} not set up: {e:#}"),
        }
    }
    println!("{} of {} legs up in {:.1} s", legs.len(), o.legs, started.elapsed().as_secs_f64());
    legs
}

fn main() {
    let o = or_exit(options());
    let rss_before = rss_kib(o.pid);
    let mut legs = set_up(&o);
    let tick = Duration::from_millis(20);
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(o.warmup);
    let end = measure_from + Duration::from_secs(o.seconds);
    let mut buf = [0u8; 2048];
    let (mut gateway_cpu, mut own_cpu, mut rss, mut workers) = (0.0, 0.0, 0, Vec::new());
    let (mut ticks, mut late_ticks, mut worst_late) = (0u64, 0u64, Duration::ZERO);
    let mut measuring = false;
    let mut n = 0u32;
    let mut ear = Ear::default();
    // The last leg listens, when it is not a talker; the first talker sends bursts.
    let listener = (legs.len() > o.talkers && o.talkers > 0).then(|| legs.len() - 1);
    let burst_tone = 400.0;
    let mut ear_packets = 0u64;
    loop {
        let due = start + tick * n;
        while Instant::now() < due {
            if let (Some(l), true) = (listener, measuring) {
                ear.listen(&legs[l].rtp, burst_tone, &mut ear_packets);
            }
            std::thread::sleep(Duration::from_millis(1).min(due.saturating_duration_since(Instant::now())));
        }
        let now = Instant::now();
        if now >= end {
            break;
        }
        if !measuring && now >= measure_from {
            measuring = true;
            gateway_cpu = cpu_seconds(&o.pid.to_string());
            own_cpu = cpu_seconds("self");
            workers = thread_cpu(o.pid, "media-");
        }
        let late = now - due;
        if measuring {
            ticks += 1;
            if late > Duration::from_millis(10) {
                late_ticks += 1;
            }
            worst_late = worst_late.max(late);
        }
        // Bursts of 25 packets on, 25 off.
        let burst_on = (n / 25) % 2 == 0;
        if listener.is_some() && n % 50 == 0 {
            ear.burst_at = Some(Instant::now());
            ear.heard_burst = false;
        }
        n += 1;
        for (i, leg) in legs.iter_mut().enumerate() {
            let mut packet = leg.stream.next_packet();
            if i == 0 && listener.is_some() && !burst_on {
                packet[12..].fill(0xFF);
            }
            let _ = leg.rtp.send_to(&packet, leg.call.gateway_rtp);
            if Some(i) == listener && measuring {
                ear.listen(&leg.rtp, burst_tone, &mut ear_packets);
                continue;
            }
            while let Ok(len) = leg.rtp.recv(&mut buf) {
                if measuring {
                    // Every 25th packet's audio is looked at: two a second.
                    if leg.received % 25 == 0 {
                        leg.checked += 1;
                        leg.loud += u64::from(is_loud(&buf[..len]));
                    }
                    leg.received += 1;
                }
            }
        }
        if measuring && rss == 0 && now >= measure_from + Duration::from_secs(o.seconds / 2) {
            rss = rss_kib(o.pid);
        }
    }
    let window = o.seconds as f64;
    let gateway_cpu = cpu_seconds(&o.pid.to_string()) - gateway_cpu;
    let own_cpu = cpu_seconds("self") - own_cpu;
    let workers: Vec<String> = thread_cpu(o.pid, "media-")
        .into_iter()
        .zip(workers)
        .map(|((name, after), (_, before))| format!("{name} {:.1} %", 100.0 * (after - before) / window))
        .collect();
    let expected = ticks;
    if let Some(l) = listener {
        legs[l].received = ear_packets;
    }
    let short: Vec<usize> =
        legs.iter().enumerate().filter(|(_, l)| l.received * 100 < expected * 98).map(|(i, _)| i).collect();
    // The listener is tested by the bursts it hears instead.
    let deaf = legs
        .iter()
        .enumerate()
        .filter(|&(i, l)| Some(i) != listener && l.loud * 2 < l.checked.max(1))
        .count();
    let received: u64 = legs.iter().map(|l| l.received).sum();
    println!(
        "legs {} (talkers {}), window {window:.0} s: gateway CPU {:.1} % of one core ({:.3} % per leg), \
         resident {} KiB ({:.1} KiB per leg over {} KiB before)",
        legs.len(),
        o.talkers.min(legs.len()),
        100.0 * gateway_cpu / window,
        100.0 * gateway_cpu / window / legs.len().max(1) as f64,
        rss,
        rss.saturating_sub(rss_before) as f64 / legs.len().max(1) as f64,
        rss_before,
    );
    println!("media workers' CPU: {}", workers.join(", "));
    println!(
        "packets back: {received} of {} expected ({:.3} %); legs short of 98 %: {}; legs that heard \
         mostly silence: {deaf}",
        expected * legs.len() as u64,
        100.0 * received as f64 / (expected * legs.len() as u64).max(1) as f64,
        short.len(),
    );
    println!(
        "generator: CPU {:.1} % of one core, {late_ticks} of {ticks} ticks over 10 ms late (worst {} ms)",
        100.0 * own_cpu / window,
        worst_late.as_millis()
    );
    ear.delays.sort();
    if let (Some(first), Some(last)) = (ear.delays.first(), ear.delays.last()) {
        println!(
            "mouth to ear (first talker's bursts to the last leg): median {} ms, {}–{} ms over {} bursts",
            ear.delays[ear.delays.len() / 2].as_millis(),
            first.as_millis(),
            last.as_millis(),
            ear.delays.len()
        );
    }
    for leg in legs {
        let _ = leg.call.hang_up();
    }
}
