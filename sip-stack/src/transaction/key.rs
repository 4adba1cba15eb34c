//! Matching messages to transactions (RFC 3261 §17.1.3, §17.2.3).

use rsip::{typed, Method};

use crate::message::Envelope;

/// The branch prefix of RFC 3261-compliant requests (§8.1.1.7).
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// Identifies a transaction on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TxKey {
    /// Client side: the branch we put in the top Via, and the CSeq method (§17.1.3).
    Client { branch: String, method: String },
    /// Server side, RFC 3261: branch, sent-by and method, ACK counted as INVITE (§17.2.3).
    Server { branch: String, sent_by: String, method: String },
    /// Server side, RFC 2543 peers without the magic cookie: the request's identity (§17.2.3).
    Server2543 {
        request_uri: String,
        from_tag: String,
        call_id: String,
        cseq: u32,
        method: String,
        via: String,
    },
}

/// ACK and CANCEL belong to the INVITE they acknowledge or cancel; only ACK shares its
/// transaction, CANCEL gets its own (§9.2).
fn server_method(method: &Method) -> String {
    match method {
        Method::Ack => Method::Invite.to_string(),
        other => other.to_string(),
    }
}

pub fn branch(via: &typed::Via) -> Option<String> {
    via.branch().map(|b| b.to_string())
}

/// The key of the server transaction an inbound request belongs to.
pub fn server_key(method: &Method, request_uri: &rsip::Uri, envelope: &Envelope) -> TxKey {
    server_key_for(server_method(method), request_uri, envelope)
}

/// The key of the INVITE server transaction a CANCEL targets (§9.2: same key but the method).
pub fn cancelled_invite_key(request_uri: &rsip::Uri, envelope: &Envelope) -> TxKey {
    server_key_for(Method::Invite.to_string(), request_uri, envelope)
}

fn server_key_for(method: String, request_uri: &rsip::Uri, envelope: &Envelope) -> TxKey {
    let via = &envelope.top_via;
    match branch(via) {
        Some(branch) if branch.starts_with(MAGIC_COOKIE) => {
            TxKey::Server { branch, sent_by: via.uri.host_with_port.to_string().to_ascii_lowercase(), method }
        }
        _ => TxKey::Server2543 {
            // Only RFC 2543 peers pay for printing the URI.
            request_uri: request_uri.to_string(),
            from_tag: envelope.from.tag().map(|t| t.to_string()).unwrap_or_default(),
            call_id: envelope.call_id.clone(),
            cseq: envelope.cseq.seq,
            method,
            via: format!("{}", via.uri.host_with_port).to_ascii_lowercase(),
        },
    }
}

/// The key of the client transaction a response belongs to.
pub fn client_key(envelope: &Envelope) -> Option<TxKey> {
    Some(TxKey::Client { branch: branch(&envelope.top_via)?, method: envelope.cseq.method.to_string() })
}
