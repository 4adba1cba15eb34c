//! RTCP feedback about video (RFC 4585, RFC 5104): what a viewer asks of the stream we send
//! it — a keyframe (PLI, or FIR with a new sequence number), retransmissions (generic NACK),
//! a lower bitrate (REMB, TMMBR) — and the requests we send a source for a keyframe.

use rtcp::packet::Packet;
use rtcp::payload_feedbacks::full_intra_request::{FirEntry, FullIntraRequest};
use rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtcp::raw_packet::RawPacket;
use rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;

/// Transport-layer feedback (PT 205), FMT 3: TMMBR (RFC 5104 §4.2.1).
const RTPFB: u8 = 205;
const FMT_TMMBR: u8 = 3;

/// One thing a viewer asked of our stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoFeedback {
    KeyframeRequest,
    /// Sequence numbers to send again.
    Nack(u16),
    /// The most the viewer takes, bit/s.
    MaxBitrate(u64),
}

/// Reads one viewer's feedback about the stream we send it as `ours`.
#[derive(Debug, Default, Clone)]
pub struct FeedbackReader {
    /// The last FIR sequence number taken: a FIR repeated with it is a retransmission
    /// (RFC 5104 §4.3.1.2), not a new request.
    last_fir: Option<u8>,
}

impl FeedbackReader {
    /// Appends to `out` what `packets` (one compound RTCP datagram) ask of media SSRC `ours`.
    pub fn read(&mut self, packets: &[Box<dyn Packet>], ours: u32, out: &mut Vec<VideoFeedback>) {
        for packet in packets {
            let any = packet.as_any();
            if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
                if pli.media_ssrc == ours {
                    out.push(VideoFeedback::KeyframeRequest);
                }
            } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
                for entry in fir.fir.iter().filter(|e| e.ssrc == ours) {
                    if self.last_fir != Some(entry.sequence_number) {
                        self.last_fir = Some(entry.sequence_number);
                        out.push(VideoFeedback::KeyframeRequest);
                    }
                }
            } else if let Some(nack) = any.downcast_ref::<TransportLayerNack>() {
                if nack.media_ssrc == ours {
                    // At most 17 sequence numbers a pair; the datagram bounds the pairs.
                    out.extend(nack.nacks.iter().flat_map(|pair| pair.into_iter()).map(VideoFeedback::Nack));
                }
            } else if let Some(remb) = any.downcast_ref::<ReceiverEstimatedMaximumBitrate>() {
                if remb.ssrcs.contains(&ours) && remb.bitrate.is_finite() && remb.bitrate >= 0.0 {
                    out.push(VideoFeedback::MaxBitrate(remb.bitrate as u64));
                }
            } else if let Some(RawPacket(raw)) = any.downcast_ref::<RawPacket>() {
                out.extend(tmmbr(raw, ours).map(VideoFeedback::MaxBitrate));
            }
        }
    }
}

/// The bitrate a TMMBR asks of `ours`, from its FCI entries (SSRC; 6-bit exponent, 17-bit
/// mantissa, 9-bit overhead).
fn tmmbr(raw: &[u8], ours: u32) -> Option<u64> {
    let (&first, rest) = raw.split_first()?;
    if first & 0x1F != FMT_TMMBR || rest.first() != Some(&RTPFB) {
        return None;
    }
    // Header (4), sender SSRC (4), media SSRC (4, zero), then 8-byte entries.
    let entries = raw.get(12..)?;
    entries.chunks_exact(8).find_map(|e| {
        let ssrc = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
        let word = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
        let (exp, mantissa) = (word >> 26, u64::from((word >> 9) & 0x1_FFFF));
        (ssrc == ours).then(|| mantissa.checked_shl(exp).unwrap_or(u64::MAX))
    })
}

/// A PLI asking `source` for a keyframe.
pub fn pli(sender: u32, source: u32) -> Box<dyn Packet> {
    Box::new(PictureLossIndication { sender_ssrc: sender, media_ssrc: source })
}

/// A FIR asking `source` for a keyframe; `sequence` goes up by one per new request.
pub fn fir(sender: u32, source: u32, sequence: u8) -> Box<dyn Packet> {
    Box::new(FullIntraRequest {
        sender_ssrc: sender,
        media_ssrc: 0,
        fir: vec![FirEntry { ssrc: source, sequence_number: sequence }],
    })
}

#[cfg(test)]
mod tests {
    use rtcp::transport_feedbacks::transport_layer_nack::NackPair;

    use super::*;
    use crate::rtcp_session::{decode, encode};

    const OURS: u32 = 0x5EED;

    fn read(reader: &mut FeedbackReader, packets: &[Box<dyn Packet>]) -> Vec<VideoFeedback> {
        let datagram = encode(packets).expect("encodes");
        let mut out = Vec::new();
        reader.read(&decode(&datagram).expect("decodes"), OURS, &mut out);
        out
    }

    #[test]
    fn keyframe_requests_nacks_and_bitrates_are_read_for_our_stream_only() {
        let mut reader = FeedbackReader::default();
        let got = read(
            &mut reader,
            &[
                pli(1, OURS),
                pli(1, 0xBAD),
                fir(1, OURS, 7),
                Box::new(TransportLayerNack {
                    sender_ssrc: 1,
                    media_ssrc: OURS,
                    nacks: vec![NackPair { packet_id: 100, lost_packets: 0b101 }],
                }),
                Box::new(ReceiverEstimatedMaximumBitrate {
                    sender_ssrc: 1,
                    bitrate: 800_000.0,
                    ssrcs: vec![OURS],
                }),
            ],
        );
        assert_eq!(
            got,
            [
                VideoFeedback::KeyframeRequest,
                VideoFeedback::KeyframeRequest,
                VideoFeedback::Nack(100),
                VideoFeedback::Nack(101),
                VideoFeedback::Nack(103),
                VideoFeedback::MaxBitrate(800_000),
            ]
        );
        // The same FIR again is a retransmission of it; a new sequence number a new request.
        assert!(read(&mut reader, &[fir(1, OURS, 7)]).is_empty());
        assert_eq!(read(&mut reader, &[fir(1, OURS, 8)]), [VideoFeedback::KeyframeRequest]);
    }

    #[test]
    fn a_tmmbr_is_read_from_its_entry_for_us() {
        // 1,200 kbit/s as mantissa 75,000 × 2^4, for OURS; another entry for someone else.
        let word = |exp: u32, mantissa: u32| ((exp << 26) | (mantissa << 9) | 40).to_be_bytes();
        let mut raw = vec![0x80 | FMT_TMMBR, RTPFB, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0];
        raw.extend_from_slice(&0xBADu32.to_be_bytes());
        raw.extend_from_slice(&word(1, 1000));
        raw.extend_from_slice(&OURS.to_be_bytes());
        raw.extend_from_slice(&word(4, 75_000));
        let packets = decode(&raw).expect("decodes as a raw packet");
        let mut out = Vec::new();
        FeedbackReader::default().read(&packets, OURS, &mut out);
        assert_eq!(out, [VideoFeedback::MaxBitrate(1_200_000)]);
        // Cut short: nothing, and no panic.
        assert_eq!(tmmbr(&raw[..15], OURS), None);
    }
}
