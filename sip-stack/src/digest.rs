//! Digest authentication hashes (RFC 7616, RFC 8760 for SIP).
//!
//! Credentials are stored as HA1 = H(username ":" realm ":" password) per algorithm (RFC 7616
//! §3.4.2), so the server never keeps a password.

use md5::{Digest as _, Md5};
use sha2::Sha256;

/// A digest algorithm offered or answered in a challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    /// The token used in `algorithm=` parameters.
    pub fn token(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Lower-case hex of the hash of `data`.
    pub fn hash_hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 => hex::encode(Md5::digest(data)),
            Algorithm::Sha256 => hex::encode(Sha256::digest(data)),
        }
    }
}

/// HA1 for a user, lower-case hex.
pub fn ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
    algorithm.hash_hex(format!("{username}:{realm}:{password}").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_ha1_values() {
        // RFC 2617 §3.5 worked example.
        assert_eq!(
            ha1(Algorithm::Md5, "Mufasa", "testrealm@host.com", "Circle Of Life"),
            "939e7578ed9e3c518a452acee763bce9"
        );
        // SHA-256 of "u:r:p", computed independently with sha256sum.
        assert_eq!(ha1(Algorithm::Sha256, "u", "r", "p"), SHA256_U_R_P);
    }

    const SHA256_U_R_P: &str = "dcb021102e491e701a4a236daa8923af2161447bce7bb7260a351ee83e9f8154";
}
