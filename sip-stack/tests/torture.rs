//! Torture messages modelled on the cases of RFC 4475 (written for this project; each file is
//! named after the case it mirrors), with the outcome the stack must give each:
//! `valid` (parses; printed and parsed again gives the same message), `400 <reason>` (refused
//! with that answer) or `drop` (refused, unanswerable). `tests/torture/EXPECTED` lists them,
//! with the RFC's own verdict where ours differs.

use std::path::Path;

use sip_stack::message::{bad_request, parse, request_bytes, response_bytes, Inbound};

fn outcome(bytes: &[u8]) -> String {
    match parse(bytes) {
        Ok(Inbound::Request(_)) => "valid".into(),
        Ok(Inbound::Response(_)) => "valid".into(),
        Err(e) => match bad_request(bytes, &e, "t", "gw", "INVITE, BYE") {
            Some(reply) => {
                let line = String::from_utf8_lossy(&reply).lines().next().unwrap_or("").to_string();
                line.trim_start_matches("SIP/2.0 ").to_string()
            }
            None => "drop".into(),
        },
    }
}

fn cases() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/torture");
    let mut cases: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "sip"))
        .map(|e| {
            (e.path().file_stem().unwrap().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())
        })
        .collect();
    cases.sort();
    cases
}

/// `EXPECTED`: case name, then the outcome, up to an optional `|` and the RFC's verdict.
fn expected() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/torture/EXPECTED");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let l = l.split('|').next().unwrap_or("").trim();
            let (name, outcome) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            (name.to_string(), outcome.trim().to_string())
        })
        .collect()
}

#[test]
fn every_case_has_its_expected_outcome() {
    let expected = expected();
    let cases = cases();
    assert_eq!(cases.len(), expected.len(), "a case without an expectation, or the reverse");
    let wrong: Vec<String> = cases
        .iter()
        .zip(&expected)
        .filter_map(|((name, bytes), (want_name, want))| {
            assert_eq!(name, want_name, "EXPECTED is out of order");
            let got = outcome(bytes);
            (&got != want).then(|| format!("{name}: got `{got}`, expected `{want}`"))
        })
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn valid_messages_print_and_parse_back_the_same() {
    for (name, bytes) in cases() {
        let first = match parse(&bytes) {
            Ok(m) => m,
            Err(_) => continue,
        };
        let printed = match &first {
            Inbound::Request(r) => request_bytes(&r.request),
            Inbound::Response(r) => response_bytes(&r.response),
        };
        let second = parse(&printed).unwrap_or_else(|e| panic!("{name}: printed form does not parse: {e}"));
        assert_eq!(first, second, "{name}");
    }
}

#[test]
fn no_truncation_or_byte_flip_panics() {
    for (_, bytes) in cases() {
        for end in 0..bytes.len() {
            let cut = &bytes[..end];
            if let Err(e) = parse(cut) {
                let _ = bad_request(cut, &e, "t", "gw", "INVITE, BYE");
            }
        }
        let mut flipped = bytes.clone();
        for i in (0..flipped.len()).step_by(7) {
            flipped[i] ^= 0x5a;
            if let Err(e) = parse(&flipped) {
                let _ = bad_request(&flipped, &e, "t", "gw", "INVITE, BYE");
            }
        }
    }
}
