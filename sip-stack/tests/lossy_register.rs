//! REGISTER with digest auth between two sip-stack endpoints over a simulated network with 20 %
//! loss, duplication and reordering, in virtual time: the registration completes for every seed.

mod common;

use std::time::Duration;

use common::{addr, lossy, Harness, A, B};
use rsip::prelude::*;
use rsip::{Header, StatusCode};
use sip_stack::digest::{ha1, Algorithm, DigestResponse, DigestServer};
use sip_stack::registration::{RegFailure, RegState, RegistrationClient, RegistrationConfig};
use sip_stack::response::{push_header, response_to};
use sip_stack::transaction::TxEvent;
use sip_stack::transport::{Peer, Transport};

struct Outcome {
    registered_after: Option<Duration>,
    lost: u64,
    sent: u64,
}

fn run(seed: u64) -> Outcome {
    let mut h = Harness::new(seed, lossy());
    let mut digest = DigestServer::new("sim", [9; 32], 300).with_algorithms(vec![Algorithm::Md5]);
    let stored = ha1(Algorithm::Md5, "acct", "sim", "pw");
    let uri = |s: String| rsip::Uri::try_from(s.as_str()).unwrap();
    let mut client = RegistrationClient::new(
        RegistrationConfig {
            registrar: uri(format!("sip:{B}")),
            aor: uri(format!("sip:100@{B}")),
            contact: uri(format!("sip:100@{A}")),
            auth_username: "acct".into(),
            password: "pw".into(),
            realm: None,
            expires: 600,
            transport: Transport::Udp,
            local: addr(A),
            user_agent: None,
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(60),
            learn_public_address: false,
        },
        seed,
    );
    client.start(h.now);
    let mut in_flight = None;
    while h.elapsed() < Duration::from_secs(300) {
        // A: the registration client on its transaction layer.
        while let Some(request) = client.poll_request() {
            in_flight = h.a.send_request(h.now, request, Peer::udp(addr(B))).ok();
        }
        while let Some(event) = h.a.poll_event() {
            match event {
                TxEvent::Response { tx, response } if Some(tx) == in_flight => {
                    client.handle_response(h.now, &response.response)
                }
                TxEvent::Timeout { tx } | TxEvent::TransportError { tx } if Some(tx) == in_flight => {
                    client.handle_failure(h.now, RegFailure::Timeout)
                }
                _ => {}
            }
        }
        if let RegState::Registered { .. } = client.state() {
            return Outcome { registered_after: Some(h.elapsed()), lost: h.net.lost, sent: h.net.sent };
        }
        // B: a registrar that challenges, then accepts valid credentials.
        while let Some(event) = h.b.poll_event() {
            let TxEvent::Request { tx: Some(tx), request, .. } = event else { continue };
            let creds =
                request.request.authorization_header().and_then(|h| DigestResponse::parse(h.value()).ok());
            let accepted = creds.is_some_and(|c| digest.verify(60, "REGISTER", &c, &stored).is_ok());
            let response = if accepted {
                let mut ok = response_to(&request, StatusCode::OK, Some("srv"), None);
                push_header(&mut ok, Header::Contact(format!("<sip:100@{A}>;expires=600").into()));
                ok
            } else {
                let mut challenge = response_to(&request, StatusCode::Unauthorized, Some("srv"), None);
                for c in digest.challenges(60, false) {
                    push_header(&mut challenge, Header::WwwAuthenticate(c.into()));
                }
                challenge
            };
            h.b.send_response(h.now, tx, response).unwrap();
        }
        if h.step_network() {
            continue;
        }
        if !h.advance(&[client.poll_timeout()]) {
            break;
        }
        client.handle_timeout(h.now);
    }
    Outcome { registered_after: None, lost: h.net.lost, sent: h.net.sent }
}

#[test]
fn register_with_auth_completes_at_20_percent_loss() {
    let mut total_lost = 0;
    let mut slowest = Duration::ZERO;
    for seed in 0..200 {
        let outcome = run(seed);
        let took = outcome.registered_after.unwrap_or_else(|| panic!("seed {seed}: never registered"));
        slowest = slowest.max(took);
        total_lost += outcome.lost;
        assert!(outcome.sent >= 4, "seed {seed}: at least REGISTER, 401, REGISTER, 200");
    }
    assert!(total_lost > 100, "the network did lose packets ({total_lost})");
    // Loss costs retransmissions (Timer E from 500 ms), never a transaction timeout.
    assert!(slowest < Duration::from_secs(32), "slowest registration took {slowest:?}");
}

#[test]
fn same_seed_same_run() {
    let (a, b) = (run(7), run(7));
    assert_eq!((a.registered_after, a.lost, a.sent), (b.registered_after, b.lost, b.sent));
}
