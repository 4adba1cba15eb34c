//! From, To, Contact and Route values as phones really write them (RFC 3261 §20.10, §25.1):
//! `[display-name] <URI> *(;param)` or `addr-spec *(;param)`, where a parameter's value may be
//! a token, a host, or a quoted string holding `<…>`, commas or spaces — RFC 3840 feature tags
//! (`+sip.instance="<urn:uuid:…>"`, `methods="INVITE, BYE"`), RFC 5626 `reg-id` — and where
//! white space may stand around `;` and `=` (RFC 4475 §3.1.1.1).
//!
//! rsip's own typed From/To/Contact take only token values, so this parser reads the
//! header-level syntax and hands only the URI between the brackets to rsip.

use std::borrow::Cow;
use std::fmt;

/// Why a value is not a name-addr or addr-spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameAddrError {
    #[error("empty value")]
    Empty,
    #[error("unterminated quoted string")]
    UnclosedQuote,
    #[error("`<` without `>`")]
    UnclosedAngle,
    #[error("the URI does not parse")]
    BadUri,
    #[error("malformed parameter at byte {at}")]
    BadParam { at: usize },
}

/// One header parameter: `name`, or `name=value` with the value as written (a quoted value
/// keeps its quotes, so the header prints back unchanged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericParam {
    pub name: String,
    pub value: Option<String>,
}

impl GenericParam {
    /// The value with surrounding quotes and backslash escapes removed.
    pub fn unquoted(&self) -> Option<Cow<'_, str>> {
        let value = self.value.as_deref()?;
        match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            Some(inner) if inner.contains('\\') => Some(Cow::Owned(unescape(inner))),
            Some(inner) => Some(Cow::Borrowed(inner)),
            None => Some(Cow::Borrowed(value)),
        }
    }
}

/// A parsed From/To/Contact/Route value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Without quotes or escapes; `None` when absent or empty.
    pub display_name: Option<String>,
    pub uri: rsip::Uri,
    /// Header parameters (after the `>`, or after an addr-spec's URI), in order.
    pub params: Vec<GenericParam>,
    /// The value as received, trimmed: what responses echo.
    raw: String,
}

impl NameAddr {
    /// Parses one value (one element of a comma-separated Contact or Route list).
    pub fn parse(value: &str) -> Result<NameAddr, NameAddrError> {
        let raw = value.trim();
        if raw.is_empty() {
            return Err(NameAddrError::Empty);
        }
        let bytes = raw.as_bytes();
        let mut i = 0;
        let mut display_name = None;
        let uri_text;
        if bytes[0] == b'"' {
            let end = quoted_end(bytes, 0).ok_or(NameAddrError::UnclosedQuote)?;
            display_name = Some(unescape(&raw[1..end - 1]));
            i = skip_ws(bytes, end);
            if bytes.get(i) != Some(&b'<') {
                return Err(NameAddrError::BadUri);
            }
        } else if let Some(open) = angle_before_params(raw) {
            // Tokens before the `<` are the display name (`token1 token2 <sip:…>`).
            let name = raw[..open].trim();
            if name.contains('"') {
                return Err(NameAddrError::UnclosedQuote);
            }
            if !name.is_empty() {
                display_name = Some(name.to_string());
            }
            i = open;
        }
        if bytes.get(i) == Some(&b'<') {
            let close = raw[i..].find('>').map(|c| i + c).ok_or(NameAddrError::UnclosedAngle)?;
            uri_text = &raw[i + 1..close];
            i = close + 1;
        } else {
            // addr-spec: the URI ends at the first `;` or white space; what follows are header
            // parameters (§20: a URI with its own parameters must use the brackets).
            let end = raw.find([';', ' ', '\t']).unwrap_or(raw.len());
            uri_text = &raw[..end];
            i = end;
        }
        let uri = rsip::Uri::try_from(uri_text.trim()).map_err(|_| NameAddrError::BadUri)?;
        let params = parse_params(raw, i)?;
        Ok(NameAddr {
            display_name: display_name.filter(|n| !n.is_empty()),
            uri,
            params,
            raw: raw.to_string(),
        })
    }

    /// The parameter named `name` (case-insensitive, §7.3.1): `Some(None)` for a flag.
    pub fn param(&self, name: &str) -> Option<&GenericParam> {
        self.params.iter().find(|p| p.name.eq_ignore_ascii_case(name))
    }

    /// The `tag` parameter (§19.3).
    pub fn tag(&self) -> Option<&str> {
        self.param("tag").and_then(|p| p.value.as_deref())
    }

    /// The `expires` parameter of a Contact (§10.2.1.1), as written.
    pub fn expires(&self) -> Option<&str> {
        self.param("expires").and_then(|p| p.value.as_deref())
    }

    /// The value with `;tag=tag` appended (a To header answered by a UAS, §8.2.6.2).
    pub fn with_tag(&self, tag: &str) -> String {
        format!("{};tag={tag}", self.raw)
    }

    /// The value as received, trimmed.
    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// Where the `<` of a name-addr is: outside quotes and before any `;` (a `<` after one is in a
/// parameter of an addr-spec, `sip:a@h;+sip.instance="<urn:…>"`).
fn angle_before_params(raw: &str) -> Option<usize> {
    let mut quoted = false;
    for (i, b) in raw.bytes().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b'<' if !quoted => return Some(i),
            b';' if !quoted => return None,
            _ => {}
        }
    }
    None
}

/// `*( LWS ";" LWS name [ LWS "=" LWS value ] )` to the end of `raw`, from byte `i`.
fn parse_params(raw: &str, mut i: usize) -> Result<Vec<GenericParam>, NameAddrError> {
    let bytes = raw.as_bytes();
    let mut params = Vec::new();
    loop {
        i = skip_ws(bytes, i);
        if i == bytes.len() {
            return Ok(params);
        }
        if bytes[i] != b';' {
            return Err(NameAddrError::BadParam { at: i });
        }
        i = skip_ws(bytes, i + 1);
        let name_start = i;
        while i < bytes.len() && is_param_char(bytes[i]) {
            i += 1;
        }
        if i == name_start {
            return Err(NameAddrError::BadParam { at: i });
        }
        let name = raw[name_start..i].to_string();
        let after_name = skip_ws(bytes, i);
        if bytes.get(after_name) != Some(&b'=') {
            params.push(GenericParam { name, value: None });
            i = after_name;
            continue;
        }
        i = skip_ws(bytes, after_name + 1);
        let value_start = i;
        i = match bytes.get(i) {
            Some(b'"') => quoted_end(bytes, i).ok_or(NameAddrError::UnclosedQuote)?,
            // An IPv6 reference (`received=[2001:db8::1]`), or an unquoted `<urn:…>`.
            Some(&open @ (b'[' | b'<')) => {
                let close = if open == b'[' { b']' } else { b'>' };
                let at =
                    raw[i..].bytes().position(|b| b == close).ok_or(NameAddrError::BadParam { at: i })?;
                i + at + 1
            }
            _ => {
                while i < bytes.len() && (is_param_char(bytes[i]) || bytes[i] == b':') {
                    i += 1;
                }
                i
            }
        };
        if i == value_start {
            return Err(NameAddrError::BadParam { at: i });
        }
        params.push(GenericParam { name, value: Some(raw[value_start..i].to_string()) });
    }
}

/// RFC 3261 token characters, and any non-ASCII byte (UTF-8 in the wild).
fn is_param_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b) || b >= 0x80
}

fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
        i += 1;
    }
    i
}

/// The index just past the quoted string that opens at `start`.
fn quoted_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

fn unescape(inner: &str) -> String {
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_feature_tags_with_brackets_inside() {
        let v =
            r#"<sip:alice-0x55d1@127.0.0.1:15180>;expires=60;+sip.instance="<urn:uuid:8a1f-77>";reg-id=1"#;
        let c = NameAddr::parse(v).unwrap();
        assert_eq!(c.uri.to_string(), "sip:alice-0x55d1@127.0.0.1:15180");
        assert_eq!(c.expires(), Some("60"));
        let instance = c.param("+sip.instance").unwrap();
        assert_eq!(instance.value.as_deref(), Some(r#""<urn:uuid:8a1f-77>""#));
        assert_eq!(instance.unquoted().unwrap(), "<urn:uuid:8a1f-77>");
        assert_eq!(c.param("REG-ID").unwrap().value.as_deref(), Some("1"));
        assert_eq!(c.to_string(), v, "prints back as received");
    }

    #[test]
    fn quoted_lists_flags_and_cisco_device_names() {
        let v = r#""Desk 12" <sip:alice@127.0.0.1;transport=udp>;methods="INVITE, ACK, BYE";+g.oma.sip-im;+u.sip!devicename.ccm.cisco.com="SEP00112233";q=0.5"#;
        let c = NameAddr::parse(v).unwrap();
        assert_eq!(c.display_name.as_deref(), Some("Desk 12"));
        assert_eq!(c.params.len(), 4);
        assert_eq!(c.param("methods").unwrap().unquoted().unwrap(), "INVITE, ACK, BYE");
        assert_eq!(c.param("+g.oma.sip-im").unwrap().value, None);
        assert_eq!(c.param("q").unwrap().value.as_deref(), Some("0.5"));
        assert_eq!(c.uri.to_string(), "sip:alice@127.0.0.1;transport=UDP", "rsip spells transports its way");
    }

    #[test]
    fn white_space_around_semicolons_and_equals_is_allowed() {
        // RFC 4475 §3.1.1.1.
        let c = NameAddr::parse("sip:vivekg@chair.example.com ;   tag    = 1918181833n").unwrap();
        assert_eq!(c.tag(), Some("1918181833n"));
        let c = NameAddr::parse(r#""J Rosenberg \\\""       <sip:jdrosen@example.com>  ;  tag = 98asjd8"#)
            .unwrap();
        assert_eq!(c.display_name.as_deref(), Some(r#"J Rosenberg \""#));
        assert_eq!(c.tag(), Some("98asjd8"));
        let c = NameAddr::parse(r#""Quoted string \"\"" <sip:jdrosen@example.com> ; newparam = newvalue ; secondparam ; q = 0.33"#).unwrap();
        assert_eq!(c.param("newparam").unwrap().value.as_deref(), Some("newvalue"));
        assert_eq!(c.param("secondparam").unwrap().value, None);
        assert_eq!(c.param("q").unwrap().value.as_deref(), Some("0.33"));
    }

    #[test]
    fn display_names_may_hold_brackets_and_tokens() {
        let c = NameAddr::parse(r#""a <b> c" <sip:x@example.com>;tag=1"#).unwrap();
        assert_eq!(c.display_name.as_deref(), Some("a <b> c"));
        assert_eq!(c.uri.to_string(), "sip:x@example.com");
        let c = NameAddr::parse("token1~` token2'+_ <sip:mundane@example.com>;tag=_token~1'+`*%!-.").unwrap();
        assert_eq!(c.display_name.as_deref(), Some("token1~` token2'+_"));
        assert_eq!(c.tag(), Some("_token~1'+`*%!-."));
    }

    #[test]
    fn host_values_and_addr_specs() {
        let c =
            NameAddr::parse("<sip:a@example.com>;received=[2001:db8::1];x=host.example.com:5060").unwrap();
        assert_eq!(c.param("received").unwrap().value.as_deref(), Some("[2001:db8::1]"));
        assert_eq!(c.param("x").unwrap().value.as_deref(), Some("host.example.com:5060"));
        let c = NameAddr::parse(r#"sip:a@h.example;+sip.instance="<urn:uuid:1>";reg-id=1"#).unwrap();
        assert_eq!(c.uri.to_string(), "sip:a@h.example");
        assert_eq!(c.param("+sip.instance").unwrap().unquoted().unwrap(), "<urn:uuid:1>");
        let c = NameAddr::parse("sip:bob@example.com;tag=abc").unwrap();
        assert_eq!(c.uri.to_string(), "sip:bob@example.com");
        assert_eq!(c.tag(), Some("abc"));
        assert_eq!(c.with_tag("t9"), "sip:bob@example.com;tag=abc;tag=t9");
    }

    #[test]
    fn broken_values_are_errors_not_panics() {
        for bad in [
            "",
            "   ",
            r#""unclosed <sip:a@b>"#,
            "<sip:a@b",
            "<sip:a@b>;",
            "<sip:a@b>;=x",
            "<sip:a@b>;x=",
            r#"<sip:a@b>;x="open"#,
            "<sip:a@b> junk",
            "<sip:a@b>;x=[::1",
            "\"\\",
            "<>",
        ] {
            assert!(NameAddr::parse(bad).is_err(), "{bad:?}");
        }
        // Every prefix of a valid value either parses or fails cleanly.
        let v = r#""A \"B\"" <sip:a@b.example;lr>;+sip.instance="<urn:uuid:1>";q=0.5"#;
        for end in 0..=v.len() {
            if v.is_char_boundary(end) {
                let _ = NameAddr::parse(&v[..end]);
            }
        }
    }
}
