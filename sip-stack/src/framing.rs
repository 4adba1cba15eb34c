//! Cutting a stream transport (TCP, TLS) into SIP messages.
//!
//! RFC 3261 §18.3: on a stream every message carries Content-Length, and the body is exactly that
//! many bytes after the blank line. RFC 5626 §4.4.1: a double CRLF is a keep-alive ping that the
//! receiver answers with a single CRLF (the pong); a lone CRLF between messages is ignored.

use bytes::{Buf, Bytes, BytesMut};

use crate::message::MAX_MESSAGE_SIZE;
use crate::salvage::{unfold, Known, RawHead};

/// One unit cut from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A whole message: head, blank line and Content-Length bytes of body.
    Message(Bytes),
    /// A CRLFCRLF keep-alive; answer with [`PONG`].
    Ping,
}

/// The answer to a keep-alive [`Frame::Ping`].
pub const PONG: &[u8] = b"\r\n";

/// Why a stream can no longer be framed. The connection must be closed: there is no way to find
/// where the next message starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("message larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("Content-Length is not a number")]
    BadContentLength,
    #[error("several Content-Length headers: the message's end is ambiguous")]
    SeveralContentLengths,
}

/// Accumulates stream bytes and yields whole frames.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: BytesMut,
}

impl StreamFramer {
    pub fn new() -> StreamFramer {
        StreamFramer::default()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes held that do not yet form a whole frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next whole frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FramingError> {
        loop {
            if self.buf.starts_with(b"\r\n\r\n") {
                self.buf.advance(4);
                return Ok(Some(Frame::Ping));
            }
            if self.buf.starts_with(b"\r\n") {
                // A pong, or CRLF before a start line (RFC 3261 §7.5): skip it.
                self.buf.advance(2);
                continue;
            }
            if self.buf.as_ref() == b"\r" {
                return Ok(None);
            }
            break;
        }
        let Some(head_len) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            if self.buf.len() > MAX_MESSAGE_SIZE {
                return Err(FramingError::TooLarge { max: MAX_MESSAGE_SIZE });
            }
            return Ok(None);
        };
        let body_len = content_length(&self.buf[..head_len])?;
        // Saturating: a Content-Length near usize::MAX from the network must not wrap.
        let total = (head_len + 4).saturating_add(body_len);
        if total > MAX_MESSAGE_SIZE {
            return Err(FramingError::TooLarge { max: MAX_MESSAGE_SIZE });
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        Ok(Some(Frame::Message(self.buf.split_to(total).freeze())))
    }
}

/// Content-Length of a head; a missing header means no body.
fn content_length(head: &[u8]) -> Result<usize, FramingError> {
    let head = unfold(head);
    let head = String::from_utf8_lossy(&head);
    let raw = RawHead::new(&head);
    let mut values = raw.values(Known::ContentLength);
    let first = values.next();
    if values.next().is_some() {
        return Err(FramingError::SeveralContentLengths);
    }
    match first {
        None => Ok(0),
        Some(v) => v.parse().map_err(|_| FramingError::BadContentLength),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(body: &str) -> String {
        format!("MESSAGE sip:a@b SIP/2.0\r\nl: {}\r\nCall-ID: x\r\n\r\n{body}", body.len())
    }

    #[test]
    fn huge_or_several_content_lengths_end_the_stream_without_overflow() {
        let mut framer = StreamFramer::new();
        framer.push(format!("MESSAGE sip:a@b SIP/2.0\r\nl: {}\r\n\r\n", usize::MAX).as_bytes());
        assert_eq!(framer.next_frame(), Err(FramingError::TooLarge { max: MAX_MESSAGE_SIZE }));
        let mut framer = StreamFramer::new();
        framer.push(b"MESSAGE sip:a@b SIP/2.0\r\nl: 2\r\nContent-Length: 0\r\n\r\nab");
        assert_eq!(framer.next_frame(), Err(FramingError::SeveralContentLengths));
    }

    fn frames(framer: &mut StreamFramer) -> Vec<Frame> {
        std::iter::from_fn(|| framer.next_frame().unwrap()).collect()
    }

    #[test]
    fn several_messages_in_one_read() {
        let mut f = StreamFramer::new();
        let (a, b) = (msg("hello"), msg(""));
        f.push(format!("{a}{b}").as_bytes());
        assert_eq!(frames(&mut f), [Frame::Message(Bytes::from(a)), Frame::Message(Bytes::from(b))]);
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn one_message_byte_by_byte() {
        let mut f = StreamFramer::new();
        let a = msg("body bytes");
        let mut got = Vec::new();
        for byte in a.as_bytes() {
            f.push(&[*byte]);
            got.extend(frames(&mut f));
        }
        assert_eq!(got, [Frame::Message(Bytes::from(a))]);
    }

    #[test]
    fn keepalives_between_messages() {
        let mut f = StreamFramer::new();
        f.push(format!("\r\n\r\n{}\r\n{}", msg("x"), msg("y")).as_bytes());
        let got = frames(&mut f);
        assert_eq!(got[0], Frame::Ping);
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn unusable_streams_are_errors() {
        let mut f = StreamFramer::new();
        f.push(b"INVITE sip:a SIP/2.0\r\nContent-Length: lots\r\n\r\n");
        assert_eq!(f.next_frame(), Err(FramingError::BadContentLength));

        let mut f = StreamFramer::new();
        f.push(format!("INVITE sip:a SIP/2.0\r\nContent-Length: {}\r\n\r\n", MAX_MESSAGE_SIZE).as_bytes());
        assert!(matches!(f.next_frame(), Err(FramingError::TooLarge { .. })));

        let mut f = StreamFramer::new();
        f.push(&vec![b'a'; MAX_MESSAGE_SIZE + 1]);
        assert!(matches!(f.next_frame(), Err(FramingError::TooLarge { .. })));
    }
}
