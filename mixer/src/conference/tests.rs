//! Conferences of simulated phones: each sends its own tone in its codec over RTP and decodes
//! what it gets back; Goertzel filters say who hears whom.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::codec::{AudioCodec, Decoder, Encoder};
use crate::dtmf::EventReport;
use crate::rtp_stream::RtpSender;
use crate::tone::{power, tone_share_db, Sine};

struct Phone {
    codec: AudioCodec,
    leg: LegId,
    sender: RtpSender,
    encoder: Encoder,
    decoder: Decoder,
    tone: Option<Sine>,
    /// Silent, it sends as a browser with DTX does: a DTX frame when it falls silent and every
    /// 400 ms after, nothing between.
    dtx: bool,
    /// It marks each packet with its frame's level (RFC 6464), as browsers do.
    levels: bool,
    silent_ticks: usize,
    heard: Vec<i16>,
}

/// The audio-level extension's id in the phones' packets.
const LEVEL_ID: u8 = 1;

/// A frame's level as RFC 6464 carries it: −dBov, 0 (overload) to 127.
fn level_of(pcm: &[i16]) -> u8 {
    let db = 10.0 * (power(pcm) / (32768.0 * 32768.0)).max(1e-13).log10();
    (-db).clamp(0.0, 127.0) as u8
}

struct Room {
    conference: Conference,
    phones: Vec<Phone>,
    now: Instant,
    ticks: usize,
    events: Vec<ConferenceEvent>,
}

impl Room {
    /// Phones with (codec, tone frequency or silence), in a 16 kHz conference.
    fn new(phones: &[(AudioCodec, Option<f64>)]) -> Room {
        Room::with_rate(16000, phones)
    }

    #[allow(clippy::disallowed_methods)] // the origin of virtual time
    fn with_rate(rate: u32, phones: &[(AudioCodec, Option<f64>)]) -> Room {
        let mut conference = Conference::new(rate);
        let phones = phones
            .iter()
            .enumerate()
            .map(|(i, &(codec, freq))| {
                let leg = conference.add_leg(LegConfig {
                    codec,
                    payload_type: codec.static_payload_type(),
                    telephone_event: Some(101),
                    inband_dtmf: false,
                    ssrc: 1000 + i as u32,
                    first_seq: 100,
                    first_timestamp: 5000,
                    ptime: 20,
                    audio_level: Some(LEVEL_ID),
                });
                Phone {
                    codec,
                    leg,
                    sender: RtpSender::new(7000 + i as u32, codec.static_payload_type(), 1, 0),
                    encoder: Encoder::new(codec),
                    decoder: Decoder::new(codec),
                    tone: freq.map(|f| Sine::new(codec.pcm_rate(), f, 0.25)),
                    dtx: false,
                    levels: false,
                    silent_ticks: 0,
                    heard: Vec::new(),
                }
            })
            .collect();
        Room { conference, phones, now: Instant::now(), ticks: 0, events: Vec::new() }
    }

    /// `ticks` of 20 ms: every phone sends a frame, the conference ticks, phones decode.
    fn run(&mut self, ticks: usize) {
        for _ in 0..ticks {
            for phone in &mut self.phones {
                if phone.dtx && phone.tone.is_none() {
                    // The packets between are never sent: the sequence moves on regardless.
                    let packet = phone.sender.packet(Bytes::from_static(&[0xF8]), phone.codec.frame_ticks());
                    if phone.silent_ticks % 20 == 0 {
                        self.conference.receive(self.now, phone.leg, &packet);
                    }
                    phone.silent_ticks += 1;
                    continue;
                }
                phone.silent_ticks = 0;
                let rate = phone.codec.pcm_rate() as usize;
                let mut pcm = vec![0i16; rate / 50];
                if let Some(tone) = &mut phone.tone {
                    tone.fill(&mut pcm);
                }
                let mut payload = vec![0u8; 1500];
                let n = phone.encoder.encode(&pcm, &mut payload);
                payload.truncate(n);
                let mut packet = phone.sender.packet(Bytes::from(payload), phone.codec.frame_ticks());
                if phone.levels {
                    let level = Bytes::copy_from_slice(&[level_of(&pcm)]);
                    packet.header.set_extension(LEVEL_ID, level).unwrap();
                }
                self.conference.receive(self.now, phone.leg, &packet);
            }
            let mut out: Vec<(LegId, rtp::Packet)> = Vec::new();
            self.conference.tick(|leg, packet| out.push((leg, packet)));
            for (leg, packet) in out {
                let phone = self.phones.iter_mut().find(|p| p.leg == leg).unwrap();
                let frame = phone.codec.pcm_rate() as usize / 50;
                let mut pcm = vec![0i16; 5760];
                phone.decoder.decode(&packet.payload, &mut pcm);
                phone.heard.extend_from_slice(&pcm[..frame]);
            }
            while let Some(e) = self.conference.poll_event() {
                self.events.push(e);
            }
            self.now += Duration::from_millis(20);
            self.ticks += 1;
        }
    }

    /// How much of `phone`'s last second is at `freq`, dB of its total.
    fn share(&self, phone: usize, freq: f64) -> f64 {
        self.share_over(phone, freq, 1.0)
    }

    fn share_over(&self, phone: usize, freq: f64, seconds: f64) -> f64 {
        let p = &self.phones[phone];
        let rate = p.codec.pcm_rate() as usize;
        let last = &p.heard[p.heard.len() - (rate as f64 * seconds) as usize..];
        tone_share_db(last, rate as u32, freq)
    }

    /// Phones 0, 1 and 2 send FREQS[0..3]: each hears the two others' tones, never its own.
    fn assert_each_hears_the_others_only(&self) {
        for me in 0..3 {
            for (other, &f) in FREQS.iter().enumerate() {
                let share = self.share(me, f);
                if other == me {
                    assert!(share < -30.0, "phone {me} hears itself at {share:.1} dB");
                } else {
                    assert!(share > -8.0, "phone {me} hears {f} Hz at only {share:.1} dB");
                }
            }
        }
    }

    fn last_second_power(&self, phone: usize) -> f64 {
        let p = &self.phones[phone];
        let rate = p.codec.pcm_rate() as usize;
        power(&p.heard[p.heard.len() - rate..])
    }
}

const FREQS: [f64; 3] = [440.0, 1100.0, 2300.0];

#[test]
fn a_48k_conference_mixes_opus_with_g711_and_g722() {
    let mut room = Room::with_rate(
        48000,
        &[
            (AudioCodec::Opus, Some(FREQS[0])),
            (AudioCodec::Pcmu, Some(FREQS[1])),
            (AudioCodec::G722, Some(FREQS[2])),
        ],
    );
    room.run(150);
    room.assert_each_hears_the_others_only();
    let opus = room.conference.stats(room.phones[0].leg).unwrap();
    assert!(opus.talking && opus.lost == 0, "{opus:?}");
}

#[test]
fn an_opus_leg_in_dtx_costs_no_decode_and_is_heard_again_when_it_talks() {
    let mut room =
        Room::with_rate(48000, &[(AudioCodec::Opus, Some(FREQS[0])), (AudioCodec::Opus, Some(FREQS[1]))]);
    room.phones[1].dtx = true;
    let runs = |room: &Room| room.conference.stats(room.phones[1].leg).unwrap().decoder_runs;
    room.run(50);
    let talking = runs(&room);
    assert!(talking >= 45, "a talker is decoded every tick: {talking}");
    room.phones[1].tone = None;
    room.run(100);
    assert!(runs(&room) - talking <= 3, "decodes in DTX: {}", runs(&room) - talking);
    assert!(room.share_over(0, FREQS[1], 1.0) < -20.0, "phone 1's tone still heard in its DTX");
    room.phones[1].tone = Some(Sine::new(48000, FREQS[2], 0.25));
    room.run(50);
    // After 2 s of DTX the jitter buffer starts over and fills again before it plays.
    let again = runs(&room) - talking;
    assert!(again >= 35, "talking again, decoded again: {again} runs in 50 ticks");
    let share = room.share_over(0, FREQS[2], 0.6);
    assert!(share > -8.0, "phone 1 unheard after its DTX: {share:.1} dB");
}

#[test]
fn frames_their_sender_marks_quiet_are_not_decoded_and_the_decoder_resumes_primed() {
    let mut room =
        Room::with_rate(48000, &[(AudioCodec::Opus, Some(FREQS[0])), (AudioCodec::Opus, Some(FREQS[1]))]);
    room.phones[1].levels = true;
    let stats = |room: &Room| room.conference.stats(room.phones[1].leg).unwrap();
    room.run(50);
    let talking = stats(&room);
    assert!(talking.decoder_runs >= 45 && talking.quiet_frames == 0, "{talking:?}");
    assert!(room.share(0, FREQS[1]) > -8.0, "phone 1 unheard while talking");
    // A hum at −65 dBov: sent in full (no DTX), marked quiet, never decoded.
    room.phones[1].tone = Some(Sine::new(48000, FREQS[1], 0.0008));
    room.run(100);
    let quiet = stats(&room);
    assert!(quiet.decoder_runs - talking.decoder_runs <= 3, "decodes while quiet: {quiet:?}");
    assert!(quiet.quiet_frames >= 95, "{quiet:?}");
    assert!(room.share(0, FREQS[1]) < -20.0, "the quiet hum is mixed");
    // Loud again: its first decode comes after one of the last quiet frame, so the decoder
    // carries on from the stream's state.
    room.phones[1].tone = Some(Sine::new(48000, FREQS[2], 0.25));
    let mut before = stats(&room);
    for _ in 0..10 {
        room.run(1);
        let now = stats(&room);
        if now.decoder_runs > before.decoder_runs {
            assert_eq!(now.decoder_runs - before.decoder_runs, 2, "no priming decode: {now:?}");
            assert_eq!(now.quiet_frames, before.quiet_frames);
            break;
        }
        before = now;
    }
    assert!(stats(&room).decoder_runs > quiet.decoder_runs, "loud frames not decoded");
    room.run(50);
    let share = room.share_over(0, FREQS[2], 0.6);
    assert!(share > -8.0, "phone 1 unheard after its quiet spell: {share:.1} dB");
}

#[test]
fn opus_conference_of_500_with_3_talkers_encodes_4_times_per_tick() {
    let mut phones = vec![
        (AudioCodec::Opus, Some(FREQS[0])),
        (AudioCodec::Opus, Some(FREQS[1])),
        (AudioCodec::Opus, Some(FREQS[2])),
    ];
    phones.extend([(AudioCodec::Opus, None); 497]);
    let mut room = Room::with_rate(48000, &phones);
    room.run(30);
    let stats = room.conference.tick_stats();
    assert_eq!(stats.contributors, 3);
    assert_eq!(stats.personal_encodes + stats.shared_encodes, 4, "{stats:?}");
    for listener in [3, 250, 499] {
        for &f in &FREQS {
            let share = room.share_over(listener, f, 0.3);
            assert!(share > -8.0, "silent phone {listener} hears {f} Hz at only {share:.1} dB");
        }
    }
}

#[test]
fn each_phone_hears_the_others_tones_and_never_its_own() {
    let mut room = Room::new(&[
        (AudioCodec::Pcmu, Some(FREQS[0])),
        (AudioCodec::G722, Some(FREQS[1])),
        (AudioCodec::Pcma, Some(FREQS[2])),
    ]);
    room.run(150);
    room.assert_each_hears_the_others_only();
    let stats = room.conference.tick_stats();
    assert_eq!((stats.contributors, stats.personal_encodes, stats.shared_encodes), (3, 3, 0));
    // G.711 and G.722 legs transcode through the 16 kHz mix.
    let leg = room.conference.stats(room.phones[1].leg).unwrap();
    assert!(leg.talking && leg.lost == 0 && leg.concealed <= 2, "{leg:?}");
}

#[test]
fn silent_listeners_share_one_encode_per_codec() {
    let mut phones = vec![
        (AudioCodec::Pcmu, Some(FREQS[0])),
        (AudioCodec::Pcmu, Some(FREQS[1])),
        (AudioCodec::G722, Some(FREQS[2])),
    ];
    phones.extend([(AudioCodec::Pcmu, None); 5]);
    phones.extend([(AudioCodec::G722, None); 2]);
    let mut room = Room::new(&phones);
    room.run(100);
    let stats = room.conference.tick_stats();
    // Three talkers with their own mixes; seven listeners served by two encodes.
    assert_eq!((stats.personal_encodes, stats.shared_encodes), (3, 2), "{stats:?}");
    for listener in 3..10 {
        for &f in &FREQS {
            assert!(room.share(listener, f) > -8.0, "listener {listener} misses {f} Hz");
        }
    }
}

#[test]
fn a_talker_falling_silent_joins_the_shared_stream_seamlessly() {
    let mut room = Room::new(&[
        (AudioCodec::G722, Some(FREQS[0])),
        (AudioCodec::G722, Some(FREQS[1])),
        (AudioCodec::G722, None),
    ]);
    room.run(60);
    room.phones[1].tone = None;
    room.run(60);
    // Phone 1 now hears the shared stream (phone 0's tone), decoded without garbage.
    assert!(room.share(1, FREQS[0]) > -3.0, "{}", room.share(1, FREQS[0]));
    assert_eq!(room.conference.tick_stats().shared_encodes, 1);
}

#[test]
fn mute_and_deaf() {
    let mut room = Room::new(&[
        (AudioCodec::Pcmu, Some(FREQS[0])),
        (AudioCodec::Pcmu, Some(FREQS[1])),
        (AudioCodec::Pcmu, None),
    ]);
    room.run(50);
    assert!(room.conference.set_muted(room.phones[0].leg, true));
    assert!(room.conference.set_deaf(room.phones[2].leg, true));
    room.run(60);
    assert!(room.share(1, FREQS[0]) < -30.0, "the muted phone is still heard");
    assert!(room.last_second_power(2) < 10.0, "the deaf phone hears {}", room.last_second_power(2));
    let stats = room.conference.stats(room.phones[0].leg).unwrap();
    assert!(stats.muted);
}

#[test]
fn telephone_events_become_digits() {
    let mut room = Room::new(&[(AudioCodec::Pcmu, None), (AudioCodec::Pcmu, None)]);
    room.run(5);
    let leg = room.phones[0].leg;
    for (ts, end) in [(9000u32, false), (9000, true), (9000, true), (9800, true)] {
        let payload =
            Bytes::copy_from_slice(&EventReport { event: 5, end, volume: 10, duration: 400 }.to_bytes());
        let packet = room.phones[0].sender.event_packet(101, ts, false, payload);
        room.conference.receive(room.now, leg, &packet);
    }
    room.run(1);
    let digits: Vec<char> = room
        .events
        .iter()
        .filter_map(|e| match e {
            ConferenceEvent::Dtmf { leg: l, digit } if *l == leg => Some(*digit),
            _ => None,
        })
        .collect();
    assert_eq!(digits, ['5', '5']);
}

#[test]
fn prompts_reach_their_target_only() {
    let mut room = Room::new(&[(AudioCodec::G722, None), (AudioCodec::G722, None)]);
    room.run(10);
    let mut clip = vec![0i16; 16000 * 3];
    Sine::new(16000, 3000.0, 0.3).fill(&mut clip);
    let clip: Arc<[i16]> = clip.into();
    assert!(room.conference.play(PlayTarget::Leg(room.phones[0].leg), clip.clone()));
    room.run(60);
    assert!(room.share(0, 3000.0) > -3.0);
    assert!(room.last_second_power(1) < 10.0, "the other phone heard the private prompt");
    room.run(100);
    assert!(room.events.contains(&ConferenceEvent::PromptFinished { leg: Some(room.phones[0].leg) }));
    room.conference.play(PlayTarget::Everyone, clip);
    room.run(60);
    assert!(room.share(0, 3000.0) > -3.0 && room.share(1, 3000.0) > -3.0);
}

#[test]
fn speaking_events_with_hangover() {
    let mut room = Room::new(&[(AudioCodec::Pcmu, Some(FREQS[0])), (AudioCodec::Pcmu, None)]);
    room.run(30);
    let leg = room.phones[0].leg;
    assert!(room.events.contains(&ConferenceEvent::SpeakingStarted { leg }));
    room.phones[0].tone = None;
    room.run(10);
    assert!(
        !room.events.contains(&ConferenceEvent::SpeakingStopped { leg }),
        "200 ms pause is still the same spurt"
    );
    room.run(20);
    assert!(room.events.contains(&ConferenceEvent::SpeakingStopped { leg }));
}

#[test]
fn legs_come_and_go() {
    let mut room = Room::new(&[(AudioCodec::Pcmu, Some(FREQS[0])), (AudioCodec::Pcmu, None)]);
    room.run(20);
    let gone = room.phones.remove(0).leg;
    assert!(room.conference.remove_leg(gone));
    assert!(!room.conference.remove_leg(gone));
    assert_eq!(room.conference.len(), 1);
    let reused = room.conference.add_leg(LegConfig {
        codec: AudioCodec::Pcmu,
        payload_type: 0,
        telephone_event: None,
        inband_dtmf: true,
        ssrc: 1,
        first_seq: 1,
        first_timestamp: 1,
        ptime: 20,
        audio_level: None,
    });
    assert_ne!(reused, gone, "a reused slot gets a new generation");
    assert!(room.conference.stats(gone).is_none());
    assert!(!room.conference.set_muted(gone, true));
}

#[test]
fn rtcp_reports_carry_reception_and_feedback_comes_back() {
    use crate::rtcp_session::{decode, encode, RtcpSession, SendingStats};
    use crate::rtp_stream::RtpReceiver;
    use rtcp::sender_report::SenderReport;

    let mut room = Room::new(&[(AudioCodec::Pcmu, Some(FREQS[0])), (AudioCodec::Pcmu, None)]);
    room.run(100);
    let phone = &room.phones[0];
    let leg = phone.leg;
    // The leg sends RTP, so its report is an SR, with a block about the phone's stream.
    let report = room.conference.rtcp_report(leg, room.now, 0xE000_0000_0000_0000).unwrap();
    let packets = decode(&report).unwrap();
    let sr = packets[0].as_any().downcast_ref::<SenderReport>().expect("an SR");
    assert_eq!(sr.packet_count, 100);
    assert_eq!(sr.reports[0].ssrc, phone.sender.ssrc());
    assert_eq!((sr.reports[0].fraction_lost, sr.reports[0].total_lost), (0, 0));
    // The phone's own RR about the leg's stream: 25 % lost in its view.
    let mut phone_rx = RtpReceiver::new(8000);
    let mut leg_tx = crate::rtp_stream::RtpSender::new(sr.ssrc, 0, 0, 0);
    for i in 0..100 {
        let p = leg_tx.packet(Bytes::from_static(&[0; 160]), 160);
        if i % 4 != 1 {
            phone_rx.receive(room.now, &p.header);
        }
    }
    let mut phone_rtcp = RtcpSession::new();
    let idle = SendingStats { ssrc: phone.sender.ssrc(), packets: 0, octets: 0, rtp_time: 0 };
    let rr = encode(&[phone_rtcp.report(room.now, 0, idle, Some(&phone_rx.stats()))]).unwrap();
    assert!(room.conference.receive_rtcp(room.now, leg, &rr));
    let stats = room.conference.stats(leg).unwrap();
    let lost = stats.remote_fraction_lost.unwrap();
    assert!((lost - 0.25).abs() < 0.02, "{lost}");
    assert!(!room.conference.receive_rtcp(room.now, leg, b"junk"));
}

/// A phone whose packets carry `ptime` ms, sending a tone and collecting what it is sent.
struct PtimePhone {
    codec: AudioCodec,
    ptime: u32,
    leg: LegId,
    sender: RtpSender,
    encoder: Encoder,
    tone: Sine,
    pending: Vec<u8>,
    received: Vec<rtp::Packet>,
}

impl PtimePhone {
    fn new(conference: &mut Conference, codec: AudioCodec, ptime: u32, freq: f64, ssrc: u32) -> PtimePhone {
        let leg = conference.add_leg(LegConfig {
            codec,
            payload_type: codec.static_payload_type(),
            telephone_event: None,
            inband_dtmf: false,
            ssrc,
            first_seq: 0,
            first_timestamp: 0,
            ptime,
            audio_level: None,
        });
        PtimePhone {
            codec,
            ptime,
            leg,
            sender: RtpSender::new(ssrc + 100, codec.static_payload_type(), 0, 0),
            encoder: Encoder::new(codec),
            tone: Sine::new(codec.pcm_rate(), freq, 0.25),
            pending: Vec::new(),
            received: Vec::new(),
        }
    }

    /// 20 ms of tone, sent as the packets of `ptime` now due.
    fn send(&mut self, conference: &mut Conference, now: Instant) {
        let mut pcm = vec![0i16; self.codec.pcm_rate() as usize / 50];
        self.tone.fill(&mut pcm);
        let mut payload = [0u8; 160];
        let n = self.encoder.encode(&pcm, &mut payload);
        self.pending.extend_from_slice(&payload[..n]);
        let bytes = 8 * self.ptime as usize;
        while self.pending.len() >= bytes {
            let chunk: Vec<u8> = self.pending.drain(..bytes).collect();
            let packet = self.sender.packet(Bytes::from(chunk), 8 * self.ptime);
            conference.receive(now, self.leg, &packet);
        }
    }

    /// Everything received, decoded in timestamp order.
    fn heard(&self) -> Vec<i16> {
        let mut decoder = Decoder::new(self.codec);
        let mut pcm = Vec::new();
        for p in &self.received {
            let mut out = vec![0i16; p.payload.len() * 2];
            let n = decoder.decode(&p.payload, &mut out);
            pcm.extend_from_slice(&out[..n]);
        }
        pcm
    }
}

#[test]
#[allow(clippy::disallowed_methods)] // the origin of virtual time
fn packets_of_10_30_and_40_ms_are_taken_and_sent_by_each_legs_ptime() {
    let mut conference = Conference::new(16000);
    let mut phones = [
        PtimePhone::new(&mut conference, AudioCodec::Pcmu, 30, FREQS[0], 1),
        PtimePhone::new(&mut conference, AudioCodec::G722, 10, FREQS[1], 2),
        PtimePhone::new(&mut conference, AudioCodec::Pcma, 40, FREQS[2], 3),
    ];
    let mut now = Instant::now();
    for _ in 0..150 {
        for phone in &mut phones {
            phone.send(&mut conference, now);
        }
        let mut out = Vec::new();
        conference.tick(|leg, packet| out.push((leg, packet)));
        for (leg, packet) in out {
            phones.iter_mut().find(|p| p.leg == leg).unwrap().received.push(packet);
        }
        now += Duration::from_millis(20);
    }
    for (i, phone) in phones.iter().enumerate() {
        // 150 ticks of 20 ms: 3 s, in packets of the leg's ptime, timestamps stepping by it.
        assert_eq!(phone.received.len(), (3000 / phone.ptime) as usize, "phone {i}");
        let step = 8 * phone.ptime;
        for pair in phone.received.windows(2) {
            assert_eq!(pair[1].header.timestamp.wrapping_sub(pair[0].header.timestamp), step, "phone {i}");
            assert_eq!(pair[1].payload.len(), step as usize, "phone {i}");
        }
        let heard = phone.heard();
        let rate = phone.codec.pcm_rate() as usize;
        let last = &heard[heard.len() - rate..];
        for (other, &f) in FREQS.iter().enumerate() {
            let share = tone_share_db(last, rate as u32, f);
            if other == i {
                assert!(share < -30.0, "phone {i} hears itself at {share:.1} dB");
            } else {
                assert!(share > -8.0, "phone {i} hears {f} Hz at only {share:.1} dB");
            }
        }
    }
}
