//! Desk phones in a conference: baresip phones registered with digest auth dial a room, enter
//! the PIN, and hear each other (and never themselves) through the gateway's mixer.

use std::path::Path;
use std::time::Duration;

use e2e::baresip::{Baresip, PhoneOptions};
use e2e::room::{
    dial, gateway, joined, participant, participants, phone, phone_playing, tones_heard, wait_for_record,
    API_TOKEN, PHONE_PASSWORD,
};
use e2e::{
    cli, http_get, http_request, metric, read_wav, wait_until, write_sine_wav, write_tone_wav, Gateway,
};
use mixer::tone::tone_share_db;
use serde_json::Value;

/// Four phones, four codecs (the PCMA one with 30 ms packets): the mixer transcodes between
/// them.
const CODECS: [&str; 4] = ["PCMU/8000/1", "G722/16000/1", "PCMA/8000/1;ptime=30", "opus/48000/2"];

#[test]
fn four_phones_with_pin_each_hear_the_other_three_and_never_themselves() {
    four_phones_in_room_1000("");
}

#[test]
fn four_phones_in_a_48k_mix() {
    four_phones_in_room_1000("[conference]\nmix_rate = 48000\n");
}

fn four_phones_in_room_1000(extra_config: &str) {
    let gw = gateway(extra_config);
    gw.admin(&["room", "add", "--number", "1000", "--pin", "4321"]);
    let tones = [500.0, 1100.0, 1700.0, 2300.0];
    let mut phones: Vec<Baresip> = tones
        .iter()
        .enumerate()
        .map(|(i, &f)| phone(&gw, &format!("user{i}"), f, CODECS[i], &["module opus.so"]))
        .collect();
    for p in &mut phones {
        dial(p, &gw, "1000");
        p.command("sndcode", "4321#").unwrap();
    }
    assert!(
        wait_until(Duration::from_secs(15), || joined(&gw, "1000") == 4),
        "not all joined: {}\n{}",
        Value::from(participants(&gw, "1000")),
        gw.log()
    );
    // Three seconds of conversation, then everyone hangs up.
    std::thread::sleep(Duration::from_secs(3));
    for p in &mut phones {
        p.command("hangup", "").unwrap();
    }
    let heard: Vec<Vec<f64>> = phones
        .iter()
        .map(|p| {
            let recording = p.recordings("dec.wav");
            assert_eq!(recording.len(), 1, "{:?}\n{}", recording, p.log());
            tones_heard(&recording[0], &tones, 2.0)
        })
        .collect();
    for (i, shares) in heard.iter().enumerate() {
        for (j, share) in shares.iter().enumerate() {
            if i == j {
                assert!(*share < -30.0, "phone {i} hears its own tone at {share:.1} dB: {heard:?}");
            } else {
                assert!(*share > -10.0, "phone {i} misses phone {j}'s tone ({share:.1} dB): {heard:?}");
            }
        }
    }
}

/// Two rooms on a gateway with two media workers: each room lives on its own worker, and each
/// phone hears the other one in its room and nobody from the other room.
#[test]
fn two_rooms_on_two_media_workers_each_hear_their_own_room_only() {
    let gw = gateway("workers = 2\n");
    gw.admin(&["room", "add", "--number", "1000"]);
    gw.admin(&["room", "add", "--number", "2000"]);
    let tones = [500.0, 1100.0, 1700.0, 2300.0];
    let rooms = ["1000", "1000", "2000", "2000"];
    let mut phones: Vec<Baresip> = tones
        .iter()
        .enumerate()
        .map(|(i, &f)| phone(&gw, &format!("user{i}"), f, "PCMU/8000/1", &[]))
        .collect();
    for (p, room) in phones.iter_mut().zip(rooms) {
        dial(p, &gw, room);
    }
    let worker_legs = || {
        [
            metric(&gw, "gateway_media_worker_legs{worker=\"0\"}"),
            metric(&gw, "gateway_media_worker_legs{worker=\"1\"}"),
        ]
    };
    assert!(
        wait_until(Duration::from_secs(10), || joined(&gw, "1000") == 2 && joined(&gw, "2000") == 2),
        "not all joined: {} {}",
        Value::from(participants(&gw, "1000")),
        Value::from(participants(&gw, "2000"))
    );
    assert_eq!(worker_legs(), [2.0, 2.0], "a room per worker, its legs together");
    std::thread::sleep(Duration::from_secs(3));
    for p in &mut phones {
        p.command("hangup", "").unwrap();
    }
    for (i, p) in phones.iter().enumerate() {
        let recording = p.recordings("dec.wav");
        assert_eq!(recording.len(), 1, "{:?}\n{}", recording, p.log());
        let heard = tones_heard(&recording[0], &tones, 2.0);
        let partner = i ^ 1;
        for (j, share) in heard.iter().enumerate() {
            if j == partner {
                assert!(*share > -10.0, "phone {i} misses phone {j} in its room ({share:.1} dB): {heard:?}");
            } else {
                assert!(*share < -30.0, "phone {i} hears phone {j} at {share:.1} dB: {heard:?}");
            }
        }
    }
    assert!(
        wait_until(Duration::from_secs(5), || worker_legs() == [0.0, 0.0]),
        "legs left on the workers: {:?}",
        worker_legs()
    );
}

#[test]
fn phones_sending_their_audio_level_are_not_decoded_while_they_only_hum() {
    let gw = gateway("");
    gw.admin(&["room", "add", "--number", "1000"]);
    // baresip's `audio_level` marks each packet with its level (RFC 6464) once the answer
    // takes the extension; the hummer's microphone plays a 300 Hz hum at −65 dBov.
    let hum = gw.dir.path().join("hum.wav");
    write_sine_wav(&hum, 8000, 300.0, 0.0008, 120).unwrap();
    let mut hummer = phone_playing(&gw, "hummer", &hum, "PCMU/8000/1", &["audio_level yes"]);
    let mut talker = phone(&gw, "talker", 1100.0, "PCMU/8000/1", &["audio_level yes"]);
    dial(&mut hummer, &gw, "1000");
    dial(&mut talker, &gw, "1000");
    assert!(wait_until(Duration::from_secs(10), || joined(&gw, "1000") == 2), "{}", gw.log());
    let quiet = |user: &str| participant(&gw, "1000", user)["quiet_frames"].as_u64().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let before = (quiet("hummer"), quiet("talker"));
    std::thread::sleep(Duration::from_secs(3));
    let after = (quiet("hummer"), quiet("talker"));
    println!("frames not decoded in 3 s: hummer {}, talker {}", after.0 - before.0, after.1 - before.1);
    // Stats come every second, so at least 2 s of the jitter buffer's 10 ms G.711 frames
    // (200) lie between.
    assert!(after.0 - before.0 >= 160, "the hum is decoded: {before:?} -> {after:?}\n{}", hummer.log());
    assert!(after.1 - before.1 <= 2, "the talker is not decoded: {before:?} -> {after:?}");
    hummer.command("hangup", "").unwrap();
    talker.command("hangup", "").unwrap();
    let heard = tones_heard(&hummer.recordings("dec.wav")[0], &[1100.0], 2.0);
    assert!(heard[0] > -10.0, "the hummer misses the talker: {heard:?}");
}

#[test]
fn three_wrong_pins_get_goodbye_and_bye_and_a_right_second_try_joins() {
    let gw = gateway("");
    gw.admin(&["room", "add", "--number", "2000", "--pin", "4321"]);
    let mut guesser = phone(&gw, "guesser", 500.0, "PCMU/8000/1", &[]);
    let mut second = phone(&gw, "second", 1100.0, "PCMU/8000/1", &[]);

    dial(&mut guesser, &gw, "2000");
    let from = guesser.events.len();
    guesser.command("sndcode", "1111#2222#3333#").unwrap();
    // Three wrong PINs, the goodbye prompt, then our BYE.
    guesser.wait_event("CALL_CLOSED", from, Duration::from_secs(20)).unwrap();
    let record = wait_for_record(&gw, "wrong-pin");
    assert_eq!(record["room_number"], "2000");
    assert!(
        guesser.log().contains("closed: Connection reset by user") || guesser.log().contains("terminated")
    );

    dial(&mut second, &gw, "2000");
    second.command("sndcode", "9999#").unwrap();
    second.command("sndcode", "4321#").unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || participant(&gw, "2000", "second")["joined"] == true),
        "second caller not joined: {}\n{}",
        Value::from(participants(&gw, "2000")),
        gw.log()
    );
    assert!(gw.log().contains("wrong PIN"), "the first try was wrong");
}

#[test]
fn api_mute_silences_a_phone_for_the_others_and_kick_ends_its_call() {
    let gw = gateway("");
    gw.admin(&["room", "add", "--number", "3000"]);
    let mut talker = phone(&gw, "talker", 700.0, "PCMU/8000/1", &[]);
    let mut listener = phone(&gw, "listener", 1300.0, "PCMU/8000/1", &[]);
    dial(&mut talker, &gw, "3000");
    dial(&mut listener, &gw, "3000");
    assert!(wait_until(Duration::from_secs(10), || joined(&gw, "3000") == 2), "{}", gw.log());
    let id = participant(&gw, "3000", "talker")["id"].as_u64().unwrap();

    let path = format!("/api/v1/conferences/3000/participants/{id}/mute");
    let (status, _) = http_request(gw.http, "POST", &path, None, None).unwrap();
    assert_eq!(status, 401, "mutating calls need the token");
    let (status, _) = http_request(gw.http, "POST", &path, Some("wrong-token-wrong-token"), None).unwrap();
    assert_eq!(status, 401);
    let (status, body) = http_request(
        gw.http,
        "POST",
        "/api/v1/conferences/3000/participants/999/mute",
        Some(API_TOKEN),
        None,
    )
    .unwrap();
    assert_eq!(status, 404, "{body}");
    let (status, _) = http_get(gw.http, "/api/v1/conferences/9999").unwrap();
    assert_eq!(status, 404, "no conference in an empty room");

    // Before muting, the listener hears the talker.
    std::thread::sleep(Duration::from_millis(2000));
    let (status, body) = http_request(gw.http, "POST", &path, Some(API_TOKEN), None).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["muted"], true);
    std::thread::sleep(Duration::from_millis(2000));

    // Kick the talker: its call ends with our BYE.
    let from = talker.events.len();
    let (status, body) = http_request(
        gw.http,
        "DELETE",
        &format!("/api/v1/conferences/3000/participants/{id}"),
        Some(API_TOKEN),
        None,
    )
    .unwrap();
    assert_eq!(status, 204, "{body}");
    talker.wait_event("CALL_CLOSED", from, Duration::from_secs(5)).unwrap();
    wait_for_record(&gw, "kicked");
    listener.command("hangup", "").unwrap();

    let recording = &listener.recordings("dec.wav")[0];
    let (rate, samples) = read_wav(recording).unwrap();
    let second = rate as usize;
    // The recording starts with the call (the talker's tone from 0.5 s to 1.5 s, before the
    // mute at ~2 s) and ends at the hangup, ~2 s after the mute.
    assert!(samples.len() > 3 * second, "{} samples", samples.len());
    let before = &samples[second / 2..second + second / 2];
    let muted = &samples[samples.len() - second - second / 2..samples.len() - second / 2];
    let heard_before = tone_share_db(before, rate, 700.0);
    let heard_after = tone_share_db(muted, rate, 700.0);
    assert!(heard_before > -10.0, "talker heard before the mute: {heard_before:.1} dB");
    assert!(
        mixer::tone::power(muted) < 1e4 || heard_after < -30.0,
        "talker still heard after the mute: {heard_after:.1} dB"
    );
}

#[test]
fn hold_and_resume_by_reinvite_and_rtp_timeout_ends_a_vanished_phone() {
    let gw = gateway("timeout_secs = 2\n");
    gw.admin(&["room", "add", "--number", "4000"]);
    let mut holder = phone(&gw, "holder", 700.0, "PCMU/8000/1", &[]);
    let mut vanishing = phone(&gw, "vanishing", 900.0, "PCMU/8000/1", &[]);
    dial(&mut holder, &gw, "4000");
    dial(&mut vanishing, &gw, "4000");
    assert!(wait_until(Duration::from_secs(10), || joined(&gw, "4000") == 2), "{}", gw.log());

    holder.command("hold", "").unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || participant(&gw, "4000", "holder")["on_hold"] == true),
        "hold not seen: {}\n{}",
        Value::from(participants(&gw, "4000")),
        holder.log()
    );
    holder.command("resume", "").unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || participant(&gw, "4000", "holder")["on_hold"] == false),
        "resume not seen: {}",
        Value::from(participants(&gw, "4000"))
    );

    // The network under one phone disappears: it sends nothing and answers nothing.
    let pid = vanishing.pid().to_string();
    assert!(std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let record = wait_for_record(&gw, "rtp-timeout");
    let _ = std::process::Command::new("kill").args(["-CONT", &pid]).status();
    assert_eq!(record["room_number"], "4000");
    assert!(record["from_uri"].as_str().unwrap().contains("vanishing"), "{record}");
    assert_eq!(joined(&gw, "4000"), 1, "the held-and-resumed phone stays");
}

#[test]
fn shutdown_hangs_up_calls_and_writes_their_records() {
    let mut gw = gateway("");
    gw.admin(&["room", "add", "--number", "5000"]);
    let mut caller = phone(&gw, "caller", 700.0, "PCMU/8000/1", &[]);
    dial(&mut caller, &gw, "5000");
    assert!(wait_until(Duration::from_secs(10), || joined(&gw, "5000") == 1), "{}", gw.log());
    let from = caller.events.len();
    let dir = gw.dir.path().to_path_buf();
    let status = gw.terminate().unwrap();
    assert!(status.success(), "{status}");
    caller.wait_event("CALL_CLOSED", from, Duration::from_secs(5)).unwrap();
    let out = cli(&dir, &["--config", "gateway.toml", "calls", "--json"]);
    let records: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(records[0]["cause"], "shutdown", "{records}");
}

#[test]
fn an_srtp_phone_and_a_plain_phone_hear_each_other() {
    let gw = gateway("");
    gw.admin(&["room", "add", "--number", "1000"]);
    let (secure_tone, plain_tone) = (700.0, 1100.0);
    // baresip's SDES module: RTP/SAVP with its crypto lines, and nothing else taken.
    let srtp = "G722/16000/1;mediaenc=srtp-mand";
    let mut secure = phone(&gw, "secure", secure_tone, srtp, &["module srtp.so"]);
    let mut plain = phone(&gw, "plain", plain_tone, "PCMU/8000/1", &[]);
    dial(&mut secure, &gw, "1000");
    dial(&mut plain, &gw, "1000");
    assert!(wait_until(Duration::from_secs(10), || joined(&gw, "1000") == 2), "{}", gw.log());
    assert_eq!(participant(&gw, "1000", "secure")["encrypted"], true);
    assert_eq!(participant(&gw, "1000", "plain")["encrypted"], false);

    // Each hears the other: the gateway decrypts what the SRTP phone sends (else the plain
    // phone hears noise) and encrypts what it sends it (else baresip drops every packet).
    std::thread::sleep(Duration::from_secs(3));
    secure.command("hangup", "").unwrap();
    plain.command("hangup", "").unwrap();
    let heard = tones_heard(&secure.recordings("dec.wav")[0], &[plain_tone, secure_tone], 2.0);
    assert!(heard[0] > -10.0 && heard[1] < -30.0, "SRTP phone heard (plain, own): {heard:?}");
    let heard = tones_heard(&plain.recordings("dec.wav")[0], &[secure_tone, plain_tone], 2.0);
    assert!(heard[0] > -10.0 && heard[1] < -30.0, "plain phone heard (SRTP, own): {heard:?}");
}

#[test]
fn an_srtp_call_from_pjsua2_keeps_its_media_through_hold_resume_and_our_reoffer() {
    e2e::require_program("python3");
    let gw = gateway("");
    gw.admin(&["room", "add", "--number", "1000"]);
    gw.admin(&["user", "add", "pj", "--password", PHONE_PASSWORD]);
    // Someone talking in the room, so the mix has packets for pjsua2 at every stage.
    let mut talker = phone(&gw, "talker", 700.0, "PCMU/8000/1", &[]);
    dial(&mut talker, &gw, "1000");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("pjsua/srtp_hold.py");
    let tone = gw.dir.path().join("pjsua-1000.wav");
    write_tone_wav(&tone, 8000, 1000.0, 30).unwrap();
    let mut child = std::process::Command::new("python3")
        .arg(&script)
        .args([
            gw.sip.to_string(),
            "pj".into(),
            PHONE_PASSWORD.into(),
            "1000".into(),
            tone.display().to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Read as it goes: the other phone hangs up while pjsua2 is still in its last stage, so
    // the end of its recording is what came through after the re-INVITEs.
    let mut stdout = Vec::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap())) {
        let line = line.unwrap();
        if line.starts_with("RX reoffered ") {
            talker.command("hangup", "").unwrap();
        }
        stdout.push(line);
    }
    child.wait().unwrap();
    let rx = |stage: &str| -> u64 {
        let line = stdout.iter().find(|l| l.starts_with(&format!("RX {stage} ")));
        let line = line.unwrap_or_else(|| panic!("no {stage} count: {stdout:?}\n{}", gw.log()));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let (talking, held, resumed, reoffered) = (rx("talking"), rx("held"), rx("resumed"), rx("reoffered"));
    println!(
        "pjsua2 decrypted (talking, held, resumed, reoffered): {talking}, {held}, {resumed}, {reoffered}"
    );
    // pjsua2 counts afresh for each stream the re-INVITEs make, at 50 packets a second: SRTP
    // from the start, none while held (sendonly), and again after the resume.
    assert!(talking >= 50, "SRTP before hold: {talking}\n{}", gw.log());
    assert!(held < 20, "the gateway kept sending to a held phone: {held}");
    assert!(resumed >= 50, "no SRTP after resume: {resumed}\n{}", gw.log());
    // Our offer in the 2xx to its offerless re-INVITE keeps SRTP and pjsua2 takes it: a new
    // stream, counted afresh (a refused offer leaves the old stream counting on, ~200).
    assert!((50..150).contains(&reoffered), "our SRTP re-offer not taken: {reoffered}\n{}", gw.log());
    // The other way: pjsua2's tone, in SRTP the gateway still decrypts after the re-INVITEs,
    // reaches the other phone.
    let heard = tones_heard(&talker.recordings("dec.wav")[0], &[1000.0], 1.5);
    assert!(heard[0] > -10.0, "pjsua2's tone after resume: {heard:?}\n{}", gw.log());
    let record = wait_for_record(&gw, "normal");
    assert_eq!(record["codec"], "G722", "{record}");
}

#[test]
fn required_srtp_refuses_a_plain_phone_and_off_refuses_an_srtp_one() {
    let required = gateway("srtp = \"required\"\n");
    required.admin(&["room", "add", "--number", "1000"]);
    let mut plain = phone(&required, "plain", 700.0, "PCMU/8000/1", &[]);
    let reason = refused(&mut plain, &required, "1000");
    assert!(reason.contains("488"), "a plain offer where SRTP is required: {reason}");
    let mut secure = phone(&required, "secure", 900.0, "PCMU/8000/1;mediaenc=srtp-mand", &["module srtp.so"]);
    dial(&mut secure, &required, "1000");
    assert_eq!(participant(&required, "1000", "secure")["encrypted"], true);

    let off = gateway("srtp = \"off\"\n");
    off.admin(&["room", "add", "--number", "1000"]);
    let mut secure = phone(&off, "secure", 900.0, "PCMU/8000/1;mediaenc=srtp-mand", &["module srtp.so"]);
    let reason = refused(&mut secure, &off, "1000");
    assert!(reason.contains("488"), "an SRTP offer where SRTP is off: {reason}");
}

/// Dials and waits for the call to be refused; returns baresip's reason.
fn refused(phone: &mut Baresip, gw: &Gateway, number: &str) -> String {
    let from = phone.events.len();
    phone.command("dial", &format!("sip:{number}@{}", gw.sip)).unwrap();
    let closed = phone.wait_event("CALL_CLOSED", from, Duration::from_secs(10)).unwrap();
    closed["param"].as_str().unwrap_or_default().to_string()
}

#[test]
fn unknown_number_full_room_and_no_common_codec_are_refused() {
    let gw = gateway("");
    gw.admin(&["room", "add", "--number", "6000", "--max-participants", "1"]);
    gw.admin(&["room", "add", "--number", "6001"]);
    let mut first = phone(&gw, "first", 700.0, "PCMU/8000/1", &[]);
    let mut second = phone(&gw, "second", 900.0, "PCMU/8000/1", &[]);
    let mut g726_only = phone(&gw, "g726", 900.0, "G726-32/8000/1", &["module g726.so"]);

    let reason = refused(&mut second, &gw, "6999");
    assert!(reason.contains("404"), "unknown number: {reason}");
    dial(&mut first, &gw, "6000");
    let reason = refused(&mut second, &gw, "6000");
    assert!(reason.contains("486"), "full room: {reason}");
    let reason = refused(&mut g726_only, &gw, "6001");
    assert!(reason.contains("488"), "no common codec: {reason}");

    let (_, metrics) = http_get(gw.http, "/metrics").unwrap();
    for line in [
        r#"gateway_calls_total{result="404"} 1"#,
        r#"gateway_calls_total{result="486"}"#,
        r#"gateway_active_legs{room="6000",codec="PCMU"} 1"#,
        "gateway_mixer_tick_seconds_count",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
}

#[test]
fn rooms_api_creates_updates_and_deletes_with_the_token() {
    let gw = gateway("");
    let room = r#"{"number": "7000", "name": "Board", "pin": "1234", "dids": ["+15550007000"]}"#;
    let (status, _) = http_request(gw.http, "POST", "/api/v1/rooms", None, Some(room)).unwrap();
    assert_eq!(status, 401);
    let (status, body) = http_request(gw.http, "POST", "/api/v1/rooms", Some(API_TOKEN), Some(room)).unwrap();
    assert_eq!(status, 201, "{body}");
    let (status, _) = http_request(gw.http, "POST", "/api/v1/rooms", Some(API_TOKEN), Some(room)).unwrap();
    assert_eq!(status, 409, "duplicate");
    let (status, body) = http_request(
        gw.http,
        "POST",
        "/api/v1/rooms",
        Some(API_TOKEN),
        Some(r#"{"number": "7001", "pin": "12a"}"#),
    )
    .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("pin"), "the error names the field: {body}");
    let (status, body) =
        http_request(gw.http, "POST", "/api/v1/rooms", Some(API_TOKEN), Some(r#"{"numbr": "7001"}"#))
            .unwrap();
    assert_eq!(status, 400, "{body}");

    let (status, body) = http_request(
        gw.http,
        "PATCH",
        "/api/v1/rooms/7000",
        Some(API_TOKEN),
        Some(r#"{"pin": null, "name": "Big board"}"#),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let updated: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(updated["pin"], Value::Null);
    assert_eq!(updated["name"], "Big board");
    assert_eq!(updated["dids"][0], "+15550007000", "untouched fields stay");

    let (status, body) = http_get(gw.http, "/api/v1/rooms").unwrap();
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap().as_array().unwrap().len(), 1);
    let (status, _) = http_request(gw.http, "DELETE", "/api/v1/rooms/7000", Some(API_TOKEN), None).unwrap();
    assert_eq!(status, 204);
    let (status, _) = http_get(gw.http, "/api/v1/rooms/7000").unwrap();
    assert_eq!(status, 404);
    let (status, body) = http_get(gw.http, "/api/v1/openapi.yaml").unwrap();
    assert_eq!(status, 200);
    assert!(body.starts_with("openapi: 3"), "{body}");
}

#[test]
fn pin_by_sip_info_from_pjsua2_joins() {
    pjsua2_joins_with_info_pin(false);
}

#[test]
fn offerless_invite_from_pjsua2_gets_our_offer_and_joins() {
    pjsua2_joins_with_info_pin(true);
}

fn pjsua2_joins_with_info_pin(late_offer: bool) {
    e2e::require_program("python3");
    let gw = gateway("");
    gw.admin(&["room", "add", "--number", "8000", "--pin", "2468"]);
    gw.admin(&["user", "add", "pj", "--password", PHONE_PASSWORD]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("pjsua/info_pin.py");
    let mut args = vec![
        gw.sip.to_string(),
        "pj".into(),
        PHONE_PASSWORD.into(),
        "8000".into(),
        "2468#".into(),
        "20".into(),
    ];
    if late_offer {
        args.push("late".into());
    }
    let mut child = std::process::Command::new("python3")
        .arg(&script)
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let joined_by_info =
        wait_until(Duration::from_secs(15), || participant(&gw, "8000", "pj")["joined"] == true);
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    assert!(
        joined_by_info,
        "pjsua2 not joined: {}\n{}\n{}\n{}",
        Value::from(participants(&gw, "8000")),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        gw.log()
    );
    assert!(gw.log().contains("PIN accepted"), "{}", gw.log());
    // After a late offer, the codec comes from pjsua2's answer to our offer.
    let codec = participant(&gw, "8000", "pj")["codec"].clone();
    assert_eq!(gw.log().contains("INVITE without SDP"), late_offer, "{}", gw.log());
    assert_eq!(codec, "G722", "pjsua2 and the gateway both prefer G.722");
}

#[test]
fn trunk_calls_are_known_by_source_and_reach_rooms_by_did() {
    // The carrier's side: a baresip instance at a fixed address, trusted by the gateway.
    let wav_dir = tempfile::tempdir().unwrap();
    let wav = wav_dir.path().join("carrier.wav");
    write_tone_wav(&wav, 8000, 600.0, 60).unwrap();
    let mut carrier = Baresip::start(&PhoneOptions {
        audio_source: Some(wav),
        extra_config: vec!["ausrc_srate 8000".into(), "ausrc_channels 1".into()],
        record: false,
        ip: None,
    })
    .unwrap();
    let trunk = format!(
        "[[trunk]]\nname = \"carrier\"\nproxy = \"sip:{0}\"\nusername = \"gateway\"\nregister = false\n\
         inbound_sources = [\"{0}\"]\n",
        carrier.sip
    );
    let gw = gateway(&trunk);
    gw.admin(&["room", "add", "--number", "1000", "--did", "+15550001000"]);

    // No credentials: the trunk is known by its address.
    carrier.add_account(&format!("<sip:carrier@{}>;regint=0", gw.sip)).unwrap();
    dial(&mut carrier, &gw, "+15550001000");
    assert!(
        wait_until(Duration::from_secs(5), || participant(&gw, "1000", "trunk:carrier")["joined"] == true),
        "{}\n{}",
        Value::from(participants(&gw, "1000")),
        gw.log()
    );

    // Anyone else without credentials is challenged and gets nowhere.
    let mut stranger = Baresip::start(&PhoneOptions::default()).unwrap();
    stranger.add_account(&format!("<sip:stranger@{}>;regint=0", gw.sip)).unwrap();
    let reason = refused(&mut stranger, &gw, "+15550001000");
    assert!(reason.contains("401") || reason.contains("403"), "untrusted caller: {reason}");
    assert_eq!(joined(&gw, "1000"), 1);
}

#[test]
fn symmetric_rtp_reaches_a_phone_whose_sdp_names_the_wrong_address() {
    e2e::require_program("python3");
    let gw = gateway("");
    gw.admin(&["room", "add", "--number", "8100"]);
    gw.admin(&["user", "add", "natted", "--password", PHONE_PASSWORD]);
    // The phone's SDP says 127.0.0.2 (its "public" address); its packets come from 127.0.0.1,
    // where nothing listens for 127.0.0.2. Only latching to the packets' source reaches it.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("pjsua/info_pin.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .args([&gw.sip.to_string(), "natted", PHONE_PASSWORD, "8100", "#", "3", "public=127.0.0.2"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rx = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RX ").and_then(|n| n.trim().parse::<u64>().ok()))
        .unwrap_or_else(|| panic!("no RX line: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    // 3 s of 20 ms packets; the first ones may go to the SDP address before the phone's arrive.
    assert!(rx > 100, "the phone received {rx} RTP packets\n{}", gw.log());
    assert!(gw.log().contains("RTP source learned"), "{}", gw.log());
}
