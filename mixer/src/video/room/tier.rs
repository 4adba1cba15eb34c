//! The room's picture encoded for one class of viewers: a codec, a size, a frame rate and a
//! bitrate.
//! The first tier is the canvas itself; a smaller one is the canvas scaled down to it (one
//! composition for every tier). Each tier has its own encoder, made when its first viewer
//! comes and dropped when its last goes, and its own keyframe gate.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::super::compose::{Compositor, Fit, Layout};
use super::super::frame::{Frame, Yuv};
use super::super::h264::{EncoderSettings, H264Encoder, VideoCodecError};
use super::super::h264_rtp::{PacketizationMode, Packetizer};
use super::super::keyframes::KeyframeGate;
use super::super::vp8::Vp8Encoder;
use super::super::vp8_rtp;

/// The codecs pictures are sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodecKind {
    H264,
    Vp8,
}

impl VideoCodecKind {
    pub const ALL: [VideoCodecKind; 2] = [VideoCodecKind::H264, VideoCodecKind::Vp8];
}

/// The most tiers a room has: the canvas and one for weak receivers, in each codec.
pub const MAX_TIERS: usize = 4;

enum Encoder {
    H264(Box<H264Encoder>),
    Vp8(Vp8Encoder, vp8_rtp::Packetizer),
}

/// One class of viewers' picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierConfig {
    pub width: usize,
    pub height: usize,
    pub frame_rate: u32,
    pub bitrate_bps: u32,
}

/// What a viewer takes at most: from its SDP (H.264 level, `max-fs`, `max-mbps`, `b=AS` or
/// `b=TIAS`) and, for the bitrate, from its REMB or TMMBR since.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ViewerLimits {
    pub max_bitrate_bps: Option<u64>,
    pub max_frame_macroblocks: Option<u32>,
    pub max_macroblocks_per_second: Option<u32>,
}

impl TierConfig {
    /// Its picture in 16×16 macroblocks.
    pub fn macroblocks(&self) -> u32 {
        (self.width.div_ceil(16) * self.height.div_ceil(16)) as u32
    }

    /// Whether a viewer with `limits` can take this tier.
    pub fn fits(&self, limits: &ViewerLimits) -> bool {
        let mbs = self.macroblocks();
        limits.max_frame_macroblocks.is_none_or(|max| mbs <= max)
            && limits.max_macroblocks_per_second.is_none_or(|max| mbs * self.frame_rate <= max)
            && limits.max_bitrate_bps.is_none_or(|max| u64::from(self.bitrate_bps) <= max)
    }
}

pub(super) struct Tier {
    pub config: TierConfig,
    pub codec: VideoCodecKind,
    encoder: Option<Encoder>,
    pub gate: KeyframeGate,
    /// For a tier smaller than the canvas: the canvas scaled to it.
    scaler: Option<Compositor>,
    interval: Duration,
    next: Option<Instant>,
    mtu: usize,
    /// The last picture's payloads: for H.264 per packetization mode (0: single NAL, 1:
    /// non-interleaved); for VP8 the same in both.
    pub payloads: [Vec<Bytes>; 2],
    pub encodes: u64,
    pub keyframes: u64,
}

impl Tier {
    pub fn new(
        config: TierConfig,
        codec: VideoCodecKind,
        canvas: (usize, usize),
        background: Yuv,
        keyframe_interval: Duration,
        mtu: usize,
    ) -> Tier {
        let scaled = (config.width & !1, config.height & !1) != canvas;
        Tier {
            scaler: scaled.then(|| Compositor::new(config.width, config.height, background, Fit::Letterbox)),
            interval: Duration::from_secs(1) / config.frame_rate.max(1),
            config,
            codec,
            encoder: None,
            gate: KeyframeGate::new(keyframe_interval),
            next: None,
            mtu,
            payloads: [Vec::new(), Vec::new()],
            encodes: 0,
            keyframes: 0,
        }
    }

    /// No viewer is left: the encoder goes (a new one starts at a keyframe).
    pub fn idle(&mut self) {
        self.encoder = None;
        self.next = None;
        self.payloads.iter_mut().for_each(Vec::clear);
    }

    /// Encodes `canvas`, composed at `at` (`elapsed_ms` into the stream), when this tier's
    /// picture is due, into payloads for the packetization modes its viewers use
    /// (`modes[1]`: mode 1). True when there are payloads to send.
    pub fn encode(
        &mut self,
        at: Instant,
        elapsed_ms: u64,
        canvas: &Frame,
        modes: [bool; 2],
    ) -> Result<bool, VideoCodecError> {
        if self.next.is_some_and(|next| at < next) {
            return Ok(false);
        }
        let next = self.next.map_or(at, |next| next + self.interval);
        self.next = Some(if next <= at { at + self.interval } else { next });
        let picture = match &mut self.scaler {
            Some(scaler) => match scaler.compose(Layout::Speaker, &[Some(canvas)]) {
                Ok(picture) => picture,
                // Our own canvas, of even size: a failure is a bug, not input.
                Err(_) => return Ok(false),
            },
            None => canvas,
        };
        let settings = EncoderSettings {
            bitrate_bps: self.config.bitrate_bps,
            frame_rate: self.config.frame_rate,
            // Every NAL unit in one packet: receivers in packetization mode 0 take the stream.
            max_nal_bytes: Some(self.mtu as u32),
        };
        let encoder = match &mut self.encoder {
            Some(encoder) => encoder,
            None => self.encoder.insert(match self.codec {
                VideoCodecKind::H264 => Encoder::H264(Box::new(H264Encoder::new(settings)?)),
                VideoCodecKind::Vp8 => Encoder::Vp8(
                    Vp8Encoder::new(settings),
                    vp8_rtp::Packetizer { mtu: self.mtu, picture_id: 0 },
                ),
            }),
        };
        let asked = self.gate.keyframe_now(at);
        self.payloads.iter_mut().for_each(Vec::clear);
        let keyframe = match encoder {
            Encoder::H264(encoder) => {
                if asked {
                    encoder.ask_keyframe();
                }
                let encoded = encoder.encode(picture, elapsed_ms)?;
                for (i, mode) in
                    [PacketizationMode::SingleNal, PacketizationMode::NonInterleaved].into_iter().enumerate()
                {
                    // A NAL unit past the MTU in mode 0 loses this picture for those viewers;
                    // the next keyframe is asked for them.
                    let packetizer = Packetizer { mode, mtu: self.mtu };
                    if modes[i] && packetizer.packetize(encoded.nals(), &mut self.payloads[i]).is_err() {
                        self.gate.request();
                    }
                }
                encoded.keyframe
            }
            Encoder::Vp8(encoder, packetizer) => {
                if asked {
                    encoder.ask_keyframe();
                }
                let encoded = encoder.encode(picture, elapsed_ms)?;
                packetizer.packetize(encoded.data, &mut self.payloads[1]);
                self.payloads[0] = self.payloads[1].clone();
                encoded.keyframe
            }
        };
        self.encodes += 1;
        if keyframe {
            self.keyframes += 1;
            if !asked {
                self.gate.made_keyframe(at);
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tier_fits_a_viewer_by_frame_size_rate_and_bitrate() {
        let hd = TierConfig { width: 1280, height: 720, frame_rate: 30, bitrate_bps: 1_500_000 };
        assert_eq!(hd.macroblocks(), 3600);
        assert!(hd.fits(&ViewerLimits::default()));
        // Level 3.1: 3600 macroblocks, 108,000 a second.
        let level31 = ViewerLimits {
            max_frame_macroblocks: Some(3600),
            max_macroblocks_per_second: Some(108_000),
            max_bitrate_bps: None,
        };
        assert!(hd.fits(&level31));
        // Level 3.0: 1620 macroblocks (720×576).
        assert!(!hd.fits(&ViewerLimits { max_frame_macroblocks: Some(1620), ..level31 }));
        assert!(!hd.fits(&ViewerLimits { max_bitrate_bps: Some(768_000), ..level31 }));
        let low = TierConfig { width: 640, height: 360, frame_rate: 15, bitrate_bps: 500_000 };
        assert!(low.fits(&ViewerLimits {
            max_frame_macroblocks: Some(1620),
            max_bitrate_bps: Some(768_000),
            ..level31
        }));
    }
}
