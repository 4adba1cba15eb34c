//! A video load generator: `--sources` cameras and `--viewers` viewers in one room, each an
//! authenticated call offering PCMU and H.264 (mode 1) from its own sockets. Each camera sends
//! a loop of pictures encoded beforehand (a colour of its own with a bar sweeping across it,
//! `--size` at `--fps`) as RTP at real speed, so the generator's CPU goes to sending, not
//! encoding; every viewer's socket is read and its packets counted. After a warm-up it
//! measures over `--seconds` the gateway's CPU from `/proc/PID/stat` (its video threads apart)
//! and the packets each viewer got.
//!
//! Glass to glass: the first camera shows dark and bright pictures by turns (each turn starts
//! at a keyframe), and one viewer's stream is decoded; the time from the first packet of a
//! turn sent to the first decoded picture whose first tile shows it is the delay through the
//! gateway (reorder, decode, compose, encode, packetize) on loopback.
//!
//! ```sh
//! videoload --gateway 127.0.0.1:5060 --room 1000 --users 200 --password secret --sources 4 --viewers 10 --pid PID
//! ```
//! `ops/videoload.sh` starts a release gateway and runs it.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bytes::Bytes;
use e2e::load::{cpu_seconds, or_exit, parse_flags, thread_cpu, value, Target};
use e2e::sipua::{self, Offer, ScriptedCall, H264_PT};
use mixer::video::frame::{Frame, Yuv};
use mixer::video::h264::{EncoderSettings, H264Decoder, H264Encoder};
use mixer::video::h264_rtp::{annex_b_nals, AccessUnit, Depacketizer, PacketizationMode, Packetizer};

struct Options {
    to: Target,
    sources: usize,
    viewers: usize,
    width: usize,
    height: usize,
    fps: u32,
    warmup: u64,
    seconds: u64,
    pid: u32,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        to: Target::new(200, "load", "load-password"),
        sources: 4,
        viewers: 10,
        width: 1280,
        height: 720,
        fps: 30,
        warmup: 5,
        seconds: 15,
        pid: 0,
    };
    parse_flags(1, |flag, v| {
        if o.to.set(flag, v)? {
            return Ok(true);
        }
        match flag {
            "--sources" => o.sources = value(flag, v)?,
            "--viewers" => o.viewers = value(flag, v)?,
            "--size" => {
                let (w, h) = v.split_once('x').ok_or("--size is WIDTHxHEIGHT")?;
                (o.width, o.height) = (value(flag, w)?, value(flag, h)?);
            }
            "--fps" => o.fps = value(flag, v)?,
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
    if o.sources == 0 || o.viewers == 0 {
        return Err("at least one source and one viewer".into());
    }
    Ok(o)
}

/// Pictures of one loop, each as RTP payloads (mode 1) with its marker on the last.
type Loop = Vec<Vec<Bytes>>;

/// `count` pictures of `colour` with a white bar sweeping across, encoded and packetized.
fn encode_loop(o: &Options, colour: Yuv, count: usize) -> Loop {
    let settings = EncoderSettings { bitrate_bps: 1_500_000, frame_rate: o.fps, max_nal_bytes: Some(1200) };
    let mut encoder = H264Encoder::new(settings).expect("encoder");
    let packetizer = Packetizer { mode: PacketizationMode::NonInterleaved, mtu: 1200 };
    (0..count)
        .map(|i| {
            let mut picture = Frame::filled(o.width, o.height, colour);
            picture.fill_rect(i * o.width / count, 0, o.width / 20, o.height, Yuv::from_rgb(240, 240, 240));
            if i == 0 {
                encoder.ask_keyframe();
            }
            let encoded = encoder.encode(&picture, i as u64 * 1000 / u64::from(o.fps)).expect("encoded");
            let mut payloads = Vec::new();
            packetizer.packetize(annex_b_nals(encoded.annex_b()), &mut payloads).expect("packetized");
            payloads
        })
        .collect()
}

/// A camera: its call, its socket, where the gateway takes its video, and its RTP state.
struct Camera {
    _call: ScriptedCall,
    socket: UdpSocket,
    to: SocketAddr,
    ssrc: u32,
    seq: u16,
}

impl Camera {
    fn send(&mut self, picture: &[Bytes], timestamp: u32) -> usize {
        let mut packet = Vec::with_capacity(1300);
        for (n, payload) in picture.iter().enumerate() {
            packet.clear();
            let marker = if n + 1 == picture.len() { 0x80 } else { 0 };
            packet.extend_from_slice(&[0x80, marker | H264_PT]);
            packet.extend_from_slice(&self.seq.to_be_bytes());
            packet.extend_from_slice(&timestamp.to_be_bytes());
            packet.extend_from_slice(&self.ssrc.to_be_bytes());
            packet.extend_from_slice(payload);
            let _ = self.socket.send_to(&packet, self.to);
            self.seq = self.seq.wrapping_add(1);
        }
        picture.len()
    }
}

/// A call offering video from a socket of its own; the gateway's video address.
fn join(o: &Options, i: usize) -> (ScriptedCall, UdpSocket, SocketAddr) {
    let video = UdpSocket::bind("127.0.0.1:0").expect("video socket");
    let audio = UdpSocket::bind("127.0.0.1:0").expect("audio socket");
    let offer = Offer::PcmuAndVideo { video: video.local_addr().expect("bound") };
    let audio_addr = audio.local_addr().expect("bound");
    let call =
        sipua::call_offering(o.to.gateway, &o.to.user(i), &o.to.password, &o.to.room, audio_addr, offer)
            .unwrap_or_else(|e| panic!("call {i}: {e}"));
    let gateway = call.gateway_video.expect("the gateway answered the video line");
    video.set_nonblocking(true).expect("non-blocking");
    (call, video, gateway)
}

/// The brightness of the first camera's tile: the top left of a 2×2 grid (or the whole of a
/// 1×1), in its middle.
fn brightness(frame: &Frame) -> u8 {
    frame.mean(frame.width / 16, frame.height / 16, frame.width / 4, frame.height / 4).y
}

fn main() {
    let o = or_exit(options());
    let dark = Yuv::from_rgb(40, 40, 40);
    let bright = Yuv::from_rgb(230, 230, 230);
    let colours = [(200, 40, 40), (40, 180, 40), (40, 40, 200), (200, 200, 40)];
    let loops: Vec<Loop> = (0..o.sources)
        .map(|i| {
            let (r, g, b) = colours[i % colours.len()];
            encode_loop(&o, Yuv::from_rgb(r, g, b), o.fps as usize)
        })
        .collect();
    let turns = [encode_loop(&o, dark, o.fps as usize), encode_loop(&o, bright, o.fps as usize)];
    let mut cameras: Vec<Camera> = (0..o.sources)
        .map(|i| {
            let (call, socket, to) = join(&o, i);
            Camera { _call: call, socket, to, ssrc: 0x5000_0000 + i as u32, seq: 1 }
        })
        .collect();
    let viewers: Vec<(ScriptedCall, UdpSocket, SocketAddr)> =
        (0..o.viewers).map(|i| join(&o, o.sources + i)).collect();
    eprintln!("{} cameras and {} viewers joined", o.sources, o.viewers);

    let frame = Duration::from_secs(1) / o.fps;
    let start = Instant::now();
    // The first camera's turn (0 dark, 1 bright), the picture it began at, and since when a
    // viewer has yet to see it.
    let (mut sent_pictures, mut turn, mut turn_at) = (0u64, 0usize, 0usize);
    let mut awaited: Option<Instant> = None;
    let mut received = vec![0u64; o.viewers];
    let mut buf = [0u8; 2048];
    let (mut depacketizer, mut decoder) = (Depacketizer::new(), H264Decoder::new().expect("decoder"));
    let mut units: Vec<AccessUnit> = Vec::new();
    let mut decoded = Frame::filled(0, 0, dark);
    let mut delays: Vec<Duration> = Vec::new();
    let (mut window, mut cpu_at_start) = (None::<(Instant, Vec<u64>)>, 0.0);
    let mut threads_at_start = Vec::new();
    let pid = o.pid.to_string();
    let end = start + Duration::from_secs(o.warmup + o.seconds);
    while Instant::now() < end {
        let now = Instant::now();
        if window.is_none() && now >= start + Duration::from_secs(o.warmup) {
            window = Some((now, received.clone()));
            cpu_at_start = cpu_seconds(&pid);
            threads_at_start = thread_cpu(o.pid, "video-");
        }
        // Pictures due: every camera sends its next; the first turns dark and bright every
        // two seconds, each turn from its keyframe.
        let due = start + frame * sent_pictures as u32;
        if now >= due {
            let n = sent_pictures as usize;
            let timestamp = (sent_pictures * 90_000 / u64::from(o.fps)) as u32;
            let per_turn = 2 * o.fps as usize;
            if n % per_turn == 0 {
                turn = (n / per_turn) % 2;
                turn_at = n;
                awaited = Some(now);
            }
            cameras[0].send(&turns[turn][(n - turn_at) % turns[turn].len()], timestamp);
            for (i, camera) in cameras.iter_mut().enumerate().skip(1) {
                camera.send(&loops[i][n % loops[i].len()], timestamp);
            }
            sent_pictures += 1;
        }
        // Every viewer's packets counted; the first's decoded.
        for (v, (_, socket, _)) in viewers.iter().enumerate() {
            while let Ok(n) = socket.recv(&mut buf) {
                if n < 12 || (192..=223).contains(&buf[1]) {
                    continue;
                }
                received[v] += 1;
                if v != 0 {
                    continue;
                }
                let seq = u16::from_be_bytes([buf[2], buf[3]]);
                let ts = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
                depacketizer.push(seq, ts, buf[1] & 0x80 != 0, &buf[12..n], &mut units);
                for unit in units.drain(..) {
                    if !matches!(decoder.decode_into(&unit.data, &mut decoded), Ok(true)) {
                        continue;
                    }
                    let level = brightness(&decoded);
                    let shows = if turn == 1 { level > 150 } else { level < 80 };
                    if let (true, Some(at)) = (shows, awaited) {
                        delays.push(at.elapsed());
                        awaited = None;
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let Some((from, counted)) = window else { return };
    let elapsed = from.elapsed().as_secs_f64();
    let cpu = (cpu_seconds(&pid) - cpu_at_start) / elapsed * 100.0;
    let threads = thread_cpu(o.pid, "video-");
    let per_viewer: Vec<f64> =
        received.iter().zip(&counted).map(|(now, then)| (now - then) as f64 / elapsed).collect();
    let (least, most) = per_viewer.iter().fold((f64::MAX, 0.0f64), |(l, m), &p| (l.min(p), m.max(p)));
    println!(
        "{} cameras {}x{} at {} fps, {} viewers: gateway {cpu:.1} % of one core over {elapsed:.1} s",
        o.sources, o.width, o.height, o.fps, o.viewers
    );
    for (name, total) in &threads {
        let before = threads_at_start.iter().find(|(n, _)| n == name).map_or(0.0, |(_, t)| *t);
        println!("  {name}: {:.1} %", (total - before) / elapsed * 100.0);
    }
    println!("  packets a second per viewer: {least:.0} to {most:.0}");
    delays.sort();
    match delays.len() {
        0 => println!("  glass to glass: no turn seen decoded"),
        n => println!(
            "  glass to glass ({n} turns): median {} ms, {}-{} ms",
            delays[n / 2].as_millis(),
            delays[0].as_millis(),
            delays[n - 1].as_millis()
        ),
    }
}
