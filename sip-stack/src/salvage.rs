//! Raw header access that works on messages rsip refuses to parse.
//!
//! Used for two things that must not depend on the whole message being valid: finding the
//! Content-Length before parsing, and copying the headers a `400` needs back into it.

/// The headers a response must copy from its request (RFC 3261 §8.2.6.2), plus Content-Length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Known {
    Via,
    From,
    To,
    CallId,
    CSeq,
    ContentLength,
}

impl Known {
    /// Maps a header name, long or compact form (RFC 3261 §7.3.3), case-insensitively.
    fn from_name(name: &str) -> Option<Known> {
        let name = name.trim();
        let name = expand_compact(name).unwrap_or(name);
        let known = [
            ("Via", Known::Via),
            ("From", Known::From),
            ("To", Known::To),
            ("Call-ID", Known::CallId),
            ("CSeq", Known::CSeq),
            ("Content-Length", Known::ContentLength),
        ];
        known.iter().find_map(|(long, k)| name.eq_ignore_ascii_case(long).then_some(*k))
    }
}

/// The long form of a compact header name (RFC 3261 §7.3.3 and later RFCs).
pub(crate) fn expand_compact(name: &str) -> Option<&'static str> {
    let [c] = name.as_bytes() else { return None };
    Some(match c.to_ascii_lowercase() {
        b'a' => "Accept-Contact",
        b'b' => "Referred-By",
        b'c' => "Content-Type",
        b'd' => "Request-Disposition",
        b'e' => "Content-Encoding",
        b'f' => "From",
        b'i' => "Call-ID",
        b'j' => "Reject-Contact",
        b'k' => "Supported",
        b'l' => "Content-Length",
        b'm' => "Contact",
        b'n' => "Identity-Info",
        b'o' => "Event",
        b'r' => "Refer-To",
        b's' => "Subject",
        b't' => "To",
        b'u' => "Allow-Events",
        b'v' => "Via",
        b'x' => "Session-Expires",
        b'y' => "Identity",
        _ => return None,
    })
}

/// The header section split into its start line and unfolded `(name, value)` lines.
pub(crate) struct RawHead<'a> {
    pub start_line: &'a str,
    lines: Vec<(&'a str, &'a str)>,
}

impl<'a> RawHead<'a> {
    /// `head` is the header section without the blank line, already unfolded.
    pub fn new(head: &'a str) -> RawHead<'a> {
        let mut it = head.split("\r\n");
        let start_line = it.next().unwrap_or("");
        let lines = it
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim(), value.trim()))
            .collect();
        RawHead { start_line, lines }
    }

    /// Every value of a header, in order. Comma-joined Via values stay one entry.
    pub fn values(&self, which: Known) -> impl Iterator<Item = &'a str> + '_ {
        self.lines
            .iter()
            .filter(move |(name, _)| Known::from_name(name) == Some(which))
            .map(|(_, value)| *value)
    }

    pub fn first(&self, which: Known) -> Option<&'a str> {
        self.values(which).next()
    }
}

/// Splits a message at the blank line. Returns the head (without the CRLFCRLF) and the body.
pub(crate) fn split_head(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((&bytes[..at], &bytes[at + 4..]))
}

/// Joins folded header lines (RFC 3261 §7.3.1): CRLF followed by SP or HT becomes one SP.
pub(crate) fn unfold(head: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len());
    let mut i = 0;
    while i < head.len() {
        let folded = head[i] == b'\r'
            && head.get(i + 1) == Some(&b'\n')
            && matches!(head.get(i + 2), Some(b' ') | Some(b'\t'));
        if folded {
            i += 2;
            while matches!(head.get(i), Some(b' ') | Some(b'\t')) {
                i += 1;
            }
            out.push(b' ');
        } else {
            out.push(head[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfolds_continuation_lines() {
        let head = b"INVITE sip:a@b SIP/2.0\r\nSubject: one\r\n  two\r\n\tthree\r\nTo: x";
        assert_eq!(unfold(head), b"INVITE sip:a@b SIP/2.0\r\nSubject: one two three\r\nTo: x".to_vec());
    }

    #[test]
    fn finds_compact_and_long_forms() {
        let head = "OPTIONS sip:a SIP/2.0\r\nv: SIP/2.0/UDP h\r\nVIA: SIP/2.0/UDP g\r\nl: 12\r\ni: abc";
        let raw = RawHead::new(head);
        assert_eq!(raw.values(Known::Via).collect::<Vec<_>>(), ["SIP/2.0/UDP h", "SIP/2.0/UDP g"]);
        assert_eq!(raw.first(Known::ContentLength), Some("12"));
        assert_eq!(raw.first(Known::CallId), Some("abc"));
        assert_eq!(raw.first(Known::CSeq), None);
    }
}
