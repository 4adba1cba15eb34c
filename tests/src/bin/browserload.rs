//! A browser load generator: webrtc-rs clients join a room through the gateway's WebSocket as
//! the join page does (join with an SDP offer, trickle ICE, DTLS-SRTP), send Opus every 20 ms
//! (`--talkers` of them a tone, the rest encoded silence, as a muted-by-nobody browser does)
//! and count what they receive. Chromium is too heavy to run many of; these are the same
//! protocol at a fraction of the cost.
//!
//! ```sh
//! browserload --http 127.0.0.1:8080 --room 1000 --browsers 50 --talkers 3 --seconds 20 --pid PID
//! ```
//! Reports the time from sending `join` to the first audio packet, packets received per
//! browser per second, and (with `--pid`) the gateway's CPU over the measured seconds.
//! `ops/browserload.sh` starts a gateway and runs it at several sizes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use e2e::load::{cpu_seconds, parse_flags, value};
use futures_util::{SinkExt, StreamExt};
use mixer::opus::{OpusEncoder, FRAME};
use rtc::ice::mdns::MulticastDnsMode;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceCandidateInit, RTCPeerConnectionIceEvent,
    RTCSessionDescription, Registry, SettingEngineBuilder,
};

const OPUS_PT: u8 = 111;

struct Options {
    http: SocketAddr,
    room: String,
    pin: Option<String>,
    browsers: usize,
    talkers: usize,
    seconds: u64,
    pid: Option<u32>,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        http: "127.0.0.1:8080".parse()?,
        room: "1000".into(),
        pin: None,
        browsers: 10,
        talkers: 3,
        seconds: 20,
        pid: None,
    };
    parse_flags(1, |flag, v| {
        match flag {
            "--http" => o.http = value(flag, v)?,
            "--room" => o.room = v.into(),
            "--pin" => o.pin = Some(v.into()),
            "--browsers" => o.browsers = value(flag, v)?,
            "--talkers" => o.talkers = value(flag, v)?,
            "--seconds" => o.seconds = value(flag, v)?,
            "--pid" => o.pid = Some(value(flag, v)?),
            _ => return Ok(false),
        }
        Ok(true)
    })
    .map_err(anyhow::Error::msg)?;
    Ok(o)
}

/// What one client saw.
#[derive(Default)]
struct Seen {
    joined: Mutex<Option<Instant>>,
    first_audio: Mutex<Option<Duration>>,
    received: AtomicU64,
}

/// Opus payloads to send: a second of a tone, or one frame of silence.
struct Payloads {
    tone: Vec<Bytes>,
    silence: Bytes,
}

fn payloads() -> Payloads {
    let mut encoder = OpusEncoder::new();
    let mut out = [0u8; 1500];
    let tone = (0..50)
        .map(|f| {
            let pcm: Vec<i16> = (0..FRAME)
                .map(|i| {
                    let t = (f * FRAME + i) as f64 / 48_000.0;
                    (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
                })
                .collect();
            let n = encoder.encode(&pcm, &mut out);
            Bytes::copy_from_slice(&out[..n])
        })
        .collect();
    let n = OpusEncoder::new().encode(&[0; FRAME], &mut out);
    Payloads { tone, silence: Bytes::copy_from_slice(&out[..n]) }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = Arc::new(options()?);
    let payloads = Arc::new(payloads());
    let (stop_tx, stop) = watch::channel(false);
    let mut clients = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..o.browsers {
        let seen = Arc::new(Seen::default());
        clients.push(seen.clone());
        let (o, payloads, stop) = (o.clone(), payloads.clone(), stop.clone());
        tasks.spawn(async move {
            if let Err(e) = client(i, &o, payloads, seen, stop).await {
                eprintln!("browser {i}: {e:#}");
            }
        });
        // Joins arrive as from people clicking, not all in one instant.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while clients.iter().any(|c| c.first_audio.lock().unwrap().is_none()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut firsts: Vec<Duration> = clients.iter().filter_map(|c| *c.first_audio.lock().unwrap()).collect();
    firsts.sort();
    println!("browsers with audio: {} of {}", firsts.len(), o.browsers);
    if let (Some(min), Some(max)) = (firsts.first(), firsts.last()) {
        let median = firsts[firsts.len() / 2];
        let p95 = firsts[(firsts.len() * 95 / 100).min(firsts.len() - 1)];
        println!(
            "join to first audio packet: min {} ms, median {} ms, p95 {} ms, max {} ms",
            min.as_millis(),
            median.as_millis(),
            p95.as_millis(),
            max.as_millis()
        );
    }
    // Steady state: packets in, gateway CPU.
    let received =
        |clients: &[Arc<Seen>]| clients.iter().map(|c| c.received.load(Ordering::Relaxed)).sum::<u64>();
    let (packets0, cpu0, t0) =
        (received(&clients), o.pid.map(|pid| cpu_seconds(&pid.to_string())), Instant::now());
    tokio::time::sleep(Duration::from_secs(o.seconds)).await;
    let (packets1, cpu1, elapsed) =
        (received(&clients), o.pid.map(|pid| cpu_seconds(&pid.to_string())), t0.elapsed());
    let per_browser = (packets1 - packets0) as f64 / elapsed.as_secs_f64() / o.browsers as f64;
    println!("packets received per browser per second: {per_browser:.1} (50 expected)");
    if let (Some(a), Some(b)) = (cpu0, cpu1) {
        let share = (b - a) / elapsed.as_secs_f64();
        println!(
            "gateway CPU: {:.1} % of one core for {} browser legs ({} talking): about {:.0} legs per core",
            share * 100.0,
            o.browsers,
            o.talkers.min(o.browsers),
            o.browsers as f64 / share
        );
    }
    stop_tx.send_replace(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

fn opus() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

async fn client(
    i: usize,
    o: &Options,
    payloads: Arc<Payloads>,
    seen: Arc<Seen>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", o.http)).await?;
    let (mut ws_tx, mut ws_rx) = ws.split();
    let (candidates_tx, mut candidates) = mpsc::channel(32);
    let mut engine = MediaEngine::default();
    engine.register_codec(
        RTCRtpCodecParameters { rtp_codec: opus(), payload_type: OPUS_PT },
        RtpCodecKind::Audio,
    )?;
    let registry = register_default_interceptors(Registry::new(), &mut engine)?;
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .with_include_loopback_candidate(true)
        .with_ice_connection_attempts(Some(Duration::from_millis(20)), None)
        .build();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(engine)
        .with_setting_engine(settings)
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(Handler { candidates: candidates_tx, seen: seen.clone() }))
        .with_udp_addrs(vec!["127.0.0.1:0".to_string()])
        .build()
        .await?;
    let ssrc = rand_ssrc(i);
    let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        format!("load-{i}"),
        "microphone".into(),
        "microphone".into(),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
            codec: opus(),
            ..Default::default()
        }],
    )));
    pc.add_track(track.clone()).await?;
    let offer = pc.create_offer(None).await?;
    pc.set_local_description(offer.clone()).await?;
    *seen.joined.lock().unwrap() = Some(Instant::now());
    let join =
        json!({"type": "join", "room": o.room, "pin": o.pin, "name": format!("load {i}"), "sdp": offer.sdp});
    ws_tx.send(Message::text(join.to_string())).await?;
    let talker = i < o.talkers;
    let mut sender = None;
    loop {
        tokio::select! {
            Some(c) = candidates.recv() => {
                let c: RTCIceCandidateInit = c;
                let m = json!({"type": "candidate", "candidate": c.candidate, "sdpMid": c.sdp_mid, "sdpMLineIndex": c.sdp_mline_index});
                ws_tx.send(Message::text(m.to_string())).await?;
            }
            message = ws_rx.next() => {
                let Some(message) = message else { bail!("the gateway closed the WebSocket") };
                let Message::Text(text) = message? else { continue };
                let m: Value = serde_json::from_str(&text)?;
                match m["type"].as_str() {
                    Some("answer") => {
                        let sdp = m["sdp"].as_str().context("answer without sdp")?.to_string();
                        pc.set_remote_description(RTCSessionDescription::answer(sdp)?).await?;
                    }
                    Some("candidate") => {
                        let init = RTCIceCandidateInit {
                            candidate: m["candidate"].as_str().unwrap_or_default().to_string(),
                            sdp_mid: m["sdpMid"].as_str().map(str::to_string),
                            sdp_mline_index: m["sdpMLineIndex"].as_u64().map(|v| v as u16),
                            ..Default::default()
                        };
                        pc.add_ice_candidate(init).await?;
                    }
                    Some("joined") => {
                        sender = Some(tokio::spawn(send_audio(track.clone(), ssrc, talker, payloads.clone())));
                    }
                    Some("error") | Some("ended") => bail!("gateway said {m}"),
                    _ => {}
                }
            }
            _ = stop.changed() => break,
        }
    }
    if let Some(sender) = sender {
        sender.abort();
    }
    let _ = ws_tx.send(Message::text(json!({"type": "leave"}).to_string())).await;
    let _ = pc.close().await;
    Ok(())
}

fn rand_ssrc(i: usize) -> u32 {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    nanos ^ (i as u32).wrapping_mul(0x9e37_79b9)
}

/// An Opus packet every 20 ms, as a browser's microphone track sends.
async fn send_audio(track: Arc<TrackLocalStaticRTP>, ssrc: u32, talker: bool, payloads: Arc<Payloads>) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    for n in 0u32.. {
        tick.tick().await;
        let payload = if talker {
            payloads.tone[n as usize % payloads.tone.len()].clone()
        } else {
            payloads.silence.clone()
        };
        let packet = rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                payload_type: OPUS_PT,
                sequence_number: n as u16,
                timestamp: n.wrapping_mul(FRAME as u32),
                ssrc,
                ..Default::default()
            },
            payload,
        };
        if track.write_rtp(packet).await.is_err() {
            return;
        }
    }
}

struct Handler {
    candidates: mpsc::Sender<RTCIceCandidateInit>,
    seen: Arc<Seen>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            let _ = self.candidates.send(init).await;
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let seen = self.seen.clone();
        tokio::spawn(async move {
            while let Some(event) = track.poll().await {
                let TrackRemoteEvent::OnRtpPacket(packet) = event else { continue };
                if packet.payload.is_empty() {
                    continue;
                }
                if seen.received.fetch_add(1, Ordering::Relaxed) == 0 {
                    let joined = *seen.joined.lock().unwrap();
                    *seen.first_audio.lock().unwrap() = joined.map(|t| t.elapsed());
                }
            }
        });
    }
}
