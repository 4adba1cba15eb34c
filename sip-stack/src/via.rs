//! The Via header: at a server transport, recording where a request came from (RFC 3261 §18.2.1,
//! RFC 3581 §4) and choosing where its responses go (RFC 3261 §18.2.2, RFC 3581 §4); at a client,
//! naming the transport a request really goes over (§18.1.1).

use std::net::{IpAddr, SocketAddr};

use rsip::prelude::*;
use rsip::{typed, Header, Host, Param, Request};

/// Rewrites the top Via's transport (`SIP/2.0/UDP` → `SIP/2.0/TCP`); false without a Via.
pub fn set_transport(request: &mut Request, transport: crate::transport::Transport) -> bool {
    let Some(Header::Via(via)) = request.headers.iter_mut().find(|h| matches!(h, Header::Via(_))) else {
        return false;
    };
    let value = via.value().trim().to_string();
    let Some((_, rest)) = value.split_once(char::is_whitespace) else { return false };
    *via = format!("SIP/2.0/{} {}", transport.via_token(), rest.trim_start()).into();
    true
}

/// Adds `received` to the top Via when the sent-by host is not the packet's source address, and
/// fills in an empty `rport` with the source port (always adding `received` then, RFC 3581 §4).
/// The typed top Via is returned as it now reads.
pub fn stamp_received(request: &mut Request, top_via: &typed::Via, src: SocketAddr) -> typed::Via {
    let mut via = top_via.clone();
    let wants_rport = via.params.iter().any(is_rport);
    let sent_by_ip = match &via.uri.host_with_port.host {
        Host::IpAddr(ip) => Some(*ip),
        Host::Domain(_) => None,
    };
    if wants_rport || sent_by_ip != Some(src.ip()) {
        via.params.retain(|p| !matches!(p, Param::Received(_)));
        via.params.push(Param::Received(src.ip().to_string().into()));
    }
    if wants_rport {
        for p in via.params.iter_mut().filter(|p| is_rport(p)) {
            *p = Param::Other("rport".into(), Some(src.port().to_string().into()));
        }
    }
    if let Some(h) = request.headers.iter_mut().find(|h| matches!(h, Header::Via(_))) {
        *h = Header::Via(via.clone().into());
    }
    via
}

/// Where a response goes over an unreliable transport (RFC 3261 §18.2.2 with RFC 3581 §4), given
/// the top Via as stamped by [`stamp_received`] and the request's source address. Over a stream
/// the response goes back on the connection the request came in on.
pub fn response_target(top_via: &typed::Via, src: SocketAddr) -> SocketAddr {
    let rport = rport(top_via);
    let sent_by_port = top_via.uri.host_with_port.port.map_or(5060, |p| *p.value());
    let received = top_via.params.iter().find_map(|p| match p {
        Param::Received(ip) => ip.value().parse::<IpAddr>().ok(),
        _ => None,
    });
    match (rport, received) {
        (Some(Some(port)), Some(ip)) => SocketAddr::new(ip, port),
        (Some(_), _) => src,
        (None, Some(ip)) => SocketAddr::new(ip, sent_by_port),
        (None, None) => match &top_via.uri.host_with_port.host {
            Host::IpAddr(ip) => SocketAddr::new(*ip, sent_by_port),
            // Only reached for a sent-by name that resolved to the source address; answer there.
            Host::Domain(_) => src,
        },
    }
}

/// The `rport` parameter (RFC 3581): `None` when absent, `Some(None)` when asked for but empty,
/// `Some(Some(port))` when filled in by the server.
pub fn rport(via: &typed::Via) -> Option<Option<u16>> {
    via.params.iter().find_map(|p| match p {
        Param::Other(name, value) if name.value().eq_ignore_ascii_case("rport") => {
            Some(value.as_ref().and_then(|v| v.value().parse::<u16>().ok()))
        }
        _ => None,
    })
}

fn is_rport(p: &Param) -> bool {
    matches!(p, Param::Other(name, None) if name.value().eq_ignore_ascii_case("rport"))
        || matches!(p, Param::Other(name, Some(v)) if name.value().eq_ignore_ascii_case("rport") && v.value().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{parse, Inbound, InboundRequest};

    fn request(via: &str) -> InboundRequest {
        let text = format!(
            "OPTIONS sip:gw SIP/2.0\r\nVia: {via}\r\nTo: <sip:gw>\r\nFrom: <sip:p>;tag=1\r\n\
             Call-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n"
        );
        match parse(text.as_bytes()).unwrap() {
            Inbound::Request(r) => r,
            Inbound::Response(_) => unreachable!("the text is a request"),
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn rport_is_filled_and_used() {
        let mut r = request("SIP/2.0/UDP 10.0.0.5:5060;rport;branch=z9hG4bK1");
        let via = stamp_received(&mut r.request, &r.envelope.top_via, addr("192.0.2.1:40000"));
        let text = r.request.to_string();
        assert!(text.contains("rport=40000") && text.contains("received=192.0.2.1"), "{text}");
        assert_eq!(response_target(&via, addr("192.0.2.1:40000")), addr("192.0.2.1:40000"));
    }

    #[test]
    fn without_rport_the_sent_by_port_is_used() {
        let mut r = request("SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK1");
        let via = stamp_received(&mut r.request, &r.envelope.top_via, addr("192.0.2.1:40000"));
        assert!(r.request.to_string().contains("received=192.0.2.1"));
        assert_eq!(response_target(&via, addr("192.0.2.1:40000")), addr("192.0.2.1:5070"));
    }

    #[test]
    fn matching_sent_by_is_left_alone() {
        let mut r = request("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1");
        let via = stamp_received(&mut r.request, &r.envelope.top_via, addr("127.0.0.1:5070"));
        assert!(!r.request.to_string().contains("received="));
        assert_eq!(response_target(&via, addr("127.0.0.1:5070")), addr("127.0.0.1:5070"));
    }

    #[test]
    fn sent_by_without_port_means_5060() {
        let mut r = request("SIP/2.0/UDP host.example;branch=z9hG4bK1");
        let via = stamp_received(&mut r.request, &r.envelope.top_via, addr("192.0.2.9:5060"));
        assert_eq!(response_target(&via, addr("192.0.2.9:5060")), addr("192.0.2.9:5060"));
    }
}
