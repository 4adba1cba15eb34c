//! Browsers in conferences: headless Chromium opens the gateway's join page, joins with a
//! PIN over the WebSocket, and talks (a fake microphone playing a tone) with baresip phones
//! through the same mix. What each side hears is measured: the phones' recordings, and the
//! page's WebAudio analyser on the track from the gateway.

use std::time::Duration;

use e2e::baresip::Baresip;
use e2e::chromium::Chromium;
use e2e::room::{
    call_records, dial, gateway, joined, participants, phone, tones_heard, wait_for_record, API_TOKEN,
};
use e2e::{http_request, metric, wait_until, write_sine_wav, write_tone_wav, Gateway};
use serde_json::{json, Value};

/// A gateway whose browsers' peer connections bind loopback.
fn webrtc_gateway() -> Gateway {
    gateway("[webrtc]\naddresses = [\"127.0.0.1\"]\n")
}

/// A browser whose microphone plays `frequency`, on the join page of `room`.
fn browser(gw: &Gateway, name: &str, frequency: f64, room: &str) -> Chromium {
    let wav = gw.dir.path().join(format!("{name}-{frequency}.wav"));
    write_tone_wav(&wav, 48000, frequency, 120).unwrap();
    let chromium = Chromium::start(Some(&wav)).unwrap();
    chromium.navigate(&format!("http://{}/join/{room}", gw.http)).unwrap();
    chromium
}

/// Fills in the form with "original sound" (no echo cancellation, noise suppression or gain
/// control, which take a steady tone for noise and fade it) and presses Join.
fn join(chromium: &Chromium, pin: &str, name: &str) {
    chromium
        .execute(
            "document.getElementById('pin').value = arguments[0];
             document.getElementById('name').value = arguments[1];
             document.getElementById('original').checked = true;
             document.getElementById('join').click();",
            json!([pin, name]),
        )
        .unwrap();
}

/// Waits until the page is in the room; the participant id it was given.
fn wait_joined(chromium: &Chromium, gw: &Gateway) -> u64 {
    let id = chromium
        .wait_for("return window.gateway.state === 'joined' && window.gateway.id", Duration::from_secs(20));
    id.unwrap_or_else(|e| panic!("{e}\n{}", gw.log())).as_u64().unwrap()
}

/// Levels (dB) the page hears at `frequencies`, relative to the strongest frequency arriving.
fn page_hears(chromium: &Chromium, frequencies: &[f64]) -> Vec<f64> {
    let tone =
        chromium.execute("return window.gateway.remoteTone(arguments[0])", json!([frequencies])).unwrap();
    // Before sound arrives the analyser reads -Infinity (null in JSON): far below any tone.
    let peak = tone["db"].as_f64().unwrap_or(-200.0);
    tone["levels"].as_array().unwrap().iter().map(|l| l.as_f64().unwrap_or(-300.0) - peak).collect()
}

/// Waits (up to 10 s) until the page hears every one of `heard` within 25 dB of the strongest
/// tone (Opus's speech coder at 32 kbit/s does not keep several tones' levels equal) and each
/// of `absent` more than 30 dB below it: the join chime, which a browser hears as its media
/// connects, spreads into other frequencies for a moment. Returns the last levels of `heard`
/// followed by `absent`; the caller asserts on them.
fn wait_page_hears(chromium: &Chromium, heard: &[f64], absent: &[f64]) -> Vec<f64> {
    let all: Vec<f64> = heard.iter().chain(absent).copied().collect();
    let mut levels = Vec::new();
    wait_until(Duration::from_secs(10), || {
        levels = page_hears(chromium, &all);
        let (present, missing) = levels.split_at(heard.len());
        present.iter().all(|l| *l > -25.0) && missing.iter().all(|l| *l < -30.0)
    });
    levels
}

fn phone_in_room(gw: &Gateway, user: &str, frequency: f64, codec: &str, room: &str, pin: &str) -> Baresip {
    let mut p = phone(gw, user, frequency, codec, &["module opus.so"]);
    dial(&mut p, gw, room);
    p.command("sndcode", &format!("{pin}#")).unwrap();
    p
}

/// The UDP port of the gateway's latest host candidate the page received.
fn media_port(chromium: &Chromium) -> u16 {
    let candidates = chromium.execute("return window.gateway.candidates", json!([])).unwrap();
    let host = candidates
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .filter_map(Value::as_str)
        .find(|c| c.contains("typ host"));
    // candidate:FOUNDATION COMPONENT udp PRIORITY ADDRESS PORT typ host
    let port = host.and_then(|c| c.split_whitespace().nth(5)).and_then(|p| p.parse().ok());
    port.unwrap_or_else(|| panic!("no host candidate: {candidates}"))
}

/// Waits until the gateway has let go of a browser's UDP port (its peer connection closed).
fn port_released(port: u16) -> bool {
    let start = std::time::Instant::now();
    let released =
        wait_until(Duration::from_secs(5), || std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok());
    println!("port {port} released after {} ms", start.elapsed().as_millis());
    released
}

fn participant_by_id(gw: &Gateway, room: &str, id: u64) -> Option<Value> {
    participants(gw, room).into_iter().find(|p| p["id"] == id)
}

#[test]
fn a_browser_and_a_phone_hear_each_other() {
    let gw = webrtc_gateway();
    gw.admin(&["room", "add", "--number", "1000", "--pin", "4321"]);
    let (phone_tone, browser_tone) = (700.0, 1200.0);
    let mut desk = phone_in_room(&gw, "desk", phone_tone, "G722/16000/1", "1000", "4321");
    assert!(wait_until(Duration::from_secs(15), || joined(&gw, "1000") == 1), "{}", gw.log());

    let chromium = browser(&gw, "ann", browser_tone, "1000");
    // A wrong PIN first: the page says so and stays usable.
    join(&chromium, "1111", "Ann");
    let error = chromium.wait_for("return window.gateway.error", Duration::from_secs(10)).unwrap();
    assert_eq!(error, "wrong-pin", "{}", gw.log());
    let shown = chromium.execute("return document.getElementById('message').textContent", json!([])).unwrap();
    assert!(shown.as_str().unwrap().contains("Wrong PIN"), "{shown}");

    join(&chromium, "4321", "Ann");
    let id = wait_joined(&chromium, &gw);
    let first_audio = chromium
        .wait_for("return window.gateway.firstAudioMs", Duration::from_secs(10))
        .unwrap()
        .as_u64()
        .unwrap();
    println!("join to first audio packet in the browser: {first_audio} ms");

    // The API shows the browser as a participant of the room.
    let view = participant_by_id(&gw, "1000", id).expect("browser in the API");
    assert_eq!(
        (view["user"].as_str(), view["codec"].as_str(), view["display_name"].as_str()),
        (Some("webrtc"), Some("opus"), Some("Ann"))
    );
    // The page lists the phone.
    let listed = chromium
        .wait_for("return window.gateway.participants.size === 2 && [...window.gateway.participants.values()].map(p => p.user)", Duration::from_secs(5))
        .unwrap();
    assert!(listed.as_array().unwrap().contains(&json!("desk")), "{listed}");
    // The phone plays a steady tone: the page marks it as talking.
    chromium
        .wait_for(
            "const desk = [...window.gateway.participants.values()].find(p => p.user === 'desk' && p.talking);
             return !!desk && document.querySelector(`#participants li[data-id='${desk.id}']`).className === 'talking'",
            Duration::from_secs(5),
        )
        .unwrap_or_else(|e| panic!("the phone is not shown talking: {e}"));
    // The camera was asked for too, and its preview plays on the page.
    chromium
        .wait_for(
            "return window.gateway.camera && document.getElementById('self').videoWidth > 0",
            Duration::from_secs(5),
        )
        .unwrap_or_else(|e| panic!("no camera preview: {e}"));

    // The page hears the phone's tone, and not its own.
    let levels = wait_page_hears(&chromium, &[phone_tone], &[browser_tone]);
    println!("page levels (phone, own): {levels:?}");
    assert!(levels[0] > -25.0 && levels[1] < -30.0, "page levels (phone, own): {levels:?}\n{}", gw.log());

    // The keypad's *6 (RFC 4733 in the audio stream) mutes the browser; the page's button unmutes.
    chromium.execute("window.gateway.dtmf('*6')", json!([])).unwrap();
    let muted = wait_until(Duration::from_secs(5), || {
        participant_by_id(&gw, "1000", id).is_some_and(|p| p["muted"] == true)
    });
    assert!(muted, "*6 from the keypad did not mute: {}", gw.log());
    chromium
        .wait_for("return document.getElementById('mute').textContent === 'Unmute'", Duration::from_secs(5))
        .unwrap();
    chromium.execute("document.getElementById('mute').click()", json!([])).unwrap();
    let unmuted = wait_until(Duration::from_secs(5), || {
        participant_by_id(&gw, "1000", id).is_some_and(|p| p["muted"] == false)
    });
    assert!(unmuted, "the page's mute button did not unmute");

    // Two seconds of the browser talking, then the phone's recording is read.
    std::thread::sleep(Duration::from_secs(3));
    desk.command("hangup", "").unwrap();
    let recording = desk.recordings("dec.wav");
    let heard = tones_heard(&recording[0], &[browser_tone, phone_tone], 2.0);
    println!("phone heard (browser, own): {heard:?}");
    assert!(heard[0] > -10.0, "the phone misses the browser's tone: {heard:?}");
    assert!(heard[1] < -30.0, "the phone hears itself: {heard:?}");

    // Leave: the call record is the browser's, with its codec.
    chromium.execute("document.getElementById('leave').click()", json!([])).unwrap();
    let record = wait_for_record(&gw, "normal");
    let records = call_records(&gw);
    let browser_record = records.iter().find(|r| r["codec"] == "opus").unwrap_or(&record);
    assert!(browser_record["from_uri"].as_str().unwrap().starts_with("webrtc:"), "{records:?}");
    assert_eq!(browser_record["room_number"], "1000");
}

#[test]
fn the_page_hears_of_a_kick_and_a_full_room() {
    let mut gw = webrtc_gateway();
    let room = r#"{"number": "3000", "max_participants": 1}"#;
    let (code, body) = http_request(gw.http, "POST", "/api/v1/rooms", Some(API_TOKEN), Some(room)).unwrap();
    assert_eq!(code, 201, "{body}");
    let first = browser(&gw, "first", 500.0, "3000");
    join(&first, "", "First");
    let id = wait_joined(&first, &gw);
    first.wait_for("return window.gateway.firstAudioMs !== null", Duration::from_secs(10)).unwrap();
    let port = media_port(&first);
    assert!(std::net::UdpSocket::bind(("127.0.0.1", port)).is_err(), "the connection holds its port");

    // Room of one: the second browser is told it is full.
    let second = browser(&gw, "second", 900.0, "3000");
    join(&second, "", "Second");
    let error = second.wait_for("return window.gateway.error", Duration::from_secs(10)).unwrap();
    assert_eq!(error, "room-full");

    // Kicked from the API: the page says so, the record says why.
    let path = format!("/api/v1/conferences/3000/participants/{id}/kick");
    let (code, body) = http_request(gw.http, "POST", &path, Some(API_TOKEN), None).unwrap();
    assert!(code == 200 || code == 204, "{code} {body}");
    let ended = first.wait_for("return window.gateway.ended", Duration::from_secs(10)).unwrap();
    assert_eq!(ended, "kicked");
    wait_for_record(&gw, "kicked");
    assert!(port_released(port), "a kicked browser's connection still holds port {port}");

    // An unknown room is named as such.
    let third = browser(&gw, "third", 900.0, "9999");
    join(&third, "", "Third");
    let error = third.wait_for("return window.gateway.error", Duration::from_secs(10)).unwrap();
    assert_eq!(error, "not-found");

    // Back in; then the tab goes away without a goodbye: the leg ends as a lost connection.
    join(&first, "", "First");
    wait_joined(&first, &gw);
    first.wait_for("return window.gateway.firstAudioMs !== null", Duration::from_secs(10)).unwrap();
    let port = media_port(&first);
    first.navigate("about:blank").unwrap();
    wait_for_record(&gw, "connection-lost");
    assert!(wait_until(Duration::from_secs(5), || participants(&gw, "3000").is_empty()), "{}", gw.log());
    assert!(port_released(port), "a closed tab's connection still holds port {port}");

    // The server dies without a goodbye: the page that is in the room says the connection is lost.
    join(&second, "", "Second");
    wait_joined(&second, &gw);
    gw.kill();
    let error = second.wait_for("return window.gateway.error", Duration::from_secs(10)).unwrap();
    assert_eq!(error, "connection-lost");
    let state = second.execute("return window.gateway.state", json!([])).unwrap();
    assert_eq!(state, "idle", "the page is back at the form");
}

#[test]
fn a_browser_without_a_microphone_is_told_so() {
    let gw = webrtc_gateway();
    gw.admin(&["room", "add", "--number", "1000"]);
    let chromium = Chromium::start(None).unwrap();
    chromium.navigate(&format!("http://{}/join/1000", gw.http)).unwrap();
    join(&chromium, "", "Mic-less");
    let error = chromium.wait_for("return window.gateway.error", Duration::from_secs(10)).unwrap();
    assert_eq!(error, "no-microphone");
    let shown = chromium.execute("return document.getElementById('message').textContent", json!([])).unwrap();
    assert!(shown.as_str().unwrap().contains("No microphone"), "{shown}");
    assert!(participants(&gw, "1000").is_empty());
}

#[test]
fn behind_nat_the_public_address_is_offered_and_shutdown_tells_the_page() {
    // 192.0.2.10 (TEST-NET-1) stands for the NAT's public address: offered as a candidate,
    // while the connection itself runs over the host candidate on loopback.
    let mut gw = gateway("[webrtc]\naddresses = [\"127.0.0.1\"]\npublic_address = \"192.0.2.10\"\n");
    gw.admin(&["room", "add", "--number", "1000"]);
    let chromium = browser(&gw, "nat", 800.0, "1000");
    join(&chromium, "", "Behind NAT");
    wait_joined(&chromium, &gw);
    chromium.wait_for("return window.gateway.firstAudioMs !== null", Duration::from_secs(10)).unwrap();
    let candidates = chromium.execute("return window.gateway.candidates", json!([])).unwrap();
    let candidates: Vec<&str> = candidates.as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(candidates.iter().any(|c| c.contains("192.0.2.10")), "no public candidate: {candidates:?}");
    assert!(candidates.iter().any(|c| c.contains("127.0.0.1") && c.contains("typ host")), "{candidates:?}");

    // SIGTERM: the page is told the server is going away; the leg's record says shutdown.
    gw.terminate().unwrap();
    let ended = chromium.wait_for("return window.gateway.ended", Duration::from_secs(10)).unwrap();
    assert_eq!(ended, "shutdown");
    let records = String::from_utf8(gw.admin(&["calls", "--json"])).unwrap();
    assert!(records.contains("\"shutdown\"") && records.contains("opus"), "{records}");
}

/// Chromium switches that make `gateway.test` a name for loopback: a page from there is
/// what a page from a remote server is to the browser (not "potentially trustworthy" as
/// localhost is), while its traffic stays on this machine.
const REMOTE_NAME: [&str; 2] =
    ["--host-resolver-rules=MAP gateway.test 127.0.0.1", "--ignore-certificate-errors"];

#[test]
fn over_https_a_remote_page_gets_its_microphone_and_over_http_it_is_told_why_not() {
    // A gateway serving HTTPS with a certificate for gateway.test.
    let certs = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["gateway.test".to_string()]).unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let base = (e2e::free_port() & !1).min(60_000);
    let config = format!(
        "tls_certificate = \"{}\"\ntls_private_key = \"{}\"\n[rtp]\naddress = \"127.0.0.1\"\n\
         port_min = {base}\nport_max = {}\n[webrtc]\naddresses = [\"127.0.0.1\"]\n",
        cert.display(),
        key.display(),
        base + 199
    );
    let https = Gateway::start_with("", &config).unwrap();
    https.admin(&["room", "add", "--number", "1000", "--pin", "4321"]);
    let (phone_tone, browser_tone) = (600.0, 1400.0);
    let mut desk = phone_in_room(&https, "desk", phone_tone, "G722/16000/1", "1000", "4321");

    let wav = https.dir.path().join("remote.wav");
    write_tone_wav(&wav, 48000, browser_tone, 120).unwrap();
    let chromium = Chromium::start_with(Some(&wav), &REMOTE_NAME).unwrap();
    chromium.navigate(&format!("https://gateway.test:{}/join/1000", https.http.port())).unwrap();
    let secure = chromium.execute("return window.isSecureContext", json!([])).unwrap();
    assert_eq!(secure, true, "a page over HTTPS is a secure context");
    join(&chromium, "4321", "Remote");
    wait_joined(&chromium, &https);
    let levels = wait_page_hears(&chromium, &[phone_tone], &[browser_tone]);
    assert!(levels[0] > -25.0, "over HTTPS the page hears the phone: {levels:?}\n{}", https.log());
    std::thread::sleep(Duration::from_secs(3));
    desk.command("hangup", "").unwrap();
    let heard = tones_heard(&desk.recordings("dec.wav")[0], &[browser_tone], 2.0);
    assert!(heard[0] > -10.0, "the phone misses the browser over HTTPS: {heard:?}");
    // The browser's record: answered once its media connected.
    chromium.execute("document.getElementById('leave').click()", json!([])).unwrap();
    wait_until(Duration::from_secs(10), || call_records(&https).iter().any(|r| r["codec"] == "opus"));
    let records = call_records(&https);
    let record = records.iter().find(|r| r["codec"] == "opus").expect("the browser's record");
    let (started, answered) = (record["started_at_ms"].as_i64().unwrap(), record["answered_at_ms"].as_i64());
    assert!(answered.is_some_and(|a| a >= started), "{record}");
    assert!(record["from_uri"].as_str().unwrap().starts_with("webrtc:127.0.0.1:"), "{record}");

    // The same page over plain HTTP from that "remote" name: no microphone is to be had, and
    // the page says to use HTTPS instead of failing on Join.
    let http = webrtc_gateway();
    chromium.navigate(&format!("http://gateway.test:{}/join/1000", http.http.port())).unwrap();
    let secure = chromium.execute("return window.isSecureContext", json!([])).unwrap();
    assert_eq!(secure, false);
    assert_eq!(chromium.execute("return window.gateway.error", json!([])).unwrap(), "insecure");
    join(&chromium, "", "Remote");
    let shown = chromium.execute("return document.getElementById('message').textContent", json!([])).unwrap();
    assert!(shown.as_str().unwrap().contains("over HTTPS"), "{shown}");
    assert_eq!(chromium.execute("return window.gateway.state", json!([])).unwrap(), "idle");
}

#[test]
fn two_browsers_and_two_phones_all_hear_each_other() {
    let gw = webrtc_gateway();
    gw.admin(&["room", "add", "--number", "1000", "--pin", "4321"]);
    // Phones: PCMU and G.722; browsers: Opus. No tone is a low-order harmonic or
    // intermodulation product of the others.
    let tones = [600.0, 1000.0, 1750.0, 2250.0];
    let mut phones = vec![
        phone_in_room(&gw, "alice", tones[0], "PCMU/8000/1", "1000", "4321"),
        phone_in_room(&gw, "bob", tones[1], "G722/16000/1", "1000", "4321"),
    ];
    let browsers = [browser(&gw, "carol", tones[2], "1000"), browser(&gw, "dave", tones[3], "1000")];
    for (b, name) in browsers.iter().zip(["Carol", "Dave"]) {
        join(b, "4321", name);
        wait_joined(b, &gw);
    }
    assert!(wait_until(Duration::from_secs(15), || joined(&gw, "1000") == 4), "{}", gw.log());

    // Each page hears the three others and not itself.
    for (i, b) in browsers.iter().enumerate() {
        let own = tones[2 + i];
        let others: Vec<f64> = tones.iter().copied().filter(|&t| t != own).collect();
        let levels = wait_page_hears(b, &others, &[own]);
        println!("browser {i} levels (others, own): {levels:?}");
        assert!(levels[..3].iter().all(|l| *l > -25.0), "browser {i} misses someone: {levels:?}");
        assert!(levels[3] < -30.0, "browser {i} hears itself: {levels:?}");
        let weakest = levels[..3].iter().copied().fold(f64::INFINITY, f64::min);
        assert!(weakest - levels[3] > 15.0, "browser {i}: own tone not well below the others: {levels:?}");
    }

    std::thread::sleep(Duration::from_secs(3));
    for p in &mut phones {
        p.command("hangup", "").unwrap();
    }
    for (i, p) in phones.iter().enumerate() {
        let recording = p.recordings("dec.wav");
        let heard = tones_heard(&recording[0], &tones, 2.0);
        println!("phone {i} heard: {heard:?}");
        for (j, share) in heard.iter().enumerate() {
            if i == j {
                assert!(*share < -30.0, "phone {i} hears itself: {heard:?}");
            } else {
                // Three tones share the mix: each about -5 dB of the whole.
                assert!(*share > -12.0, "phone {i} misses participant {j}: {heard:?}");
            }
        }
    }
}

#[test]
fn silent_browsers_share_one_encode_of_the_mix() {
    let gw = webrtc_gateway();
    gw.admin(&["room", "add", "--number", "1000"]);
    let mut desk = phone(&gw, "desk", 900.0, "G722/16000/1", &[]);
    dial(&mut desk, &gw, "1000");
    // Two listeners: their microphones play silence.
    let browsers = [browser(&gw, "quiet-1", 0.0, "1000"), browser(&gw, "quiet-2", 0.0, "1000")];
    for (b, name) in browsers.iter().zip(["Quiet 1", "Quiet 2"]) {
        join(b, "", name);
        wait_joined(b, &gw);
    }
    for b in &browsers {
        let levels = wait_page_hears(b, &[900.0], &[]);
        assert!(levels[0] > -25.0, "a listener misses the phone: {levels:?}");
    }

    // Over two seconds: the phone's own mix, and one Opus encode for both browsers, per tick
    // of the worker that carries the room (the first room goes to worker 0).
    let sample = || {
        (
            metric(&gw, "gateway_mixer_tick_seconds_count{worker=\"0\"}"),
            metric(&gw, "gateway_mixer_encodes_total{kind=\"shared\"}"),
            metric(&gw, "gateway_mixer_encodes_total{kind=\"personal\"}"),
        )
    };
    let before = sample();
    std::thread::sleep(Duration::from_secs(2));
    let after = sample();
    let ticks = after.0 - before.0;
    let (shared, personal) = ((after.1 - before.1) / ticks, (after.2 - before.2) / ticks);
    println!("per tick over {ticks} ticks: {shared:.2} shared, {personal:.2} personal encodes");
    assert!(ticks > 50.0);
    assert!((0.9..=1.1).contains(&shared), "browsers' mix not shared: {shared:.2} shared per tick");
    assert!(personal <= 1.1, "more than the talker's own mix: {personal:.2} personal per tick");
}

/// The frames of a browser's audio the gateway did not decode for their level.
fn quiet_frames(gw: &Gateway, id: u64) -> u64 {
    participant_by_id(gw, "1000", id).and_then(|p| p["quiet_frames"].as_u64()).expect("browser in the API")
}

#[test]
fn a_browser_humming_far_below_speech_is_not_decoded_and_a_talking_one_is() {
    let gw = webrtc_gateway();
    gw.admin(&["room", "add", "--number", "1000"]);
    // A hum at −65 dBov: not silence, so Opus sends it rather than DTX frames, but Chromium
    // marks each packet with its level (RFC 6464), far below any talker's.
    let hum = gw.dir.path().join("hum.wav");
    write_sine_wav(&hum, 48000, 300.0, 0.0008, 120).unwrap();
    let humming = Chromium::start(Some(&hum)).unwrap();
    humming.navigate(&format!("http://{}/join/1000", gw.http)).unwrap();
    join(&humming, "", "Hum");
    let hummer = wait_joined(&humming, &gw);
    let talking = browser(&gw, "talker", 1200.0, "1000");
    join(&talking, "", "Talker");
    let talker = wait_joined(&talking, &gw);
    // The humming page hears the talker: the extension changes nothing of what is mixed.
    let levels = wait_page_hears(&humming, &[1200.0], &[]);
    assert!(levels[0] > -25.0, "the talker is not heard: {levels:?}\n{}", gw.log());

    let before = (quiet_frames(&gw, hummer), quiet_frames(&gw, talker));
    std::thread::sleep(Duration::from_secs(3));
    let after = (quiet_frames(&gw, hummer), quiet_frames(&gw, talker));
    println!("frames not decoded in 3 s: humming {}, talking {}", after.0 - before.0, after.1 - before.1);
    // Stats come every second, so at least 2 s of 20 ms frames (100) lie between.
    assert!(after.0 - before.0 >= 80, "the hum is decoded: {before:?} -> {after:?}\n{}", gw.log());
    assert!(after.1 - before.1 <= 2, "the talker is not decoded: {before:?} -> {after:?}");
    let hummer_view = participant_by_id(&gw, "1000", hummer).unwrap();
    assert_eq!(hummer_view["talking"], false, "{hummer_view}");
}

#[test]
fn the_page_is_served_and_bad_signalling_gets_errors_not_a_dropped_socket() {
    use tokio_tungstenite::tungstenite::{connect, Message};

    let gw = webrtc_gateway();
    for path in ["/", "/join/1000", "/join.js", "/join.css"] {
        let (code, body) = e2e::http_get(gw.http, path).unwrap();
        assert_eq!(code, 200, "{path}");
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{path} loads nothing from elsewhere"
        );
    }
    let (_, page) = e2e::http_get(gw.http, "/").unwrap();
    assert!(page.contains("id=\"pin\"") && page.contains("/join.js"), "{page}");

    let (mut ws, _) = connect(format!("ws://{}/ws", gw.http)).unwrap();
    let mut ask = |message: Message| -> Value {
        ws.send(message).unwrap();
        loop {
            if let Message::Text(text) = ws.read().unwrap() {
                return serde_json::from_str(&text).unwrap();
            }
        }
    };
    for bad in [
        "not json",
        r#"{"type":"dance"}"#,
        r#"{"type":"join","room":"1000"}"#,
        r#"{"type":"join","room":"1000","pin":"12ab","sdp":"v=0"}"#,
        r#"{"type":"join","room":"1000","sdp":"hello"}"#,
        r#"{"type":"mute","muted":"yes"}"#,
    ] {
        let reply = ask(Message::text(bad));
        assert_eq!(
            (reply["type"].as_str(), reply["code"].as_str()),
            (Some("error"), Some("bad-message")),
            "{bad}: {reply}"
        );
    }
    let reply = ask(Message::binary(vec![1, 2, 3]));
    assert_eq!(reply["code"], "bad-message");
    let huge = format!(r#"{{"type":"join","room":"1000","sdp":"v=0{}"}}"#, "x".repeat(100_000));
    assert_eq!(ask(Message::text(huge))["code"], "bad-message");
    assert_eq!(ask(Message::text(r#"{"type":"mute","muted":true}"#))["code"], "not-joined");
    // Still open and answering: an unknown room, then an offer that is no SDP.
    let reply = ask(Message::text(r#"{"type":"join","room":"4444","sdp":"v=0\r\n"}"#));
    assert_eq!(reply["code"], "not-found", "{reply}");
    gw.admin(&["room", "add", "--number", "4444"]);
    let reply =
        ask(Message::text(r#"{"type":"join","room":"4444","sdp":"v=0\r\nm=video 9 RTP/AVP 96\r\n"}"#));
    assert_eq!(reply["code"], "bad-sdp", "{reply}");
    assert!(participants(&gw, "4444").is_empty(), "nothing left behind");

    // A well-formed offer joins; then each candidate is an address the gateway would check, so
    // a page gets 32 of them and no more.
    let fingerprint = vec!["AB"; 32].join(":");
    let offer = format!(
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
         m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\n\
         a=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 {fingerprint}\r\n\
         a=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n"
    );
    let join = json!({"type": "join", "room": "4444", "name": "Script", "sdp": offer}).to_string();
    assert_eq!(ask(Message::text(join))["type"], "answer");
    // Admitted, but no ICE has connected: listed as connecting, not in the mix.
    let listed = participants(&gw, "4444");
    assert_eq!((listed.len(), listed[0]["state"].as_str()), (1, Some("connecting")), "{listed:?}");
    assert_eq!(listed[0]["joined"], false);
    let candidate = |port: u16| {
        let line = format!("candidate:1 1 udp 2122260223 127.0.0.1 {port} typ host");
        Message::text(json!({"type": "candidate", "candidate": line, "sdpMid": "0"}).to_string())
    };
    for port in 0..33 {
        ws.send(candidate(40000 + port)).unwrap();
    }
    // Errors are the only replies to candidates: the first one seen is the 33rd's.
    let refused = loop {
        let Message::Text(text) = ws.read().unwrap() else { continue };
        let reply: Value = serde_json::from_str(&text).unwrap();
        if reply["type"] == "error" {
            break reply;
        }
    };
    assert_eq!(refused["code"], "bad-candidate", "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("32"), "{refused}");
    ws.send(Message::text(r#"{"type":"leave"}"#)).unwrap();
    let left = wait_until(Duration::from_secs(5), || participants(&gw, "4444").is_empty());
    assert!(left, "the scripted page did not leave");
    assert!(gw.log().lines().all(|l| !l.contains("panicked")), "{}", gw.log());
}

#[test]
fn pages_beyond_the_limit_are_refused_until_one_closes() {
    use tokio_tungstenite::tungstenite::{connect, Error};

    let gw = gateway("[webrtc]\nmax_pages = 2\n");
    let url = format!("ws://{}/ws", gw.http);
    let (mut first, _) = connect(&url).unwrap();
    let (_second, _) = connect(&url).unwrap();
    match connect(&url) {
        Err(Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("a third page got {:?}", other.map(|(_, r)| r.status())),
    }
    // The page itself still loads; once a socket closes, another page may connect.
    assert_eq!(e2e::http_get(gw.http, "/join/1000").unwrap().0, 200);
    first.close(None).unwrap();
    let connected = wait_until(Duration::from_secs(5), || connect(&url).is_ok());
    assert!(connected, "a page slot was not given back: {}", gw.log());
}

#[test]
fn without_webrtc_there_is_no_page() {
    let gw = gateway("[webrtc]\nenabled = false\n");
    assert_eq!(e2e::http_get(gw.http, "/").unwrap().0, 404);
    assert_eq!(e2e::http_get(gw.http, "/ws").unwrap().0, 404);
}
