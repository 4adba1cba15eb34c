//! Requests outside any dialog (the INVITE that starts one, an OPTIONS ping), built from typed
//! parts rather than text: every header the RFC 3261 §8.1.1 minimum asks for, in one place.
//! Requests within a dialog come from [`crate::dialog::Dialog::request`].

use rsip::{Header, Method, Request};

use crate::transport::Transport;

/// What a new request says. `from` and `to` are URIs; the From gets `from_tag`, the To none.
#[derive(Debug, Clone)]
pub struct NewRequest {
    pub method: Method,
    pub uri: rsip::Uri,
    /// How and from where it is sent: the top Via's transport and sent-by (with `rport`).
    pub transport: Transport,
    pub sent_by: String,
    /// With the RFC 3261 magic cookie (`z9hG4bK…`).
    pub branch: String,
    pub from: String,
    pub from_tag: String,
    pub to: String,
    pub call_id: String,
    pub cseq: u32,
    pub contact: Option<String>,
    /// Further headers, in order, after the required ones.
    pub headers: Vec<Header>,
    /// The body and its content type.
    pub body: Option<(String, Vec<u8>)>,
}

impl NewRequest {
    pub fn build(self) -> Request {
        let mut headers = rsip::Headers::default();
        let via =
            format!("SIP/2.0/{} {};rport;branch={}", self.transport.via_token(), self.sent_by, self.branch);
        headers.push(Header::Via(via.into()));
        headers.push(Header::MaxForwards(70.into()));
        headers.push(Header::From(format!("<{}>;tag={}", self.from, self.from_tag).into()));
        headers.push(Header::To(format!("<{}>", self.to).into()));
        headers.push(Header::CallId(self.call_id.into()));
        headers.push(Header::CSeq(format!("{} {}", self.cseq, self.method).into()));
        if let Some(contact) = self.contact {
            headers.push(Header::Contact(format!("<{contact}>").into()));
        }
        for header in self.headers {
            headers.push(header);
        }
        let body = match self.body {
            Some((content_type, body)) => {
                headers.push(Header::ContentType(content_type.into()));
                body
            }
            None => Vec::new(),
        };
        headers.push(Header::ContentLength((body.len() as u32).into()));
        Request { method: self.method, uri: self.uri, version: rsip::Version::V2, headers, body }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{self, Inbound};

    fn invite() -> NewRequest {
        NewRequest {
            method: Method::Invite,
            uri: rsip::Uri::try_from("sip:2000@192.0.2.7:5060").unwrap(),
            transport: Transport::Tcp,
            sent_by: "192.0.2.1:5060".into(),
            branch: "z9hG4bKnew1".into(),
            from: "sip:1000@192.0.2.1".into(),
            from_tag: "t1".into(),
            to: "sip:2000@192.0.2.7:5060".into(),
            call_id: "c1@192.0.2.1".into(),
            cseq: 1,
            contact: Some("sip:1000@192.0.2.1:5060;transport=tcp".into()),
            headers: vec![Header::Supported("timer".into())],
            body: Some(("application/sdp".into(), b"v=0\r\n".to_vec())),
        }
    }

    #[test]
    fn a_built_request_parses_back_with_every_part_in_place() {
        let bytes = message::request_bytes(&invite().build());
        let Ok(Inbound::Request(parsed)) = message::parse(&bytes) else { panic!("{bytes:?}") };
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("INVITE sip:2000@192.0.2.7:5060 SIP/2.0\r\n"), "{text}");
        assert!(text.contains("Via: SIP/2.0/TCP 192.0.2.1:5060;rport;branch=z9hG4bKnew1\r\n"), "{text}");
        assert!(text.contains("Contact: <sip:1000@192.0.2.1:5060;transport=tcp>\r\n"), "{text}");
        assert!(text.contains("Supported: timer\r\n"), "{text}");
        assert_eq!(parsed.envelope.call_id, "c1@192.0.2.1");
        assert_eq!(parsed.envelope.cseq.seq, 1);
        assert_eq!(parsed.envelope.from.tag().map(|t| t.to_string()), Some("t1".into()));
        assert!(parsed.envelope.to.tag().is_none());
        assert_eq!(parsed.request.body, b"v=0\r\n");
        assert!(text.contains("Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0"), "{text}");
    }

    #[test]
    fn without_a_body_the_length_is_zero_and_no_type_is_given() {
        let text = String::from_utf8_lossy(&message::request_bytes(
            &NewRequest { method: Method::Options, body: None, contact: None, ..invite() }.build(),
        ))
        .into_owned();
        assert!(text.contains("CSeq: 1 OPTIONS\r\n"), "{text}");
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"), "{text}");
        assert!(!text.contains("Content-Type") && !text.contains("Contact"), "{text}");
    }
}
