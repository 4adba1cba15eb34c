//! H.264 encoding and decoding through Cisco's OpenH264 (Constrained Baseline, what every
//! H.264 receiver decodes), behind the [`Frame`] type.
//!
//! The encoder runs in real-time camera mode without frame skipping, so one call gives one
//! picture; a keyframe is made when asked (a receiver's PLI or FIR, a new viewer) and carries
//! its parameter sets. For receivers in packetization mode 0 the encoder keeps every slice, so
//! every NAL unit, within a size: each goes in one RTP packet.

use openh264::decoder::Decoder;
use openh264::encoder::{BitRate, Encoder, EncoderConfig, FrameRate, FrameType, SpsPpsStrategy, UsageType};
use openh264::formats::YUVSource;
use openh264::{OpenH264API, Timestamp};

use super::frame::Frame;
use super::h264_rtp::annex_b_nals;

#[derive(Debug, thiserror::Error)]
pub enum VideoCodecError {
    #[error("H.264 encoder: {0}")]
    Encoder(String),
    #[error("H.264 decoder: {0}")]
    Decoder(String),
}

/// How an encoder is set up: one per class of receivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderSettings {
    pub bitrate_bps: u32,
    pub frame_rate: u32,
    /// The largest NAL unit, for receivers in packetization mode 0.
    pub max_nal_bytes: Option<u32>,
}

/// One shared H.264 encoder.
pub struct H264Encoder {
    inner: Encoder,
    /// Encoded bytes of the last picture (Annex B), reused.
    stream: Vec<u8>,
    keyframe_asked: bool,
}

impl std::fmt::Debug for H264Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("H264Encoder")
    }
}

/// One encoded picture: its NAL units (without start codes) in order.
#[derive(Debug)]
pub struct Encoded<'a> {
    pub keyframe: bool,
    stream: &'a [u8],
}

impl<'a> Encoded<'a> {
    pub fn nals(&self) -> impl Iterator<Item = &'a [u8]> {
        annex_b_nals(self.stream)
    }

    /// The picture as Annex B bytes, as a decoder or a recording takes it.
    pub fn annex_b(&self) -> &'a [u8] {
        self.stream
    }
}

impl H264Encoder {
    pub fn new(settings: EncoderSettings) -> Result<H264Encoder, VideoCodecError> {
        let mut config = EncoderConfig::new()
            .bitrate(BitRate::from_bps(settings.bitrate_bps))
            .max_frame_rate(FrameRate::from_hz(settings.frame_rate as f32))
            .usage_type(UsageType::CameraVideoRealTime)
            .skip_frames(false)
            // A keyframe repeats the parameter sets, for a receiver that joins at it.
            .sps_pps_strategy(SpsPpsStrategy::ConstantId)
            .num_threads(1);
        if let Some(max) = settings.max_nal_bytes {
            config = config.max_slice_len(max);
        }
        let inner = Encoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| VideoCodecError::Encoder(e.to_string()))?;
        Ok(H264Encoder { inner, stream: Vec::new(), keyframe_asked: true })
    }

    /// Makes the next picture a keyframe.
    pub fn ask_keyframe(&mut self) {
        self.keyframe_asked = true;
    }

    /// Encodes one picture, `at_ms` into the stream.
    pub fn encode(&mut self, frame: &Frame, at_ms: u64) -> Result<Encoded<'_>, VideoCodecError> {
        if std::mem::take(&mut self.keyframe_asked) {
            self.inner.force_intra_frame();
        }
        let bitstream = self
            .inner
            .encode_at(frame, Timestamp::from_millis(at_ms))
            .map_err(|e| VideoCodecError::Encoder(e.to_string()))?;
        let keyframe = matches!(bitstream.frame_type(), FrameType::IDR | FrameType::I);
        self.stream.clear();
        bitstream.write_vec(&mut self.stream);
        Ok(Encoded { keyframe, stream: &self.stream })
    }
}

/// One leg's H.264 decoder.
pub struct H264Decoder {
    inner: Decoder,
}

impl std::fmt::Debug for H264Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("H264Decoder")
    }
}

impl H264Decoder {
    pub fn new() -> Result<H264Decoder, VideoCodecError> {
        let inner = Decoder::with_api_config(OpenH264API::from_source(), Default::default())
            .map_err(|e| VideoCodecError::Decoder(e.to_string()))?;
        Ok(H264Decoder { inner })
    }

    /// Decodes an access unit (Annex B); `Ok(None)` when it completes no picture yet.
    pub fn decode(&mut self, access_unit: &[u8]) -> Result<Option<Frame>, VideoCodecError> {
        let mut frame = Frame::filled(0, 0, super::frame::Yuv { y: 0, u: 0, v: 0 });
        Ok(self.decode_into(access_unit, &mut frame)?.then_some(frame))
    }

    /// [`H264Decoder::decode`] into `frame`, whose buffers are reused; true when it completed
    /// a picture.
    pub fn decode_into(&mut self, access_unit: &[u8], frame: &mut Frame) -> Result<bool, VideoCodecError> {
        let decoded = self.inner.decode(access_unit).map_err(|e| VideoCodecError::Decoder(e.to_string()))?;
        Ok(decoded.is_some_and(|picture| {
            let (width, height) = picture.dimensions();
            let (sy, su, sv) = picture.strides();
            frame.copy_planes(width, height, [picture.y(), picture.u(), picture.v()], [sy, su, sv])
        }))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::frame::Yuv;
    use super::super::h264_rtp::{AccessUnit, Depacketizer, PacketizationMode, Packetizer};
    use super::*;

    /// A picture of two halves: `left` and `right`.
    fn picture(left: Yuv, right: Yuv) -> Frame {
        let mut frame = Frame::filled(320, 240, left);
        frame.fill_rect(160, 0, 160, 240, right);
        frame
    }

    /// Encodes `pictures` pictures, sends each through RTP in `mode`, decodes what arrives.
    fn through_rtp(mode: PacketizationMode, pictures: usize) -> (Vec<Frame>, usize) {
        let max_nal_bytes = (mode == PacketizationMode::SingleNal).then_some(1100);
        let mut encoder =
            H264Encoder::new(EncoderSettings { bitrate_bps: 500_000, frame_rate: 30, max_nal_bytes })
                .unwrap();
        let packetizer = Packetizer { mode, mtu: 1200 };
        let mut depacketizer = Depacketizer::new();
        let mut decoder = H264Decoder::new().unwrap();
        let (red, blue) = (Yuv::from_rgb(230, 30, 30), Yuv::from_rgb(30, 30, 230));
        let (mut decoded, mut packets, mut seq) = (Vec::new(), 0, 0u16);
        for i in 0..pictures {
            let encoded = encoder.encode(&picture(red, blue), i as u64 * 33).unwrap();
            assert_eq!(encoded.keyframe, i == 0, "picture {i}");
            let mut payloads: Vec<Bytes> = Vec::new();
            packetizer.packetize(encoded.nals(), &mut payloads).unwrap();
            packets += payloads.len();
            let mut units: Vec<AccessUnit> = Vec::new();
            for (n, payload) in payloads.iter().enumerate() {
                assert!(payload.len() <= 1200);
                depacketizer.push(seq, i as u32 * 3000, n + 1 == payloads.len(), payload, &mut units);
                seq = seq.wrapping_add(1);
            }
            for unit in units {
                decoded.extend(decoder.decode(&unit.data).unwrap());
            }
        }
        (decoded, packets)
    }

    #[test]
    fn colours_survive_encoding_rtp_in_both_modes_and_decoding() {
        let (red, blue) = (Yuv::from_rgb(230, 30, 30), Yuv::from_rgb(30, 30, 230));
        for mode in [PacketizationMode::NonInterleaved, PacketizationMode::SingleNal] {
            let (frames, packets) = through_rtp(mode, 10);
            assert_eq!(frames.len(), 10, "{mode:?}");
            assert!(packets >= 10, "{mode:?}");
            for frame in &frames {
                assert_eq!((frame.width, frame.height), (320, 240));
                // Away from the edge between the halves, where the codec blurs.
                let (l, r) = (frame.mean(16, 16, 128, 208), frame.mean(176, 16, 128, 208));
                assert!(l.distance(red) <= 8, "{mode:?}: left {l:?} against {red:?}");
                assert!(r.distance(blue) <= 8, "{mode:?}: right {r:?} against {blue:?}");
            }
        }
    }

    #[test]
    fn a_keyframe_comes_when_asked_and_decodes_on_its_own() {
        let mut encoder =
            H264Encoder::new(EncoderSettings { bitrate_bps: 300_000, frame_rate: 15, max_nal_bytes: None })
                .unwrap();
        let green = Yuv::from_rgb(30, 200, 30);
        let frame = Frame::filled(176, 144, green);
        for i in 0..3 {
            encoder.encode(&frame, i * 66).unwrap();
        }
        encoder.ask_keyframe();
        let keyframe = encoder.encode(&frame, 200).unwrap();
        assert!(keyframe.keyframe);
        assert!(super::super::h264_rtp::has_parameter_sets(keyframe.annex_b()));
        // A decoder that joins at the keyframe shows the picture.
        let data = keyframe.annex_b().to_vec();
        let picture = H264Decoder::new().unwrap().decode(&data).unwrap().expect("a picture");
        assert!(picture.mean(0, 0, 176, 144).distance(green) <= 8);
    }
}
