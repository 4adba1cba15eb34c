//! Prometheus metrics, served at `GET /metrics`.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry};

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

impl EncodeLabelValue for Transport {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabels {
    pub transport: Transport,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub transport: Transport,
    pub method: String,
}

/// What happened to a SIP transaction (RFC 3261 §17), for `gateway_sip_transaction_events`.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum TxEvent {
    /// A request or response sent again on its timer (UDP).
    Retransmitted,
    /// A peer's retransmission answered from the transaction, not passed up.
    Absorbed,
    /// A response that matched no transaction.
    StrayResponse,
    /// A transaction whose peer never answered (Timer B, F or H).
    TimedOut,
    /// A new request refused with `503` because the layer held `limits.server_transactions`.
    RefusedFull,
    /// An answered transaction ended before its timer to keep the answered ones within their
    /// bound: a retransmission of its request would be taken for a new one.
    RetiredEarly,
}

impl EncodeLabelValue for TxEvent {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        let name = match self {
            TxEvent::Retransmitted => "retransmitted",
            TxEvent::Absorbed => "absorbed",
            TxEvent::StrayResponse => "stray_response",
            TxEvent::TimedOut => "timed_out",
            TxEvent::RefusedFull => "refused_full",
            TxEvent::RetiredEarly => "retired_early",
        };
        std::fmt::Write::write_str(encoder, name)
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TxEventLabels {
    pub event: TxEvent,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TrunkLabels {
    pub trunk: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResponseLabels {
    pub transport: Transport,
    pub code: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// How the call ended (`normal`, `rtp-timeout`, …) or the code it was refused with.
    pub result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoomCodecLabels {
    pub room: String,
    pub codec: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoomLabels {
    pub room: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VideoStageLabels {
    pub room: String,
    /// `decode` (receiving and decoding since the last picture), `compose`, `encode` (and
    /// sending to every viewer).
    pub stage: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EncodeLabels {
    /// `shared`: one encode sent to every listener hearing the same mix; `personal`: a
    /// talker's own mix (everyone but them).
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabels {
    /// The worker's number, from 0.
    pub worker: String,
}

pub type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn tick_histogram() -> Histogram {
    // 10 µs to ~40 ms: a tick must stay well under its 20 ms.
    Histogram::new(exponential_buckets(0.00001, 2.0, 13))
}

fn jitter_histogram() -> Histogram {
    // 1 ms to ~0.5 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 10))
}

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    pub sip: SipMetrics,
    pub trunks: TrunkMetrics,
    pub media: MediaMetrics,
    /// Calls by how they ended or were refused.
    pub calls: Family<CallLabels, Counter>,
    /// Call records whose write failed and is being retried.
    pub call_record_retries: Counter,
}

/// SIP messages and connections, and what the limits refused.
pub struct SipMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub responses_sent: Family<ResponseLabels, Counter>,
    pub responses_received: Family<TransportLabels, Counter>,
    /// Messages that did not parse and could not be answered with a `400`.
    pub dropped: Family<TransportLabels, Counter>,
    pub bad_requests: Family<TransportLabels, Counter>,
    pub tcp_connections: Gauge,
    /// TCP/TLS connections closed at accept: a per-source or total limit was reached.
    pub connections_refused: Counter,
    /// Requests dropped unparsed: their source sent more than its rate.
    pub rate_limited: Counter,
    /// Requests refused with 503 because too many were already waiting or in transactions.
    pub overloaded: Counter,
    pub transaction_events: Family<TxEventLabels, Counter>,
    /// Authentication attempts refused unchecked: too many failures from the source or for
    /// the user.
    pub auth_throttled: Counter,
}

/// Each trunk's state.
pub struct TrunkMetrics {
    /// 1 while a trunk is registered, 0 otherwise.
    pub registered: Family<TrunkLabels, Gauge>,
    /// 1 while a trunk answers its OPTIONS pings, 0 when it stopped answering.
    pub reachable: Family<TrunkLabels, Gauge>,
}

/// Legs, their RTP and the mixer's work.
pub struct MediaMetrics {
    pub active_legs: Family<RoomCodecLabels, Gauge>,
    pub rtp_lost_packets: Family<RoomCodecLabels, Counter>,
    pub rtp_jitter_seconds: HistogramFamily<RoomCodecLabels>,
    /// Time each media worker spends on one 20 ms tick of its conferences.
    pub tick_seconds: HistogramFamily<WorkerLabels>,
    pub encodes: Family<EncodeLabels, Counter>,
    /// RTP/RTCP packets dropped for coming from another address than a leg's learnt source.
    pub rtp_foreign_packets: Counter,
    /// Legs each media worker carries.
    pub worker_legs: Family<WorkerLabels, Gauge>,
    /// Time of each stage of a room's video, per picture.
    pub video_seconds: HistogramFamily<VideoStageLabels>,
    /// Video encoder runs per room: one per picture, whatever the number of viewers.
    pub video_encodes: Family<RoomLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

/// `metric`, registered as `name` (after the `gateway_` prefix).
fn add<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("gateway");
        let r = &mut registry;
        let trunks = TrunkMetrics {
            reachable: add(
                r,
                "trunk_reachable",
                "1 while the trunk answers OPTIONS pings",
                Family::default(),
            ),
            registered: add(r, "trunk_registered", "1 while the trunk is registered", Family::default()),
        };
        let sip = SipMetrics::new(r);
        let calls =
            add(r, "calls", "Calls by how they ended or the code they were refused with", Family::default());
        let media = MediaMetrics::new(r);
        let call_record_retries = add(
            r,
            "call_record_retries",
            "Call record writes that failed and were tried again",
            Counter::default(),
        );
        let build = add(r, "build_info", "Gateway version", Family::<BuildLabels, Gauge>::default());
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").into() }).set(1);
        Metrics { registry, sip, trunks, media, calls, call_record_retries }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("encoding into a String");
        out
    }
}

impl SipMetrics {
    fn new(r: &mut Registry) -> SipMetrics {
        SipMetrics {
            requests: add(r, "sip_requests", "SIP requests received", Family::default()),
            responses_sent: add(r, "sip_responses_sent", "SIP responses sent", Family::default()),
            responses_received: add(r, "sip_responses_received", "SIP responses received", Family::default()),
            dropped: add(
                r,
                "sip_dropped",
                "SIP messages dropped because they could not be parsed or answered",
                Family::default(),
            ),
            bad_requests: add(
                r,
                "sip_bad_requests",
                "SIP requests answered with 400 Bad Request",
                Family::default(),
            ),
            tcp_connections: add(r, "sip_tcp_connections", "Open SIP TCP connections", Gauge::default()),
            connections_refused: add(
                r,
                "sip_connections_refused",
                "SIP TCP/TLS connections closed at accept because of a per-source or total limit",
                Counter::default(),
            ),
            rate_limited: add(
                r,
                "sip_rate_limited",
                "SIP requests dropped before parsing because their source exceeded its rate",
                Counter::default(),
            ),
            overloaded: add(
                r,
                "sip_overloaded",
                "SIP requests refused with 503 because too much work was already waiting",
                Counter::default(),
            ),
            transaction_events: add(
                r,
                "sip_transaction_events",
                "SIP transactions' retransmissions, absorbed retransmissions, stray responses, timeouts, refusals when full and early retirements",
                Family::default(),
            ),
            auth_throttled: add(
                r,
                "sip_auth_throttled",
                "Digest attempts refused unchecked after too many failures from the source or for the user",
                Counter::default(),
            ),
        }
    }
}

impl MediaMetrics {
    fn new(r: &mut Registry) -> MediaMetrics {
        MediaMetrics {
            active_legs: add(
                r,
                "active_legs",
                "Call legs in conferences, by room and codec",
                Family::default(),
            ),
            rtp_lost_packets: add(
                r,
                "rtp_lost_packets",
                "RTP packets lost on the way in, by room and codec",
                Family::default(),
            ),
            rtp_jitter_seconds: add(
                r,
                "rtp_jitter_seconds",
                "Interarrival jitter of each leg, sampled every second",
                Family::new_with_constructor(jitter_histogram as fn() -> Histogram),
            ),
            tick_seconds: add(
                r,
                "mixer_tick_seconds",
                "Duration of one media worker's tick over its conferences",
                Family::new_with_constructor(tick_histogram as fn() -> Histogram),
            ),
            encodes: add(
                r,
                "mixer_encodes",
                "Audio encoder runs: shared by listeners of the same mix, or a talker's own",
                Family::default(),
            ),
            rtp_foreign_packets: add(
                r,
                "rtp_foreign_packets",
                "RTP and RTCP packets dropped because they came from another address than the leg's peer",
                Counter::default(),
            ),
            worker_legs: add(
                r,
                "media_worker_legs",
                "Legs each media worker thread carries",
                Family::default(),
            ),
            video_seconds: add(
                r,
                "video_stage_seconds",
                "Time of one picture's decode, compose and encode stages, by room",
                Family::new_with_constructor(tick_histogram as fn() -> Histogram),
            ),
            video_encodes: add(
                r,
                "video_encodes",
                "Video encoder runs by room: one per picture, shared by every viewer",
                Family::default(),
            ),
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_appear_in_the_exposition() {
        let m = Metrics::new();
        m.sip
            .requests
            .get_or_create(&RequestLabels { transport: Transport::Udp, method: "OPTIONS".into() })
            .inc();
        let text = m.encode();
        assert!(text.contains(r#"gateway_sip_requests_total{transport="udp",method="OPTIONS"} 1"#), "{text}");
        assert!(text.contains("gateway_build_info"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
