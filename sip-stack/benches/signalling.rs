//! In-process signalling throughput on one core: whole call setups and authenticated
//! REGISTERs between two transaction layers, every message serialised and parsed on the way,
//! with timers run to the end of each transaction.
//!
//! `cargo bench -p sip-stack --bench signalling`; figures are in the README.

#![allow(clippy::disallowed_methods)] // Instant::now() as the origin of virtual time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rsip::prelude::*;
use rsip::{Header, Method, Request, StatusCode};
use sip_stack::dialog::Dialog;
use sip_stack::digest::{ha1, Algorithm, DigestClient, DigestResponse, DigestServer};
use sip_stack::message::{parse, Inbound};
use sip_stack::response::{push_header, response_to};
use sip_stack::rng::Rng;
use sip_stack::transaction::{TimerConfig, TransactionLayer, TxEvent};
use sip_stack::transport::Peer;

const A: &str = "10.0.0.1:5060";
const B: &str = "10.0.0.2:5060";

struct Pair {
    a: TransactionLayer,
    b: TransactionLayer,
    now: Instant,
    rng: Rng,
    peer_a: Peer,
    peer_b: Peer,
}

impl Pair {
    fn new() -> Pair {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        Pair {
            a: TransactionLayer::new(TimerConfig::default()),
            b: TransactionLayer::new(TimerConfig::default()),
            now: Instant::now(),
            rng: Rng::new(1),
            peer_a: Peer::udp(addr(A)),
            peer_b: Peer::udp(addr(B)),
        }
    }

    /// Delivers everything queued on both sides, parsing each message as it arrives.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(t) = self.a.poll_transmit() {
                moved = true;
                deliver(&mut self.b, self.now, &t.bytes, self.peer_a);
            }
            while let Some(t) = self.b.poll_transmit() {
                moved = true;
                deliver(&mut self.a, self.now, &t.bytes, self.peer_b);
            }
            if !moved {
                break;
            }
        }
    }

    /// Lets every transaction time out (Timers J, K, L, M, …).
    fn finish(&mut self) {
        self.now += Duration::from_secs(40);
        self.a.handle_timeout(self.now);
        self.b.handle_timeout(self.now);
    }
}

fn deliver(layer: &mut TransactionLayer, now: Instant, bytes: &Bytes, from: Peer) {
    match parse(bytes).expect("valid SIP") {
        Inbound::Request(r) => layer.handle_request(now, r, from),
        Inbound::Response(r) => layer.handle_response(now, r),
    }
}

/// INVITE → 100 → 200 → ACK → BYE → 200.
fn call(p: &mut Pair) {
    let invite = Request::try_from(
        format!(
            "INVITE sip:1000@{B} SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch={}\r\nMax-Forwards: 70\r\n\
             From: <sip:alice@{A}>;tag={}\r\nTo: <sip:1000@{B}>\r\nCall-ID: {}\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:alice@{A}>\r\nContent-Length: 0\r\n\r\n",
            p.rng.branch(),
            p.rng.token(),
            p.rng.token()
        )
        .as_str(),
    )
    .unwrap();
    let invite_tx = p.a.send_request(p.now, invite.clone(), p.peer_b).unwrap();
    p.pump();
    let mut uas = None;
    while let Some(TxEvent::Request { tx: Some(tx), request, .. }) = p.b.poll_event() {
        let mut ok = response_to(&request, StatusCode::OK, Some("b1"), None);
        push_header(&mut ok, Header::Contact(format!("<sip:1000@{B}>").into()));
        p.b.send_response(p.now, tx, ok).unwrap();
        uas = Some(Dialog::uas(&request, "b1", &format!("sip:1000@{B}"), 1).unwrap());
    }
    assert!(uas.is_some());
    p.pump();
    let mut dialog = None;
    while let Some(event) = p.a.poll_event() {
        if let TxEvent::Response { tx, response } = event {
            if tx == invite_tx && response.response.status_code.code() == 200 {
                dialog = Some(Dialog::uac(&invite, &response, &format!("sip:alice@{A}")).unwrap());
            }
        }
    }
    let mut dialog = dialog.expect("answered");
    let via = format!("SIP/2.0/UDP {A}");
    let ack = dialog.ack(1, &via, &p.rng.branch());
    p.a.send_stateless(p.peer_b, Bytes::from(ack.to_string()));
    let bye = dialog.request(Method::Bye, &via, &p.rng.branch());
    p.a.send_request(p.now, bye, p.peer_b).unwrap();
    p.pump();
    while let Some(event) = p.b.poll_event() {
        if let TxEvent::Request { tx: Some(tx), request, .. } = event {
            p.b.send_response(p.now, tx, response_to(&request, StatusCode::OK, None, None)).unwrap();
        }
    }
    p.pump();
    while p.a.poll_event().is_some() {}
    p.finish();
}

/// REGISTER → 401 → REGISTER with credentials → 200, digest verified against a stored HA1.
fn register(p: &mut Pair, server: &mut DigestServer, stored: &str, cseq: &mut u32) {
    let mut client = DigestClient::default();
    for attempt in 0..2 {
        *cseq += 1;
        let mut text = format!(
            "REGISTER sip:{B} SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch={}\r\nMax-Forwards: 70\r\n\
             From: <sip:alice@{B}>;tag=r1\r\nTo: <sip:alice@{B}>\r\nCall-ID: reg-1\r\nCSeq: {cseq} REGISTER\r\n\
             Contact: <sip:alice@{A}>\r\nExpires: 600\r\n",
            p.rng.branch()
        );
        if let Some(auth) =
            client.authorization("alice", "pw", "REGISTER", &format!("sip:{B}"), &p.rng.token())
        {
            text += &format!("Authorization: {auth}\r\n");
        }
        text += "Content-Length: 0\r\n\r\n";
        let tx = p.a.send_request(p.now, Request::try_from(text.as_str()).unwrap(), p.peer_b).unwrap();
        p.pump();
        while let Some(TxEvent::Request { tx: Some(stx), request, .. }) = p.b.poll_event() {
            let creds =
                request.request.authorization_header().and_then(|h| DigestResponse::parse(h.value()).ok());
            let response = match creds {
                Some(c) if server.verify(100, "REGISTER", &c, stored).is_ok() => {
                    response_to(&request, StatusCode::OK, Some("s"), None)
                }
                _ => {
                    let mut r = response_to(&request, StatusCode::Unauthorized, Some("s"), None);
                    for c in server.challenges(100, false) {
                        push_header(&mut r, Header::WwwAuthenticate(c.into()));
                    }
                    r
                }
            };
            p.b.send_response(p.now, stx, response).unwrap();
        }
        p.pump();
        while let Some(event) = p.a.poll_event() {
            if let TxEvent::Response { tx: t, response } = event {
                let code = response.response.status_code.code();
                assert!(t == tx && (code == 401 && attempt == 0 || code == 200 && attempt == 1), "{code}");
                if code == 401 {
                    let values = response.response.headers.iter().filter_map(|h| match h {
                        Header::WwwAuthenticate(v) => Some(v.value()),
                        _ => None,
                    });
                    client.on_challenges(values).unwrap();
                }
            }
        }
    }
    p.finish();
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("signalling");
    group.throughput(Throughput::Elements(1));
    let mut pair = Pair::new();
    group.bench_function("call_setup_and_teardown", |b| b.iter(|| call(&mut pair)));
    let mut pair = Pair::new();
    let mut server = DigestServer::new("bench", [1; 32], 300).with_algorithms(vec![Algorithm::Md5]);
    let stored = ha1(Algorithm::Md5, "alice", "bench", "pw");
    let mut cseq = 0;
    group.bench_function("register_with_digest", |b| {
        b.iter(|| register(&mut pair, &mut server, &stored, &mut cseq))
    });
    group.finish();
}

criterion_group!(signalling, benches);
criterion_main!(signalling);
