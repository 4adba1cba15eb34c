//! What the gateway answers to each SIP message. Stateless for now: `OPTIONS` is answered here,
//! methods without a handler yet get `501`, and bad input gets `400` or is dropped and counted.

use std::net::SocketAddr;

use rsip::{Header, Method, StatusCode};
use sip_stack::message::{self, Inbound, InboundRequest};
use sip_stack::response::response_to;
use sip_stack::via;

use crate::metrics::{RequestLabels, ResponseLabels, Transport, TransportLabels};
use crate::state::Shared;

/// Methods the gateway accepts, for `Allow`.
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REGISTER";

/// What to send back, and where (for datagrams; streams answer on their connection).
pub struct Reply {
    pub bytes: Vec<u8>,
    pub to: SocketAddr,
}

/// Handles one message from `src`; returns the reply, if any.
pub fn handle(shared: &Shared, transport: Transport, src: SocketAddr, bytes: &[u8]) -> Option<Reply> {
    let metrics = &shared.metrics;
    let mut request = match message::parse(bytes) {
        Ok(Inbound::Request(request)) => request,
        Ok(Inbound::Response(_)) => {
            // No client transactions yet: a stray response is absorbed (RFC 3261 §18.1.2).
            metrics.sip_responses_received.get_or_create(&TransportLabels { transport }).inc();
            return None;
        }
        Err(error) => {
            let tag = new_tag();
            return match message::bad_request(bytes, &error, &tag, &shared.config.sip.user_agent) {
                Some(bytes) => {
                    tracing::debug!(%src, transport = transport.as_str(), %error, "400 Bad Request");
                    metrics.sip_bad_requests.get_or_create(&TransportLabels { transport }).inc();
                    count_response(shared, transport, 400);
                    Some(Reply { bytes, to: src })
                }
                None => {
                    tracing::debug!(%src, transport = transport.as_str(), %error, "dropped");
                    metrics.sip_dropped.get_or_create(&TransportLabels { transport }).inc();
                    None
                }
            };
        }
    };
    metrics
        .sip_requests
        .get_or_create(&RequestLabels { transport, method: request.request.method.to_string() })
        .inc();
    let top_via = via::stamp_received(&mut request.request, &request.envelope.top_via, src);
    let to = match transport {
        Transport::Udp => via::response_target(&top_via, src),
        Transport::Tcp => src,
    };
    let response = match request.request.method {
        // ACK has no response (RFC 3261 §17.1.1.3).
        Method::Ack => return None,
        Method::Options => options(shared, &request),
        _ if shared.is_draining() => {
            let mut r = reply(shared, &request, StatusCode::ServiceUnavailable);
            r.headers.push(Header::RetryAfter("30".into()));
            r
        }
        _ => {
            let mut r = reply(shared, &request, StatusCode::NotImplemented);
            r.headers.push(Header::Allow(ALLOW.into()));
            r
        }
    };
    count_response(shared, transport, response.status_code.code());
    Some(Reply { bytes: response.to_string().into_bytes(), to })
}

/// `OPTIONS` is how load balancers and trunks probe the gateway (RFC 3261 §11.2).
fn options(shared: &Shared, request: &InboundRequest) -> rsip::Response {
    let mut response = reply(shared, request, StatusCode::OK);
    // Keep Content-Length last, as response_to left it.
    let length = response.headers.iter().position(|h| matches!(h, Header::ContentLength(_)));
    let extra = [
        Header::Allow(ALLOW.into()),
        Header::Accept("application/sdp".into()),
        Header::Supported("replaces, timer".into()),
    ];
    let at = length.unwrap_or(response.headers.iter().count());
    let mut headers: Vec<Header> = response.headers.iter().cloned().collect();
    headers.splice(at..at, extra);
    response.headers = headers.into();
    response
}

fn reply(shared: &Shared, request: &InboundRequest, status: StatusCode) -> rsip::Response {
    response_to(request, status, Some(&new_tag()), Some(&shared.config.sip.user_agent))
}

fn count_response(shared: &Shared, transport: Transport, code: u16) {
    shared.metrics.sip_responses_sent.get_or_create(&ResponseLabels { transport, code }).inc();
}

/// A To tag: 64 random bits (RFC 3261 §19.3 asks for at least 32).
fn new_tag() -> String {
    format!("{:016x}", rand::random::<u64>())
}
