//! Registration client behaviour in virtual time against a registrar made of the stack's own
//! digest server (interop with Kamailio is an end-to-end test in `tests/`).

use std::time::{Duration, Instant};

use super::*;
use crate::digest::{ha1, Algorithm, DigestResponse, DigestServer};

fn config() -> RegistrationConfig {
    RegistrationConfig {
        registrar: rsip::Uri::try_from("sip:127.0.0.1:5080").unwrap(),
        aor: rsip::Uri::try_from("sip:+15551230000@127.0.0.1:5080").unwrap(),
        contact: rsip::Uri::try_from("sip:+15551230000@127.0.0.1:5060").unwrap(),
        auth_username: "acct-42".into(),
        password: "secret".into(),
        realm: None,
        expires: 300,
        transport: Transport::Udp,
        local: "127.0.0.1:5060".parse().unwrap(),
        user_agent: Some("gw".into()),
        retry_base: Duration::from_secs(2),
        retry_max: Duration::from_secs(300),
        learn_public_address: true,
    }
}

/// A response to `request` with `code`, the Via stamped with `received`/`rport` as a registrar
/// would, plus `extra` header lines.
fn reply(request: &Request, code: u16, via_seen: Option<&str>, extra: &[String]) -> Response {
    let mut text = format!("SIP/2.0 {code} Reason\r\n");
    for h in request.headers.iter() {
        match h {
            Header::Via(v) => {
                let mut value = v.value().replace(";rport", "");
                if let Some(seen) = via_seen {
                    value.push_str(seen);
                } else {
                    value.push_str(";received=127.0.0.1;rport=5060");
                }
                text += &format!("Via: {value}\r\n");
            }
            Header::From(_) | Header::CallId(_) | Header::CSeq(_) => text += &format!("{h}\r\n"),
            Header::To(v) => text += &format!("To: {};tag=reg\r\n", v.value()),
            _ => {}
        }
    }
    for e in extra {
        text += &format!("{e}\r\n");
    }
    text += "Content-Length: 0\r\n\r\n";
    Response::try_from(text.as_str()).unwrap()
}

/// The value of the first header called `name` (case-insensitive).
fn header(request: &Request, name: &str) -> Option<String> {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    request
        .headers
        .iter()
        .map(|h| h.to_string())
        .find(|h| h.to_ascii_lowercase().starts_with(&prefix))
        .map(|h| h[prefix.len()..].trim().to_string())
}

struct Registrar {
    digest: DigestServer,
    password: String,
}

impl Registrar {
    fn new(password: &str) -> Registrar {
        Registrar {
            digest: DigestServer::new("carrier", [3; 32], 300).with_algorithms(vec![Algorithm::Md5]),
            password: password.into(),
        }
    }

    /// 401 without valid credentials, 200 granting `grant` seconds with them.
    fn answer(&mut self, request: &Request, now_secs: u64, grant: u32) -> Response {
        let creds = header(request, "Authorization").and_then(|v| DigestResponse::parse(&v).ok());
        let ok = creds.is_some_and(|c| {
            let stored = ha1(c.algorithm, &c.username, "carrier", &self.password);
            c.username == "acct-42" && self.digest.verify(now_secs, "REGISTER", &c, &stored).is_ok()
        });
        if ok {
            let contact = header(request, "Contact").unwrap();
            reply(request, 200, None, &[format!("Contact: {contact};expires={grant}")])
        } else {
            let challenges: Vec<String> = self
                .digest
                .challenges(now_secs, false)
                .into_iter()
                .map(|c| format!("WWW-Authenticate: {c}"))
                .collect();
            reply(request, 401, None, &challenges)
        }
    }
}

#[allow(clippy::disallowed_methods)] // the origin of virtual time
fn t0() -> Instant {
    Instant::now()
}

fn states(client: &mut RegistrationClient) -> Vec<&'static str> {
    std::iter::from_fn(|| client.poll_event())
        .filter_map(|e| match e {
            RegEvent::StateChanged(s) => Some(s.name()),
            RegEvent::PublicAddress(_) => None,
        })
        .collect()
}

#[test]
fn registers_with_auth_and_refreshes_before_expiry() {
    let (t0, mut registrar) = (t0(), Registrar::new("secret"));
    let mut client = RegistrationClient::new(config(), 1);
    client.start(t0);
    let first = client.poll_request().unwrap();
    assert!(header(&first, "Authorization").is_none());
    assert_eq!(header(&first, "Expires").as_deref(), Some("300"));
    assert_eq!(header(&first, "From").unwrap().split(';').next(), Some("<sip:+15551230000@127.0.0.1:5080>"));
    client.handle_response(t0, &registrar.answer(&first, 0, 300));
    let second = client.poll_request().unwrap();
    let auth = header(&second, "Authorization").unwrap();
    assert!(auth.contains("username=\"acct-42\"") && auth.contains("nc=00000001"), "{auth}");
    client.handle_response(t0, &registrar.answer(&second, 0, 300));
    let RegState::Registered { expires, refresh_at, .. } = client.state().clone() else {
        panic!("not registered: {:?}", client.state())
    };
    assert_eq!(expires, 300);
    assert_eq!(refresh_at, t0 + Duration::from_secs(270));
    assert_eq!(client.poll_timeout(), Some(refresh_at));
    assert_eq!(states(&mut client), ["registering", "registered"]);

    // The refresh reuses the nonce with the next count, and keeps the Call-ID.
    client.handle_timeout(refresh_at);
    let refresh = client.poll_request().unwrap();
    assert!(header(&refresh, "Authorization").unwrap().contains("nc=00000002"));
    assert_eq!(header(&refresh, "Call-ID"), header(&first, "Call-ID"));
    client.handle_response(refresh_at, &registrar.answer(&refresh, 270, 120));
    assert!(matches!(client.state(), RegState::Registered { expires: 120, .. }));
    assert_eq!(client.poll_timeout(), Some(refresh_at + Duration::from_secs(108)));
}

#[test]
fn wrong_password_is_rejected_without_a_retry_loop() {
    let (t0, mut registrar) = (t0(), Registrar::new("other"));
    let mut client = RegistrationClient::new(config(), 2);
    client.start(t0);
    for _ in 0..2 {
        let request = client.poll_request().unwrap();
        client.handle_response(t0, &registrar.answer(&request, 0, 300));
    }
    assert!(matches!(client.state(), RegState::Rejected { .. }), "{:?}", client.state());
    assert_eq!(client.poll_request(), None);
    // No retry loop: the next attempt is ten minutes away, and each refusal doubles the wait
    // up to an hour.
    let mut at = t0;
    for wait in [600, 1200, 2400, 3600, 3600] {
        assert_eq!(client.poll_timeout(), Some(at + Duration::from_secs(wait)), "after {wait} s");
        at += Duration::from_secs(wait);
        client.handle_timeout(at);
        assert_eq!(client.state().name(), "registering");
        for _ in 0..2 {
            let request = client.poll_request().unwrap();
            client.handle_response(at, &registrar.answer(&request, 0, 300));
        }
        assert_eq!(client.state().name(), "rejected");
    }
    // Starting again (new configuration) tries again at once.
    client.start(at);
    assert!(client.poll_request().is_some());
}

#[test]
fn a_transient_403_is_tried_again_and_registers() {
    let (t0, mut registrar) = (t0(), Registrar::new("secret"));
    let mut client = RegistrationClient::new(config(), 9);
    client.start(t0);
    let request = client.poll_request().unwrap();
    client.handle_response(t0, &reply(&request, 403, None, &[]));
    let RegState::Rejected { next_attempt, .. } = client.state().clone() else {
        panic!("{:?}", client.state())
    };
    assert_eq!(next_attempt, t0 + Duration::from_secs(600));
    client.handle_timeout(next_attempt);
    for _ in 0..2 {
        let request = client.poll_request().unwrap();
        client.handle_response(next_attempt, &registrar.answer(&request, 600, 300));
    }
    assert_eq!(client.state().name(), "registered");
}

#[test]
fn a_huge_retry_after_is_capped_and_does_not_overflow() {
    let t0 = t0();
    let mut client = RegistrationClient::new(config(), 10);
    client.start(t0);
    let request = client.poll_request().unwrap();
    client.handle_response(t0, &reply(&request, 503, None, &["Retry-After: 18446744073709551615".into()]));
    assert_eq!(client.poll_timeout(), Some(t0 + RETRY_AFTER_MAX));
}

#[test]
fn forbidden_is_rejected() {
    let t0 = t0();
    let mut client = RegistrationClient::new(config(), 3);
    client.start(t0);
    let request = client.poll_request().unwrap();
    client.handle_response(t0, &reply(&request, 403, None, &[]));
    assert!(matches!(client.state(), RegState::Rejected { reason, .. } if reason.starts_with("403")));
}

#[test]
fn stale_nonce_is_answered_again() {
    let (t0, mut registrar) = (t0(), Registrar::new("secret"));
    let mut client = RegistrationClient::new(config(), 4);
    client.start(t0);
    let first = client.poll_request().unwrap();
    client.handle_response(t0, &registrar.answer(&first, 0, 300));
    let second = client.poll_request().unwrap();
    let stale: Vec<String> = registrar
        .digest
        .challenges(400, true)
        .into_iter()
        .map(|c| format!("WWW-Authenticate: {c}"))
        .collect();
    client.handle_response(t0, &reply(&second, 401, None, &stale));
    assert!(matches!(client.state(), RegState::Registering));
    let third = client.poll_request().unwrap();
    client.handle_response(t0, &registrar.answer(&third, 400, 300));
    assert!(matches!(client.state(), RegState::Registered { .. }));
}

#[test]
fn interval_too_brief_raises_the_expiry() {
    let t0 = t0();
    let mut client = RegistrationClient::new(config(), 5);
    client.start(t0);
    let first = client.poll_request().unwrap();
    client.handle_response(t0, &reply(&first, 423, None, &["Min-Expires: 600".into()]));
    let second = client.poll_request().unwrap();
    assert_eq!(header(&second, "Expires").as_deref(), Some("600"));
}

#[test]
fn failures_back_off_exponentially_with_jitter_forever() {
    let t0 = t0();
    let mut client = RegistrationClient::new(config(), 6);
    client.start(t0);
    let mut now = t0;
    let mut delays = Vec::new();
    for _ in 0..15 {
        assert!(client.poll_request().is_some());
        client.handle_failure(now, RegFailure::Timeout);
        let RegState::Retrying { next_attempt, .. } = client.state().clone() else { panic!("not retrying") };
        delays.push((next_attempt - now).as_secs_f64());
        now = next_attempt;
        client.handle_timeout(now);
    }
    for (i, d) in delays.iter().enumerate() {
        let nominal = (2.0 * 2f64.powi(i as i32)).min(300.0);
        assert!((nominal * 0.8..=nominal * 1.2).contains(d), "retry {i}: {d} s vs nominal {nominal}");
    }
    assert!(client.poll_request().is_some(), "still trying after 15 failures");
}

#[test]
fn retry_after_is_honoured() {
    let t0 = t0();
    let mut client = RegistrationClient::new(config(), 7);
    client.start(t0);
    let request = client.poll_request().unwrap();
    client.handle_response(t0, &reply(&request, 503, None, &["Retry-After: 120".into()]));
    assert_eq!(client.poll_timeout(), Some(t0 + Duration::from_secs(120)));
}

#[test]
fn public_address_from_via_goes_into_the_contact() {
    let (t0, mut registrar) = (t0(), Registrar::new("secret"));
    let mut client = RegistrationClient::new(config(), 8);
    client.start(t0);
    let first = client.poll_request().unwrap();
    client.handle_response(t0, &registrar.answer(&first, 0, 300));
    let second = client.poll_request().unwrap();
    let ok = registrar.answer(&second, 0, 300);
    // The same 200, as seen through a NAT.
    let natted = Response::try_from(
        ok.to_string().replace("received=127.0.0.1;rport=5060", "received=203.0.113.5;rport=40000").as_str(),
    )
    .unwrap();
    client.handle_response(t0, &natted);
    let events: Vec<RegEvent> = std::iter::from_fn(|| client.poll_event()).collect();
    assert!(events.contains(&RegEvent::PublicAddress("203.0.113.5:40000".parse().unwrap())));
    let third = client.poll_request().unwrap();
    assert_eq!(header(&third, "Contact").as_deref(), Some("<sip:+15551230000@203.0.113.5:40000>"));
}

#[test]
fn stop_unregisters_and_stale_responses_are_ignored() {
    let (t0, mut registrar) = (t0(), Registrar::new("secret"));
    let mut client = RegistrationClient::new(config(), 9);
    client.start(t0);
    let first = client.poll_request().unwrap();
    client.handle_response(t0, &registrar.answer(&first, 0, 300));
    let second = client.poll_request().unwrap();
    client.handle_response(t0, &registrar.answer(&second, 0, 300));
    client.stop(t0);
    let bye = client.poll_request().unwrap();
    assert_eq!(header(&bye, "Expires").as_deref(), Some("0"));
    // A late answer to an older request changes nothing.
    client.handle_response(t0, &reply(&first, 500, None, &[]));
    assert_eq!(client.state(), &RegState::Unregistering);
    client.handle_response(t0, &registrar.answer(&bye, 0, 0));
    assert_eq!(client.state(), &RegState::Unregistered);
    assert_eq!(client.poll_timeout(), None);
}
