//! Dialog creation from both sides, in-dialog requests and their checks.

use std::time::{Duration, Instant};

use super::*;
use crate::message::{parse, Inbound};

fn inbound_request(text: &str) -> InboundRequest {
    match parse(text.as_bytes()).unwrap() {
        Inbound::Request(r) => r,
        Inbound::Response(_) => panic!("not a request"),
    }
}

fn inbound_response(text: &str) -> InboundResponse {
    match parse(text.as_bytes()).unwrap() {
        Inbound::Response(r) => r,
        Inbound::Request(_) => panic!("not a response"),
    }
}

const INVITE: &str = "INVITE sip:1000@gw.example SIP/2.0\r\n\
    Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKinv\r\n\
    Record-Route: <sip:p2.example;lr>\r\n\
    Record-Route: <sip:p1.example;lr>\r\n\
    From: \"Alice\" <sip:alice@example.com>;tag=a1\r\n\
    To: <sip:1000@gw.example>\r\n\
    Call-ID: call-7\r\nCSeq: 10 INVITE\r\n\
    Contact: <sip:alice@10.0.0.5:5060>\r\nContent-Length: 0\r\n\r\n";

fn uas_dialog() -> Dialog {
    Dialog::uas(&inbound_request(INVITE), "g1", "sip:1000@10.0.0.9:5060", 100).unwrap()
}

#[test]
fn uas_dialog_follows_12_1_1() {
    let d = uas_dialog();
    assert_eq!(d.id, DialogId { call_id: "call-7".into(), local_tag: "g1".into(), remote_tag: "a1".into() });
    assert_eq!(d.remote_target().to_string(), "sip:alice@10.0.0.5:5060");
    assert_eq!(d.route_set(), ["<sip:p2.example;lr>", "<sip:p1.example;lr>"], "request order kept");
    assert_eq!(d.next_hop().to_string(), "sip:p2.example;lr");
}

#[test]
fn in_dialog_bye_from_the_uas() {
    let mut d = uas_dialog();
    let bye = d.request(Method::Bye, "SIP/2.0/UDP 10.0.0.9:5060", "z9hG4bKbye");
    let text = bye.to_string();
    assert!(text.starts_with("BYE sip:alice@10.0.0.5:5060 SIP/2.0\r\n"), "{text}");
    assert!(text.contains("Route: <sip:p2.example;lr>\r\nRoute: <sip:p1.example;lr>\r\n"), "{text}");
    assert!(text.contains("From: <sip:1000@gw.example>;tag=g1\r\n"), "{text}");
    assert!(text.contains("To: \"Alice\" <sip:alice@example.com>;tag=a1\r\n"), "{text}");
    assert!(text.contains("CSeq: 101 BYE\r\n") && text.contains("Call-ID: call-7\r\n"), "{text}");
    // It parses and belongs to the same dialog, seen from the other side.
    let parsed = inbound_request(&text);
    let theirs = DialogId::of_request(&parsed).unwrap();
    assert_eq!((theirs.local_tag.as_str(), theirs.remote_tag.as_str()), ("a1", "g1"));
}

#[test]
fn cseq_order_and_target_refresh() {
    let mut d = uas_dialog();
    let reinvite = |seq: u32, contact: &str| {
        inbound_request(
            &INVITE
                .replace("To: <sip:1000@gw.example>", "To: <sip:1000@gw.example>;tag=g1")
                .replace("CSeq: 10 INVITE", &format!("CSeq: {seq} INVITE"))
                .replace("sip:alice@10.0.0.5:5060>", &format!("{contact}>")),
        )
    };
    assert_eq!(
        d.on_request(&reinvite(10, "sip:alice@10.0.0.6")),
        Err(DialogError::CSeqOutOfOrder { got: 10, expected: 11 })
    );
    d.on_request(&reinvite(11, "sip:alice@10.0.0.6")).unwrap();
    assert_eq!(d.remote_target().to_string(), "sip:alice@10.0.0.6");
    // ACK carries the INVITE's number and is not an ordering violation.
    let ack =
        inbound_request(&INVITE.replace("INVITE sip", "ACK sip").replace("CSeq: 10 INVITE", "CSeq: 11 ACK"));
    d.on_request(&ack).unwrap();
}

#[test]
fn uac_dialog_reverses_the_route_set_and_acks_2xx() {
    let invite = inbound_request(INVITE).request;
    let ok = inbound_response(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKinv\r\n\
         Record-Route: <sip:p2.example;lr>, <sip:p1.example;lr>\r\n\
         From: \"Alice\" <sip:alice@example.com>;tag=a1\r\nTo: <sip:1000@gw.example>;tag=g1\r\n\
         Call-ID: call-7\r\nCSeq: 10 INVITE\r\nContact: <sip:1000@10.0.0.9:5060>\r\nContent-Length: 0\r\n\r\n",
    );
    let d = Dialog::uac(&invite, &ok, "sip:alice@10.0.0.5:5060").unwrap();
    assert_eq!(d.state, DialogState::Confirmed);
    assert_eq!(d.id.local_tag, "a1");
    assert_eq!(d.route_set(), ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]);
    let ack = d.ack(10, "SIP/2.0/UDP 10.0.0.5:5060", "z9hG4bKack").to_string();
    assert!(ack.starts_with("ACK sip:1000@10.0.0.9:5060 SIP/2.0\r\n"), "{ack}");
    assert!(ack.contains("CSeq: 10 ACK\r\n") && ack.contains("branch=z9hG4bKack"), "{ack}");
    assert!(!ack.contains("Contact:"), "ACK is no target refresh");
}

#[test]
fn strict_router_takes_the_request_uri() {
    let strict = INVITE.replace(
        "Record-Route: <sip:p2.example;lr>\r\nRecord-Route: <sip:p1.example;lr>\r\n",
        "Record-Route: <sip:strict.example>\r\n",
    );
    let mut d = Dialog::uas(&inbound_request(&strict), "g1", "sip:1000@10.0.0.9", 1).unwrap();
    let bye = d.request(Method::Bye, "SIP/2.0/UDP 10.0.0.9:5060", "z9hG4bKs").to_string();
    assert!(bye.starts_with("BYE sip:strict.example SIP/2.0\r\n"), "{bye}");
    assert!(bye.contains("Route: <sip:alice@10.0.0.5:5060>\r\n"), "{bye}");
}

#[test]
fn dialogs_need_tags_and_contacts() {
    let no_tag = INVITE.replace(";tag=a1", "");
    assert_eq!(Dialog::uas(&inbound_request(&no_tag), "g", "sip:x", 1).unwrap_err(), DialogError::NoTag);
    let no_contact = INVITE.replace("Contact: <sip:alice@10.0.0.5:5060>\r\n", "");
    assert_eq!(
        Dialog::uas(&inbound_request(&no_contact), "g", "sip:x", 1).unwrap_err(),
        DialogError::NoContact
    );
}

#[allow(clippy::disallowed_methods)] // the origin of virtual time
fn t0() -> Instant {
    Instant::now()
}

#[test]
fn ok_is_resent_until_acked_then_given_up_at_64_t1() {
    let t0 = t0();
    let (t1, t2) = (Duration::from_millis(500), Duration::from_secs(4));
    let mut ok = OkRetransmit::new(t0, t1, t2);
    let mut resent = Vec::new();
    while let Some(at) = ok.poll_timeout() {
        match ok.handle_timeout(at) {
            Some(OkAction::Resend) => resent.push((at - t0).as_secs_f64()),
            Some(OkAction::GiveUp) => {
                assert_eq!(at - t0, Duration::from_secs(32));
                break;
            }
            None => {}
        }
    }
    assert_eq!(&resent[..6], [0.5, 1.5, 3.5, 7.5, 11.5, 15.5]);
    let mut acked = OkRetransmit::new(t0, t1, t2);
    acked.ack();
    assert_eq!(acked.poll_timeout(), None);
}

#[test]
fn glare_delays_follow_14_1() {
    let mut rng = Rng::new(5);
    for _ in 0..1000 {
        let owner = glare_delay(true, &mut rng);
        assert!(owner >= Duration::from_millis(2100) && owner <= Duration::from_secs(4), "{owner:?}");
        assert!(glare_delay(false, &mut rng) <= Duration::from_secs(2));
    }
}
