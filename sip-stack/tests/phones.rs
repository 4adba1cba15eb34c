//! The phone corpus (`tests/phones/`): REGISTER, INVITE, re-INVITE and INFO requests in the
//! shapes desk phones, softphones and carriers send, with their placeholders filled by loopback
//! values. Every one must parse at the edge; each REGISTER's contacts must be read, each
//! Contact, From and To must be read as a name-addr, and each SDP body must parse. What the
//! gateway answers to each is checked end to end in `tests/tests/phones.rs`.

use std::path::Path;

use sip_stack::message::{parse, Inbound};
use sip_stack::name_addr::NameAddr;
use sip_stack::registrar::{plan, split_list, RegistrarPolicy};
use sip_stack::rsip::prelude::*;
use sip_stack::rsip::{Header, Method};

/// Each corpus file's name and text, placeholders filled.
fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/phones");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "sip"))
        .map(|e| {
            let name = e.path().file_stem().unwrap().to_string_lossy().into_owned();
            (name, fill(&std::fs::read_to_string(e.path()).unwrap(), "127.0.0.1:5060", 15080, 40000))
        })
        .collect();
    files.sort();
    files
}

/// The corpus text with its placeholders replaced and Content-Length computed.
pub fn fill(text: &str, gateway: &str, local_port: u16, rtp_port: u16) -> Vec<u8> {
    let text = text
        .replace("$LOCAL_HOST", "127.0.0.1")
        .replace("$LOCAL_PORT", &local_port.to_string())
        .replace("$GATEWAY", gateway)
        .replace("$RTP_PORT", &rtp_port.to_string())
        .replace("$BRANCH", "corpus1")
        .replace("$CALL_ID", "corpus-call-1");
    let (head, body) = text.split_once("\r\n\r\n").expect("a blank line ends the head");
    format!("{}\r\n\r\n{body}", head.replace("$CONTENT_LENGTH", &body.len().to_string())).into_bytes()
}

#[test]
fn every_message_parses_and_its_addresses_and_body_are_read() {
    let corpus = corpus();
    assert!(corpus.len() >= 30, "the corpus is there: {} files", corpus.len());
    let mut registers = 0;
    for (name, bytes) in corpus {
        let Inbound::Request(request) = parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}")) else {
            panic!("{name}: not a request")
        };
        assert!(request.envelope.from.tag().is_some(), "{name}: From tag");
        for header in request.request.headers.iter() {
            if let Header::Contact(c) = header {
                for value in split_list(c.value()) {
                    NameAddr::parse(value).unwrap_or_else(|e| panic!("{name}: Contact {value}: {e}"));
                }
            }
        }
        let sdp = request.request.headers.iter().any(|h| {
            matches!(h, Header::ContentType(t) if t.value().trim().eq_ignore_ascii_case("application/sdp"))
        });
        if sdp {
            sip_stack::sdp::parse(&request.request.body).unwrap_or_else(|e| panic!("{name}: SDP: {e}"));
        }
        if request.request.method == Method::Register {
            registers += 1;
            let plan = plan(&request, &RegistrarPolicy::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(plan.aor, "alice", "{name}");
            assert!(!plan.changes.is_empty(), "{name}: a contact to bind");
            for change in &plan.changes {
                assert!(
                    change.uri.starts_with("sip:") && change.uri.contains("127.0.0.1"),
                    "{name}: {change:?}"
                );
                assert!(change.expires >= 60, "{name}: {change:?}");
            }
        }
    }
    assert!(registers >= 12, "a REGISTER from each phone: {registers}");
}

#[test]
fn every_message_has_an_expected_answer() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/phones");
    let expected = std::fs::read_to_string(dir.join("EXPECTED")).unwrap();
    let mut named: Vec<String> = expected
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(fields.len(), 3, "name, answer without and with credentials: {l}");
            fields[0].to_string()
        })
        .collect();
    named.sort();
    let files: Vec<String> = corpus().into_iter().map(|(name, _)| name).collect();
    assert_eq!(named, files);
}
