//! Conference tests' common ground: a gateway with an API token and an RTP range of its own,
//! registered baresip phones that send a tone and record what they hear, and the API and CLI
//! views of rooms and call records.

use std::path::Path;
use std::time::Duration;

use mixer::tone::tone_share_db;
use serde_json::Value;

use crate::baresip::{Baresip, PhoneOptions};
use crate::{http_get, read_wav, wait_until, write_tone_wav, Gateway};

pub use crate::API_TOKEN;

/// The password of every [`phone`]'s account.
pub const PHONE_PASSWORD: &str = "secret-pass-1";

/// A gateway (with [`API_TOKEN`]) and its own RTP port range; `extra` is appended to the config
/// (after `[rtp]`, so a key there lands in it; tables such as `[[trunk]]` may follow).
pub fn gateway(extra: &str) -> Gateway {
    let base = (crate::free_port() & !1).min(60_000);
    // The text right after Gateway's own keys lands in its [http] table.
    let config =
        format!("[rtp]\naddress = \"127.0.0.1\"\nport_min = {base}\nport_max = {}\n{extra}", base + 199);
    Gateway::start_with("", &config).unwrap()
}

/// A phone registered to `gw` as `user` (the account is created), sending a tone at
/// `frequency` in `codec` (a baresip codec name, with account parameters after it if any),
/// recording what it hears; `extra` config lines are added.
pub fn phone(gw: &Gateway, user: &str, frequency: f64, codec: &str, extra: &[&str]) -> Baresip {
    // In the gateway's directory, which goes away with the test.
    let wav = gw.dir.path().join(format!("{user}-{frequency}.wav"));
    write_tone_wav(&wav, source_rate(codec), frequency, 120).unwrap();
    phone_playing(gw, user, &wav, codec, extra)
}

/// The rate a phone's source runs at for `codec`: baresip 1.0's own resampler dulls high tones.
pub fn source_rate(codec: &str) -> u32 {
    match codec {
        c if c.starts_with("G722") => 16000,
        c if c.starts_with("opus") => 48000,
        _ => 8000,
    }
}

/// [`phone`] with its microphone playing `wav` (mono, at [`source_rate`]).
pub fn phone_playing(gw: &Gateway, user: &str, wav: &Path, codec: &str, extra: &[&str]) -> Baresip {
    let rate = source_rate(codec);
    gw.admin(&["user", "add", user, "--password", PHONE_PASSWORD]);
    let mut phone = Baresip::start(&PhoneOptions {
        audio_source: Some(wav.to_path_buf()),
        extra_config: [format!("ausrc_srate {rate}"), "ausrc_channels 1".into()]
            .into_iter()
            .chain(extra.iter().map(|l| l.to_string()))
            .collect(),
        record: true,
        ip: None,
    })
    .unwrap();
    phone
        .add_account(&format!(
            "<sip:{user}@{}>;auth_pass={PHONE_PASSWORD};regint=600;audio_codecs={codec}",
            gw.sip
        ))
        .unwrap();
    phone.wait_event("REGISTER_OK", 0, Duration::from_secs(10)).unwrap();
    phone
}

/// Dials `number` at `gw` and waits for the call to be up.
pub fn dial(phone: &mut Baresip, gw: &Gateway, number: &str) {
    let from = phone.events.len();
    phone.command("dial", &format!("sip:{number}@{}", gw.sip)).unwrap();
    phone.wait_event("CALL_ESTABLISHED", from, Duration::from_secs(10)).unwrap();
}

/// The participants of the live conference in `room` (none when there is none).
pub fn participants(gw: &Gateway, room: &str) -> Vec<Value> {
    match http_get(gw.http, &format!("/api/v1/conferences/{room}")).unwrap() {
        (200, body) => {
            serde_json::from_str::<Value>(&body).unwrap()["participants"].as_array().unwrap().clone()
        }
        _ => Vec::new(),
    }
}

/// The participant authenticated as `user`, or null.
pub fn participant(gw: &Gateway, room: &str, user: &str) -> Value {
    participants(gw, room).into_iter().find(|p| p["user"] == user).unwrap_or(Value::Null)
}

/// How many participants of `room` are in the mix (past the PIN, answered).
pub fn joined(gw: &Gateway, room: &str) -> usize {
    participants(gw, room).iter().filter(|p| p["joined"] == true).count()
}

/// Finished calls, newest first, from the CLI.
pub fn call_records(gw: &Gateway) -> Vec<Value> {
    let out = gw.admin(&["calls", "--json"]);
    serde_json::from_slice::<Value>(&out).unwrap().as_array().unwrap().clone()
}

/// Waits for a call record with `cause` and returns it.
pub fn wait_for_record(gw: &Gateway, cause: &str) -> Value {
    let mut found = None;
    let ok = wait_until(Duration::from_secs(15), || {
        found = call_records(gw).into_iter().find(|r| r["cause"] == cause);
        found.is_some()
    });
    assert!(ok, "no `{cause}` record: {:?}\n{}", call_records(gw), gw.log());
    found.unwrap()
}

/// The tone shares (dB) of `frequencies` over the last `seconds` of a recording, skipping the
/// final half second.
pub fn tones_heard(recording: &Path, frequencies: &[f64], seconds: f64) -> Vec<f64> {
    let (rate, samples) = read_wav(recording).unwrap();
    let end = samples.len().saturating_sub(rate as usize / 2);
    let start = end.saturating_sub((seconds * f64::from(rate)) as usize);
    assert!(end - start > rate as usize, "{} holds {} samples only", recording.display(), samples.len());
    frequencies.iter().map(|&f| tone_share_db(&samples[start..end], rate, f)).collect()
}
