//! Calls out of a room from the API: cascading two gateways into one conference, failures and
//! ring timeouts in call records, and no way for a SIP request from outside to reach a trunk.

use std::net::UdpSocket;
use std::time::Duration;

use e2e::baresip::{Baresip, PhoneOptions};
use e2e::room::{dial, gateway, joined, participants, phone, tones_heard, wait_for_record, API_TOKEN};
use e2e::{http_get, http_request, read_wav, wait_until, write_tone_wav, Gateway};
use mixer::tone::tone_share_db;
use serde_json::Value;

fn dial_out(gw: &Gateway, room: &str, body: &str) -> (u16, String) {
    http_request(gw.http, "POST", &format!("/api/v1/conferences/{room}/dial"), Some(API_TOKEN), Some(body))
        .unwrap()
}

#[test]
fn room_on_one_gateway_dials_a_room_on_another_over_tcp_and_the_two_become_one() {
    // B: room 2000, and an account for gateway A.
    let b = gateway("");
    b.admin(&["room", "add", "--number", "2000"]);
    b.admin(&["user", "add", "gateway-a", "--password", "cascade-secret"]);
    // A: room 1000 and a trunk to B with that account, over TCP.
    let a = gateway(&format!(
        "[[trunk]]\nname = \"b\"\nproxy = \"sip:{}\"\nusername = \"gateway-a\"\npassword = \"cascade-secret\"\n\
         register = false\ntransport = \"tcp\"\n",
        b.sip
    ));
    a.admin(&["room", "add", "--number", "1000"]);

    let mut on_a = phone(&a, "alice", 700.0, "PCMU/8000/1", &[]);
    let mut on_b = phone(&b, "bob", 1300.0, "PCMU/8000/1", &[]);
    dial(&mut on_a, &a, "1000");
    dial(&mut on_b, &b, "2000");

    let (status, body) = dial_out(&a, "1000", &format!(r#"{{"to": "sip:2000@{}", "trunk": "b"}}"#, b.sip));
    assert_eq!(status, 202, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"].as_u64().unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || joined(&a, "1000") == 2 && joined(&b, "2000") == 2),
        "not cascaded: A {:?}\nB {:?}\n{}\n{}",
        participants(&a, "1000"),
        participants(&b, "2000"),
        a.log(),
        b.log()
    );
    let (_, metrics) = http_get(a.http, "/metrics").unwrap();
    assert!(metrics.contains("gateway_sip_tcp_connections 1"), "signalling over TCP: {metrics}");
    let leg = participants(&a, "1000").into_iter().find(|p| p["id"] == id).unwrap();
    assert_eq!(leg["direction"], "outbound");
    assert_eq!(leg["state"], "joined");
    let b_side = participants(&b, "2000").into_iter().find(|p| p["user"] == "gateway-a");
    assert!(b_side.is_some(), "B sees A as its authenticated user");

    std::thread::sleep(Duration::from_secs(3));
    on_a.command("hangup", "").unwrap();
    on_b.command("hangup", "").unwrap();
    let heard_on_a = tones_heard(&on_a.recordings("dec.wav")[0], &[700.0, 1300.0], 1.5);
    let heard_on_b = tones_heard(&on_b.recordings("dec.wav")[0], &[700.0, 1300.0], 1.5);
    assert!(heard_on_a[1] > -10.0, "alice hears bob across the cascade: {heard_on_a:?}");
    assert!(heard_on_a[0] < -30.0, "alice does not hear herself back: {heard_on_a:?}");
    assert!(heard_on_b[0] > -10.0, "bob hears alice across the cascade: {heard_on_b:?}");
    assert!(heard_on_b[1] < -30.0, "bob does not hear himself back: {heard_on_b:?}");

    // Kicking the cascade leg on A ends B's side of it too.
    let (status, _) = http_request(
        a.http,
        "DELETE",
        &format!("/api/v1/conferences/1000/participants/{id}"),
        Some(API_TOKEN),
        None,
    )
    .unwrap();
    assert_eq!(status, 204);
    assert!(
        wait_until(Duration::from_secs(5), || participants(&b, "2000")
            .iter()
            .all(|p| p["user"] != "gateway-a")),
        "{:?}",
        participants(&b, "2000")
    );
}

#[test]
fn failures_and_ring_timeouts_end_in_records_and_bad_requests_are_refused() {
    let b = gateway("");
    b.admin(&["user", "add", "gateway-a", "--password", "cascade-secret"]);
    let a = gateway(&format!(
        "[[trunk]]\nname = \"b\"\nproxy = \"sip:{}\"\nusername = \"gateway-a\"\npassword = \"cascade-secret\"\n\
         register = false\n",
        b.sip
    ));
    a.admin(&["room", "add", "--number", "1000"]);

    // B has no room 9999: 404 comes back, after digest auth.
    let (status, body) = dial_out(&a, "1000", &format!(r#"{{"to": "sip:9999@{}", "trunk": "b"}}"#, b.sip));
    assert_eq!(status, 202, "{body}");
    let record = wait_for_record(&a, "404");
    assert_eq!(record["direction"], "outbound");
    assert_eq!(record["answered_at_ms"], Value::Null);

    // A phone that rings and never answers: CANCEL after the ring timeout.
    let mut ringing = Baresip::start(&PhoneOptions::default()).unwrap();
    ringing.add_account(&format!("<sip:ringing@{}>;regint=0", ringing.sip)).unwrap();
    let to = format!(r#"{{"to": "sip:ringing@{}", "ring_timeout_secs": 2}}"#, ringing.sip);
    let (status, body) = dial_out(&a, "1000", &to);
    assert_eq!(status, 202, "{body}");
    ringing.wait_event("CALL_INCOMING", 0, Duration::from_secs(5)).unwrap();
    assert!(
        wait_until(Duration::from_secs(2), || participants(&a, "1000")
            .iter()
            .any(|p| p["state"] == "ringing")),
        "{:?}",
        participants(&a, "1000")
    );
    wait_for_record(&a, "no-answer");
    ringing.wait_event("CALL_CLOSED", 0, Duration::from_secs(5)).unwrap();

    for (body, expected) in [
        (r#"{"to": "+15551234567"}"#, 400),
        (r#"{"to": "+15551234567", "trunk": "nope"}"#, 400),
        (r#"{"to": "sip:x@example.com"}"#, 400),
        (r#"{"too": "sip:1@127.0.0.1"}"#, 400),
    ] {
        let (status, text) = dial_out(&a, "1000", body);
        assert_eq!(status, expected, "{body}: {text}");
    }
    let (status, _) = dial_out(&a, "4040", r#"{"to": "sip:1@127.0.0.1"}"#);
    assert_eq!(status, 404, "unknown room");
    let (status, _) = http_request(
        a.http,
        "POST",
        "/api/v1/conferences/1000/dial",
        None,
        Some(r#"{"to": "sip:1@127.0.0.1"}"#),
    )
    .unwrap();
    assert_eq!(status, 401, "dialling out needs the token");
}

#[test]
fn no_sip_request_from_outside_reaches_a_trunk() {
    // The "carrier": a socket that records whatever the gateway sends it.
    let carrier = UdpSocket::bind("127.0.0.1:0").unwrap();
    carrier.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let gw = gateway(&format!(
        "[[trunk]]\nname = \"carrier\"\nproxy = \"sip:{}\"\nusername = \"+15550000000\"\npassword = \"p\"\n\
         register = false\n",
        carrier.local_addr().unwrap()
    ));
    // A stranger (no account) dials an outside number through the gateway.
    let mut stranger = Baresip::start(&PhoneOptions::default()).unwrap();
    stranger.add_account(&format!("<sip:stranger@{}>;regint=0", gw.sip)).unwrap();
    let from = stranger.events.len();
    stranger.command("dial", &format!("sip:+15559876543@{}", gw.sip)).unwrap();
    let closed = stranger.wait_event("CALL_CLOSED", from, Duration::from_secs(10)).unwrap();
    let reason = closed["param"].as_str().unwrap_or_default().to_string();
    assert!(reason.contains("401") || reason.contains("403") || reason.contains("404"), "{reason}");
    let mut buf = [0u8; 2048];
    let sent = carrier.recv_from(&mut buf).ok().map(|(n, _)| String::from_utf8_lossy(&buf[..n]).into_owned());
    assert_eq!(sent, None, "the gateway sent something to the trunk");
}

#[test]
fn calls_out_through_a_trunk_present_its_caller_id() {
    // The "carrier": a socket that reads the INVITE the gateway sends it.
    let carrier = UdpSocket::bind("127.0.0.1:0").unwrap();
    carrier.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let gw = gateway(&format!(
        "[[trunk]]\nname = \"carrier\"\nproxy = \"sip:{}\"\nusername = \"acct-9\"\ncaller_id = \"+15550001111\"\n\
         identity_header = \"pai\"\nregister = false\n",
        carrier.local_addr().unwrap()
    ));
    gw.admin(&["room", "add", "--number", "1000"]);
    let (status, body) =
        dial_out(&gw, "1000", r#"{"to": "+15557654321", "trunk": "carrier", "ring_timeout_secs": 1}"#);
    assert_eq!(status, 202, "{body}");
    let mut buf = [0u8; 4096];
    let (n, _) = carrier.recv_from(&mut buf).expect("an INVITE at the carrier");
    let invite = String::from_utf8_lossy(&buf[..n]).into_owned();
    // Over 1300 bytes with its video line, the INVITE tries TCP first (RFC 3261 §18.1.1);
    // this carrier takes only UDP, and the refused connection sends it here.
    assert!(invite.starts_with("INVITE ") && invite.contains("m=video "), "{n} bytes: {invite}");
    assert!(invite.contains("Via: SIP/2.0/UDP "), "{invite}");
    let expected_uri = format!("INVITE sip:+15557654321@{} SIP/2.0\r\n", carrier.local_addr().unwrap());
    assert!(invite.starts_with(&expected_uri), "{invite}");
    assert!(invite.contains("From: <sip:+15550001111@127.0.0.1"), "{invite}");
    assert!(invite.contains("P-Asserted-Identity: <sip:+15550001111@127.0.0.1"), "{invite}");
    assert!(invite.contains("m=audio "), "the INVITE carries our offer: {invite}");
    // Unanswered, it is retransmitted, then cancelled at the ring timeout with the top Via
    // it went with (§9.1), over the same UDP.
    let via = invite.lines().find(|l| l.starts_with("Via: ")).unwrap().to_string();
    let cancel = (0..10)
        .map_while(|_| {
            carrier.recv_from(&mut buf).ok().map(|(n, _)| String::from_utf8_lossy(&buf[..n]).into_owned())
        })
        .find(|m| m.starts_with("CANCEL "))
        .expect("a CANCEL at the ring timeout");
    assert!(cancel.lines().any(|l| l == via), "{via}\n{cancel}");
}

#[test]
fn early_media_from_the_far_end_plays_into_the_room_until_the_answer() {
    use std::io::BufRead;
    use std::time::Instant;

    e2e::require_program("python3");
    let gw = gateway("");
    gw.admin(&["room", "add", "--number", "1000"]);
    let mut listener = phone(&gw, "listener", 700.0, "PCMU/8000/1", &[]);
    dial(&mut listener, &gw, "1000");
    let joined_at = Instant::now();

    // The far end: 183 with SDP and a 1500 Hz tone for 3 s, then 200 and silence.
    let tone = gw.dir.path().join("early.wav");
    write_tone_wav(&tone, 8000, 1500.0, 30).unwrap();
    let port = e2e::free_port();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pjsua/early_callee.py");
    let mut callee = std::process::Command::new("python3")
        .arg(&script)
        .args([&port.to_string(), &tone.display().to_string(), "3", "30"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stdout = callee.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    // pjlib logs to stdout too: wait for our line.
    while lines.recv_timeout(Duration::from_secs(10)).expect("the callee starts") != "LISTENING" {}

    let (status, body) = dial_out(&gw, "1000", &format!(r#"{{"to": "sip:callee@127.0.0.1:{port}"}}"#));
    assert_eq!(status, 202, "{body}");
    let state = |gw: &Gateway| {
        participants(gw, "1000").iter().find(|p| p["direction"] == "outbound").map(|p| p["state"].clone())
    };
    assert!(
        wait_until(Duration::from_secs(5), || state(&gw) == Some("early".into())),
        "{:?}\n{}",
        participants(&gw, "1000"),
        gw.log()
    );
    let early_at = Instant::now();
    assert!(
        wait_until(Duration::from_secs(6), || state(&gw) == Some("joined".into())),
        "{:?}",
        participants(&gw, "1000")
    );
    let answered_at = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    listener.command("hangup", "").unwrap();
    let _ = callee.kill();
    let _ = callee.wait();

    // What the listener heard: the far end's tone between early media and the answer, and
    // not after it.
    let (rate, samples) = read_wav(&listener.recordings("dec.wav")[0]).unwrap();
    let at = |t: Instant| (t.duration_since(joined_at).as_secs_f64() * f64::from(rate)) as usize;
    let during = &samples[at(early_at) + rate as usize / 2..at(answered_at) - rate as usize / 4];
    let after_start = at(answered_at) + rate as usize / 2;
    let after = &samples[after_start..(after_start + rate as usize / 2).min(samples.len())];
    let heard_early = tone_share_db(during, rate, 1500.0);
    let heard_after = tone_share_db(after, rate, 1500.0);
    assert!(heard_early > -6.0, "early media not heard in the room: {heard_early:.1} dB");
    assert!(
        mixer::tone::power(after) < 1e4 || heard_after < -20.0,
        "the far end's tone went on after the answer: {heard_after:.1} dB"
    );
}
