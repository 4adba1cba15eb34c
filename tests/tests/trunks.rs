//! The gateway registering upstream: Kamailio as a carrier's registrar demanding digest auth
//! with an auth username (acct-42) different from the number in From (+15551230000), and as
//! the carrier routing a subscriber's call to the gateway's number.

use std::time::Duration;

use e2e::baresip::{Baresip, PhoneOptions};
use e2e::kamailio::Kamailio;
use e2e::{cli, http_get, wait_until, write_tone_wav, Gateway};
use serde_json::Value;

fn trunk_config(kamailio: &Kamailio, password: &str, expires: u32) -> String {
    format!(
        "[[trunk]]\nname = \"carrier\"\nproxy = \"sip:{}\"\nusername = \"+15551230000\"\n\
         auth_username = \"acct-42\"\npassword = \"{password}\"\nexpires = {expires}\n",
        kamailio.addr
    )
}

fn trunk(gw: &Gateway) -> Value {
    let (status, body) = http_get(gw.http, "/api/v1/trunks").unwrap();
    assert_eq!(status, 200, "{body}");
    let trunks: Value = serde_json::from_str(&body).unwrap();
    trunks.as_array().and_then(|t| t.first()).cloned().unwrap_or(Value::Null)
}

fn wait_trunk(gw: &Gateway, timeout: Duration, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let ok = wait_until(timeout, || done(&trunk(gw)));
    assert!(ok, "trunk never {what}: {}\n{}", trunk(gw), gw.log());
    trunk(gw)
}

#[test]
fn registers_to_kamailio_refreshes_and_recovers_after_an_outage() {
    let mut kamailio = Kamailio::new("registrar", "carrier-secret").unwrap();
    kamailio.start().unwrap();
    // T1 = 100 ms: a REGISTER sent into the outage times out after 6.4 s instead of 32.
    // OPTIONS pings every 5 s tell whether the trunk answers, registered or not.
    let config = format!("{}options_interval_secs = 5\n", trunk_config(&kamailio, "carrier-secret", 10));
    let mut gw = Gateway::start_with("t1_ms = 100", &config).unwrap();

    let t = wait_trunk(&gw, Duration::from_secs(10), "registered", |t| t["state"] == "registered");
    wait_trunk(&gw, Duration::from_secs(5), "reachable", |t| t["reachable"] == true);
    assert!(t["registered_until_ms"].as_i64().is_some(), "{t}");
    let dump = kamailio.bindings();
    assert!(dump.contains("+15551230000"), "Kamailio has no binding for the number:\n{dump}");
    assert!(dump.contains(&format!("sip:+15551230000@{}", gw.sip)), "contact not ours:\n{dump}");

    // Granted 10 s: the refresh goes out 5 s in and succeeds.
    wait_trunk(&gw, Duration::from_secs(15), "refreshed", |t| t["registrations"].as_u64() >= Some(2));
    let (_, metrics) = http_get(gw.http, "/metrics").unwrap();
    assert!(metrics.contains(r#"gateway_trunk_registered{trunk="carrier"} 1"#), "{metrics}");

    // The registrar goes away for longer than the refresh interval: the trunk says so…
    kamailio.stop();
    let t = wait_trunk(&gw, Duration::from_secs(60), "retrying", |t| t["state"] == "retrying");
    assert!(t["next_attempt_ms"].as_i64().is_some() && t["detail"].is_string(), "{t}");
    wait_trunk(&gw, Duration::from_secs(20), "unreachable", |t| t["reachable"] == false);
    let (_, metrics) = http_get(gw.http, "/metrics").unwrap();
    assert!(metrics.contains(r#"gateway_trunk_reachable{trunk="carrier"} 0"#), "{metrics}");
    // …and registers again by itself once it is back.
    kamailio.start().unwrap();
    wait_trunk(&gw, Duration::from_secs(60), "registered again", |t| t["state"] == "registered");
    wait_trunk(&gw, Duration::from_secs(20), "reachable again", |t| t["reachable"] == true);
    assert!(kamailio.bindings().contains("+15551230000"));

    // On shutdown the gateway un-registers.
    let status = gw.terminate().unwrap();
    assert!(status.success());
    let gone = wait_until(Duration::from_secs(5), || !kamailio.bindings().contains("+15551230000"));
    assert!(gone, "binding left at the registrar:\n{}", kamailio.bindings());
}

#[test]
fn wrong_password_is_rejected_without_hammering_the_registrar() {
    let mut kamailio = Kamailio::new("registrar", "carrier-secret").unwrap();
    kamailio.start().unwrap();
    let gw = Gateway::start(&trunk_config(&kamailio, "not-the-password", 300)).unwrap();
    let t = wait_trunk(&gw, Duration::from_secs(10), "rejected", |t| t["state"] == "rejected");
    assert!(t["detail"].as_str().unwrap_or("").contains("credentials"), "{t}");
    assert!(gw.log().contains("trunk credentials rejected"), "{}", gw.log());
    // Exactly two REGISTERs reached Kamailio (the bare one and one answer), and no more come.
    let challenges = || kamailio.log().matches("challenge for REGISTER").count();
    assert_eq!(challenges(), 2, "{}", kamailio.log());
    let more = wait_until(Duration::from_secs(3), || challenges() > 2);
    assert!(!more, "the gateway kept retrying a rejected trunk");
    assert_eq!(trunk(&gw)["state"], "rejected");
}

#[test]
fn a_phone_at_the_carrier_calls_the_gateways_did_and_joins_the_room() {
    let mut kamailio = Kamailio::new("carrier", "carrier-secret").unwrap();
    kamailio.start().unwrap();
    // Calls relayed by the carrier come from its address: trusted, no digest auth asked.
    let trunk = format!(
        "{}inbound_sources = [\"{}\"]\n",
        trunk_config(&kamailio, "carrier-secret", 60),
        kamailio.addr
    );
    let gw = Gateway::start(&trunk).unwrap();
    let out = cli(
        gw.dir.path(),
        &["--config", "gateway.toml", "room", "add", "--number", "3000", "--did", "+15551230000"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_trunk(&gw, Duration::from_secs(10), "registered", |t| t["state"] == "registered");

    // A subscriber of the carrier calls the gateway's number.
    let mut phone = Baresip::start(&PhoneOptions::default()).unwrap();
    phone.add_account(&format!("<sip:alice@{}>;auth_pass=alice-pass;regint=600", kamailio.addr)).unwrap();
    phone.wait_event("REGISTER_OK", 0, Duration::from_secs(10)).unwrap();
    let from = phone.events.len();
    phone.command("dial", &format!("sip:+15551230000@{}", kamailio.addr)).unwrap();
    phone.wait_event("CALL_ESTABLISHED", from, Duration::from_secs(10)).unwrap();
    let in_room = wait_until(Duration::from_secs(5), || {
        let (status, body) = http_get(gw.http, "/api/v1/conferences/3000").unwrap();
        status == 200 && body.contains(r#""user":"trunk:carrier""#) && body.contains(r#""joined":true"#)
    });
    assert!(in_room, "{}\n{}", gw.log(), kamailio.log());

    // The phone hangs up: the BYE comes through the carrier (record-routed) and ends the call.
    let from = phone.events.len();
    phone.command("hangup", "").unwrap();
    phone.wait_event("CALL_CLOSED", from, Duration::from_secs(5)).unwrap();
    let ended = wait_until(Duration::from_secs(5), || {
        gw.log().contains("cause=\"normal\"") || gw.log().contains("cause=normal")
    });
    assert!(ended, "{}", gw.log());
}

#[test]
fn registers_over_tcp_on_one_connection() {
    let mut kamailio = Kamailio::new("registrar", "carrier-secret").unwrap();
    kamailio.start().unwrap();
    let config = format!(
        "{}transport = \"tcp\"\noptions_interval_secs = 5\n",
        trunk_config(&kamailio, "carrier-secret", 10)
    );
    let gw = Gateway::start(&config).unwrap();
    wait_trunk(&gw, Duration::from_secs(10), "registered", |t| t["state"] == "registered");
    // The registrar has the binding on TCP, with a Contact that says so.
    let dump = kamailio.bindings().to_ascii_lowercase();
    assert!(dump.contains(&format!("sip:+15551230000@{};transport=tcp", gw.sip)), "{dump}");
    assert_eq!(dump.matches("address: sip:").count(), 1, "one binding for {}: {dump}\n{}", gw.sip, gw.log());
    assert!(dump.contains("socket: tcp:127.0.0.1"), "bound to the TCP socket: {dump}");
    // A refresh and an OPTIONS ping later, still one connection.
    wait_trunk(&gw, Duration::from_secs(15), "refreshed", |t| t["registrations"].as_u64() >= Some(2));
    wait_trunk(&gw, Duration::from_secs(5), "reachable", |t| t["reachable"] == true);
    let (_, metrics) = http_get(gw.http, "/metrics").unwrap();
    assert!(metrics.contains("gateway_sip_tcp_connections 1"), "{metrics}");
}

/// The tone shares (dB) of `frequencies` in the phone's recording's last `seconds`.
fn heard(phone: &e2e::baresip::Baresip, frequencies: &[f64], seconds: f64) -> Vec<f64> {
    let recording = phone.recordings("dec.wav");
    assert_eq!(recording.len(), 1, "{}", phone.log());
    e2e::room::tones_heard(&recording[0], frequencies, seconds)
}

#[test]
fn sighup_swaps_trunks_and_prompts_and_keeps_the_calls() {
    use e2e::room::{dial, gateway, joined, phone};
    let mut old_carrier = Kamailio::new("registrar", "carrier-secret").unwrap();
    old_carrier.start().unwrap();
    let mut new_carrier = Kamailio::new("registrar", "mcu-secret").unwrap();
    new_carrier.start().unwrap();

    // The PIN prompt is a 700 Hz tone at first, 1300 Hz after the reload.
    let gw = gateway("");
    let (old_prompt, new_prompt) = (gw.dir.path().join("old.wav"), gw.dir.path().join("new.wav"));
    write_tone_wav(&old_prompt, 8000, 700.0, 4).unwrap();
    write_tone_wav(&new_prompt, 8000, 1300.0, 4).unwrap();
    let config_path = gw.dir.path().join("gateway.toml");
    let base = std::fs::read_to_string(&config_path).unwrap();
    let old_trunk = trunk_config(&old_carrier, "carrier-secret", 300);
    let config = |prompt: &str, trunks: &str, extra: &str| {
        format!("{base}{extra}\n[prompts]\nenter_pin = \"{prompt}\"\n{trunks}")
    };
    std::fs::write(&config_path, config("old.wav", &old_trunk, "")).unwrap();
    // The gateway read the file without these: it takes them on the first reload.
    gw.reload();
    wait_trunk(&gw, Duration::from_secs(10), "registered", |t| t["state"] == "registered");
    assert!(old_carrier.bindings().contains("+15551230000"), "{}", old_carrier.bindings());

    // A call is going on.
    gw.admin(&["room", "add", "--number", "3000"]);
    gw.admin(&["room", "add", "--number", "4000", "--pin", "2468"]);
    let mut alice = phone(&gw, "alice", 500.0, "PCMU/8000/1", &[]);
    let mut bob = phone(&gw, "bob", 1100.0, "PCMU/8000/1", &[]);
    dial(&mut alice, &gw, "3000");
    dial(&mut bob, &gw, "3000");
    assert!(wait_until(Duration::from_secs(10), || joined(&gw, "3000") == 2), "{}", gw.log());

    // The carrier goes, an MCU's trunk (its own registrar, named by a host name the reload
    // resolves) comes, the prompt changes; and a table that only a restart applies changes too.
    let new_trunk = format!(
        "[[trunk]]\nname = \"mcu\"\nproxy = \"sip:localhost:{}\"\nusername = \"+15551230000\"\n\
         auth_username = \"acct-42\"\npassword = \"mcu-secret\"\n",
        new_carrier.addr.port()
    );
    let (alice_events, bob_events) = (alice.events.len(), bob.events.len());
    std::fs::write(&config_path, config("new.wav", &new_trunk, "[conference]\npin_attempts = 5")).unwrap();
    gw.reload();
    let trunks = || -> Vec<Value> {
        let (_, body) = http_get(gw.http, "/api/v1/trunks").unwrap();
        serde_json::from_str::<Value>(&body).unwrap().as_array().unwrap().clone()
    };
    let swapped = wait_until(Duration::from_secs(10), || {
        let t = trunks();
        t.len() == 1 && t[0]["name"] == "mcu" && t[0]["state"] == "registered"
    });
    assert!(swapped, "{:?}\n{}", trunks(), gw.log());
    assert!(new_carrier.bindings().contains("+15551230000"), "{}", new_carrier.bindings());
    // The old carrier's binding was taken back, not left to expire.
    let gone = wait_until(Duration::from_secs(5), || !old_carrier.bindings().contains("+15551230000"));
    assert!(gone, "binding left at the old carrier:\n{}", old_carrier.bindings());
    let log = gw.log();
    assert!(log.contains("[conference]") && log.contains("takes effect at the next restart"), "{log}");

    // The call went on through it: no BYE.
    std::thread::sleep(Duration::from_secs(2));
    for (phone, from) in [(&mut alice, alice_events), (&mut bob, bob_events)] {
        let closed = phone.wait_event("CALL_CLOSED", from, Duration::from_millis(200));
        assert!(closed.is_err(), "a call was dropped by the reload: {}", phone.log());
    }
    assert_eq!(joined(&gw, "3000"), 2);

    // A new caller hears the new prompt.
    let mut carol = phone(&gw, "carol", 900.0, "PCMU/8000/1", &[]);
    dial(&mut carol, &gw, "4000");
    std::thread::sleep(Duration::from_secs(3));
    carol.command("hangup", "").unwrap();
    let prompt = heard(&carol, &[1300.0, 700.0], 2.0);
    assert!(prompt[0] > -10.0 && prompt[1] < -30.0, "carol did not hear the new prompt: {prompt:?}");

    // A file that does not load changes nothing, and the log names the key.
    std::fs::write(&config_path, config("new.wav", &new_trunk, "[conference]\npin_atempts = 5")).unwrap();
    gw.reload();
    let refused = wait_until(Duration::from_secs(5), || gw.log().contains("configuration not reloaded"));
    assert!(refused, "{}", gw.log());
    assert!(gw.log().contains("pin_atempts"), "the error does not name the key:\n{}", gw.log());
    assert_eq!(trunks()[0]["state"], "registered");
    assert_eq!(joined(&gw, "3000"), 2);

    // A trunk whose table changes registers anew; its binding is replaced, never taken back.
    let before = gw.log().matches("trunk registered trunk=mcu").count();
    let changed = new_trunk.replace("password", "expires = 120\npassword");
    std::fs::write(&config_path, config("new.wav", &changed, "[conference]\npin_attempts = 5")).unwrap();
    gw.reload();
    let again = wait_until(Duration::from_secs(5), || {
        gw.log().matches("trunk registered trunk=mcu").count() > before
    });
    assert!(again, "{}", gw.log());
    assert!(gw.log().contains("trunk registered trunk=mcu expires=120"), "{}", gw.log());
    std::thread::sleep(Duration::from_secs(1));
    assert!(new_carrier.bindings().contains("+15551230000"), "{}", new_carrier.bindings());
    assert_eq!(trunks()[0]["state"], "registered");

    // After all the reloads the two phones still hear each other.
    std::thread::sleep(Duration::from_secs(3));
    alice.command("hangup", "").unwrap();
    bob.command("hangup", "").unwrap();
    assert!(heard(&alice, &[1100.0], 2.5)[0] > -10.0, "alice no longer hears bob");
    assert!(heard(&bob, &[500.0], 2.5)[0] > -10.0, "bob no longer hears alice");
}
