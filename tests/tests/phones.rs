//! The phone corpus (`sip-stack/tests/phones/`) against the running gateway: each REGISTER,
//! INVITE, re-INVITE and INFO in a real phone's or carrier's shape is sent over UDP, first as
//! it is and then answering the digest challenge as the phone would, and must get the answer
//! `EXPECTED` names — never a 400. Answered INVITEs are acknowledged and hung up.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use e2e::sipua::{self, header};
use e2e::Gateway;
use sip_stack::digest::Challenge;

const PASSWORD: &str = "corpus-pass-1";

fn corpus_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sip-stack/tests/phones")
}

/// `(file, without credentials, with credentials)` from `EXPECTED`.
fn expected() -> Vec<(String, u16, u16)> {
    std::fs::read_to_string(corpus_dir().join("EXPECTED"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[1].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect()
}

/// A phone's socket sending corpus messages to the gateway.
struct Phone {
    socket: UdpSocket,
    gateway: SocketAddr,
    sent: u32,
}

impl Phone {
    /// `text` with its placeholders filled for this socket; `cseq_bump` added to its CSeq and
    /// `authorization` inserted when given.
    fn fill(&mut self, text: &str, call_id: &str, cseq_bump: u32, authorization: Option<&str>) -> String {
        self.sent += 1;
        let local = self.socket.local_addr().unwrap();
        let text = text
            .replace("$LOCAL_HOST", &local.ip().to_string())
            .replace("$LOCAL_PORT", &local.port().to_string())
            .replace("$GATEWAY", &self.gateway.to_string())
            .replace("$RTP_PORT", "9")
            .replace("$BRANCH", &format!("corpus{}", self.sent))
            .replace("$CALL_ID", call_id);
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let mut lines: Vec<String> = head.split("\r\n").map(str::to_string).collect();
        for line in lines.iter_mut() {
            if let Some(rest) = line.strip_prefix("CSeq: ") {
                let (n, method) = rest.split_once(' ').unwrap();
                *line = format!("CSeq: {} {method}", n.parse::<u32>().unwrap() + cseq_bump);
            }
            if line.starts_with("Content-Length") {
                *line = format!("Content-Length: {}", body.len());
            }
        }
        if let Some(auth) = authorization {
            lines.insert(1, format!("Authorization: {auth}"));
        }
        format!("{}\r\n\r\n{body}", lines.join("\r\n"))
    }

    /// Sends `message` and returns its final response (provisional ones are skipped).
    fn exchange(&self, message: &str) -> String {
        sipua::exchange(&self.socket, self.gateway, message).unwrap_or_else(|e| panic!("{e}:\n{message}"))
    }
}

fn status(response: &str) -> u16 {
    response[8..11].parse().unwrap()
}

#[test]
fn real_phone_and_carrier_messages_get_their_expected_answers() {
    // Every REGISTER of the corpus is alice's: room for all of them.
    let gw = Gateway::start("[limits]\nbindings_per_user = 64\n").unwrap();
    gw.admin(&["user", "add", "alice", "--password", PASSWORD]);
    gw.admin(&["room", "add", "--number", "1000"]);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut phone = Phone { socket, gateway: gw.sip, sent: 0 };
    let mut wrong = Vec::new();
    let cases = expected();
    assert!(cases.len() >= 30);
    for (name, without, with) in cases {
        let text = std::fs::read_to_string(corpus_dir().join(format!("{name}.sip"))).unwrap();
        let call_id = format!("{name}-{}", phone.sent);
        let message = phone.fill(&text, &call_id, 0, None);
        let first = phone.exchange(&message);
        if status(&first) != without {
            wrong.push(format!("{name}: got {} without credentials, expected {without}", &first[8..]));
            continue;
        }
        let last = match header(&first, "WWW-Authenticate") {
            Some(challenge) => {
                let challenge = Challenge::parse(challenge).unwrap();
                let method = text.split(' ').next().unwrap();
                let uri = message.split(' ').nth(1).unwrap().to_string();
                let auth = challenge.answer("alice", PASSWORD, method, &uri, 1, "0a4f113b");
                let message = phone.fill(&text, &call_id, 1, Some(&auth));
                phone.exchange(&message)
            }
            None => first,
        };
        if status(&last) != with {
            wrong.push(format!(
                "{name}: got {} with credentials, expected {with}",
                last.lines().next().unwrap()
            ));
            continue;
        }
        if name.ends_with("-register") {
            let contact = header(&last, "Contact").unwrap_or("");
            assert!(contact.contains("127.0.0.1"), "{name}: the 200 lists the binding: {last}");
        }
        if name.ends_with("-invite") && with == 200 {
            hang_up(&mut phone, &last, &call_id);
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}\n{}", gw.log());
    // Every REGISTER's binding is there, contact and all.
    let bindings = gw.admin(&["registrations", "--json"]);
    let bindings: serde_json::Value = serde_json::from_slice(&bindings).unwrap();
    assert!(bindings.as_array().unwrap().len() >= 12, "{bindings}");
}

/// ACK and BYE for an answered INVITE (§13.2.2.4, §15.1.1).
fn hang_up(phone: &mut Phone, ok: &str, call_id: &str) {
    let cseq: u32 = header(ok, "CSeq").unwrap().split(' ').next().unwrap().parse().unwrap();
    let (from, to) = (header(ok, "From").unwrap(), header(ok, "To").unwrap());
    let local = phone.socket.local_addr().unwrap();
    let request = |method: &str, seq: u32, branch: &str| {
        format!(
            "{method} sip:1000@{gw} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {seq} {method}\r\n\
             Content-Length: 0\r\n\r\n",
            gw = phone.gateway
        )
    };
    phone.socket.send_to(request("ACK", cseq, &format!("ack{call_id}")).as_bytes(), phone.gateway).unwrap();
    let bye = phone.exchange(&request("BYE", cseq + 1, &format!("bye{call_id}")));
    assert_eq!(status(&bye), 200, "{bye}");
}
