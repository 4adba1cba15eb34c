//! A whole call, INVITE / 180 / 200 / ACK / BYE / 200, between two sip-stack endpoints over a
//! simulated network with 20 % loss, duplication and reordering, in virtual time. The UAS
//! resends its 200 until the ACK arrives (RFC 3261 §13.3.1.4) and the UAC ACKs every copy; the
//! call completes for every seed.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{addr, lossy, Harness, A, B};
use rsip::{Method, Request, StatusCode};
use sip_stack::dialog::{Dialog, OkAction, OkRetransmit};
use sip_stack::message::InboundRequest;
use sip_stack::response::response_to;
use sip_stack::rng::Rng;
use sip_stack::sim::Conditions;
use sip_stack::transaction::{ClientTx, TxEvent};
use sip_stack::transport::Peer;

#[derive(Debug, Default)]
struct Outcome {
    completed_after: Option<Duration>,
    ok_resent: u32,
    acks_sent: u32,
    ack_reached_uas: bool,
}

fn invite(rng: &mut Rng) -> Request {
    let text = format!(
        "INVITE sip:1000@{B} SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch={}\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@{A}>;tag=a1\r\nTo: <sip:1000@{B}>\r\nCall-ID: call-{}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:alice@{A}>\r\nContent-Length: 0\r\n\r\n",
        rng.branch(),
        rng.token()
    );
    Request::try_from(text.as_str()).unwrap()
}

fn run(seed: u64, conditions: Conditions) -> Outcome {
    let mut h = Harness::new(seed, conditions);
    let mut rng = Rng::new(seed);
    let mut out = Outcome::default();
    let via_a = format!("SIP/2.0/UDP {A}");
    let to_b = Peer::udp(addr(B));

    // Caller (A).
    let invite = invite(&mut rng);
    let invite_tx = h.a.send_request(h.now, invite.clone(), to_b).unwrap();
    let mut uac: Option<(Dialog, Bytes)> = None;
    let mut bye_tx: Option<ClientTx> = None;
    // Callee (B).
    let mut uas: Option<Dialog> = None;
    let mut ok: Option<(Bytes, OkRetransmit)> = None;

    while h.elapsed() < Duration::from_secs(120) {
        while let Some(event) = h.a.poll_event() {
            match event {
                TxEvent::Response { tx, response }
                    if tx == invite_tx && response.response.status_code.code() == 200 =>
                {
                    // The first 200 makes the dialog; every copy gets the same ACK again.
                    let (dialog, ack) = uac.get_or_insert_with(|| {
                        let dialog = Dialog::uac(&invite, &response, &format!("sip:alice@{A}")).unwrap();
                        let ack = Bytes::from(dialog.ack(1, &via_a, &rng.branch()).to_string());
                        (dialog, ack)
                    });
                    h.a.send_stateless(to_b, ack.clone());
                    out.acks_sent += 1;
                    if bye_tx.is_none() {
                        let bye = dialog.request(Method::Bye, &via_a, &rng.branch());
                        bye_tx = Some(h.a.send_request(h.now, bye, to_b).unwrap());
                    }
                }
                TxEvent::Response { tx, response }
                    if Some(tx) == bye_tx && response.response.status_code.code() == 200 =>
                {
                    out.completed_after = Some(h.elapsed());
                    return out;
                }
                TxEvent::Timeout { .. } | TxEvent::TransportError { .. } => return out,
                _ => {}
            }
        }
        while let Some(event) = h.b.poll_event() {
            let TxEvent::Request { tx, request, .. } = event else { continue };
            match (request.request.method, tx) {
                (Method::Invite, Some(tx)) => {
                    h.b.send_response(
                        h.now,
                        tx,
                        response_to(&request, StatusCode::Ringing, Some("b1"), None),
                    )
                    .unwrap();
                    let mut answer = response_to(&request, StatusCode::OK, Some("b1"), None);
                    sip_stack::response::push_header(
                        &mut answer,
                        rsip::Header::Contact(format!("<sip:1000@{B}>").into()),
                    );
                    ok = Some((
                        Bytes::from(answer.to_string()),
                        OkRetransmit::new(h.now, h.b.config().t1, h.b.config().t2),
                    ));
                    h.b.send_response(h.now, tx, answer).unwrap();
                    uas = Some(Dialog::uas(&request, "b1", &format!("sip:1000@{B}"), 1).unwrap());
                }
                (Method::Ack, None) => {
                    out.ack_reached_uas = true;
                    if let Some((_, retransmit)) = ok.as_mut() {
                        retransmit.ack();
                    }
                    in_dialog(&mut uas, &request);
                }
                (Method::Bye, Some(tx)) => {
                    in_dialog(&mut uas, &request);
                    h.b.send_response(h.now, tx, response_to(&request, StatusCode::OK, None, None)).unwrap();
                }
                _ => {}
            }
        }
        if h.step_network() {
            continue;
        }
        let ok_timeout = ok.as_ref().and_then(|(_, r)| r.poll_timeout());
        if !h.advance(&[ok_timeout]) {
            break;
        }
        if let Some((bytes, retransmit)) = ok.as_mut() {
            match retransmit.handle_timeout(h.now) {
                Some(OkAction::Resend) => {
                    h.b.send_stateless(Peer::udp(addr(A)), bytes.clone());
                    out.ok_resent += 1;
                }
                Some(OkAction::GiveUp) => return out,
                None => {}
            }
        }
    }
    out
}

fn in_dialog(uas: &mut Option<Dialog>, request: &InboundRequest) {
    let dialog = uas.as_mut().expect("in-dialog request after the INVITE");
    dialog.on_request(request).expect("in order");
}

#[test]
fn invite_ack_bye_completes_at_20_percent_loss() {
    let (mut resent, mut acks) = (0, 0);
    let mut slowest = Duration::ZERO;
    for seed in 0..200 {
        let outcome = run(seed, lossy());
        let took = outcome
            .completed_after
            .unwrap_or_else(|| panic!("seed {seed}: call did not complete: {outcome:?}"));
        slowest = slowest.max(took);
        resent += outcome.ok_resent;
        acks += outcome.acks_sent;
    }
    assert!(resent > 0, "some 200s were lost and resent by the UAS");
    assert!(acks > 200, "every copy of the 200 that arrived was ACKed");
    assert!(slowest < Duration::from_secs(32), "slowest call took {slowest:?}");
}

#[test]
fn without_loss_nothing_is_resent() {
    let clean = Conditions { loss: 0.0, duplication: 0.0, ..lossy() };
    let outcome = run(1, clean);
    assert!(outcome.completed_after.is_some() && outcome.ack_reached_uas, "{outcome:?}");
    assert_eq!((outcome.ok_resent, outcome.acks_sent), (0, 1));
}
