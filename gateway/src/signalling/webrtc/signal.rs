//! The join page's WebSocket messages: JSON objects with a `type`. What the page sends is
//! parsed into [`ClientMessage`] at the edge, with limits on every field; a message that does
//! not parse gets an [`ServerMessage::Error`] back and the socket stays open.

use serde::{Deserialize, Serialize};

use crate::control::{ParticipantView, RoomEvent};
use crate::ids::RoomNumber;
use crate::media::ParticipantId;

/// The largest message taken: an SDP offer with many codecs and candidates fits well.
pub const MAX_MESSAGE: usize = 64 * 1024;
const MAX_NAME: usize = 64;
const MAX_ROOM: usize = 64;
const MAX_PIN: usize = 32;
const MAX_CANDIDATE: usize = 1024;

/// From the page.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Join a room with an SDP offer for the microphone.
    Join {
        room: String,
        #[serde(default)]
        pin: Option<String>,
        #[serde(default)]
        name: String,
        sdp: String,
    },
    /// A trickled ICE candidate (RFC 8838); an empty `candidate` ends them.
    Candidate {
        candidate: String,
        #[serde(rename = "sdpMid", default)]
        sdp_mid: Option<String>,
        #[serde(rename = "sdpMLineIndex", default)]
        sdp_mline_index: Option<u16>,
    },
    Mute {
        muted: bool,
    },
    /// (A struct variant: serde checks unknown fields of those only.)
    Leave {},
}

/// Why a message from the page was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadMessage {
    #[error("message larger than {MAX_MESSAGE} bytes")]
    TooLarge,
    #[error("{0}")]
    Json(String),
    #[error("{field}: {problem}")]
    Field { field: &'static str, problem: &'static str },
}

impl ClientMessage {
    pub fn parse(text: &str) -> Result<ClientMessage, BadMessage> {
        if text.len() > MAX_MESSAGE {
            return Err(BadMessage::TooLarge);
        }
        let message: ClientMessage =
            serde_json::from_str(text).map_err(|e| BadMessage::Json(e.to_string()))?;
        message.check()?;
        Ok(message)
    }

    fn check(&self) -> Result<(), BadMessage> {
        let bad = |field, problem| Err(BadMessage::Field { field, problem });
        match self {
            ClientMessage::Join { room, pin, name, sdp } => {
                if room.is_empty() || room.len() > MAX_ROOM {
                    return bad("room", "expected 1 to 64 characters");
                }
                if room.chars().any(char::is_control) {
                    return bad("room", "control characters");
                }
                if let Some(pin) = pin {
                    if pin.len() > MAX_PIN || !pin.chars().all(|c| c.is_ascii_digit()) {
                        return bad("pin", "expected up to 32 digits");
                    }
                }
                if name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
                    return bad("name", "expected up to 64 printable characters");
                }
                if !sdp.starts_with("v=0") {
                    return bad("sdp", "not an SDP offer");
                }
            }
            ClientMessage::Candidate { candidate, .. } => {
                if candidate.len() > MAX_CANDIDATE {
                    return bad("candidate", "too long");
                }
            }
            ClientMessage::Mute { .. } | ClientMessage::Leave {} => {}
        }
        Ok(())
    }
}

/// To the page.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServerMessage {
    Answer {
        sdp: String,
    },
    Candidate {
        candidate: String,
        #[serde(rename = "sdpMid")]
        sdp_mid: Option<String>,
        #[serde(rename = "sdpMLineIndex")]
        sdp_mline_index: Option<u16>,
    },
    /// In the room: who we are, and who is there.
    Joined {
        id: ParticipantId,
        room: RoomNumber,
        moderator: bool,
        participants: Vec<ParticipantView>,
    },
    /// Someone joined or changed (talking, muted).
    Participant {
        participant: Box<ParticipantView>,
    },
    Left {
        id: ParticipantId,
    },
    /// Everyone in the room: sent again when the page fell behind the room's events.
    Participants {
        participants: Vec<ParticipantView>,
    },
    /// The gateway ended our leg: `kicked`, `rtp-timeout`, `shutdown`, …
    Ended {
        reason: String,
    },
    /// A request refused or not understood; `code` is for the page, `message` for people.
    Error {
        code: String,
        message: String,
    },
}

impl ServerMessage {
    pub fn error(code: &str, message: impl std::fmt::Display) -> ServerMessage {
        ServerMessage::Error { code: code.into(), message: message.to_string() }
    }

    pub fn of_event(event: RoomEvent) -> ServerMessage {
        match event {
            RoomEvent::Participant { participant, .. } => {
                ServerMessage::Participant { participant: Box::new(participant) }
            }
            RoomEvent::Left { id, .. } => ServerMessage::Left { id },
        }
    }

    pub fn to_json(&self) -> String {
        // Plain data: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_with_offer_parses() {
        let m = ClientMessage::parse(
            r#"{"type":"join","room":"1000","pin":"4321","name":"Ann","sdp":"v=0\r\n"}"#,
        );
        assert_eq!(
            m,
            Ok(ClientMessage::Join {
                room: "1000".into(),
                pin: Some("4321".into()),
                name: "Ann".into(),
                sdp: "v=0\r\n".into()
            })
        );
    }

    #[test]
    fn candidates_as_the_browser_sends_them() {
        let m = ClientMessage::parse(
            r#"{"type":"candidate","candidate":"candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host","sdpMid":"0","sdpMLineIndex":0}"#,
        )
        .unwrap();
        assert!(matches!(m, ClientMessage::Candidate { sdp_mline_index: Some(0), .. }));
        assert!(ClientMessage::parse(r#"{"type":"candidate","candidate":""}"#).is_ok(), "end of candidates");
        assert_eq!(ClientMessage::parse(r#"{"type":"leave"}"#), Ok(ClientMessage::Leave {}));
    }

    #[test]
    fn bad_messages_are_named_not_panicked_on() {
        for (text, what) in [
            ("not json", "syntax"),
            (r#"{"type":"dance"}"#, "unknown type"),
            (r#"{"type":"join","room":"1000"}"#, "no sdp"),
            (r#"{"type":"join","room":"","sdp":"v=0"}"#, "empty room"),
            (r#"{"type":"join","room":"1000","pin":"12ab","sdp":"v=0"}"#, "pin not digits"),
            (r#"{"type":"join","room":"1000","sdp":"hello"}"#, "not sdp"),
            (r#"{"type":"mute","muted":"yes"}"#, "mute not bool"),
            (r#"{"type":"leave","extra":1}"#, "unknown field"),
            ("[1,2,3]", "not an object"),
        ] {
            assert!(ClientMessage::parse(text).is_err(), "{what}: {text}");
        }
        let long = format!(r#"{{"type":"join","room":"1000","sdp":"v=0{}"}}"#, "x".repeat(MAX_MESSAGE));
        assert_eq!(ClientMessage::parse(&long), Err(BadMessage::TooLarge));
        let name = "n".repeat(65);
        let text = format!(r#"{{"type":"join","room":"1","name":"{name}","sdp":"v=0"}}"#);
        assert_eq!(
            ClientMessage::parse(&text),
            Err(BadMessage::Field { field: "name", problem: "expected up to 64 printable characters" })
        );
    }

    #[test]
    fn server_messages_carry_their_type() {
        let json = ServerMessage::error("wrong-pin", "wrong PIN").to_json();
        assert_eq!(json, r#"{"type":"error","code":"wrong-pin","message":"wrong PIN"}"#);
        let json = ServerMessage::Left { id: ParticipantId(7) }.to_json();
        assert_eq!(json, r#"{"type":"left","id":7}"#);
    }
}
