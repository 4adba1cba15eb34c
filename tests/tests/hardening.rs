//! What the gateway defends against, tried as an attacker and as a crash would: strangers'
//! RTP aimed at a live call, reads of the API without a token, join pages on foreign sites,
//! and a `kill -9` in the middle of a call.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use e2e::baresip::{Baresip, PhoneOptions};
use e2e::room::{dial, gateway, joined, participant, participants, phone, tones_heard, PHONE_PASSWORD};
use e2e::sipua::{self, ToneStream};
use e2e::{http_request, metric, wait_until, write_tone_wav, Gateway, API_TOKEN, READ_TOKEN};
use serde_json::Value;
use tokio::io::AsyncReadExt;

/// The gateway's RTP port range, from its config file.
fn rtp_range(gw: &Gateway) -> (u16, u16) {
    let config = std::fs::read_to_string(gw.dir.path().join("gateway.toml")).unwrap();
    let key = |name: &str| -> u16 {
        let line = config.lines().find(|l| l.starts_with(name)).unwrap();
        line.split('=').nth(1).unwrap().trim().parse().unwrap()
    };
    (key("port_min"), key("port_max"))
}

#[test]
fn a_stranger_sending_rtp_to_a_live_call_hears_nothing_and_is_not_heard() {
    let gw = gateway("");
    gw.admin(&["room", "add", "--number", "3000"]);
    let mut alice = phone(&gw, "alice", 500.0, "PCMU/8000/1", &[]);
    let mut bob = phone(&gw, "bob", 1100.0, "PCMU/8000/1", &[]);
    dial(&mut alice, &gw, "3000");
    dial(&mut bob, &gw, "3000");
    assert!(wait_until(Duration::from_secs(10), || joined(&gw, "3000") == 2), "{}", gw.log());
    // Let both phones' sources be learnt before the stranger starts.
    std::thread::sleep(Duration::from_secs(1));

    // The stranger scans the whole RTP range: a well-formed PCMU stream of a 1700 Hz tone,
    // sequential packets of one SSRC per port, and RTCP receiver reports beside each.
    let (min, max) = rtp_range(&gw);
    let rogue = UdpSocket::bind("127.0.0.1:0").unwrap();
    rogue.set_nonblocking(true).unwrap();
    let mut streams: Vec<(u16, ToneStream)> = (min..=max)
        .step_by(2)
        .map(|port| (port, ToneStream::new(0x5eed_0000 + u32::from(port), 1700.0)))
        .collect();
    let rtcp_rr = [0x80u8, 201, 0, 1, 0xde, 0xad, 0xbe, 0xef];
    let start = Instant::now();
    let mut received = 0usize;
    let mut ticks = 0u32;
    let mut buf = [0u8; 2048];
    while start.elapsed() < Duration::from_secs(4) {
        if Instant::now() >= start + Duration::from_millis(20 * u64::from(ticks)) {
            ticks += 1;
            for (port, stream) in &mut streams {
                let _ = rogue.send_to(&stream.next_packet(), ("127.0.0.1", *port));
                let _ = rogue.send_to(&rtcp_rr, ("127.0.0.1", *port + 1));
            }
        }
        while let Ok((n, from)) = rogue.recv_from(&mut buf) {
            received += 1;
            if received < 5 {
                eprintln!("rogue got {n} bytes from {from}: {:02x?}", &buf[..n.min(16)]);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let alice_view = participant(&gw, "3000", "alice");
    alice.command("hangup", "").unwrap();
    bob.command("hangup", "").unwrap();

    assert_eq!(received, 0, "the stranger received the room's media\n{}", gw.log());
    for (who, phone, own, other) in [("alice", &alice, 500.0, 1100.0), ("bob", &bob, 1100.0, 500.0)] {
        let recording = phone.recordings("dec.wav");
        assert_eq!(recording.len(), 1, "{}", phone.log());
        let heard = tones_heard(&recording[0], &[other, 1700.0, own], 3.0);
        assert!(heard[0] > -10.0, "{who} no longer hears the other phone: {heard:?}");
        assert!(heard[1] < -30.0, "{who} hears the stranger's tone: {heard:?}");
    }
    // The API shows what was dropped, and so do the metrics.
    let wait =
        wait_until(Duration::from_secs(3), || metric(&gw, "gateway_rtp_foreign_packets_total") > 100.0);
    assert!(wait, "foreign packets counted: {}", metric(&gw, "gateway_rtp_foreign_packets_total"));
    assert!(alice_view["foreign_packets"].as_u64().unwrap_or(0) > 0, "{alice_view}");
}

#[test]
fn a_phone_that_really_moves_is_followed_once_its_old_address_is_silent() {
    let gw = gateway("");
    gw.admin(&["room", "add", "--number", "3000"]);
    gw.admin(&["user", "add", "mover", "--password", PHONE_PASSWORD]);
    let mut listener = phone(&gw, "listener", 1100.0, "PCMU/8000/1", &[]);
    dial(&mut listener, &gw, "3000");

    let old = UdpSocket::bind("127.0.0.1:0").unwrap();
    let call = sipua::call(gw.sip, "mover", PHONE_PASSWORD, "3000", old.local_addr().unwrap()).unwrap();
    assert!(wait_until(Duration::from_secs(10), || joined(&gw, "3000") == 2), "{}", gw.log());
    let mut tone = ToneStream::new(0x1234_5678, 1500.0);
    let heard_old = tone.play(&old, call.gateway_rtp, Duration::from_secs(2));
    assert!(heard_old.len() > 20, "the room's mix reaches the phone: {} packets", heard_old.len());

    // The phone moves (a new NAT binding, Wi-Fi to LTE): same stream, new address; the old
    // one falls silent. Within the relearn time the mix still goes to the old address.
    let new = UdpSocket::bind("127.0.0.1:0").unwrap();
    tone.play(&new, call.gateway_rtp, Duration::from_secs(3));
    old.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    while old.recv(&mut buf).is_ok() {}
    let heard_new = tone.play(&new, call.gateway_rtp, Duration::from_secs(2));
    let mut after = 0;
    while old.recv(&mut buf).is_ok() {
        after += 1;
    }
    assert!(heard_new.len() > 20, "the mix follows the phone to its new address: {}", heard_new.len());
    assert_eq!(after, 0, "nothing goes to the old address any more");
    listener.command("hangup", "").unwrap();
    let recording = listener.recordings("dec.wav");
    let heard = tones_heard(&recording[0], &[1500.0], 1.5);
    assert!(heard[0] > -10.0, "the room hears the moved phone: {heard:?}");
    call.hang_up().unwrap();
}

#[test]
fn the_api_needs_a_token_and_only_the_admin_token_sees_pins() {
    let gw = gateway("");
    gw.admin(&["room", "add", "--number", "4000", "--pin", "2468", "--moderator-pin", "1357"]);
    for path in [
        "/api/v1/rooms",
        "/api/v1/rooms/4000",
        "/api/v1/conferences",
        "/api/v1/call-records",
        "/api/v1/trunks",
    ] {
        let (status, body) = http_request(gw.http, "GET", path, None, None).unwrap();
        assert_eq!(status, 401, "{path} without a token: {body}");
        assert!(!body.contains("2468"));
        let (status, _) = http_request(gw.http, "GET", path, Some("not-the-token-at-all"), None).unwrap();
        assert_eq!(status, 401, "{path} with a wrong token");
        let (status, body) = http_request(gw.http, "GET", path, Some(READ_TOKEN), None).unwrap();
        assert_eq!(status, 200, "{path} with the read token: {body}");
        assert!(
            !body.contains("2468") && !body.contains("1357"),
            "{path} shows a PIN to the read token: {body}"
        );
    }
    let (_, body) = http_request(gw.http, "GET", "/api/v1/rooms/4000", Some(READ_TOKEN), None).unwrap();
    let room: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (room["has_pin"].clone(), room["has_moderator_pin"].clone()),
        (Value::Bool(true), Value::Bool(true))
    );
    let (_, body) = http_request(gw.http, "GET", "/api/v1/rooms/4000", Some(API_TOKEN), None).unwrap();
    let room: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((room["pin"].as_str(), room["moderator_pin"].as_str()), (Some("2468"), Some("1357")));
    // The read token changes nothing.
    let (status, _) =
        http_request(gw.http, "PATCH", "/api/v1/rooms/4000", Some(READ_TOKEN), Some(r#"{"pin": null}"#))
            .unwrap();
    assert_eq!(status, 403);
    let (status, _) = http_request(gw.http, "DELETE", "/api/v1/rooms/4000", Some(READ_TOKEN), None).unwrap();
    assert_eq!(status, 403);
    // Health, metrics and the join page stay open.
    for path in ["/healthz", "/metrics", "/", "/join/4000", "/join.js"] {
        let (status, _) = http_request(gw.http, "GET", path, None, None).unwrap();
        assert_eq!(status, 200, "{path}");
    }
}

#[test]
fn metrics_may_take_their_own_token() {
    let gw = Gateway::start_with("", "metrics_token = \"metrics-token-0123456789\"\n").unwrap();
    let (status, _) = http_request(gw.http, "GET", "/metrics", None, None).unwrap();
    assert_eq!(status, 401);
    let (status, _) = http_request(gw.http, "GET", "/metrics", Some(READ_TOKEN), None).unwrap();
    assert_eq!(status, 401, "the read token is not the metrics token");
    for token in ["metrics-token-0123456789", API_TOKEN] {
        let (status, body) = http_request(gw.http, "GET", "/metrics", Some(token), None).unwrap();
        assert_eq!(status, 200);
        assert!(body.contains("gateway_build_info"));
    }
}

#[test]
fn a_call_in_progress_when_the_process_is_killed_is_recorded_as_lost() {
    let mut gw = gateway("");
    gw.admin(&["room", "add", "--number", "3000"]);
    let mut alice = phone(&gw, "alice", 500.0, "PCMU/8000/1", &[]);
    dial(&mut alice, &gw, "3000");
    assert!(wait_until(Duration::from_secs(10), || joined(&gw, "3000") == 1), "{}", gw.log());
    // The record is there while the call goes on.
    let records = e2e::room::call_records(&gw);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["cause"], "in-progress");
    assert_eq!(records[0]["ended_at_ms"], Value::Null);
    let answered = records[0]["answered_at_ms"].as_i64().unwrap();

    gw.kill();
    let killed_at = now_ms();
    gw.restart().unwrap();
    let records = e2e::room::call_records(&gw);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["cause"], "lost", "{records:?}");
    let ended = records[0]["ended_at_ms"].as_i64().unwrap();
    // Ended when the process was last seen alive: at the answer or after, not after the kill.
    assert!(ended >= answered && ended <= killed_at, "{ended} not in {answered}..={killed_at}");
    assert!(gw.log().contains("closed as lost"), "{}", gw.log());
    alice.command("hangup", "").unwrap();
    let _ = participants(&gw, "3000");
}

#[test]
fn refused_calls_get_a_record() {
    let gw = gateway("");
    gw.admin(&["room", "add", "--number", "3000", "--max-participants", "1"]);
    let mut alice = phone(&gw, "alice", 500.0, "PCMU/8000/1", &[]);
    let mut bob = phone(&gw, "bob", 1100.0, "PCMU/8000/1", &[]);
    dial(&mut alice, &gw, "3000");
    let from = bob.events.len();
    bob.command("dial", &format!("sip:3000@{}", gw.sip)).unwrap();
    bob.wait_event("CALL_CLOSED", from, Duration::from_secs(10)).unwrap();
    let from = bob.events.len();
    bob.command("dial", &format!("sip:9999@{}", gw.sip)).unwrap();
    bob.wait_event("CALL_CLOSED", from, Duration::from_secs(10)).unwrap();
    let found = wait_until(Duration::from_secs(5), || {
        let records = e2e::room::call_records(&gw);
        ["486", "404"].iter().all(|cause| records.iter().any(|r| r["cause"] == *cause))
    });
    assert!(found, "{:?}", e2e::room::call_records(&gw));
    let records = e2e::room::call_records(&gw);
    let busy = records.iter().find(|r| r["cause"] == "486").unwrap();
    assert_eq!(busy["room_number"], "3000");
    assert!(busy["from_uri"].as_str().unwrap().starts_with("sip:bob@"), "{busy}");
    alice.command("hangup", "").unwrap();
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A phone registered over `transport` (`udp` or `tcp`) sending a tone, recording what it hears.
fn phone_over(gw: &Gateway, user: &str, frequency: f64, transport: &str) -> Baresip {
    let wav = gw.dir.path().join(format!("{user}.wav"));
    write_tone_wav(&wav, 8000, frequency, 120).unwrap();
    gw.admin(&["user", "add", user, "--password", PHONE_PASSWORD]);
    let mut phone = Baresip::start(&PhoneOptions {
        audio_source: Some(wav),
        extra_config: vec!["ausrc_srate 8000".into(), "ausrc_channels 1".into()],
        record: true,
        ip: None,
    })
    .unwrap();
    phone
        .add_account(&format!(
            "<sip:{user}@{};transport={transport}>;auth_pass={PHONE_PASSWORD};regint=600;audio_codecs=PCMU/8000/1",
            gw.sip
        ))
        .unwrap();
    phone.wait_event("REGISTER_OK", 0, Duration::from_secs(10)).unwrap();
    phone
}

#[test]
fn two_thousand_idle_tcp_connections_do_not_stop_new_calls_over_udp_or_tcp() {
    let gw = gateway("");
    gw.admin(&["room", "add", "--number", "3000"]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // 2,000 connections that never say anything, from 63 loopback addresses (32 each, the
    // per-source limit), held open.
    let idle: Vec<tokio::net::TcpStream> = runtime.block_on(async {
        let mut idle = Vec::new();
        for i in 0..2000u32 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::from(([127, 0, 1, 1 + (i / 32) as u8], 0))).unwrap();
            idle.push(socket.connect(gw.sip).await.unwrap());
        }
        idle
    });
    let open = wait_until(Duration::from_secs(10), || metric(&gw, "gateway_sip_tcp_connections") >= 2000.0);
    assert!(open, "the gateway holds them: {}", metric(&gw, "gateway_sip_tcp_connections"));
    // One more from an address that has its 32: closed at once.
    let refused = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from(([127, 0, 1, 1], 0))).unwrap();
        let mut stream = socket.connect(gw.sip).await.unwrap();
        let mut byte = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await
    });
    assert!(matches!(refused, Ok(Ok(0)) | Ok(Err(_))), "the 33rd connection is closed: {refused:?}");
    assert!(metric(&gw, "gateway_sip_connections_refused_total") >= 1.0);

    let mut over_udp = phone_over(&gw, "alice", 500.0, "udp");
    let mut over_tcp = phone_over(&gw, "bob", 1100.0, "tcp");
    for phone in [&mut over_udp, &mut over_tcp] {
        let from = phone.events.len();
        phone.command("dial", &format!("sip:3000@{}", gw.sip)).unwrap();
        phone.wait_event("CALL_ESTABLISHED", from, Duration::from_secs(10)).unwrap();
    }
    assert!(wait_until(Duration::from_secs(10), || joined(&gw, "3000") == 2), "{}", gw.log());
    std::thread::sleep(Duration::from_secs(2));
    over_udp.command("hangup", "").unwrap();
    over_tcp.command("hangup", "").unwrap();
    for (phone, other) in [(&over_udp, 1100.0), (&over_tcp, 500.0)] {
        let heard = tones_heard(&phone.recordings("dec.wav")[0], &[other], 1.2);
        assert!(heard[0] > -10.0, "{heard:?}");
    }
    drop(idle);
}

#[test]
fn a_flood_of_unauthenticated_invites_does_not_keep_a_registered_phone_from_calling() {
    let gw = gateway("");
    gw.admin(&["room", "add", "--number", "3000"]);
    let mut alice = phone(&gw, "alice", 500.0, "PCMU/8000/1", &[]);
    // From another address, 20,000 INVITEs a second for 6 seconds (paced, so the flood tests
    // the gateway, not the machine's other tests).
    let flooder = UdpSocket::bind("127.0.0.2:0").unwrap();
    let target = gw.sip;
    let flood = std::thread::spawn(move || {
        let local = flooder.local_addr().unwrap();
        let start = Instant::now();
        let mut sent = 0u64;
        while start.elapsed() < Duration::from_secs(6) && sent < 500_000 {
            let invite = format!(
                "INVITE sip:3000@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKflood{sent}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:mallory@{target}>;tag=f{sent}\r\nTo: <sip:3000@{target}>\r\n\
                 Call-ID: flood-{sent}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
            );
            let _ = flooder.send_to(invite.as_bytes(), target);
            sent += 1;
            let due = start + Duration::from_micros(sent * 50);
            if let Some(ahead) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(ahead);
            }
        }
        flooder.set_nonblocking(true).unwrap();
        let mut answered = 0u64;
        let mut buf = [0u8; 4096];
        while flooder.recv(&mut buf).is_ok() {
            answered += 1;
        }
        (sent, answered)
    });
    std::thread::sleep(Duration::from_secs(1));
    dial(&mut alice, &gw, "3000");
    assert!(wait_until(Duration::from_secs(5), || joined(&gw, "3000") == 1), "{}", gw.log());
    let (sent, answered) = flood.join().unwrap();
    alice.command("hangup", "").unwrap();
    assert!(sent > 10_000, "a flood: {sent} INVITEs");
    let dropped = metric(&gw, "gateway_sip_rate_limited_total");
    assert!(dropped > 10_000.0, "{dropped} of {sent} dropped unparsed");
    // 100 Trying and 401 for what got through: a few hundred at most, not one per INVITE.
    assert!(answered < 2_000, "{answered} responses to {sent} INVITEs");
}

#[test]
fn a_call_left_on_hold_is_ended_after_the_hold_timeout() {
    let gw = gateway("hold_timeout_secs = 2\n");
    gw.admin(&["room", "add", "--number", "3000"]);
    gw.admin(&["user", "add", "holder", "--password", PHONE_PASSWORD]);
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut call = sipua::call(gw.sip, "holder", PHONE_PASSWORD, "3000", rtp.local_addr().unwrap()).unwrap();
    assert!(wait_until(Duration::from_secs(10), || joined(&gw, "3000") == 1), "{}", gw.log());
    call.hold(rtp.local_addr().unwrap()).unwrap();
    // On hold no RTP is due, so the RTP timeout never fires; the hold timeout does.
    assert!(call.wait_for_bye(Duration::from_secs(10)), "no BYE for the held call\n{}", gw.log());
    let record = e2e::room::wait_for_record(&gw, "hold-timeout");
    assert_eq!(record["room_number"], "3000");
}

#[test]
fn an_http_client_that_never_finishes_its_request_is_disconnected() {
    use std::io::{Read, Write};
    let gw = gateway("");
    let mut slow = std::net::TcpStream::connect(gw.http).unwrap();
    slow.write_all(b"GET /api/v1/rooms HTTP/1.1\r\nHost: x\r\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let closed = matches!(slow.read(&mut buf), Ok(0) | Err(_));
    assert!(closed, "the connection stays open");
    assert!(started.elapsed() < Duration::from_secs(25), "closed by the header deadline, not the test's");
}
