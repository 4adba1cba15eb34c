//! Responses built from requests (RFC 3261 §8.2.6).

use rsip::{Header, Response, StatusCode};

use crate::message::InboundRequest;

/// A response to `request` with `status`: every Via in order, From, Call-ID and CSeq copied; To
/// copied with `to_tag` added when the request's To has no tag (§8.2.6.2); `Server` when given;
/// no body (`Content-Length: 0`, replaced by [`set_body`]).
pub fn response_to(
    request: &InboundRequest,
    status: StatusCode,
    to_tag: Option<&str>,
    server: Option<&str>,
) -> Response {
    let mut headers = rsip::Headers::default();
    for header in request.request.headers.iter() {
        match header {
            Header::Via(_) | Header::From(_) | Header::CallId(_) | Header::CSeq(_) => {
                headers.push(header.clone())
            }
            Header::To(to) => match (request.envelope.to.tag(), to_tag) {
                (None, Some(tag)) => {
                    headers.push(Header::To(request.envelope.to.with_tag(tag).into()));
                }
                _ => headers.push(Header::To(to.clone())),
            },
            _ => {}
        }
    }
    if let Some(server) = server {
        headers.push(Header::Server(server.into()));
    }
    headers.push(Header::ContentLength(0.into()));
    Response { status_code: status, version: rsip::Version::V2, headers, body: Vec::new() }
}

/// Adds a header before Content-Length, which response_to puts last.
pub fn push_header(response: &mut Response, header: Header) {
    let length = response.headers.iter().find(|h| matches!(h, Header::ContentLength(_))).cloned();
    if length.is_some() {
        response.headers.retain(|h| !matches!(h, Header::ContentLength(_)));
    }
    response.headers.push(header);
    response.headers.extend(length.into_iter().collect());
}

/// Sets the body and its Content-Type, keeping Content-Length right.
pub fn set_body(response: &mut Response, content_type: &str, body: Vec<u8>) {
    response.headers.retain(|h| !matches!(h, Header::ContentLength(_) | Header::ContentType(_)));
    response.headers.push(Header::ContentType(content_type.into()));
    response.headers.push(Header::ContentLength(body.len().to_string().into()));
    response.body = body;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{parse, Inbound};

    fn options(to: &str) -> InboundRequest {
        let text = format!(
            "OPTIONS sip:gw@10.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bKa\r\n\
             Via: SIP/2.0/UDP 10.0.0.3;branch=z9hG4bKb\r\n\
             Max-Forwards: 70\r\nTo: {to}\r\nFrom: <sip:p@10.0.0.2>;tag=f\r\n\
             Call-ID: c1\r\nCSeq: 2 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        match parse(text.as_bytes()).unwrap() {
            Inbound::Request(r) => r,
            Inbound::Response(_) => unreachable!("the text is a request"),
        }
    }

    #[test]
    fn copies_envelope_and_adds_tag() {
        let response = response_to(&options("<sip:gw@10.0.0.1>"), StatusCode::OK, Some("abc"), Some("gw/1"));
        let text = response.to_string();
        assert!(text.starts_with("SIP/2.0 200 OK\r\n"), "{text}");
        let vias: Vec<_> = text.lines().filter(|l| l.starts_with("Via:")).collect();
        assert_eq!(vias.len(), 2);
        assert!(vias[0].contains("z9hG4bKa") && vias[1].contains("z9hG4bKb"));
        assert!(text.contains(";tag=abc"), "{text}");
        assert!(text.contains("Call-ID: c1\r\n") && text.contains("CSeq: 2 OPTIONS\r\n"));
        assert!(text.contains("Server: gw/1\r\n") && text.contains("Content-Length: 0\r\n"));
        assert!(!text.contains("Max-Forwards"));
        // And it parses back as a valid response.
        assert!(matches!(parse(text.as_bytes()), Ok(Inbound::Response(_))));
    }

    #[test]
    fn keeps_existing_tag() {
        let response = response_to(&options("<sip:gw@10.0.0.1>;tag=old"), StatusCode::OK, Some("new"), None);
        let text = response.to_string();
        assert!(text.contains("tag=old") && !text.contains("tag=new"), "{text}");
    }

    #[test]
    fn body_sets_length() {
        let mut response = response_to(&options("<sip:gw@10.0.0.1>"), StatusCode::OK, None, None);
        set_body(&mut response, "application/sdp", b"v=0\r\n".to_vec());
        let text = response.to_string();
        assert!(text.contains("Content-Length: 5\r\n") && !text.contains("Content-Length: 0"));
        assert!(text.ends_with("\r\n\r\nv=0\r\n"), "{text:?}");
    }
}
