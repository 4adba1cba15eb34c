//! SDES: SRTP keys carried in SDP (RFC 4568), the `a=crypto` attribute of an `RTP/SAVP`
//! stream. Each side names the key it sends with; the answer picks one of the offer's lines
//! (same tag and suite) and gives its own key.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// Master key (16 bytes) then master salt (14 bytes), as `inline:` carries them for the
/// AES-128 suites.
pub const KEY_LEN: usize = 30;

/// The crypto suites taken (RFC 4568 §6.2): AES-128 counter mode with an 80- or 32-bit
/// HMAC-SHA1 tag, which every SDES phone has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    AesCm128HmacSha1_80,
    AesCm128HmacSha1_32,
}

impl Suite {
    pub fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    fn from_name(name: &str) -> Option<Suite> {
        [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32].into_iter().find(|s| s.name() == name)
    }
}

/// SRTP master key and salt.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Key(pub [u8; KEY_LEN]);

impl std::fmt::Debug for Key {
    // Key material stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

/// One `a=crypto` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crypto {
    pub tag: u32,
    pub suite: Suite,
    pub key: Key,
}

/// Why an `a=crypto` line is not taken; the answer then tries the offer's next one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("a=crypto: expected `TAG SUITE inline:KEY`")]
    Syntax,
    #[error("a=crypto: suite {0} not supported")]
    Suite(String),
    #[error("a=crypto: the key is not {KEY_LEN} bytes of base64")]
    Key,
    /// A master key identifier would have to travel in every packet; none is used here.
    #[error("a=crypto: keys with an MKI are not supported")]
    Mki,
    /// `UNENCRYPTED_SRTP`, `KDR`, …: each changes the packets; none is taken.
    #[error("a=crypto: session parameters are not supported")]
    SessionParameters,
}

impl Crypto {
    /// Parses an `a=crypto` value: `TAG SUITE inline:KEY[|LIFETIME][|MKI:LENGTH] [PARAMS]`
    /// (RFC 4568 §9.1). A lifetime is accepted and ignored: a call does not send 2^31 packets.
    pub fn parse(value: &str) -> Result<Crypto, CryptoError> {
        let mut fields = value.split_whitespace();
        let (Some(tag), Some(suite), Some(key_params)) = (fields.next(), fields.next(), fields.next()) else {
            return Err(CryptoError::Syntax);
        };
        if fields.next().is_some() {
            return Err(CryptoError::SessionParameters);
        }
        let tag = tag.parse::<u32>().map_err(|_| CryptoError::Syntax)?;
        if tag > 999_999_999 {
            return Err(CryptoError::Syntax);
        }
        let suite = Suite::from_name(suite).ok_or_else(|| CryptoError::Suite(suite.to_string()))?;
        // Several keys (`;`-separated) are for MKI-based switching: refused with MKIs.
        let inline = key_params.strip_prefix("inline:").ok_or(CryptoError::Syntax)?;
        let mut parts = inline.split('|');
        let encoded = parts.next().unwrap_or_default();
        for part in parts {
            if part.contains(':') {
                return Err(CryptoError::Mki);
            }
        }
        if inline.contains(';') {
            return Err(CryptoError::Mki);
        }
        let bytes = STANDARD.decode(encoded).map_err(|_| CryptoError::Key)?;
        let key = Key(bytes.try_into().map_err(|_| CryptoError::Key)?);
        Ok(Crypto { tag, suite, key })
    }

    /// The attribute's value, as [`Crypto::parse`] reads it.
    pub fn value(&self) -> String {
        format!("{} {} inline:{}", self.tag, self.suite.name(), STANDARD.encode(self.key.0))
    }
}

/// What an answer settled: the suite, the key the peer sends with, the key we send with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrtpKeys {
    pub suite: Suite,
    pub remote: Key,
    pub local: Key,
}

/// Whether a stream may, or must, be SRTP with SDES keys; with the key we would send with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Srtp {
    /// Plain RTP only: `RTP/SAVP` streams are refused.
    Off,
    /// `RTP/SAVP` offers are answered with SRTP, `RTP/AVP` ones with RTP.
    Optional(Key),
    /// Only `RTP/SAVP`: a plain offer gets no stream (488).
    Required(Key),
}

impl Srtp {
    /// The key we send with, when SRTP is allowed at all.
    pub fn key(self) -> Option<Key> {
        match self {
            Srtp::Off => None,
            Srtp::Optional(key) | Srtp::Required(key) => Some(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crypto_lines_as_phones_send_them() {
        // RFC 4568 §9.1's example key.
        let line = "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32";
        assert_eq!(Crypto::parse(line), Err(CryptoError::Mki));
        let line = "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20";
        let crypto = Crypto::parse(line).unwrap();
        assert_eq!((crypto.tag, crypto.suite), (1, Suite::AesCm128HmacSha1_80));
        assert_eq!(&crypto.key.0[..4], &[0x3d, 0x2d, 0x6e, 0x40]);
        // Round trip (the lifetime is not repeated).
        let again = Crypto::parse(&crypto.value()).unwrap();
        assert_eq!(again, crypto);
        let short =
            Crypto::parse("2 AES_CM_128_HMAC_SHA1_32 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR")
                .unwrap();
        assert_eq!(short.suite, Suite::AesCm128HmacSha1_32);
    }

    #[test]
    fn lines_we_cannot_keep_to_are_refused_not_misread() {
        for (line, error) in [
            ("1 AES_256_CM_HMAC_SHA1_80 inline:abcd", CryptoError::Suite("AES_256_CM_HMAC_SHA1_80".into())),
            ("1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=", CryptoError::Key),
            ("1 AES_CM_128_HMAC_SHA1_80 inline:!!!", CryptoError::Key),
            ("1 AES_CM_128_HMAC_SHA1_80", CryptoError::Syntax),
            (
                "x AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
                CryptoError::Syntax,
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR UNENCRYPTED_SRTP",
                CryptoError::SessionParameters,
            ),
        ] {
            assert_eq!(Crypto::parse(line), Err(error), "{line}");
        }
    }

    #[test]
    fn keys_stay_out_of_debug_output() {
        let crypto = Crypto { tag: 1, suite: Suite::AesCm128HmacSha1_80, key: Key([7; KEY_LEN]) };
        assert!(!format!("{crypto:?}").contains('7'));
    }
}
