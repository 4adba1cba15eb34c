//! Prometheus metrics, served at `GET /metrics`.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

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
pub struct EncodeLabels {
    /// `shared`: one encode sent to every listener hearing the same mix; `personal`: a
    /// talker's own mix (everyone but them).
    pub kind: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn jitter_histogram() -> Histogram {
    // 1 ms to ~0.5 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 10))
}

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    pub sip_requests: Family<RequestLabels, Counter>,
    pub sip_responses_sent: Family<ResponseLabels, Counter>,
    pub sip_responses_received: Family<TransportLabels, Counter>,
    /// Messages that did not parse and could not be answered with a `400`.
    pub sip_dropped: Family<TransportLabels, Counter>,
    pub sip_bad_requests: Family<TransportLabels, Counter>,
    pub tcp_connections: Gauge,
    /// 1 while a trunk is registered, 0 otherwise.
    pub trunk_registered: Family<TrunkLabels, Gauge>,
    /// 1 while a trunk answers its OPTIONS pings, 0 when it stopped answering.
    pub trunk_reachable: Family<TrunkLabels, Gauge>,
    /// Calls by how they ended or were refused.
    pub calls: Family<CallLabels, Counter>,
    pub active_legs: Family<RoomCodecLabels, Gauge>,
    pub rtp_lost_packets: Family<RoomCodecLabels, Counter>,
    pub rtp_jitter_seconds: HistogramFamily<RoomCodecLabels>,
    /// Time the media worker spends on one 20 ms tick of every conference.
    pub mixer_tick_seconds: Histogram,
    pub mixer_encodes: Family<EncodeLabels, Counter>,
    /// RTP/RTCP packets dropped for coming from another address than a leg's learnt source.
    pub rtp_foreign_packets: Counter,
    /// Call records whose write failed and is being retried.
    pub call_record_retries: Counter,
    /// SIP TCP/TLS connections closed at accept: a per-source or total limit was reached.
    pub sip_connections_refused: Counter,
    /// SIP requests dropped unparsed: their source sent more than its rate.
    pub sip_rate_limited: Counter,
    /// Requests refused with 503 because too many were already waiting or in transactions.
    pub sip_overloaded: Counter,
    /// Authentication attempts refused unchecked: too many failures from the source or for
    /// the user.
    pub sip_auth_throttled: Counter,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("gateway");
        let sip_requests = Family::<RequestLabels, Counter>::default();
        let sip_responses_sent = Family::<ResponseLabels, Counter>::default();
        let sip_responses_received = Family::<TransportLabels, Counter>::default();
        let sip_dropped = Family::<TransportLabels, Counter>::default();
        let sip_bad_requests = Family::<TransportLabels, Counter>::default();
        let tcp_connections = Gauge::default();
        let trunk_registered = Family::<TrunkLabels, Gauge>::default();
        let trunk_reachable = Family::<TrunkLabels, Gauge>::default();
        registry.register(
            "trunk_reachable",
            "1 while the trunk answers OPTIONS pings",
            trunk_reachable.clone(),
        );
        registry.register("trunk_registered", "1 while the trunk is registered", trunk_registered.clone());
        registry.register("sip_requests", "SIP requests received", sip_requests.clone());
        registry.register("sip_responses_sent", "SIP responses sent", sip_responses_sent.clone());
        registry.register("sip_responses_received", "SIP responses received", sip_responses_received.clone());
        registry.register(
            "sip_dropped",
            "SIP messages dropped because they could not be parsed or answered",
            sip_dropped.clone(),
        );
        registry.register(
            "sip_bad_requests",
            "SIP requests answered with 400 Bad Request",
            sip_bad_requests.clone(),
        );
        registry.register("sip_tcp_connections", "Open SIP TCP connections", tcp_connections.clone());
        let calls = Family::<CallLabels, Counter>::default();
        let active_legs = Family::<RoomCodecLabels, Gauge>::default();
        let rtp_lost_packets = Family::<RoomCodecLabels, Counter>::default();
        let rtp_jitter_seconds: HistogramFamily<RoomCodecLabels> =
            Family::new_with_constructor(jitter_histogram);
        // 10 µs to ~40 ms: a tick must stay well under its 20 ms.
        let mixer_tick_seconds = Histogram::new(exponential_buckets(0.00001, 2.0, 13));
        registry.register(
            "calls",
            "Calls by how they ended or the code they were refused with",
            calls.clone(),
        );
        registry.register("active_legs", "Call legs in conferences, by room and codec", active_legs.clone());
        registry.register(
            "rtp_lost_packets",
            "RTP packets lost on the way in, by room and codec",
            rtp_lost_packets.clone(),
        );
        registry.register(
            "rtp_jitter_seconds",
            "Interarrival jitter of each leg, sampled every second",
            rtp_jitter_seconds.clone(),
        );
        registry.register(
            "mixer_tick_seconds",
            "Duration of one media tick over every conference",
            mixer_tick_seconds.clone(),
        );
        let mixer_encodes = Family::<EncodeLabels, Counter>::default();
        registry.register(
            "mixer_encodes",
            "Audio encoder runs: shared by listeners of the same mix, or a talker's own",
            mixer_encodes.clone(),
        );
        let rtp_foreign_packets = Counter::default();
        registry.register(
            "rtp_foreign_packets",
            "RTP and RTCP packets dropped because they came from another address than the leg's peer",
            rtp_foreign_packets.clone(),
        );
        let call_record_retries = Counter::default();
        registry.register(
            "call_record_retries",
            "Call record writes that failed and were tried again",
            call_record_retries.clone(),
        );
        let sip_connections_refused = Counter::default();
        registry.register(
            "sip_connections_refused",
            "SIP TCP/TLS connections closed at accept because of a per-source or total limit",
            sip_connections_refused.clone(),
        );
        let sip_rate_limited = Counter::default();
        registry.register(
            "sip_rate_limited",
            "SIP requests dropped before parsing because their source exceeded its rate",
            sip_rate_limited.clone(),
        );
        let sip_overloaded = Counter::default();
        registry.register(
            "sip_overloaded",
            "SIP requests refused with 503 because too much work was already waiting",
            sip_overloaded.clone(),
        );
        let sip_auth_throttled = Counter::default();
        registry.register(
            "sip_auth_throttled",
            "Digest attempts refused unchecked after too many failures from the source or for the user",
            sip_auth_throttled.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").into() }).set(1);
        registry.register("build_info", "Gateway version", build);
        Metrics {
            registry,
            sip_requests,
            sip_responses_sent,
            sip_responses_received,
            sip_dropped,
            sip_bad_requests,
            tcp_connections,
            trunk_registered,
            trunk_reachable,
            calls,
            active_legs,
            rtp_lost_packets,
            rtp_jitter_seconds,
            mixer_tick_seconds,
            mixer_encodes,
            rtp_foreign_packets,
            call_record_retries,
            sip_connections_refused,
            sip_rate_limited,
            sip_overloaded,
            sip_auth_throttled,
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("encoding into a String");
        out
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
        m.sip_requests
            .get_or_create(&RequestLabels { transport: Transport::Udp, method: "OPTIONS".into() })
            .inc();
        let text = m.encode();
        assert!(text.contains(r#"gateway_sip_requests_total{transport="udp",method="OPTIONS"} 1"#), "{text}");
        assert!(text.contains("gateway_build_info"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
