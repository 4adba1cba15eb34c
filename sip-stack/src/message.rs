//! The parsing edge: network bytes in, typed messages or a precise error out.
//!
//! rsip tokenizes the message and parses headers lazily. This module adds what a transaction layer
//! needs to trust a message: folded lines joined (RFC 3261 §7.3.1), leading CRLFs skipped (§7.5),
//! the body cut to Content-Length (§18.3), and the five transaction-identifying headers parsed
//! into types. A message that passes is an [`Inbound`]; the rest get a [`ParseError`] naming what
//! is wrong, which [`bad_request`] turns into a `400` when the request can still be answered.

use std::fmt::Write as _;

use rsip::prelude::*;
use rsip::{typed, Request, Response, SipMessage};

use crate::name_addr::NameAddr;
use crate::salvage::{expand_compact, split_head, unfold, Known, RawHead};

/// The methods rsip has a variant for (RFC 3261 and its extensions); any other is answered 501.
const KNOWN_METHODS: [&str; 14] = [
    "ACK",
    "BYE",
    "CANCEL",
    "INFO",
    "INVITE",
    "MESSAGE",
    "NOTIFY",
    "OPTIONS",
    "PRACK",
    "PUBLISH",
    "REFER",
    "REGISTER",
    "SUBSCRIBE",
    "UPDATE",
];

/// Largest SIP message accepted on any transport.
pub const MAX_MESSAGE_SIZE: usize = 65_535;

/// Why bytes from the network are not a usable SIP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty message")]
    Empty,
    #[error("message of {size} bytes is larger than {max}")]
    TooLarge { size: usize, max: usize },
    #[error("no blank line ends the header section")]
    NoHeaderEnd,
    #[error("malformed message: {detail}")]
    Malformed { detail: String },
    #[error("missing {header} header")]
    MissingHeader { header: &'static str },
    #[error("malformed {header} header")]
    BadHeader { header: &'static str },
    #[error("CSeq method {cseq} does not match request method {method}")]
    CSeqMethodMismatch { method: String, cseq: String },
    #[error("Content-Length {declared} is larger than the body of {actual} bytes")]
    BodyTooShort { declared: usize, actual: usize },
    #[error("malformed request line")]
    BadRequestLine,
    #[error("SIP version {version} is not supported")]
    VersionNotSupported { version: String },
    #[error("{count} Content-Length headers")]
    SeveralContentLengths { count: usize },
    #[error("method {method} is not implemented")]
    UnknownMethod { method: String },
    #[error("Request-URI scheme {scheme} is not supported")]
    UnsupportedUriScheme { scheme: String },
}

impl ParseError {
    /// The reason phrase for the `400` that reports this error.
    pub fn reason_phrase(&self) -> String {
        match self {
            ParseError::Empty | ParseError::NoHeaderEnd => "Bad Request".into(),
            ParseError::TooLarge { .. } => "Message Too Large".into(),
            ParseError::Malformed { .. } => "Malformed Message".into(),
            ParseError::MissingHeader { header } => format!("Missing {header} Header"),
            ParseError::BadHeader { header } => format!("Malformed {header} Header"),
            ParseError::CSeqMethodMismatch { .. } => "CSeq Method Mismatch".into(),
            ParseError::BodyTooShort { .. } => "Content-Length Mismatch".into(),
            ParseError::BadRequestLine => "Malformed Request Line".into(),
            ParseError::VersionNotSupported { .. } => "Version Not Supported".into(),
            ParseError::SeveralContentLengths { .. } => "Several Content-Length Headers".into(),
            ParseError::UnknownMethod { .. } => "Not Implemented".into(),
            ParseError::UnsupportedUriScheme { .. } => "Unsupported URI Scheme".into(),
        }
    }

    /// The status code of the response that reports this error: 505 for an unknown version
    /// (RFC 3261 §21.5.21), 501 for a method nobody here knows (§8.2.1), 416 for a Request-URI
    /// scheme other than sip, sips or tel (§8.2.2.1), 400 otherwise.
    pub fn status_code(&self) -> u16 {
        match self {
            ParseError::VersionNotSupported { .. } => 505,
            ParseError::UnknownMethod { .. } => 501,
            ParseError::UnsupportedUriScheme { .. } => 416,
            _ => 400,
        }
    }
}

/// The headers every request and response must carry, typed (RFC 3261 §8.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The topmost Via: it names the transaction (branch) and where responses go.
    pub top_via: typed::Via,
    pub from: NameAddr,
    pub to: NameAddr,
    pub call_id: String,
    pub cseq: typed::CSeq,
}

/// A request whose envelope has been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRequest {
    pub request: Request,
    pub envelope: Envelope,
}

/// A response whose envelope has been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundResponse {
    pub response: Response,
    pub envelope: Envelope,
}

/// A message from the network, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    Request(InboundRequest),
    Response(InboundResponse),
}

/// Parses one whole message (a UDP datagram, or a frame cut from a stream by
/// [`crate::framing::StreamFramer`]).
pub fn parse(bytes: &[u8]) -> Result<Inbound, ParseError> {
    if bytes.len() > MAX_MESSAGE_SIZE {
        return Err(ParseError::TooLarge { size: bytes.len(), max: MAX_MESSAGE_SIZE });
    }
    let bytes = skip_leading_crlf(bytes);
    if bytes.is_empty() {
        return Err(ParseError::Empty);
    }
    let (head, body) = split_head(bytes).ok_or(ParseError::NoHeaderEnd)?;
    let head = unfold(head);
    let head_text = std::str::from_utf8(&head)
        .map_err(|_| ParseError::Malformed { detail: "header section is not UTF-8".into() })?;
    // After unfolding, a CR or LF left inside a line is a stray line break: refused, since a
    // value carrying one would print as an extra header (injection).
    if head_text.split("\r\n").any(|line| line.contains(['\r', '\n'])) {
        return Err(ParseError::Malformed { detail: "bare CR or LF inside a header line".into() });
    }
    let raw = RawHead::new(head_text);
    check_start_line(raw.start_line)?;
    check_quotes(&raw)?;
    let body = cut_body(&raw, body)?;
    let mut normalized = Vec::with_capacity(head_text.len() + 64 + body.len());
    normalize_names(head_text, &mut normalized);
    normalized.extend_from_slice(b"\r\n\r\n");
    normalized.extend_from_slice(body);
    let message = SipMessage::try_from(normalized.as_slice())
        .map_err(|e| ParseError::Malformed { detail: short(&e.to_string()) })?;

    match message {
        SipMessage::Request(request) => {
            let envelope = envelope(&request)?;
            // RFC 3261 §8.1.1.5: the CSeq method matches the request's, ACK and CANCEL included.
            if envelope.cseq.method != request.method {
                return Err(ParseError::CSeqMethodMismatch {
                    method: request.method.to_string(),
                    cseq: envelope.cseq.method.to_string(),
                });
            }
            Ok(Inbound::Request(InboundRequest { request, envelope }))
        }
        SipMessage::Response(response) => {
            let envelope = envelope(&response)?;
            Ok(Inbound::Response(InboundResponse { response, envelope }))
        }
    }
}

/// The wire form of a request: rsip's `Display` passes the body through a lossy UTF-8
/// conversion, which would corrupt binary bodies, so the body is appended as bytes.
pub fn request_bytes(request: &Request) -> Vec<u8> {
    let mut out = format!("{} {} {}\r\n", request.method, request.uri, request.version).into_bytes();
    head_and_body(&mut out, &request.headers, &request.body);
    out
}

/// The wire form of a response (see [`request_bytes`]).
pub fn response_bytes(response: &Response) -> Vec<u8> {
    let mut out = format!("{} {}\r\n", response.version, response.status_code).into_bytes();
    head_and_body(&mut out, &response.headers, &response.body);
    out
}

fn head_and_body(out: &mut Vec<u8>, headers: &rsip::Headers, body: &[u8]) {
    for header in headers.iter() {
        let _ = write!(FmtBytes(out), "{header}\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// Lets `write!` append to a byte vector.
struct FmtBytes<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for FmtBytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Builds the `400 Bad Request` (or `505`) for bytes that failed [`parse`], when the start line
/// is a request line (other than ACK, which is never answered) and the Via, From, To, Call-ID and
/// CSeq headers can be copied into a response. Returns `None` when the message cannot be
/// answered: the caller drops it and counts it.
///
/// `to_tag` is added to the To header when the request has none (RFC 3261 §8.2.6.2); `allow`
/// lists the methods the caller implements, sent with a `501`.
pub fn bad_request(
    bytes: &[u8],
    error: &ParseError,
    to_tag: &str,
    server: &str,
    allow: &str,
) -> Option<Vec<u8>> {
    let bytes = skip_leading_crlf(bytes);
    let head = match split_head(bytes) {
        Some((head, _)) => head,
        // A datagram cut short still has its headers; answer from what is there.
        None => bytes,
    };
    let head = unfold(head);
    let head = String::from_utf8_lossy(&head);
    let raw = RawHead::new(&head);
    let method = request_method(raw.start_line)?;
    if method.eq_ignore_ascii_case("ACK") {
        return None;
    }
    let vias: Vec<&str> = raw.values(Known::Via).collect();
    let from = raw.first(Known::From)?;
    let to = raw.first(Known::To)?;
    let call_id = raw.first(Known::CallId)?;
    let cseq = raw.first(Known::CSeq)?;
    if vias.is_empty() || [from, to, call_id, cseq].iter().any(|v| v.contains(['\r', '\n'])) {
        return None;
    }

    let mut out = String::with_capacity(512);
    let _ = write!(out, "SIP/2.0 {} {}\r\n", error.status_code(), error.reason_phrase());
    for via in vias {
        let _ = write!(out, "Via: {via}\r\n");
    }
    let _ = write!(out, "From: {from}\r\n");
    if has_tag(to) {
        let _ = write!(out, "To: {to}\r\n");
    } else {
        let _ = write!(out, "To: {to};tag={to_tag}\r\n");
    }
    let _ = write!(out, "Call-ID: {call_id}\r\nCSeq: {cseq}\r\n");
    if error.status_code() == 501 && !allow.contains(['\r', '\n']) {
        let _ = write!(out, "Allow: {allow}\r\n");
    }
    let _ = write!(out, "Server: {server}\r\nContent-Length: 0\r\n\r\n");
    Some(out.into_bytes())
}

fn skip_leading_crlf(mut bytes: &[u8]) -> &[u8] {
    while let [b'\r', b'\n', rest @ ..] = bytes {
        bytes = rest;
    }
    bytes
}

/// Applies Content-Length to the body (RFC 3261 §18.3): extra bytes are discarded, missing ones
/// make the message invalid. Without the header the body is whatever follows the head, which is
/// right for datagrams; stream framing always supplies the length.
fn cut_body<'a>(raw: &RawHead<'_>, body: &'a [u8]) -> Result<&'a [u8], ParseError> {
    // RFC 3261 §20.14 allows one; two that disagree leave the body's end unknown.
    let count = raw.values(Known::ContentLength).count();
    if count > 1 {
        return Err(ParseError::SeveralContentLengths { count });
    }
    let Some(value) = raw.first(Known::ContentLength) else {
        return Ok(body);
    };
    let declared: usize = value.parse().map_err(|_| ParseError::BadHeader { header: "Content-Length" })?;
    if declared > body.len() {
        return Err(ParseError::BodyTooShort { declared, actual: body.len() });
    }
    Ok(&body[..declared])
}

fn envelope<M: HeadersExt>(message: &M) -> Result<Envelope, ParseError> {
    let top_via = message
        .via_header()
        .map_err(|_| ParseError::MissingHeader { header: "Via" })?
        .typed()
        .map_err(|_| ParseError::BadHeader { header: "Via" })?;
    let from = message.from_header().map_err(|_| ParseError::MissingHeader { header: "From" })?;
    let from = NameAddr::parse(from.value()).map_err(|_| ParseError::BadHeader { header: "From" })?;
    let to = message.to_header().map_err(|_| ParseError::MissingHeader { header: "To" })?;
    let to = NameAddr::parse(to.value()).map_err(|_| ParseError::BadHeader { header: "To" })?;
    let call_id = message
        .call_id_header()
        .map_err(|_| ParseError::MissingHeader { header: "Call-ID" })?
        .value()
        .trim()
        .to_string();
    if call_id.is_empty() || call_id.contains(char::is_whitespace) {
        return Err(ParseError::BadHeader { header: "Call-ID" });
    }
    let cseq = message
        .cseq_header()
        .map_err(|_| ParseError::MissingHeader { header: "CSeq" })?
        .typed()
        .map_err(|_| ParseError::BadHeader { header: "CSeq" })?;
    // RFC 3261 §8.1.1.5: the sequence number is a 32-bit unsigned integer below 2**31.
    if cseq.seq >= 1 << 31 {
        return Err(ParseError::BadHeader { header: "CSeq" });
    }
    Ok(Envelope { top_via, from, to, call_id, cseq })
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

/// The method of something shaped like a request line, however badly spaced, or `None` when it
/// is not a request at all (a response, or not SIP).
fn request_method(start_line: &str) -> Option<&str> {
    let mut parts = start_line.split_whitespace();
    let method = parts.next()?;
    let version = parts.next_back()?;
    parts.next()?; // something between them
    (is_token(method) && version.starts_with("SIP/")).then_some(method)
}

/// RFC 3261 §7.1: `Method SP Request-URI SP SIP-Version`, single spaces, no brackets or white
/// space in the URI; and only SIP/2.0 (§8.2.2.4 … answered 505 otherwise).
fn check_start_line(start_line: &str) -> Result<(), ParseError> {
    if start_line.starts_with("SIP/") {
        return Ok(()); // a status line: rsip checks it
    }
    let parts: Vec<&str> = start_line.split(' ').collect();
    let [method, uri, version] = parts[..] else { return Err(ParseError::BadRequestLine) };
    if !is_token(method) || uri.is_empty() || uri.contains(['<', '>', '\t']) {
        return Err(ParseError::BadRequestLine);
    }
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return match version.strip_prefix("SIP/") {
            Some(_) => Err(ParseError::VersionNotSupported { version: version.to_string() }),
            None => Err(ParseError::BadRequestLine),
        };
    }
    // Method names are case-sensitive (§7.1); one rsip has no variant for is one we implement
    // nowhere.
    if !KNOWN_METHODS.contains(&method) {
        return Err(ParseError::UnknownMethod { method: short(method) });
    }
    let scheme = uri.split_once(':').map_or("", |(scheme, _)| scheme);
    if !["sip", "sips", "tel"].iter().any(|s| scheme.eq_ignore_ascii_case(s)) {
        return Err(ParseError::UnsupportedUriScheme { scheme: short(scheme) });
    }
    Ok(())
}

/// Quoted strings in name-addr headers must close (RFC 3261 §25.1).
fn check_quotes(raw: &RawHead<'_>) -> Result<(), ParseError> {
    for (which, header) in [(Known::From, "From"), (Known::To, "To")] {
        for value in raw.values(which) {
            let mut open = false;
            let mut escaped = false;
            for c in value.chars() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' if open => escaped = true,
                    '"' => open = !open,
                    _ => {}
                }
            }
            if open {
                return Err(ParseError::BadHeader { header });
            }
        }
    }
    Ok(())
}

/// Writes the head into `out` with header lines as `Name: value`: white space around the name
/// dropped, compact forms (RFC 3261 §7.3.3 and later RFCs) spelled out, which rsip needs.
fn normalize_names(head: &str, out: &mut Vec<u8>) {
    let mut lines = head.split("\r\n");
    out.extend_from_slice(lines.next().unwrap_or("").as_bytes());
    for line in lines {
        out.extend_from_slice(b"\r\n");
        match line.split_once(':') {
            Some((name, value)) => {
                let name = name.trim();
                out.extend_from_slice(expand_compact(name).unwrap_or(name).as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value.trim().as_bytes());
            }
            None => out.extend_from_slice(line.as_bytes()),
        }
    }
}

fn has_tag(header_value: &str) -> bool {
    // Parameters follow the closing '>' of a name-addr, or the URI of an addr-spec.
    let params = header_value.rsplit_once('>').map_or(header_value, |(_, p)| p);
    params.split(';').skip(1).any(|p| p.trim().to_ascii_lowercase().starts_with("tag="))
}

fn short(detail: &str) -> String {
    detail.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsip::Method;

    const OPTIONS: &str = "OPTIONS sip:gw@127.0.0.1 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK776asdhds;rport\r\n\
        Max-Forwards: 70\r\n\
        To: <sip:gw@127.0.0.1>\r\n\
        From: <sip:probe@127.0.0.1>;tag=1928301774\r\n\
        Call-ID: a84b4c76e66710\r\n\
        CSeq: 63104 OPTIONS\r\n\
        Content-Length: 0\r\n\r\n";

    fn request(text: &str) -> InboundRequest {
        match parse(text.as_bytes()).expect("parses") {
            Inbound::Request(r) => r,
            Inbound::Response(_) => panic!("expected a request"),
        }
    }

    #[test]
    fn parses_envelope() {
        let r = request(OPTIONS);
        assert_eq!(r.request.method, Method::Options);
        assert_eq!(r.envelope.call_id, "a84b4c76e66710");
        assert_eq!(r.envelope.cseq.seq, 63104);
        assert_eq!(r.envelope.top_via.branch().unwrap().to_string(), "z9hG4bK776asdhds");
    }

    #[test]
    fn folded_headers_and_leading_crlf_are_accepted() {
        let folded =
            OPTIONS.replace("Call-ID: a84b4c76e66710", "Subject: a\r\n  b\r\nCall-ID: a84b4c76e66710");
        let r = request(&format!("\r\n\r\n{folded}"));
        assert_eq!(r.envelope.call_id, "a84b4c76e66710");
    }

    #[test]
    fn body_is_cut_to_content_length() {
        let text = OPTIONS.replace("Content-Length: 0", "Content-Length: 3") + "abcdef";
        assert_eq!(request(&text).request.body, b"abc");
    }

    #[test]
    fn short_body_is_an_error() {
        let text = OPTIONS.replace("Content-Length: 0", "Content-Length: 30") + "abc";
        assert_eq!(parse(text.as_bytes()), Err(ParseError::BodyTooShort { declared: 30, actual: 3 }));
    }

    #[test]
    fn each_missing_header_is_named() {
        for (line, header) in [
            ("Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK776asdhds;rport\r\n", "Via"),
            ("To: <sip:gw@127.0.0.1>\r\n", "To"),
            ("From: <sip:probe@127.0.0.1>;tag=1928301774\r\n", "From"),
            ("Call-ID: a84b4c76e66710\r\n", "Call-ID"),
            ("CSeq: 63104 OPTIONS\r\n", "CSeq"),
        ] {
            let text = OPTIONS.replace(line, "");
            assert_eq!(parse(text.as_bytes()), Err(ParseError::MissingHeader { header }), "{header}");
        }
    }

    #[test]
    fn bad_cseq_is_reported_and_answered() {
        let text = OPTIONS.replace("CSeq: 63104 OPTIONS", "CSeq: seven OPTIONS");
        let err = parse(text.as_bytes()).unwrap_err();
        assert_eq!(err, ParseError::BadHeader { header: "CSeq" });
        let reply = bad_request(text.as_bytes(), &err, "t1", "gw", "INVITE").expect("answerable");
        let reply = String::from_utf8(reply).unwrap();
        assert!(reply.starts_with("SIP/2.0 400 Malformed CSeq Header\r\n"), "{reply}");
        assert!(reply.contains("To: <sip:gw@127.0.0.1>;tag=t1\r\n"));
        assert!(reply.contains("Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK776asdhds;rport\r\n"));
        assert!(reply.contains("CSeq: seven OPTIONS\r\n"), "the CSeq is echoed as received");
    }

    #[test]
    fn bad_request_for_a_short_body_is_a_valid_response() {
        let text = OPTIONS.replace("Content-Length: 0", "Content-Length: 30");
        let err = parse(text.as_bytes()).unwrap_err();
        let reply = bad_request(text.as_bytes(), &err, "t1", "gw", "INVITE").expect("answerable");
        assert!(reply.starts_with(b"SIP/2.0 400 Content-Length Mismatch\r\n"));
        assert!(matches!(parse(&reply), Ok(Inbound::Response(_))));
    }

    #[test]
    fn cseq_method_must_match() {
        let text = OPTIONS.replace("CSeq: 63104 OPTIONS", "CSeq: 63104 INVITE");
        assert!(matches!(parse(text.as_bytes()), Err(ParseError::CSeqMethodMismatch { .. })));
    }

    #[test]
    fn unanswerable_input_gets_no_response() {
        for junk in [&b""[..], b"\x00\x01\x02garbage", b"hello world\r\n\r\n", &[0xff; 300]] {
            let err = parse(junk).unwrap_err();
            assert_eq!(bad_request(junk, &err, "t", "gw", "INVITE"), None);
        }
        // ACK is never answered, even when broken.
        let ack = OPTIONS.replace("OPTIONS sip", "ACK sip").replace("CSeq: 63104 OPTIONS", "CSeq: x ACK");
        let err = parse(ack.as_bytes()).unwrap_err();
        assert_eq!(bad_request(ack.as_bytes(), &err, "t", "gw", "INVITE"), None);
    }

    #[test]
    fn oversized_message_is_refused() {
        let big = vec![b'a'; MAX_MESSAGE_SIZE + 1];
        assert!(matches!(parse(&big), Err(ParseError::TooLarge { .. })));
    }

    #[test]
    fn binary_bodies_survive_printing() {
        let body: Vec<u8> = (0..=255u8).collect();
        let text = OPTIONS.replace("Content-Length: 0", &format!("Content-Length: {}", body.len()));
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(&body);
        let Inbound::Request(r) = parse(&bytes).unwrap() else { panic!("a request") };
        assert_eq!(r.request.body, body);
        let wire = request_bytes(&r.request);
        let Inbound::Request(again) = parse(&wire).unwrap() else { panic!("a request") };
        assert_eq!(again.request.body, body, "the body came back byte for byte");
    }

    #[test]
    fn stray_line_feeds_are_refused() {
        let text = OPTIONS.replace("To: <sip:gw@127.0.0.1>", "To: <sip:gw@127.0.0.1>;x\nInjected: yes");
        assert!(matches!(parse(text.as_bytes()), Err(ParseError::Malformed { .. })));
    }

    #[test]
    fn several_content_lengths_are_refused() {
        let text = OPTIONS.replace("Content-Length: 0", "Content-Length: 0\r\nl: 4");
        assert_eq!(parse(text.as_bytes()), Err(ParseError::SeveralContentLengths { count: 2 }));
        let reply = bad_request(text.as_bytes(), &parse(text.as_bytes()).unwrap_err(), "t", "gw", "")
            .expect("answerable");
        assert!(reply.starts_with(b"SIP/2.0 400 Several Content-Length Headers\r\n"));
    }

    #[test]
    fn unknown_methods_get_501_with_allow_and_unknown_schemes_416() {
        let text =
            OPTIONS.replace("OPTIONS sip", "NEWMETHOD sip").replace("63104 OPTIONS", "63104 NEWMETHOD");
        let err = parse(text.as_bytes()).unwrap_err();
        assert_eq!(err, ParseError::UnknownMethod { method: "NEWMETHOD".into() });
        let reply =
            String::from_utf8(bad_request(text.as_bytes(), &err, "t", "gw", "INVITE, BYE").unwrap()).unwrap();
        assert!(reply.starts_with("SIP/2.0 501 Not Implemented\r\n"), "{reply}");
        assert!(reply.contains("\r\nAllow: INVITE, BYE\r\n"), "{reply}");
        assert!(reply.contains("CSeq: 63104 NEWMETHOD\r\n"));
        // Case matters (RFC 3261 §7.1): `options` is not OPTIONS.
        let lower = OPTIONS.replace("OPTIONS sip", "options sip");
        assert!(matches!(parse(lower.as_bytes()), Err(ParseError::UnknownMethod { .. })));

        let text = OPTIONS.replace("OPTIONS sip:gw@127.0.0.1", "OPTIONS nobodyknowsthisscheme:totallyopaque");
        let err = parse(text.as_bytes()).unwrap_err();
        assert!(matches!(err, ParseError::UnsupportedUriScheme { .. }));
        let reply = bad_request(text.as_bytes(), &err, "t", "gw", "INVITE").unwrap();
        assert!(reply.starts_with(b"SIP/2.0 416 Unsupported URI Scheme\r\n"));
        let tel = OPTIONS.replace("OPTIONS sip:gw@127.0.0.1", "OPTIONS tel:+15551234567");
        assert!(!matches!(parse(tel.as_bytes()), Err(ParseError::UnsupportedUriScheme { .. })));
    }

    #[test]
    fn quoted_contact_style_parameters_in_from_and_to() {
        let text = OPTIONS.replace(
            "From: <sip:probe@127.0.0.1>;tag=1928301774",
            r#"From: "Desk <12>" <sip:probe@127.0.0.1> ; tag = 1928301774;+sip.instance="<urn:uuid:1>""#,
        );
        let r = request(&text);
        assert_eq!(r.envelope.from.tag(), Some("1928301774"));
        assert_eq!(r.envelope.from.display_name.as_deref(), Some("Desk <12>"));
    }

    #[test]
    fn tag_detection() {
        assert!(has_tag("<sip:a@b>;tag=x"));
        assert!(has_tag("sip:a@b;TAG=x"));
        assert!(!has_tag("<sip:a@b;tag=x>"));
        assert!(!has_tag("\"a;tag=x\" <sip:a@b>"));
    }
}
