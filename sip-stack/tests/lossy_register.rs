//! REGISTER with digest auth between two sip-stack endpoints over a simulated network with 20 %
//! loss, duplication and reordering, in virtual time: the registration completes for every seed.

#![allow(clippy::disallowed_methods)] // Instant::now() once per run, as the origin of virtual time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rsip::prelude::*;
use rsip::{Header, StatusCode};
use sip_stack::digest::{ha1, Algorithm, DigestResponse, DigestServer};
use sip_stack::message::{parse, Inbound};
use sip_stack::registration::{RegFailure, RegState, RegistrationClient, RegistrationConfig};
use sip_stack::response::{push_header, response_to};
use sip_stack::sim::{Conditions, Network};
use sip_stack::transaction::{TimerConfig, TransactionLayer, TxEvent};
use sip_stack::transport::{Peer, Transport};

const CLIENT: &str = "10.0.0.1:5060";
const SERVER: &str = "10.0.0.2:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

struct Outcome {
    registered_after: Option<Duration>,
    lost: u64,
    sent: u64,
}

fn run(seed: u64) -> Outcome {
    let t0 = Instant::now();
    let mut now = t0;
    let mut net = Network::new(
        seed,
        Conditions { loss: 0.2, duplication: 0.05, min_delay: Duration::from_millis(10), max_delay: Duration::from_millis(150) },
    );
    let mut client_layer = TransactionLayer::new(TimerConfig::default());
    let mut server_layer = TransactionLayer::new(TimerConfig::default());
    let mut digest = DigestServer::new("sim", [9; 32], 300).with_algorithms(vec![Algorithm::Md5]);
    let stored = ha1(Algorithm::Md5, "acct", "sim", "pw");
    let mut client = RegistrationClient::new(
        RegistrationConfig {
            registrar: rsip::Uri::try_from(format!("sip:{SERVER}").as_str()).unwrap(),
            aor: rsip::Uri::try_from(format!("sip:100@{SERVER}").as_str()).unwrap(),
            contact: rsip::Uri::try_from(format!("sip:100@{CLIENT}").as_str()).unwrap(),
            auth_username: "acct".into(),
            password: "pw".into(),
            realm: None,
            expires: 600,
            transport: Transport::Udp,
            local: addr(CLIENT),
            user_agent: None,
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(60),
            learn_public_address: false,
        },
        seed,
    );
    client.start(now);
    let mut in_flight = None;
    let deadline = t0 + Duration::from_secs(300);
    while now < deadline {
        // Client side: requests out, responses in.
        while let Some(request) = client.poll_request() {
            in_flight = client_layer.send_request(now, request, Peer::udp(addr(SERVER))).ok();
        }
        while let Some(event) = client_layer.poll_event() {
            match event {
                TxEvent::Response { tx, response } if Some(tx) == in_flight => client.handle_response(now, &response.response),
                TxEvent::Timeout { tx } | TxEvent::TransportError { tx } if Some(tx) == in_flight => {
                    client.handle_failure(now, RegFailure::Timeout)
                }
                _ => {}
            }
        }
        if let RegState::Registered { .. } = client.state() {
            return Outcome { registered_after: Some(now - t0), lost: net.lost, sent: net.sent };
        }
        // Server side: a registrar that challenges, then accepts valid credentials.
        while let Some(event) = server_layer.poll_event() {
            let TxEvent::Request { tx: Some(tx), request, .. } = event else { continue };
            let tag = "srv";
            let creds = request.request.authorization_header().and_then(|h| DigestResponse::parse(h.value()).ok());
            let accepted = creds.is_some_and(|c| digest.verify(60, "REGISTER", &c, &stored).is_ok());
            let response = if accepted {
                let mut ok = response_to(&request, StatusCode::OK, Some(tag), None);
                push_header(&mut ok, Header::Contact(format!("<sip:100@{CLIENT}>;expires=600").into()));
                ok
            } else {
                let mut challenge = response_to(&request, StatusCode::Unauthorized, Some(tag), None);
                for c in digest.challenges(60, false) {
                    push_header(&mut challenge, Header::WwwAuthenticate(c.into()));
                }
                challenge
            };
            server_layer.send_response(now, tx, response).unwrap();
        }
        // Wire both layers to the network.
        while let Some(t) = client_layer.poll_transmit() {
            net.send(now, addr(CLIENT), t.to.addr, t.bytes);
        }
        while let Some(t) = server_layer.poll_transmit() {
            net.send(now, addr(SERVER), t.to.addr, t.bytes);
        }
        if let Some((from, to, bytes)) = net.deliver(now) {
            let layer = if to == addr(SERVER) { &mut server_layer } else { &mut client_layer };
            match parse(&bytes).expect("the stack sends valid SIP") {
                Inbound::Request(r) => layer.handle_request(now, r, Peer::udp(from)),
                Inbound::Response(r) => layer.handle_response(now, r),
            }
            continue;
        }
        // Nothing due: jump to the next event.
        let next = [
            net.next_arrival(),
            client_layer.poll_timeout(),
            server_layer.poll_timeout(),
            client.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else { break };
        now = next.max(now);
        client_layer.handle_timeout(now);
        server_layer.handle_timeout(now);
        client.handle_timeout(now);
    }
    Outcome { registered_after: None, lost: net.lost, sent: net.sent }
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
