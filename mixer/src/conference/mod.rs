//! A conference: legs in, one mix, packets out, every 20 ms.
//!
//! [`Conference::receive`] takes each leg's RTP as it arrives; [`Conference::tick`] runs on a
//! fixed 20 ms clock: each leg's jitter buffer gives its frame, voice activity decides who
//! talks, the talkers (not muted) are summed once at the conference rate, and each leg gets a
//! packet. Everyone who is silent and hears no private prompt gets the same payload, encoded
//! once per codec; a talker hears the total minus itself through its own encoder, which starts
//! as a copy of the shared one so the stream it receives continues without a break.

mod leg;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::codec::{AudioCodec, Encoder};
use crate::mix::MixBus;
use crate::resample::Resampler;
use leg::{Heard, Leg, Prompt};
pub use leg::{LegConfig, LegStats, QUIET_DBOV};

/// A leg's handle within its conference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegId {
    slot: u32,
    generation: u32,
}

/// What the owner of the conference should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConferenceEvent {
    Dtmf {
        leg: LegId,
        digit: char,
    },
    SpeakingStarted {
        leg: LegId,
    },
    SpeakingStopped {
        leg: LegId,
    },
    /// A prompt finished: played to one leg, or to everyone (`None`).
    PromptFinished {
        leg: Option<LegId>,
    },
}

/// Who hears a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayTarget {
    Leg(LegId),
    Everyone,
}

/// Work counters, for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickStats {
    pub ticks: u64,
    /// Encoder runs in the last tick: shared ones and personal ones.
    pub shared_encodes: u32,
    pub personal_encodes: u32,
    pub contributors: u32,
}

/// The codecs a conference can serve, as an index for per-codec caches.
const CODECS: [AudioCodec; 4] = [AudioCodec::Pcmu, AudioCodec::Pcma, AudioCodec::G722, AudioCodec::Opus];

fn codec_index(codec: AudioCodec) -> usize {
    match codec {
        AudioCodec::Pcmu => 0,
        AudioCodec::Pcma => 1,
        AudioCodec::G722 => 2,
        AudioCodec::Opus => 3,
    }
}

/// The shared stream of one codec: its encoder and resampler, and this tick's payload.
struct SharedStream {
    encoder: Encoder,
    down: Resampler,
    payload: Option<Bytes>,
}

pub struct Conference {
    rate: u32,
    legs: Vec<Option<Leg>>,
    generations: Vec<u32>,
    bus: MixBus,
    shared: Vec<SharedStream>,
    /// A prompt everyone hears.
    prompt: Option<Prompt>,
    events: VecDeque<ConferenceEvent>,
    stats: TickStats,
    // Scratch buffers, reused every tick.
    mix: Vec<i16>,
    codec_pcm: Vec<i16>,
    encoded: Vec<u8>,
}

impl Conference {
    /// A conference mixing at `rate` (16000 or 48000).
    pub fn new(rate: u32) -> Conference {
        let frame = rate as usize / 50;
        Conference {
            rate,
            legs: Vec::new(),
            generations: Vec::new(),
            bus: MixBus::new(frame),
            shared: CODECS
                .iter()
                .map(|&c| SharedStream {
                    encoder: Encoder::new(c),
                    down: Resampler::new(rate, c.pcm_rate()),
                    payload: None,
                })
                .collect(),
            prompt: None,
            events: VecDeque::new(),
            stats: TickStats::default(),
            mix: vec![0; frame],
            codec_pcm: vec![0; 960],
            encoded: vec![0; 1500],
        }
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }

    pub fn len(&self) -> usize {
        self.legs.iter().flatten().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn add_leg(&mut self, config: LegConfig) -> LegId {
        let leg = Leg::new(config, self.rate);
        match self.legs.iter().position(Option::is_none) {
            Some(slot) => {
                self.legs[slot] = Some(leg);
                self.generations[slot] += 1;
                LegId { slot: slot as u32, generation: self.generations[slot] }
            }
            None => {
                self.legs.push(Some(leg));
                self.generations.push(0);
                LegId { slot: self.legs.len() as u32 - 1, generation: 0 }
            }
        }
    }

    pub fn remove_leg(&mut self, id: LegId) -> bool {
        let found = self.leg_mut(id).is_some();
        if found {
            self.legs[id.slot as usize] = None;
        }
        found
    }

    /// The slot of a live leg: the generation guards against a handle to a removed leg whose
    /// slot was reused.
    fn slot(&self, id: LegId) -> Option<usize> {
        (self.generations.get(id.slot as usize) == Some(&id.generation)).then_some(id.slot as usize)
    }

    fn leg_mut(&mut self, id: LegId) -> Option<&mut Leg> {
        let slot = self.slot(id)?;
        self.legs[slot].as_mut()
    }

    fn leg(&self, id: LegId) -> Option<&Leg> {
        self.legs[self.slot(id)?].as_ref()
    }

    pub fn set_muted(&mut self, id: LegId, muted: bool) -> bool {
        self.leg_mut(id).map(|l| l.muted = muted).is_some()
    }

    pub fn set_deaf(&mut self, id: LegId, deaf: bool) -> bool {
        self.leg_mut(id).map(|l| l.deaf = deaf).is_some()
    }

    /// On hold: the leg is neither mixed in nor sent anything (RFC 3264 sendonly/inactive).
    pub fn set_on_hold(&mut self, id: LegId, on_hold: bool) -> bool {
        self.leg_mut(id).map(|l| l.on_hold = on_hold).is_some()
    }

    pub fn stats(&self, id: LegId) -> Option<LegStats> {
        self.leg(id).map(Leg::stats)
    }

    pub fn tick_stats(&self) -> TickStats {
        self.stats
    }

    /// Plays `samples` (at the conference rate) to one leg or to everyone, mixed with the
    /// conversation. A new prompt for the same target replaces the old one.
    pub fn play(&mut self, target: PlayTarget, samples: Arc<[i16]>) -> bool {
        let prompt = Prompt { samples, position: 0 };
        match target {
            PlayTarget::Everyone => {
                self.prompt = Some(prompt);
                true
            }
            PlayTarget::Leg(id) => self.leg_mut(id).map(|l| l.prompt = Some(prompt)).is_some(),
        }
    }

    pub fn poll_event(&mut self) -> Option<ConferenceEvent> {
        self.events.pop_front()
    }

    /// The leg's RTCP report, to send every few seconds (RFC 3550 §6.2); `ntp` is the wall
    /// clock as a 64-bit NTP timestamp.
    pub fn rtcp_report(&mut self, id: LegId, now: Instant, ntp: u64) -> Option<Bytes> {
        self.leg_mut(id)?.rtcp_report(now, ntp)
    }

    /// An RTCP datagram from a leg's peer; false when it is not RTCP (or no such leg).
    pub fn receive_rtcp(&mut self, now: Instant, id: LegId, datagram: &[u8]) -> bool {
        self.leg_mut(id).is_some_and(|leg| leg.receive_rtcp(now, datagram))
    }

    /// An RTP packet from a leg, at its arrival time.
    pub fn receive(&mut self, now: Instant, id: LegId, packet: &rtp::Packet) {
        let Some(leg) = self.leg_mut(id) else { return };
        if let Heard::Digit(digit) = leg.receive(now, packet) {
            self.events.push_back(ConferenceEvent::Dtmf { leg: id, digit });
        }
    }

    /// One 20 ms tick: calls `send` with each leg's outgoing packet.
    pub fn tick(&mut self, mut send: impl FnMut(LegId, rtp::Packet)) {
        self.bus.clear();
        self.stats.ticks += 1;
        self.stats.shared_encodes = 0;
        self.stats.personal_encodes = 0;
        // 1. Every leg's frame; talkers into the mix.
        for (slot, leg) in self.legs.iter_mut().enumerate() {
            let Some(leg) = leg else { continue };
            let id = LegId { slot: slot as u32, generation: self.generations[slot] };
            if let Some(digit) = leg.pull() {
                self.events.push_back(ConferenceEvent::Dtmf { leg: id, digit });
            }
            match leg.detect_voice() {
                Some(true) => self.events.push_back(ConferenceEvent::SpeakingStarted { leg: id }),
                Some(false) => self.events.push_back(ConferenceEvent::SpeakingStopped { leg: id }),
                None => {}
            }
            leg.contributes = leg.vad.talking && !leg.muted && !leg.on_hold;
            if leg.contributes {
                leg.prepare_contribution();
                self.bus.add(&leg.pcm);
            }
        }
        self.stats.contributors = self.bus.contributors() as u32;
        // 2. A prompt for everyone goes on the bus, where nobody subtracts it.
        if let Some(prompt) = &mut self.prompt {
            self.mix.fill(0);
            let more = prompt.mix_into(&mut self.mix);
            self.bus.add(&self.mix);
            if !more {
                self.prompt = None;
                self.events.push_back(ConferenceEvent::PromptFinished { leg: None });
            }
        }
        // 3. The shared payload of each codec some silent listener uses.
        for shared in &mut self.shared {
            shared.payload = None;
        }
        for leg in self.legs.iter().flatten() {
            if leg.on_hold || leg.deaf || leg.contributes || leg.prompt.is_some() {
                continue;
            }
            let i = codec_index(leg.config.codec);
            if self.shared[i].payload.is_none() {
                let shared = &mut self.shared[i];
                self.bus.shared_mix(&mut self.mix);
                let n = shared.down.process(&self.mix, &mut self.codec_pcm);
                let bytes = shared.encoder.encode(&self.codec_pcm[..n], &mut self.encoded);
                shared.payload = Some(Bytes::copy_from_slice(&self.encoded[..bytes]));
                self.stats.shared_encodes += 1;
            }
        }
        // 4. Each leg's packet.
        for (slot, leg) in self.legs.iter_mut().enumerate() {
            let Some(leg) = leg else { continue };
            let id = LegId { slot: slot as u32, generation: self.generations[slot] };
            if leg.on_hold {
                leg.skip_tick();
                continue;
            }
            let i = codec_index(leg.config.codec);
            let personal = leg.deaf || leg.contributes || leg.prompt.is_some();
            let payload = if personal {
                if !leg.personal {
                    // Continue the stream the phone was decoding.
                    leg.encoder = self.shared[i].encoder.clone();
                }
                if leg.deaf {
                    self.mix.fill(0);
                } else if leg.contributes {
                    self.bus.mix_without(&leg.pcm, &mut self.mix);
                } else {
                    self.bus.shared_mix(&mut self.mix);
                }
                if let Some(prompt) = &mut leg.prompt {
                    if !prompt.mix_into(&mut self.mix) {
                        leg.prompt = None;
                        self.events.push_back(ConferenceEvent::PromptFinished { leg: Some(id) });
                    }
                }
                let n = leg.down.process(&self.mix, &mut self.codec_pcm);
                let bytes = leg.encoder.encode(&self.codec_pcm[..n], &mut self.encoded);
                self.stats.personal_encodes += 1;
                Bytes::copy_from_slice(&self.encoded[..bytes])
            } else {
                // Set in step 3 for every codec a shared listener uses.
                self.shared[i].payload.clone().unwrap_or_default()
            };
            leg.personal = personal;
            leg.packetize(payload, |packet| send(id, packet));
        }
    }
}

#[cfg(test)]
mod tests;
