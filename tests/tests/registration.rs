//! Desk phones registering to the gateway with digest auth: baresip as the phone.

use std::time::Duration;

use e2e::baresip::{Baresip, PhoneOptions};
use e2e::{cli, wait_until, Gateway};

fn registrations(gw: &Gateway) -> serde_json::Value {
    let out = cli(gw.dir.path(), &["registrations", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn add_user(gw: &Gateway, name: &str, password: &str) {
    let out = cli(gw.dir.path(), &["--config", "gateway.toml", "user", "add", name, "--password", password]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn baresip_registers_with_digest_auth_and_unregisters_on_quit() {
    let gw = Gateway::start("").unwrap();
    add_user(&gw, "alice", "wonderland1");
    let mut phone = Baresip::start(&PhoneOptions::default()).unwrap();
    phone.add_account(&format!("<sip:alice@{}>;auth_pass=wonderland1;regint=600", gw.sip)).unwrap();
    phone.wait_event("REGISTER_OK", 0, Duration::from_secs(10)).unwrap();

    let bindings = registrations(&gw);
    let bindings = bindings.as_array().unwrap();
    assert_eq!(bindings.len(), 1, "{bindings:?}");
    assert_eq!(bindings[0]["username"], "alice");
    let contact = bindings[0]["contact"].as_str().unwrap();
    assert!(
        contact.contains(&phone.sip.to_string()),
        "contact {contact} names the phone's address {}",
        phone.sip
    );
    assert_eq!(bindings[0]["source"], format!("udp:{}", phone.sip));
    let expires_in = (bindings[0]["expires_at_ms"].as_i64().unwrap() - now_ms()) / 1000;
    assert!((590..=600).contains(&expires_in), "granted expiry {expires_in}");

    // On quit baresip sends REGISTER with Expires: 0, which removes the binding.
    phone.quit().unwrap();
    let removed = wait_until(Duration::from_secs(5), || registrations(&gw) == serde_json::json!([]));
    assert!(removed, "binding still there: {}\n{}\n{}", registrations(&gw), gw.log(), phone.log());
}

#[test]
fn wrong_password_is_refused_and_nothing_is_bound() {
    let gw = Gateway::start("").unwrap();
    add_user(&gw, "bob", "correct-horse");
    let mut phone = Baresip::start(&PhoneOptions::default()).unwrap();
    phone.add_account(&format!("<sip:bob@{}>;auth_pass=battery-staple;regint=600", gw.sip)).unwrap();
    let failed = phone.wait_event("REGISTER_FAIL", 0, Duration::from_secs(10)).unwrap();
    assert!(failed["param"].as_str().unwrap_or("").contains("403"), "{failed}");
    assert_eq!(registrations(&gw), serde_json::json!([]));
    assert!(gw.log().contains("REGISTER refused"), "{}", gw.log());
}

#[test]
fn unknown_user_is_refused() {
    let gw = Gateway::start("").unwrap();
    let mut phone = Baresip::start(&PhoneOptions::default()).unwrap();
    phone.add_account(&format!("<sip:mallory@{}>;auth_pass=whatever1;regint=600", gw.sip)).unwrap();
    let failed = phone.wait_event("REGISTER_FAIL", 0, Duration::from_secs(10)).unwrap();
    assert!(failed["param"].as_str().unwrap_or("").contains("403"), "{failed}");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// baresip's account line as its users write it: no options but the password. baresip then
/// sends its `+sip.instance` (RFC 5626) in a quoted Contact parameter, which once got 400.
#[test]
fn baresip_registers_with_its_default_account_line_and_its_instance_is_kept() {
    let gw = Gateway::start("").unwrap();
    add_user(&gw, "carol", "wonderland2");
    let mut phone = Baresip::start(&PhoneOptions::default()).unwrap();
    phone.add_account(&format!("<sip:carol@{}>;auth_pass=wonderland2", gw.sip)).unwrap();
    phone.wait_event("REGISTER_OK", 0, Duration::from_secs(10)).unwrap();
    let bindings = registrations(&gw);
    let bindings = bindings.as_array().unwrap();
    assert_eq!(bindings.len(), 1, "{bindings:?}");
    let instance = bindings[0]["instance"].as_str().unwrap_or("");
    assert!(instance.starts_with("<urn:uuid:") && instance.ends_with('>'), "instance {instance:?}");
    phone.quit().unwrap();
}
