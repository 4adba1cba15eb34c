//! Transaction timer schedules and behaviour, in virtual time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::message::{parse, Inbound};
use crate::transport::{ConnectionId, Transport};

fn peer() -> Peer {
    Peer::udp("127.0.0.1:5070".parse::<SocketAddr>().unwrap())
}

fn tcp_peer() -> Peer {
    Peer {
        transport: Transport::Tcp,
        addr: "127.0.0.1:5070".parse().unwrap(),
        connection: Some(ConnectionId(7)),
    }
}

fn request_text(method: &str, branch: &str, cseq: u32) -> String {
    format!(
        "{method} sip:1000@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:1000@127.0.0.1>\r\n\
         Call-ID: call-1\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
}

fn inbound_request(text: &str) -> InboundRequest {
    match parse(text.as_bytes()).unwrap() {
        Inbound::Request(r) => r,
        Inbound::Response(_) => panic!("not a request"),
    }
}

fn request(method: &str, branch: &str) -> Request {
    inbound_request(&request_text(method, branch, 1)).request
}

fn response_text(code: u16, reason: &str, method: &str, branch: &str, to_tag: Option<&str>) -> String {
    let tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "SIP/2.0 {code} {reason}\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\n\
         From: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:1000@127.0.0.1>{tag}\r\n\
         Call-ID: call-1\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    )
}

fn inbound_response(code: u16, method: &str, branch: &str) -> InboundResponse {
    let text = response_text(code, "Reason", method, branch, Some("b2"));
    match parse(text.as_bytes()).unwrap() {
        Inbound::Response(r) => r,
        Inbound::Request(_) => panic!("not a response"),
    }
}

/// Drives a layer through virtual time, recording when each transmit and event happened.
struct Sim {
    layer: TransactionLayer,
    t0: Instant,
    now: Instant,
    sent: Vec<(Duration, String)>,
    events: Vec<(Duration, TxEvent)>,
}

impl Sim {
    fn new() -> Sim {
        // The only clock read: the origin of virtual time.
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        Sim {
            layer: TransactionLayer::new(TimerConfig::default()),
            t0,
            now: t0,
            sent: vec![],
            events: vec![],
        }
    }

    fn at(&self) -> Duration {
        self.now - self.t0
    }

    fn drain(&mut self) {
        while let Some(t) = self.layer.poll_transmit() {
            self.sent.push((self.at(), String::from_utf8_lossy(&t.bytes).into_owned()));
        }
        while let Some(e) = self.layer.poll_event() {
            self.events.push((self.at(), e));
        }
    }

    /// Runs every timer up to `until` (seconds since t0), at its exact deadline.
    fn run_until(&mut self, until: f64) {
        let end = self.t0 + Duration::from_secs_f64(until);
        while let Some(next) = self.layer.poll_timeout() {
            if next > end {
                break;
            }
            self.now = next;
            self.layer.handle_timeout(next);
            self.drain();
        }
        self.now = end;
    }

    /// Times (seconds) of transmits whose first line starts with `prefix`.
    fn sent_times(&self, prefix: &str) -> Vec<f64> {
        self.sent.iter().filter(|(_, m)| m.starts_with(prefix)).map(|(at, _)| at.as_secs_f64()).collect()
    }
}

#[test]
fn timer_a_doubles_and_timer_b_fires_at_64_t1() {
    let mut sim = Sim::new();
    let tx = sim.layer.send_request(sim.now, request("INVITE", "z9hG4bKa"), peer()).unwrap();
    sim.drain();
    sim.run_until(40.0);
    // Sent at 0, retransmitted after 0.5, 1, 2, 4, 8, 16 s (§17.1.1.2).
    assert_eq!(sim.sent_times("INVITE"), [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]);
    assert_eq!(sim.events, [(Duration::from_secs(32), TxEvent::Timeout { tx })]);
    assert!(sim.layer.is_empty());
    assert_eq!(sim.layer.poll_timeout(), None);
}

#[test]
fn timer_e_caps_at_t2_and_timer_f_fires_at_32s() {
    let mut sim = Sim::new();
    let tx = sim.layer.send_request(sim.now, request("OPTIONS", "z9hG4bKo"), peer()).unwrap();
    sim.drain();
    sim.run_until(40.0);
    // 0.5, 1, 2, 4, then every T2 = 4 s (§17.1.2.2); F at 64·T1.
    assert_eq!(sim.sent_times("OPTIONS"), [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]);
    assert_eq!(sim.events, [(Duration::from_secs(32), TxEvent::Timeout { tx })]);
}

#[test]
fn non_invite_in_proceeding_retransmits_every_t2() {
    let mut sim = Sim::new();
    let tx = sim.layer.send_request(sim.now, request("REGISTER", "z9hG4bKr"), peer()).unwrap();
    sim.drain();
    sim.run_until(0.7);
    sim.layer.handle_response(sim.now, inbound_response(100, "REGISTER", "z9hG4bKr"));
    sim.drain();
    sim.run_until(14.0);
    // 0, 0.5, then Timer E (armed for 1.5 before the 100) fires, then every T2.
    assert_eq!(sim.sent_times("REGISTER"), [0.0, 0.5, 1.5, 5.5, 9.5, 13.5]);
    sim.layer.handle_response(sim.now, inbound_response(200, "REGISTER", "z9hG4bKr"));
    sim.drain();
    let responses: Vec<u16> = sim
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            TxEvent::Response { tx: t, response } if *t == tx => Some(response.response.status_code.code()),
            _ => None,
        })
        .collect();
    assert_eq!(responses, [100, 200]);
    // Completed: a retransmitted 200 is absorbed, Timer K (T4) ends the transaction.
    sim.layer.handle_response(sim.now, inbound_response(200, "REGISTER", "z9hG4bKr"));
    sim.drain();
    assert_eq!(sim.events.len(), 2);
    assert_eq!(sim.layer.poll_timeout(), Some(sim.now + Duration::from_secs(5)));
    sim.run_until(20.0);
    assert!(sim.layer.is_empty());
}

#[test]
fn reliable_transports_do_not_retransmit() {
    let mut sim = Sim::new();
    let tx = sim.layer.send_request(sim.now, request("INVITE", "z9hG4bKt"), tcp_peer()).unwrap();
    sim.drain();
    sim.run_until(40.0);
    assert_eq!(sim.sent_times("INVITE"), [0.0]);
    assert_eq!(sim.events, [(Duration::from_secs(32), TxEvent::Timeout { tx })]);
}

#[test]
fn non_2xx_final_is_acked_by_the_transaction() {
    let mut sim = Sim::new();
    let tx = sim.layer.send_request(sim.now, request("INVITE", "z9hG4bKb"), peer()).unwrap();
    sim.drain();
    sim.layer.handle_response(sim.now, inbound_response(180, "INVITE", "z9hG4bKb"));
    sim.run_until(2.0);
    // The 180 stopped Timer A: nothing was retransmitted.
    sim.layer.handle_response(sim.now, inbound_response(486, "INVITE", "z9hG4bKb"));
    sim.drain();
    let acks: Vec<&String> = sim.sent.iter().filter(|(_, m)| m.starts_with("ACK")).map(|(_, m)| m).collect();
    assert_eq!(acks.len(), 1);
    let ack = acks[0];
    assert!(ack.starts_with("ACK sip:1000@127.0.0.1 SIP/2.0\r\n"), "{ack}");
    assert!(
        ack.contains("branch=z9hG4bKb") && ack.contains("CSeq: 1 ACK") && ack.contains("tag=b2"),
        "{ack}"
    );
    // The retransmitted 486 is ACKed again and not passed up.
    sim.layer.handle_response(sim.now, inbound_response(486, "INVITE", "z9hG4bKb"));
    sim.drain();
    assert_eq!(sim.sent_times("ACK").len(), 2);
    let codes: Vec<u16> = sim
        .events
        .iter()
        .map(|(_, e)| match e {
            TxEvent::Response { response, .. } => response.response.status_code.code(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(codes, [180, 486]);
    // Timer D: 32 s after the final response.
    assert_eq!(sim.layer.poll_timeout(), Some(sim.now + Duration::from_secs(32)));
    sim.run_until(40.0);
    assert!(sim.layer.client_request(tx).is_none());
}

#[test]
fn retransmitted_2xx_reaches_the_tu_until_timer_m() {
    let mut sim = Sim::new();
    sim.layer.send_request(sim.now, request("INVITE", "z9hG4bKc"), peer()).unwrap();
    sim.layer.handle_response(sim.now, inbound_response(200, "INVITE", "z9hG4bKc"));
    sim.run_until(1.0);
    sim.layer.handle_response(sim.now, inbound_response(200, "INVITE", "z9hG4bKc"));
    sim.drain();
    assert_eq!(sim.events.len(), 2, "both 200s go to the dialog, which ACKs each");
    assert_eq!(sim.sent_times("ACK"), Vec::<f64>::new(), "2xx ACK is not the transaction's");
    sim.run_until(40.0);
    sim.layer.handle_response(sim.now, inbound_response(200, "INVITE", "z9hG4bKc"));
    sim.drain();
    assert_eq!(sim.events.len(), 2);
    assert_eq!(sim.layer.stats().stray_responses, 1);
}

fn server_invite(sim: &mut Sim, branch: &str) -> (ServerTx, InboundRequest) {
    let inbound = inbound_request(&request_text("INVITE", branch, 1));
    sim.layer.handle_request(sim.now, inbound.clone(), peer());
    sim.drain();
    let tx = match sim.events.last() {
        Some((_, TxEvent::Request { tx: Some(tx), .. })) => *tx,
        other => panic!("expected a request event, got {other:?}"),
    };
    (tx, inbound)
}

#[test]
fn server_invite_sends_100_and_retransmits_final_until_ack() {
    let mut sim = Sim::new();
    let (tx, inbound) = server_invite(&mut sim, "z9hG4bKs");
    assert_eq!(sim.sent_times("SIP/2.0 100 Trying"), [0.0]);
    // A retransmitted INVITE gets the last provisional again and is not passed up.
    sim.layer.handle_request(sim.now, inbound.clone(), peer());
    sim.drain();
    assert_eq!(sim.sent_times("SIP/2.0 100"), [0.0, 0.0]);
    assert_eq!(sim.events.len(), 1);

    let busy = response_to(&inbound, StatusCode::BusyHere, Some("s1"), None);
    sim.layer.send_response(sim.now, tx, busy).unwrap();
    sim.drain();
    sim.run_until(10.0);
    // Timer G: 0.5, 1, 2, 4, 4 s (§17.2.1).
    assert_eq!(sim.sent_times("SIP/2.0 486"), [0.0, 0.5, 1.5, 3.5, 7.5]);
    let ack = request_text("ACK", "z9hG4bKs", 1);
    sim.layer.handle_request(sim.now, inbound_request(&ack), peer());
    sim.drain();
    sim.run_until(20.0);
    assert_eq!(sim.sent_times("SIP/2.0 486").len(), 5, "the ACK stopped Timer G");
    assert_eq!(sim.events.len(), 1, "the ACK of a non-2xx is the transaction's");
    assert!(sim.layer.is_empty(), "Timer I (T4) ended it");
}

#[test]
fn timer_h_reports_a_missing_ack() {
    let mut sim = Sim::new();
    let (tx, inbound) = server_invite(&mut sim, "z9hG4bKh");
    sim.layer
        .send_response(sim.now, tx, response_to(&inbound, StatusCode::NotFound, Some("x"), None))
        .unwrap();
    sim.run_until(40.0);
    assert_eq!(sim.events.last(), Some(&(Duration::from_secs(32), TxEvent::AckTimeout { tx })));
    assert!(sim.layer.is_empty());
}

#[test]
fn server_invite_2xx_is_accepted_and_its_ack_goes_to_the_tu() {
    let mut sim = Sim::new();
    let (tx, inbound) = server_invite(&mut sim, "z9hG4bK2");
    sim.layer.send_response(sim.now, tx, response_to(&inbound, StatusCode::OK, Some("x"), None)).unwrap();
    // The TU may retransmit its 2xx through the Accepted transaction; INVITE retransmits are absorbed.
    sim.layer.send_response(sim.now, tx, response_to(&inbound, StatusCode::OK, Some("x"), None)).unwrap();
    sim.layer.handle_request(sim.now, inbound.clone(), peer());
    sim.drain();
    assert_eq!(sim.sent_times("SIP/2.0 200").len(), 2);
    // The 2xx ACK has its own branch: no transaction, delivered to the TU.
    sim.layer.handle_request(sim.now, inbound_request(&request_text("ACK", "z9hG4bKack", 1)), peer());
    sim.drain();
    assert!(matches!(sim.events.last(), Some((_, TxEvent::Request { tx: None, .. }))));
    assert!(matches!(
        sim.layer.send_response(sim.now, tx, response_to(&inbound, StatusCode::BusyHere, None, None)),
        Err(TxError::InvalidState { status: 486 })
    ));
    sim.run_until(40.0);
    assert!(sim.layer.is_empty(), "Timer L ended it");
}

#[test]
fn cancel_gets_200_and_the_invite_is_flagged() {
    let mut sim = Sim::new();
    let (tx, _) = server_invite(&mut sim, "z9hG4bKcan");
    sim.layer.handle_request(sim.now, inbound_request(&request_text("CANCEL", "z9hG4bKcan", 1)), peer());
    sim.drain();
    let last = sim.sent.last().unwrap().1.clone();
    assert!(last.starts_with("SIP/2.0 200 OK") && last.contains("CSeq: 1 CANCEL"), "{last}");
    assert_eq!(sim.events.last().map(|(_, e)| e.clone()), Some(TxEvent::Cancelled { tx }));

    // A CANCEL for nothing gets 481 (§9.2).
    sim.layer.handle_request(sim.now, inbound_request(&request_text("CANCEL", "z9hG4bKnone", 1)), peer());
    sim.drain();
    assert!(sim.sent.last().unwrap().1.starts_with("SIP/2.0 481"));
}

#[test]
fn server_non_invite_absorbs_and_repeats_its_final() {
    let mut sim = Sim::new();
    let inbound = inbound_request(&request_text("OPTIONS", "z9hG4bKn", 1));
    sim.layer.handle_request(sim.now, inbound.clone(), peer());
    sim.layer.handle_request(sim.now, inbound.clone(), peer());
    sim.drain();
    assert_eq!(sim.events.len(), 1);
    assert!(sim.sent.is_empty(), "nothing to repeat while Trying");
    let tx = ServerTx(1);
    sim.layer.send_response(sim.now, tx, response_to(&inbound, StatusCode::OK, Some("x"), None)).unwrap();
    sim.layer.handle_request(sim.now, inbound.clone(), peer());
    sim.drain();
    assert_eq!(sim.sent_times("SIP/2.0 200").len(), 2);
    assert_eq!(sim.layer.poll_timeout(), Some(sim.now + Duration::from_secs(32)), "Timer J");
    sim.run_until(40.0);
    assert!(sim.layer.is_empty());
}

#[test]
fn rfc2543_requests_match_without_a_branch_cookie() {
    let mut sim = Sim::new();
    let text = request_text("INVITE", "old-style-1", 1);
    sim.layer.handle_request(sim.now, inbound_request(&text), peer());
    sim.layer.handle_request(sim.now, inbound_request(&text), peer());
    sim.drain();
    assert_eq!(sim.events.len(), 1, "the retransmission matched");
    assert_eq!(sim.layer.len(), 1);
}

#[test]
fn bad_client_requests_are_refused() {
    let mut sim = Sim::new();
    assert_eq!(
        sim.layer.send_request(sim.now, request("ACK", "z9hG4bKx"), peer()),
        Err(TxError::AckNotTransactional)
    );
    assert_eq!(sim.layer.send_request(sim.now, request("BYE", "nocookie"), peer()), Err(TxError::NoBranch));
    sim.layer.send_request(sim.now, request("BYE", "z9hG4bKd"), peer()).unwrap();
    assert_eq!(
        sim.layer.send_request(sim.now, request("BYE", "z9hG4bKd"), peer()),
        Err(TxError::DuplicateBranch)
    );
}

#[test]
fn transport_error_ends_the_transaction() {
    let mut sim = Sim::new();
    let tx = sim.layer.send_request(sim.now, request("INVITE", "z9hG4bKe"), tcp_peer()).unwrap();
    sim.layer.transport_error(tx);
    sim.drain();
    assert_eq!(sim.events, [(Duration::ZERO, TxEvent::TransportError { tx })]);
    assert!(sim.layer.is_empty());
}

#[test]
#[allow(clippy::disallowed_methods)] // the origin of virtual time
fn a_request_over_1300_bytes_goes_over_tcp_with_a_tcp_via() {
    let now = Instant::now();
    let mut big = request("INVITE", "z9hG4bKbig");
    big.body = vec![b'v'; 1400];
    let mut layer = TransactionLayer::new(TimerConfig::default());
    layer.send_request(now, big.clone(), peer()).unwrap();
    let sent = layer.poll_transmit().unwrap();
    assert_eq!(sent.to.transport, Transport::Tcp);
    assert_eq!(sent.to.connection, None, "the transport finds or opens the connection");
    let text = String::from_utf8_lossy(&sent.bytes);
    assert!(text.contains("Via: SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bKbig"), "{text}");
    // Reliable now: no Timer A retransmission.
    layer.handle_timeout(now + Duration::from_millis(600));
    assert!(layer.poll_transmit().is_none());

    // A small one stays on UDP; and a layer told so keeps big ones there too.
    layer.send_request(now, request("OPTIONS", "z9hG4bKsmall"), peer()).unwrap();
    assert_eq!(layer.poll_transmit().unwrap().to.transport, Transport::Udp);
    let mut udp_only = TransactionLayer::new(TimerConfig::default()).without_tcp_fallback();
    big.headers.retain(|h| !matches!(h, Header::Via(_)));
    big.headers.push(Header::Via("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKbig2".into()));
    udp_only.send_request(now, big, peer()).unwrap();
    assert_eq!(udp_only.poll_transmit().unwrap().to.transport, Transport::Udp);
}

#[test]
#[allow(clippy::disallowed_methods)] // the origin of virtual time
fn a_big_request_whose_tcp_connection_is_refused_goes_again_over_udp_and_retransmits_there() {
    let now = Instant::now();
    let mut big = request("INVITE", "z9hG4bKbig");
    big.body = vec![b'v'; 1400];
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let tx = layer.send_request(now, big, peer()).unwrap();
    assert_eq!(layer.poll_transmit().unwrap().to.transport, Transport::Tcp);
    // A request that chose TCP itself stays there.
    let chosen = layer.send_request(now, request("OPTIONS", "z9hG4bKtcp"), tcp_peer()).unwrap();
    assert_eq!(layer.poll_transmit().unwrap().to.transport, Transport::Tcp);
    // Refused by some other address: nothing moves.
    assert_eq!(layer.stream_refused(now, "127.0.0.1:5999".parse().unwrap()), 0);

    let refused = now + Duration::from_millis(10);
    assert_eq!(layer.stream_refused(refused, peer().addr), 1);
    let sent = layer.poll_transmit().unwrap();
    assert_eq!(sent.to, peer(), "back to the UDP peer it was meant for");
    let text = String::from_utf8_lossy(&sent.bytes);
    assert!(text.contains("Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKbig"), "{text}");
    assert!(layer.poll_transmit().is_none(), "the OPTIONS that chose TCP is not resent");
    assert_eq!(layer.client_peer(tx), Some(peer()));
    assert_eq!(layer.client_peer(chosen), Some(tcp_peer()));
    let cancel_from = layer.client_request(tx).unwrap();
    assert!(request_bytes(cancel_from).starts_with(b"INVITE"));
    assert!(String::from_utf8_lossy(&request_bytes(cancel_from)).contains("SIP/2.0/UDP"));

    // Over UDP now: Timer A retransmits from T1 after the move, the same bytes.
    layer.handle_timeout(refused + Duration::from_millis(499));
    assert!(layer.poll_transmit().is_none());
    layer.handle_timeout(refused + Duration::from_millis(500));
    let again = layer.poll_transmit().unwrap();
    assert_eq!((again.to, &again.bytes), (sent.to, &sent.bytes));
    // A second refusal finds nothing left to move.
    assert_eq!(layer.stream_refused(refused, peer().addr), 0);

    // The next big request to that peer goes straight over UDP, for ten minutes.
    let mut next = request("INVITE", "z9hG4bKnext");
    next.body = vec![b'v'; 1400];
    layer.send_request(refused + Duration::from_secs(60), next, peer()).unwrap();
    while let Some(t) = layer.poll_transmit() {
        assert_eq!(t.to, peer(), "{}", String::from_utf8_lossy(&t.bytes));
    }
    let mut later = request("INVITE", "z9hG4bKlater");
    later.body = vec![b'v'; 1400];
    layer.send_request(refused + Duration::from_secs(601), later, peer()).unwrap();
    let tried = std::iter::from_fn(|| layer.poll_transmit()).last().unwrap();
    assert_eq!(tried.to.transport, Transport::Tcp, "TCP is tried again later");
}

#[test]
fn past_the_transaction_limit_a_request_gets_a_stateless_503_and_holds_nothing() {
    let mut sim = Sim::new();
    sim.layer = TransactionLayer::new(TimerConfig::default()).with_max_transactions(2);
    for (i, branch) in ["z9hG4bKa", "z9hG4bKb", "z9hG4bKc"].iter().enumerate() {
        let text = request_text("OPTIONS", branch, i as u32 + 1);
        sim.layer.handle_request(sim.now, inbound_request(&text), peer());
        sim.drain();
    }
    assert_eq!(sim.layer.len(), 2, "the third request made no transaction");
    assert_eq!(sim.events.len(), 2, "nor reached the TU");
    let busy: Vec<&String> = sim.sent.iter().map(|(_, m)| m).collect();
    assert_eq!(busy.len(), 1, "{busy:?}");
    assert!(busy[0].starts_with("SIP/2.0 503 "), "{}", busy[0]);
    assert!(busy[0].contains("Retry-After: 5\r\n"), "{}", busy[0]);
    assert!(busy[0].contains("branch=z9hG4bKc"));
    assert_eq!(sim.layer.stats().overloaded, 1);
}

/// Hands the layer an OPTIONS and answers it 200; returns the request.
fn answered_options(sim: &mut Sim, branch: &str) -> InboundRequest {
    answered_with(sim, branch, StatusCode::OK)
}

/// Hands the layer an OPTIONS and answers it `status`; returns the request.
fn answered_with(sim: &mut Sim, branch: &str, status: StatusCode) -> InboundRequest {
    let inbound = inbound_request(&request_text("OPTIONS", branch, 1));
    sim.layer.handle_request(sim.now, inbound.clone(), peer());
    sim.drain();
    let (_, TxEvent::Request { tx: Some(tx), .. }) = sim.events.pop().expect("reached the TU") else {
        panic!("a request with its transaction")
    };
    sim.layer.send_response(sim.now, tx, response_to(&inbound, status, None, None)).unwrap();
    sim.drain();
    inbound
}

#[test]
fn past_the_lingering_bound_challenges_go_before_answers_that_cannot_be_repeated() {
    let mut sim = Sim::new();
    sim.layer = TransactionLayer::new(TimerConfig::default()).with_max_transactions(2);
    let first = answered_options(&mut sim, "z9hG4bKok0");
    for n in 1..8 {
        answered_options(&mut sim, &format!("z9hG4bKok{n}"));
    }
    assert_eq!((sim.layer.lingering(), sim.layer.stats().retired_early), (8, 0));
    // Challenges past the bound end at once: a retransmission would only be challenged again.
    for n in 0..3 {
        answered_with(&mut sim, &format!("z9hG4bKch{n}"), StatusCode::Unauthorized);
    }
    assert_eq!((sim.layer.lingering(), sim.layer.stats().retired_early), (8, 3));
    // The oldest 200 is still absorbed and answered again.
    sim.sent.clear();
    sim.layer.handle_request(sim.now, first.clone(), peer());
    sim.drain();
    assert!(sim.events.is_empty(), "absorbed");
    assert!(sim.sent.iter().any(|(_, m)| m.starts_with("SIP/2.0 200")), "{:?}", sim.sent);
    // With no challenge left lingering, the next 200 ends the oldest one.
    answered_options(&mut sim, "z9hG4bKok8");
    assert_eq!(sim.layer.stats().retired_early, 4);
    sim.layer.handle_request(sim.now, first, peer());
    sim.drain();
    assert_eq!(sim.events.len(), 1, "the oldest 200's retransmission reaches the TU as new");
}

#[test]
fn answered_transactions_do_not_count_against_the_limit_and_the_oldest_go_past_theirs() {
    let mut sim = Sim::new();
    sim.layer = TransactionLayer::new(TimerConfig::default()).with_max_transactions(2);
    // Far more answered requests than the limit of 2: none is refused.
    let first = answered_options(&mut sim, "z9hG4bKold0");
    for n in 1..10 {
        answered_options(&mut sim, &format!("z9hG4bKold{n}"));
    }
    assert_eq!(sim.layer.stats().overloaded, 0);
    // At most 4 × 2 linger; the two oldest went early.
    assert_eq!((sim.layer.len(), sim.layer.lingering()), (8, 8));
    assert_eq!(sim.layer.stats().retired_early, 2);
    // A retransmission of a lingering one is absorbed and answered again …
    sim.sent.clear();
    sim.layer.handle_request(sim.now, inbound_request(&request_text("OPTIONS", "z9hG4bKold9", 1)), peer());
    sim.drain();
    assert!(sim.events.is_empty(), "absorbed");
    assert!(sim.sent.iter().any(|(_, m)| m.starts_with("SIP/2.0 200")), "{:?}", sim.sent);
    // … while the oldest's, retired, reaches the TU as new.
    sim.layer.handle_request(sim.now, first, peer());
    sim.drain();
    assert_eq!(sim.events.len(), 1);
    // With the retired one back and unanswered, one more fills the limit of 2: the next gets 503.
    sim.events.clear();
    sim.layer.handle_request(sim.now, inbound_request(&request_text("OPTIONS", "z9hG4bKnew1", 1)), peer());
    sim.layer.handle_request(sim.now, inbound_request(&request_text("OPTIONS", "z9hG4bKnew2", 1)), peer());
    sim.drain();
    assert_eq!(sim.layer.stats().overloaded, 1, "the third unanswered request is refused");
    // Timer J ends the rest; nothing is left counted.
    sim.run_until(40.0);
    assert_eq!(sim.layer.lingering(), 0);
    let left: usize = sim.layer.lingering.order.iter().map(VecDeque::len).sum();
    assert!(left <= 2, "{:?}", sim.layer.lingering.order);
}

#[test]
fn tables_grown_for_a_peak_give_their_memory_back() {
    let mut sim = Sim::new();
    for n in 0..2000 {
        let inbound = inbound_request(&request_text("OPTIONS", &format!("z9hG4bKpeak{n}"), 1));
        sim.layer.handle_request(sim.now, inbound.clone(), peer());
        sim.drain();
        let (_, TxEvent::Request { tx: Some(tx), .. }) = sim.events.pop().unwrap() else {
            panic!("a request")
        };
        sim.layer.send_response(sim.now, tx, response_to(&inbound, StatusCode::OK, None, None)).unwrap();
    }
    assert_eq!(sim.layer.len(), 2000);
    let peak = sim.layer.transactions.capacity() + sim.layer.keys.capacity();
    assert!(sim.layer.io.heap.capacity() >= 2000);
    sim.run_until(40.0);
    assert!(sim.layer.is_empty());
    let idle = sim.layer.transactions.capacity() + sim.layer.keys.capacity();
    assert!(idle <= 2 * 64 + 16, "{peak} slots at the peak, {idle} left once idle");
    assert!(sim.layer.io.heap.capacity() <= 128, "timer heap holds {}", sim.layer.io.heap.capacity());
}

#[test]
fn a_challenged_invite_once_acked_lingers_outside_the_limit() {
    let mut sim = Sim::new();
    sim.layer = TransactionLayer::new(TimerConfig::default()).with_max_transactions(2);
    // Every authenticated call begins with an INVITE answered 401 and ACKed: far more of them
    // than the limit, each absorbing ACK retransmissions for T4, refuse nothing.
    for n in 0..10 {
        let branch = format!("z9hG4bKinv{n}");
        let inbound = inbound_request(&request_text("INVITE", &branch, 1));
        sim.layer.handle_request(sim.now, inbound.clone(), peer());
        sim.drain();
        let (_, TxEvent::Request { tx: Some(tx), .. }) = sim.events.pop().expect("reached the TU") else {
            panic!("an INVITE with its transaction")
        };
        let challenge = response_to(&inbound, StatusCode::Unauthorized, Some("t1"), None);
        sim.layer.send_response(sim.now, tx, challenge).unwrap();
        sim.layer.handle_request(sim.now, inbound_request(&request_text("ACK", &branch, 1)), peer());
        sim.drain();
    }
    assert_eq!(sim.layer.stats().overloaded, 0);
    assert!(sim.events.is_empty(), "the ACKs of a non-2xx stay in their transactions");
    assert_eq!((sim.layer.len(), sim.layer.lingering()), (8, 8), "at most 4 × 2 linger");
    // Timer I (T4) ends them.
    sim.run_until(6.0);
    assert_eq!((sim.layer.len(), sim.layer.lingering()), (0, 0));
}
