//! SIP over TLS: a baresip phone registers and calls over the gateway's TLS listener, and a
//! trunk registers over TLS, checking the server's certificate against its CA file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::baresip::{Baresip, PhoneOptions};
use e2e::{free_port, http_get, wait_until, Gateway};
use serde_json::Value;

/// A self-signed certificate for 127.0.0.1 and its key, as PEM files in `dir`.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    (cert, key)
}

/// A gateway with a TLS listener on its own port; returns it and the TLS address.
fn tls_gateway(cert: &Path, key: &Path, extra: &str) -> (Gateway, std::net::SocketAddr) {
    let tls: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let sip_keys = format!(
        "tls = [\"{tls}\"]\ntls_certificate = \"{}\"\ntls_private_key = \"{}\"\n",
        cert.display(),
        key.display()
    );
    (Gateway::start_with(&sip_keys, extra).unwrap(), tls)
}

fn registrations(gw: &Gateway) -> Vec<Value> {
    serde_json::from_slice::<Value>(&gw.admin(&["registrations", "--json"]))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn a_phone_registers_and_calls_over_tls() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(certs.path());
    let (gw, tls) = tls_gateway(&cert, &key, "");
    gw.admin(&["user", "add", "alice", "--password", "secret-pass-1"]);
    gw.admin(&["room", "add", "--number", "1000"]);

    let mut phone = Baresip::start(&PhoneOptions {
        extra_config: vec![format!("sip_cafile {}", cert.display())],
        ..PhoneOptions::default()
    })
    .unwrap();
    phone
        .add_account(&format!("<sip:alice@{tls};transport=tls>;auth_pass=secret-pass-1;regint=600"))
        .unwrap();
    phone.wait_event("REGISTER_OK", 0, Duration::from_secs(10)).unwrap();
    let binding = registrations(&gw).into_iter().next().expect("a binding");
    assert!(binding["source"].as_str().unwrap().starts_with("tls:"), "{binding}");

    let from = phone.events.len();
    phone.command("dial", &format!("sip:1000@{tls};transport=tls")).unwrap();
    phone.wait_event("CALL_ESTABLISHED", from, Duration::from_secs(10)).unwrap();
    let joined = wait_until(Duration::from_secs(5), || {
        http_get(gw.http, "/api/v1/conferences/1000")
            .is_ok_and(|(s, body)| s == 200 && body.contains("alice"))
    });
    assert!(joined, "{}", gw.log());
    let (_, metrics) = http_get(gw.http, "/metrics").unwrap();
    assert!(metrics.contains(r#"gateway_sip_requests_total{transport="tls",method="INVITE"}"#), "{metrics}");
}

#[test]
fn a_trunk_registers_over_tls_and_checks_the_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(certs.path());
    // B: the "carrier", with a TLS listener and an account for A.
    let (b, b_tls) = tls_gateway(&cert, &key, "");
    b.admin(&["user", "add", "gateway-a", "--password", "tls-secret-1"]);

    let trunk = |ca: &Path| {
        format!(
            "[[trunk]]\nname = \"b\"\nproxy = \"sip:{b_tls}\"\ntransport = \"tls\"\nusername = \"gateway-a\"\n\
             password = \"tls-secret-1\"\ntls_ca_file = \"{}\"\nexpires = 60\n",
            ca.display()
        )
    };
    // A trusts B's certificate: registered, over TLS.
    let (a, _) = tls_gateway(&cert, &key, &trunk(&cert));
    let registered = wait_until(Duration::from_secs(10), || {
        http_get(a.http, "/api/v1/trunks").is_ok_and(|(_, body)| body.contains(r#""state":"registered""#))
    });
    assert!(registered, "{}\n{}", a.log(), b.log());
    let binding =
        registrations(&b).into_iter().find(|r| r["username"] == "gateway-a").expect("A's binding at B");
    assert!(binding["source"].as_str().unwrap().starts_with("tls:"), "{binding}");
    assert!(binding["contact"].as_str().unwrap().to_ascii_lowercase().contains("transport=tls"), "{binding}");

    // A gateway trusting another CA refuses B's certificate: nothing registers.
    let other = tempfile::tempdir().unwrap();
    let (other_cert, _) = certificate(other.path());
    let (c, _) = tls_gateway(&cert, &key, &trunk(&other_cert));
    let failed = wait_until(Duration::from_secs(10), || c.log().contains("TLS handshake failed"));
    assert!(failed, "{}", c.log());
    assert!(registrations(&b).iter().filter(|r| r["username"] == "gateway-a").count() == 1);
}
