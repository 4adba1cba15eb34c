//! A media load generator: holds `--legs` calls in one room, each an authenticated call from
//! its own SIP and RTP sockets, streaming PCMU every 20 ms (the first `--talkers` a tone each,
//! the others silence) and reading what the gateway sends back. With `--codec opus` each leg
//! offers Opus with DTX, as browsers do: the talkers send a tone (encoded once, looped), the
//! others a DTX frame every 400 ms and nothing between. After a warm-up it measures,
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
use std::rc::Rc;
use std::time::{Duration, Instant};

use e2e::load::{cpu_seconds, or_exit, parse_flags, rss_kib, thread_cpu, value, Target};
use e2e::sipua::{self, Offer, ScriptedCall, ToneStream, OPUS_PT};
use mixer::opus::{OpusDecoder, OpusEncoder, FRAME, RATE};
use mixer::tone::Sine;

struct Options {
    to: Target,
    codec: Offer,
    legs: usize,
    talkers: usize,
    warmup: u64,
    seconds: u64,
    pid: u32,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        to: Target::new(100, "load", "load-password"),
        codec: Offer::Pcmu,
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
            "--codec" => {
                o.codec = match v {
                    "pcmu" => Offer::Pcmu,
                    "opus" => Offer::Opus,
                    _ => return Err("--codec is pcmu or opus".into()),
                }
            }
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
    source: Source,
    /// Reads what comes back: PCMU as it is, Opus through a decoder of its own.
    ear: Decoder,
    /// Packets received in the measured window.
    received: u64,
    /// Packets in the window whose audio was looked at, and those louder than silence.
    checked: u64,
    loud: u64,
}

/// What a leg sends each 20 ms.
enum Source {
    /// A tone for talkers; silence (a tone of 0 Hz) otherwise.
    Pcmu(ToneStream),
    Opus(OpusStream),
}

impl Source {
    /// The packet for this tick, if one is sent; `muted` sends silence instead of the tone.
    fn next_packet(&mut self, muted: bool) -> Option<Vec<u8>> {
        match self {
            Source::Pcmu(stream) => {
                let mut packet = stream.next_packet();
                if muted {
                    packet[12..].fill(0xFF);
                }
                Some(packet)
            }
            Source::Opus(stream) => stream.next_packet(muted),
        }
    }
}

/// An Opus stream from frames encoded once: a second of a tone looped (a whole number of cycles,
/// so the loop is seamless), or for a silent leg a DTX frame every 400 ms and nothing between.
struct OpusStream {
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    tick: u32,
    /// The tone's frames, and one of silence.
    frames: Option<Rc<Vec<Vec<u8>>>>,
    silence: Rc<Vec<u8>>,
}

/// A DTX frame (a TOC byte alone), as the conference benchmark sends.
const DTX_FRAME: [u8; 1] = [0xF8];

impl OpusStream {
    fn next_packet(&mut self, muted: bool) -> Option<Vec<u8>> {
        let tick = self.tick;
        self.tick += 1;
        let timestamp = self.timestamp;
        self.timestamp = self.timestamp.wrapping_add(FRAME as u32);
        let payload: &[u8] = match &self.frames {
            Some(_) if muted => &self.silence,
            Some(frames) => &frames[tick as usize % frames.len()],
            None if tick % 20 == 0 => &DTX_FRAME,
            None => return None,
        };
        let mut packet = Vec::with_capacity(12 + payload.len());
        packet.extend_from_slice(&[0x80, OPUS_PT]);
        packet.extend_from_slice(&self.seq.to_be_bytes());
        packet.extend_from_slice(&timestamp.to_be_bytes());
        packet.extend_from_slice(&self.ssrc.to_be_bytes());
        packet.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        Some(packet)
    }
}

/// A second of `frequency` as 50 Opus frames.
fn opus_tone(frequency: f64) -> Vec<Vec<u8>> {
    let mut encoder = OpusEncoder::new();
    let mut sine = Sine::new(RATE, frequency, 0.25);
    let mut pcm = vec![0i16; FRAME];
    (0..50)
        .map(|_| {
            sine.fill(&mut pcm);
            let mut out = vec![0u8; 1500];
            let n = encoder.encode(&pcm, &mut out);
            out.truncate(n);
            out
        })
        .collect()
}

/// Turns what a leg gets back into PCM.
enum Decoder {
    Pcmu,
    Opus(Box<OpusDecoder>),
}

impl Decoder {
    /// The audio of an RTP datagram, with its rate; none when it has no payload.
    fn decode(&mut self, datagram: &[u8]) -> Option<(Vec<i16>, u32)> {
        let payload = datagram.get(12..).filter(|p| !p.is_empty())?;
        match self {
            Decoder::Pcmu => Some((payload.iter().map(|&b| mixer::g711::ulaw_decode(b)).collect(), 8000)),
            Decoder::Opus(decoder) => {
                let mut pcm = vec![0i16; 5760];
                let n = decoder.decode(payload, &mut pcm);
                pcm.truncate(n);
                Some((pcm, RATE))
            }
        }
    }

    /// Whether a packet carries `frequency` as a good part of its audio.
    fn carries(&mut self, datagram: &[u8], frequency: f64) -> bool {
        let Some((pcm, rate)) = self.decode(datagram) else { return false };
        pcm.len() as u32 >= rate / 100 && mixer::tone::tone_share_db(&pcm, rate, frequency) > -10.0
    }

    /// Whether a packet's audio is louder than a whisper.
    fn is_loud(&mut self, datagram: &[u8]) -> bool {
        let Some((pcm, _)) = self.decode(datagram) else { return false };
        !pcm.is_empty() && mixer::tone::power(&pcm).sqrt() > 300.0
    }
}

/// The listener whose delay is measured: when the current burst began, and what was heard.
#[derive(Default)]
struct Ear {
    burst_at: Option<Instant>,
    heard_burst: bool,
    delays: Vec<Duration>,
}

impl Ear {
    /// Reads what waits on the listener's socket; Opus is decoded packet by packet, in order.
    fn listen(&mut self, leg: &mut Leg, frequency: f64, counted: &mut u64) {
        let mut buf = [0u8; 2048];
        while let Ok(len) = leg.rtp.recv(&mut buf) {
            *counted += 1;
            let heard = leg.ear.carries(&buf[..len], frequency);
            if let (Some(at), false) = (self.burst_at, self.heard_burst) {
                if heard {
                    self.heard_burst = true;
                    self.delays.push(at.elapsed());
                }
            }
        }
    }
}

fn set_up(o: &Options) -> Vec<Leg> {
    let started = Instant::now();
    let mut legs = Vec::with_capacity(o.legs);
    let silence = Rc::new(opus_tone(0.0).swap_remove(0));
    for i in 0..o.legs {
        let rtp = UdpSocket::bind("127.0.0.1:0").expect("RTP socket");
        rtp.set_nonblocking(true).expect("non-blocking");
        let local = rtp.local_addr().expect("local address");
        let user = o.to.user(i);
        match sipua::call_offering(o.to.gateway, &user, &o.to.password, &o.to.room, local, o.codec) {
            Ok(call) => {
                let talks = i < o.talkers;
                let frequency = if talks { 400.0 + 300.0 * i as f64 } else { 0.0 };
                let ssrc = 0x1000_0000 + i as u32;
                let (source, ear) = match o.codec {
                    Offer::Pcmu | Offer::PcmuAndVideo { .. } | Offer::PcmuAndVp8 { .. } => {
                        (Source::Pcmu(ToneStream::new(ssrc, frequency)), Decoder::Pcmu)
                    }
                    Offer::Opus => {
                        let frames = talks.then(|| Rc::new(opus_tone(frequency)));
                        let stream = OpusStream {
                            ssrc,
                            seq: 1,
                            timestamp: 0,
                            tick: 0,
                            frames,
                            silence: silence.clone(),
                        };
                        (Source::Opus(stream), Decoder::Opus(Box::new(OpusDecoder::new())))
                    }
                };
                legs.push(Leg { call, rtp, source, ear, received: 0, checked: 0, loud: 0 });
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
                ear.listen(&mut legs[l], burst_tone, &mut ear_packets);
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
            let muted = i == 0 && listener.is_some() && !burst_on;
            if let Some(packet) = leg.source.next_packet(muted) {
                let _ = leg.rtp.send_to(&packet, leg.call.gateway_rtp);
            }
            if Some(i) == listener && measuring {
                ear.listen(leg, burst_tone, &mut ear_packets);
                continue;
            }
            while let Ok(len) = leg.rtp.recv(&mut buf) {
                if measuring {
                    // Every 25th packet's audio is looked at: two a second.
                    if leg.received % 25 == 0 {
                        leg.checked += 1;
                        leg.loud += u64::from(leg.ear.is_loud(&buf[..len]));
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
