//! Desk phones in a conference: baresip phones registered with digest auth dial a room, enter
//! the PIN, and hear each other (and never themselves) through the gateway's mixer.

use std::path::Path;
use std::time::Duration;

use e2e::baresip::{Baresip, PhoneOptions};
use e2e::{cli, http_get, read_wav, wait_until, write_tone_wav, Gateway};
use mixer::tone::tone_share_db;
use serde_json::Value;

const TOKEN: &str = "test-token-0123456789abcdef";

/// A gateway with an API token and its own RTP port range; `extra` is appended to the config.
fn start_gateway(extra: &str) -> Gateway {
    let base = (e2e::free_port() & !1).min(60_000);
    // The text right after Gateway's own keys lands in its [http] table.
    let config = format!(
        "api_token = \"{TOKEN}\"\n[rtp]\naddress = \"127.0.0.1\"\nport_min = {base}\nport_max = {}\n{extra}",
        base + 199
    );
    Gateway::start_with("", &config).unwrap()
}

fn gw_cli(gw: &Gateway, args: &[&str]) {
    let mut full = vec!["--config", "gateway.toml"];
    full.extend_from_slice(args);
    let out = cli(gw.dir.path(), &full);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A registered phone sending a tone, recording what it hears.
fn phone(gw: &Gateway, user: &str, frequency: f64, codec: &str) -> Baresip {
    let wav_dir = tempfile::tempdir().unwrap().keep();
    let wav = wav_dir.join(format!("{frequency}.wav"));
    // The source runs at the codec's rate: baresip 1.0's own resampler dulls high tones.
    let rate = if codec.starts_with("G722") { 16000 } else { 8000 };
    write_tone_wav(&wav, rate, frequency, 120).unwrap();
    gw_cli(gw, &["user", "add", user, "--password", "secret-pass-1"]);
    let mut phone = Baresip::start(&PhoneOptions {
        audio_source: Some(wav),
        extra_config: vec![format!("ausrc_srate {rate}"), "ausrc_channels 1".into()],
        record: true,
    })
    .unwrap();
    phone
        .add_account(&format!(
            "<sip:{user}@{}>;auth_pass=secret-pass-1;regint=600;audio_codecs={codec}",
            gw.sip
        ))
        .unwrap();
    phone.wait_event("REGISTER_OK", 0, Duration::from_secs(10)).unwrap();
    phone
}

fn dial(phone: &mut Baresip, gw: &Gateway, number: &str) {
    let from = phone.events.len();
    phone.command("dial", &format!("sip:{number}@{}", gw.sip)).unwrap();
    phone.wait_event("CALL_ESTABLISHED", from, Duration::from_secs(10)).unwrap();
}

fn conference(gw: &Gateway, room: &str) -> Value {
    match http_get(gw.http, &format!("/api/v1/conferences/{room}")).unwrap() {
        (200, body) => serde_json::from_str(&body).unwrap(),
        _ => serde_json::json!({ "participants": [] }),
    }
}

fn joined(gw: &Gateway, room: &str) -> usize {
    conference(gw, room)["participants"].as_array().unwrap().iter().filter(|p| p["joined"] == true).count()
}

/// The tone shares (dB) of `frequencies` over the last seconds of a recording, skipping the
/// final half second.
fn tones_heard(recording: &Path, frequencies: &[f64], seconds: f64) -> Vec<f64> {
    let (rate, samples) = read_wav(recording).unwrap();
    let end = samples.len().saturating_sub(rate as usize / 2);
    let start = end.saturating_sub((seconds * f64::from(rate)) as usize);
    assert!(end - start > rate as usize, "{} holds {} samples only", recording.display(), samples.len());
    frequencies.iter().map(|&f| tone_share_db(&samples[start..end], rate, f)).collect()
}

/// Three phones, three codecs: the mixer transcodes between them.
const CODECS: [&str; 3] = ["PCMU/8000/1", "G722/16000/1", "PCMA/8000/1"];

#[test]
fn three_phones_with_pin_each_hear_the_other_two_and_never_themselves() {
    let gw = start_gateway("");
    gw_cli(&gw, &["room", "add", "--number", "1000", "--pin", "4321"]);
    let tones = [500.0, 1100.0, 1700.0];
    let mut phones: Vec<Baresip> =
        tones.iter().enumerate().map(|(i, &f)| phone(&gw, &format!("user{i}"), f, CODECS[i])).collect();
    for p in &mut phones {
        dial(p, &gw, "1000");
        p.command("sndcode", "4321#").unwrap();
    }
    assert!(
        wait_until(Duration::from_secs(15), || joined(&gw, "1000") == 3),
        "not all joined: {}\n{}",
        conference(&gw, "1000"),
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
