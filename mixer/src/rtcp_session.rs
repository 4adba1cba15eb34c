//! RTCP for one leg (RFC 3550 §6.4): our sender or receiver reports, built from the leg's RTP
//! statistics, and the peer's reports read for its view of our stream and the round-trip time.
//!
//! Both clocks are inputs: `now` for intervals, and the wall clock as a 64-bit NTP timestamp
//! (seconds since 1900 in the high 32 bits, fraction in the low 32) for the sender report.

use std::time::{Duration, Instant};

use rtcp::packet::Packet;
use rtcp::receiver_report::ReceiverReport;
use rtcp::reception_report::ReceptionReport;
use rtcp::sender_report::SenderReport;

use crate::rtp_stream::ReceptionStats;

/// What we sent, for a sender report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendingStats {
    pub ssrc: u32,
    pub packets: u64,
    pub octets: u64,
    /// The RTP timestamp that corresponds to the report's NTP time.
    pub rtp_time: u32,
}

/// What the peer said about our stream in its last report.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RemoteView {
    /// Fraction of our packets lost in its last interval, 0.0-1.0.
    pub fraction_lost: f64,
    pub total_lost: u32,
    /// Its interarrival jitter for our stream, in timestamp units.
    pub jitter: u32,
}

#[derive(Debug, Clone, Default)]
pub struct RtcpSession {
    expected_prior: u64,
    received_prior: u64,
    packets_prior: u64,
    /// The middle 32 bits of the peer's last SR and when it arrived (for LSR/DLSR).
    last_remote_sr: Option<(u32, Instant)>,
    /// The middle 32 bits of our last SR and when it left (to find the RTT).
    last_own_sr: Option<(u32, Instant)>,
    pub rtt: Option<Duration>,
    pub remote: Option<RemoteView>,
}

fn middle_32(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

impl RtcpSession {
    pub fn new() -> RtcpSession {
        RtcpSession::default()
    }

    /// Our report at `now`: an SR if we sent RTP since the last report, else an RR; with a
    /// reception block when we receive the peer's stream.
    pub fn report(
        &mut self,
        now: Instant,
        ntp: u64,
        sending: SendingStats,
        receiving: Option<&ReceptionStats>,
    ) -> Box<dyn Packet> {
        let reports: Vec<ReceptionReport> =
            receiving.map(|r| self.reception_block(now, r)).into_iter().collect();
        let sent_since = sending.packets > self.packets_prior;
        self.packets_prior = sending.packets;
        if sent_since {
            self.last_own_sr = Some((middle_32(ntp), now));
            Box::new(SenderReport {
                ssrc: sending.ssrc,
                ntp_time: ntp,
                rtp_time: sending.rtp_time,
                packet_count: sending.packets as u32,
                octet_count: sending.octets as u32,
                reports,
                ..SenderReport::default()
            })
        } else {
            Box::new(ReceiverReport { ssrc: sending.ssrc, reports, ..ReceiverReport::default() })
        }
    }

    /// RFC 3550 §6.4.1 and A.3: the report block about the stream we receive.
    fn reception_block(&mut self, now: Instant, r: &ReceptionStats) -> ReceptionReport {
        let expected_interval = r.expected.saturating_sub(self.expected_prior);
        let received_interval = r.received.saturating_sub(self.received_prior);
        self.expected_prior = r.expected;
        self.received_prior = r.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost =
            (lost_interval << 8).checked_div(expected_interval).map_or(0, |f| f.min(255) as u8);
        let (last_sender_report, delay) = match self.last_remote_sr {
            Some((lsr, at)) => (lsr, ((now - at).as_secs_f64() * 65536.0) as u32),
            None => (0, 0),
        };
        ReceptionReport {
            ssrc: r.ssrc,
            fraction_lost,
            // 24-bit field.
            total_lost: r.lost.min(0x7f_ffff) as u32,
            last_sequence_number: r.highest_seq as u32,
            jitter: r.jitter as u32,
            last_sender_report,
            delay,
        }
    }

    /// The peer's RTCP packets, arriving at `now`; `our_ssrc` picks the block about our stream.
    pub fn receive(&mut self, now: Instant, packets: &[Box<dyn Packet>], our_ssrc: u32) {
        for packet in packets {
            let any = packet.as_any();
            let blocks = if let Some(sr) = any.downcast_ref::<SenderReport>() {
                self.last_remote_sr = Some((middle_32(sr.ntp_time), now));
                &sr.reports
            } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                &rr.reports
            } else {
                continue;
            };
            for block in blocks.iter().filter(|b| b.ssrc == our_ssrc) {
                self.remote = Some(RemoteView {
                    fraction_lost: f64::from(block.fraction_lost) / 256.0,
                    total_lost: block.total_lost,
                    jitter: block.jitter,
                });
                // RFC 3550 §6.4.1: RTT = arrival − LSR − DLSR, here against our own send time.
                if let Some((lsr, sent_at)) = self.last_own_sr {
                    if block.last_sender_report == lsr && lsr != 0 {
                        let dlsr = Duration::from_secs_f64(f64::from(block.delay) / 65536.0);
                        self.rtt = (now - sent_at).checked_sub(dlsr);
                    }
                }
            }
        }
    }
}

/// Encodes packets into one compound RTCP datagram.
pub fn encode(packets: &[Box<dyn Packet>]) -> Option<bytes::Bytes> {
    rtcp::packet::marshal(packets).ok().map(|b| b.freeze())
}

/// Decodes a compound RTCP datagram; `None` when it is not valid RTCP.
pub fn decode(datagram: &[u8]) -> Option<Vec<Box<dyn Packet>>> {
    rtcp::packet::unmarshal(&mut bytes::Bytes::copy_from_slice(datagram)).ok()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::rtp_stream::{RtpReceiver, RtpSender};

    #[allow(clippy::disallowed_methods)] // the origin of virtual time
    fn t0() -> Instant {
        Instant::now()
    }

    const NTP_BASE: u64 = 0xE000_0000_0000_0000;

    fn ntp_at(t0: Instant, now: Instant) -> u64 {
        NTP_BASE + ((now - t0).as_secs_f64() * 4_294_967_296.0) as u64
    }

    #[test]
    fn loss_and_round_trip_time_travel_both_ways() {
        let t0 = t0();
        // A sends RTP to B, losing every tenth packet.
        let mut a_tx = RtpSender::new(0xA, 0, 1, 0);
        let mut b_rx = RtpReceiver::new(8000);
        for i in 0..500u64 {
            let packet = a_tx.packet(Bytes::from_static(&[0xff; 160]), 160);
            if i % 10 != 5 {
                b_rx.receive(t0 + Duration::from_millis(20 * i), &packet.header);
            }
        }
        let (mut a, mut b) = (RtcpSession::new(), RtcpSession::new());
        // A's SR at 10 s reaches B 40 ms later.
        let sr_at = t0 + Duration::from_secs(10);
        let sending = SendingStats {
            ssrc: 0xA,
            packets: a_tx.packets,
            octets: a_tx.octets,
            rtp_time: a_tx.timestamp(),
        };
        let sr = encode(&[a.report(sr_at, ntp_at(t0, sr_at), sending, None)]).unwrap();
        b.receive(sr_at + Duration::from_millis(40), &decode(&sr).unwrap(), 0xB);
        // B answers with an RR 100 ms after that; it reaches A 40 ms later.
        let rr_at = sr_at + Duration::from_millis(140);
        let b_sending = SendingStats { ssrc: 0xB, packets: 0, octets: 0, rtp_time: 0 };
        let rr = encode(&[b.report(rr_at, ntp_at(t0, rr_at), b_sending, Some(&b_rx.stats()))]).unwrap();
        a.receive(rr_at + Duration::from_millis(40), &decode(&rr).unwrap(), 0xA);

        let remote = a.remote.expect("A read B's block about its stream");
        assert!((remote.fraction_lost - 0.1).abs() < 0.01, "{remote:?}");
        assert_eq!(remote.total_lost, 50);
        let rtt = a.rtt.expect("an RTT");
        assert!((rtt.as_secs_f64() - 0.080).abs() < 0.001, "RTT {rtt:?}");
    }

    #[test]
    fn fraction_lost_is_per_interval() {
        let t0 = t0();
        let mut rx = RtpReceiver::new(8000);
        let mut tx = RtpSender::new(1, 0, 0, 0);
        let mut session = RtcpSession::new();
        let idle = SendingStats { ssrc: 2, packets: 0, octets: 0, rtp_time: 0 };
        for i in 0..100u64 {
            let p = tx.packet(Bytes::from_static(&[0; 160]), 160);
            if !(50..60).contains(&i) {
                rx.receive(t0, &p.header);
            }
        }
        let first = session.report(t0, NTP_BASE, idle, Some(&rx.stats()));
        let first = first.as_any().downcast_ref::<ReceiverReport>().expect("an RR: we sent nothing");
        assert_eq!(first.reports[0].fraction_lost, (10 * 256 / 99) as u8);
        for _ in 0..100 {
            let p = tx.packet(Bytes::from_static(&[0; 160]), 160);
            rx.receive(t0, &p.header);
        }
        let second = session.report(t0, NTP_BASE, idle, Some(&rx.stats()));
        let block = &second.as_any().downcast_ref::<ReceiverReport>().unwrap().reports[0];
        assert_eq!((block.fraction_lost, block.total_lost), (0, 10), "no new loss, 10 in all");
        assert!(decode(b"not rtcp at all").is_none());
    }
}
