//! Digest authentication (RFC 3261 §22, RFC 7616, RFC 8760 for SIP).
//!
//! - [`Challenge`] and [`DigestClient`]: answering a `401`/`407` with MD5 or SHA-256, `qop=auth`,
//!   counting nonce uses, and telling a stale nonce from rejected credentials.
//! - [`DigestServer`]: challenges with nonces that carry their own issue time under an HMAC, so
//!   they expire without server state, and verification against a stored HA1 that refuses a
//!   replayed nonce count.
//!
//! Credentials are stored as HA1 = H(username ":" realm ":" password) per algorithm (RFC 7616
//! §3.4.2), so the server never keeps a password.

use std::collections::HashMap;
use std::fmt::Write as _;

use hmac::{Hmac, Mac};
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

    /// Parses an `algorithm=` token (case-insensitive).
    pub fn from_token(token: &str) -> Option<Algorithm> {
        if token.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if token.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
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

/// The `response` value (RFC 7616 §3.4.1; without qop, RFC 2617 §3.2.2.1).
fn response_hash(
    algorithm: Algorithm,
    ha1: &str,
    nonce: &str,
    method: &str,
    uri: &str,
    qop: Option<(&str, &str)>,
) -> String {
    let ha2 = algorithm.hash_hex(format!("{method}:{uri}").as_bytes());
    let input = match qop {
        Some((nc, cnonce)) => format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"),
        None => format!("{ha1}:{nonce}:{ha2}"),
    };
    algorithm.hash_hex(input.as_bytes())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("not a Digest challenge or credentials")]
    NotDigest,
    #[error("malformed auth parameters")]
    Malformed,
    #[error("missing `{0}` parameter")]
    MissingParam(&'static str),
    #[error("unsupported algorithm `{0}`")]
    UnsupportedAlgorithm(String),
    #[error("the challenge offers neither qop=auth nor the RFC 2069 form")]
    UnsupportedQop,
}

/// `name=value` pairs after the scheme; quoted values unescaped; names lower-cased.
fn auth_params(value: &str) -> Result<HashMap<String, String>, AuthError> {
    let value = value.trim_start();
    let scheme_end = value.find(char::is_whitespace).ok_or(AuthError::Malformed)?;
    if !value[..scheme_end].eq_ignore_ascii_case("Digest") {
        return Err(AuthError::NotDigest);
    }
    let mut params = HashMap::new();
    let mut rest = value[scheme_end..].chars().peekable();
    loop {
        while matches!(rest.peek(), Some(c) if c.is_whitespace() || *c == ',') {
            rest.next();
        }
        if rest.peek().is_none() {
            break;
        }
        let mut name = String::new();
        while let Some(&c) = rest.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            name.push(c);
            rest.next();
        }
        while matches!(rest.peek(), Some(c) if c.is_whitespace()) {
            rest.next();
        }
        if rest.next() != Some('=') || name.is_empty() {
            return Err(AuthError::Malformed);
        }
        while matches!(rest.peek(), Some(c) if c.is_whitespace()) {
            rest.next();
        }
        let mut val = String::new();
        if rest.peek() == Some(&'"') {
            rest.next();
            loop {
                match rest.next() {
                    Some('\\') => val.push(rest.next().ok_or(AuthError::Malformed)?),
                    Some('"') => break,
                    Some(c) => val.push(c),
                    None => return Err(AuthError::Malformed),
                }
            }
        } else {
            while let Some(&c) = rest.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                val.push(c);
                rest.next();
            }
        }
        params.insert(name.to_ascii_lowercase(), val);
    }
    Ok(params)
}

fn quote(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A parsed `WWW-Authenticate` or `Proxy-Authenticate` digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// `qop="auth"` offered (`auth-int` is not used in SIP practice).
    pub qop_auth: bool,
    /// RFC 7616 §3.3: the nonce expired but the credentials were right; retry at once.
    pub stale: bool,
}

impl Challenge {
    pub fn parse(value: &str) -> Result<Challenge, AuthError> {
        let p = auth_params(value)?;
        let algorithm = match p.get("algorithm") {
            None => Algorithm::Md5,
            Some(a) => Algorithm::from_token(a).ok_or_else(|| AuthError::UnsupportedAlgorithm(a.clone()))?,
        };
        let qop = p.get("qop");
        let qop_auth = qop.is_some_and(|q| q.split(',').any(|o| o.trim().eq_ignore_ascii_case("auth")));
        if qop.is_some() && !qop_auth {
            return Err(AuthError::UnsupportedQop);
        }
        Ok(Challenge {
            realm: p.get("realm").cloned().ok_or(AuthError::MissingParam("realm"))?,
            nonce: p.get("nonce").cloned().ok_or(AuthError::MissingParam("nonce"))?,
            opaque: p.get("opaque").cloned(),
            algorithm,
            qop_auth,
            stale: p.get("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }

    /// The header value, for a server issuing this challenge.
    pub fn to_header_value(&self) -> String {
        let mut out = format!(
            "Digest realm=\"{}\", nonce=\"{}\", algorithm={}",
            quote(&self.realm),
            quote(&self.nonce),
            self.algorithm.token()
        );
        if self.qop_auth {
            out.push_str(", qop=\"auth\"");
        }
        if let Some(opaque) = &self.opaque {
            let _ = write!(out, ", opaque=\"{}\"", quote(opaque));
        }
        if self.stale {
            out.push_str(", stale=true");
        }
        out
    }

    /// The `Authorization` value answering this challenge. `nc` counts uses of this nonce from 1;
    /// `cnonce` is the client's fresh random value.
    pub fn answer(
        &self,
        username: &str,
        password: &str,
        method: &str,
        uri: &str,
        nc: u32,
        cnonce: &str,
    ) -> String {
        let ha1 = ha1(self.algorithm, username, &self.realm, password);
        let nc_hex = format!("{nc:08x}");
        let qop = self.qop_auth.then_some((nc_hex.as_str(), cnonce));
        let response = response_hash(self.algorithm, &ha1, &self.nonce, method, uri, qop);
        let mut out = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm={}",
            quote(username),
            quote(&self.realm),
            quote(&self.nonce),
            quote(uri),
            response,
            self.algorithm.token()
        );
        if self.qop_auth {
            let _ = write!(out, ", qop=auth, nc={nc_hex}, cnonce=\"{}\"", quote(cnonce));
        }
        if let Some(opaque) = &self.opaque {
            let _ = write!(out, ", opaque=\"{}\"", quote(opaque));
        }
        out
    }
}

/// What a client should do after a challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChallengeOutcome {
    /// Send the request again with credentials.
    Retry,
    /// The server refused credentials for this very nonce: the username or password is wrong.
    Rejected,
}

/// A client's digest state for one server: the chosen challenge and its nonce count.
#[derive(Debug, Clone, Default)]
pub struct DigestClient {
    current: Option<Challenge>,
    /// Whether the current challenge was answered at least once.
    answered: bool,
    nc: u32,
}

impl DigestClient {
    /// Takes the challenges of a 401/407 (one per WWW-/Proxy-Authenticate header). Prefers
    /// SHA-256 over MD5 (RFC 8760 §2.4). A challenge repeating the nonce we already answered,
    /// without `stale=true`, means the credentials are wrong.
    pub fn on_challenges<'a>(
        &mut self,
        values: impl IntoIterator<Item = &'a str>,
    ) -> Result<ChallengeOutcome, AuthError> {
        let mut best: Option<Challenge> = None;
        let mut last_error = AuthError::NotDigest;
        for value in values {
            match Challenge::parse(value) {
                Ok(c) => {
                    let better = match &best {
                        None => true,
                        Some(b) => b.algorithm == Algorithm::Md5 && c.algorithm == Algorithm::Sha256,
                    };
                    if better {
                        best = Some(c);
                    }
                }
                Err(e) => last_error = e,
            }
        }
        let challenge = best.ok_or(last_error)?;
        let repeated = self.answered
            && self
                .current
                .as_ref()
                .is_some_and(|c| c.nonce == challenge.nonce && c.realm == challenge.realm);
        if repeated && !challenge.stale {
            return Ok(ChallengeOutcome::Rejected);
        }
        self.current = Some(challenge);
        self.answered = false;
        self.nc = 0;
        Ok(ChallengeOutcome::Retry)
    }

    /// Credentials for the next request, once a challenge is known.
    pub fn authorization(
        &mut self,
        username: &str,
        password: &str,
        method: &str,
        uri: &str,
        cnonce: &str,
    ) -> Option<String> {
        let challenge = self.current.as_ref()?;
        self.nc += 1;
        self.answered = true;
        Some(challenge.answer(username, password, method, uri, self.nc, cnonce))
    }

    pub fn reset(&mut self) {
        *self = DigestClient::default();
    }
}

/// Credentials from an `Authorization` or `Proxy-Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestResponse {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Algorithm,
    /// `(nc, cnonce)` when `qop=auth` was used.
    pub qop: Option<(String, String)>,
    pub opaque: Option<String>,
}

impl DigestResponse {
    pub fn parse(value: &str) -> Result<DigestResponse, AuthError> {
        let p = auth_params(value)?;
        let get = |name: &'static str| p.get(name).cloned().ok_or(AuthError::MissingParam(name));
        let algorithm = match p.get("algorithm") {
            None => Algorithm::Md5,
            Some(a) => Algorithm::from_token(a).ok_or_else(|| AuthError::UnsupportedAlgorithm(a.clone()))?,
        };
        let qop = match p.get("qop") {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => Some((get("nc")?, get("cnonce")?)),
            Some(_) => return Err(AuthError::UnsupportedQop),
        };
        Ok(DigestResponse {
            username: get("username")?,
            realm: get("realm")?,
            nonce: get("nonce")?,
            uri: get("uri")?,
            response: get("response")?.to_ascii_lowercase(),
            algorithm,
            qop,
            opaque: p.get("opaque").cloned(),
        })
    }
}

/// Why credentials were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("credentials are for realm `{0}`")]
    WrongRealm(String),
    #[error("the nonce was not issued by this server")]
    ForeignNonce,
    /// Right nonce, but expired: challenge again with `stale=true`.
    #[error("the nonce has expired")]
    Stale,
    #[error("nonce count {0} was already used")]
    Replay(u32),
    #[error("malformed nonce count")]
    BadNonceCount,
    #[error("wrong response: bad password or a mangled request")]
    BadResponse,
}

type HmacSha256 = Hmac<Sha256>;

/// How many recent nonces the replay check remembers (4 MiB of counters).
pub const NONCE_WINDOW: u64 = 1 << 20;

/// The server side: issues challenges and verifies credentials for one realm.
///
/// A nonce is `<issue time><serial><HMAC-SHA256(secret, time:serial:realm)>`, each part fixed-width
/// hex (16, 16 and 32 digits): the server recognises its own nonces and their age without
/// storing them, and every challenge carries a nonce never issued before (clients such as libre
/// answer each nonce with `nc=00000001` only). Replays are refused with fixed memory: the serial
/// indexes a ring holding the highest nonce count seen for each of the last [`NONCE_WINDOW`]
/// nonces; an older nonce is answered as stale, and the client retries with a fresh one.
#[derive(Debug)]
pub struct DigestServer {
    realm: String,
    /// Offered in this order: one challenge header each (RFC 8760 §2.4).
    algorithms: Vec<Algorithm>,
    secret: [u8; 32],
    lifetime_secs: u64,
    /// Makes each nonce unique, even within one second; the last one issued.
    serial: u64,
    /// Highest nonce count seen, per nonce serial modulo the window.
    counts: Vec<u32>,
}

impl DigestServer {
    /// `secret` must be random and private (the gateway draws it from the OS at start-up).
    /// Challenges offer SHA-256, then MD5; see [`DigestServer::with_algorithms`].
    pub fn new(realm: impl Into<String>, secret: [u8; 32], lifetime_secs: u64) -> DigestServer {
        DigestServer {
            realm: realm.into(),
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            secret,
            lifetime_secs,
            serial: 0,
            counts: vec![0; NONCE_WINDOW as usize],
        }
    }

    /// The algorithms to offer, most preferred first. Some clients (libre before 2.x, so
    /// baresip 1.0) give up on a first challenge they cannot answer instead of trying the next,
    /// so a deployment with such phones puts MD5 first.
    pub fn with_algorithms(mut self, algorithms: Vec<Algorithm>) -> DigestServer {
        if !algorithms.is_empty() {
            self.algorithms = algorithms;
        }
        self
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    fn sign(&self, issued: u64, serial: u64) -> String {
        // HMAC accepts a key of any length.
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(format!("{issued:016x}:{serial:016x}:{}", self.realm).as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// A nonce never issued before.
    pub fn nonce(&mut self, now_secs: u64) -> String {
        self.serial += 1;
        self.counts[(self.serial % NONCE_WINDOW) as usize] = 0;
        format!("{now_secs:016x}{:016x}{}", self.serial, self.sign(now_secs, self.serial))
    }

    /// The challenge header values for a 401/407, one per offered algorithm, in order of
    /// preference (RFC 8760 §2.4).
    pub fn challenges(&mut self, now_secs: u64, stale: bool) -> Vec<String> {
        let nonce = self.nonce(now_secs);
        self.algorithms
            .iter()
            .map(|&algorithm| {
                Challenge {
                    realm: self.realm.clone(),
                    nonce: nonce.clone(),
                    opaque: None,
                    algorithm,
                    qop_auth: true,
                    stale,
                }
                .to_header_value()
            })
            .collect()
    }

    /// Checks credentials for a request with `method`, given the stored HA1 of
    /// `response.username` for `response.algorithm`.
    pub fn verify(
        &mut self,
        now_secs: u64,
        method: &str,
        response: &DigestResponse,
        ha1: &str,
    ) -> Result<(), VerifyError> {
        if response.realm != self.realm {
            return Err(VerifyError::WrongRealm(response.realm.clone()));
        }
        let (issued, serial) = self.issued_at(&response.nonce).ok_or(VerifyError::ForeignNonce)?;
        let qop = response.qop.as_ref().map(|(nc, cnonce)| (nc.as_str(), cnonce.as_str()));
        let expected = response_hash(response.algorithm, ha1, &response.nonce, method, &response.uri, qop);
        if expected != response.response {
            return Err(VerifyError::BadResponse);
        }
        // Expired, or too old for the replay window: the credentials were right, so the client
        // may retry at once with a fresh nonce.
        if now_secs.saturating_sub(issued) > self.lifetime_secs
            || self.serial.saturating_sub(serial) >= NONCE_WINDOW
        {
            return Err(VerifyError::Stale);
        }
        // Without qop a nonce is good once; with it, each count once and rising.
        let nc = match &response.qop {
            Some((nc, _)) => u32::from_str_radix(nc, 16).map_err(|_| VerifyError::BadNonceCount)?,
            None => 1,
        };
        let slot = &mut self.counts[(serial % NONCE_WINDOW) as usize];
        if nc <= *slot {
            return Err(VerifyError::Replay(nc));
        }
        *slot = nc;
        Ok(())
    }

    /// The issue time and serial of one of our nonces.
    fn issued_at(&self, nonce: &str) -> Option<(u64, u64)> {
        if nonce.len() != 64 || !nonce.is_ascii() {
            return None;
        }
        let issued = u64::from_str_radix(&nonce[..16], 16).ok()?;
        let serial = u64::from_str_radix(&nonce[16..32], 16).ok()?;
        // A serial from the future was not issued by this server (instance).
        (serial <= self.serial && self.sign(issued, serial) == nonce[32..]).then_some((issued, serial))
    }
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

    #[test]
    fn rfc2617_worked_example_response() {
        // RFC 2617 §3.5: qop=auth, nc=00000001, cnonce 0a4f113b, GET /dir/index.html.
        let challenge = Challenge::parse(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .unwrap();
        let answer = challenge.answer("Mufasa", "Circle Of Life", "GET", "/dir/index.html", 1, "0a4f113b");
        let parsed = DigestResponse::parse(&answer).unwrap();
        assert_eq!(parsed.response, "6629fae49393a05397450978507c4ef1");
        assert_eq!(parsed.qop, Some(("00000001".into(), "0a4f113b".into())));
        assert_eq!(parsed.opaque.as_deref(), Some("5ccc069c403ebaf9f0171e9517f40e41"));
    }

    #[test]
    fn rfc7616_sha256_example_response() {
        // RFC 7616 §3.9.1, SHA-256 variant.
        let challenge = Challenge::parse(
            r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#,
        )
        .unwrap();
        let answer = challenge.answer(
            "Mufasa",
            "Circle of Life",
            "GET",
            "/dir/index.html",
            1,
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        );
        let parsed = DigestResponse::parse(&answer).unwrap();
        assert_eq!(parsed.response, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1");
    }

    fn server() -> DigestServer {
        DigestServer::new("gateway", [7; 32], 300)
    }

    fn sha_challenge(server: &mut DigestServer, now: u64) -> Challenge {
        Challenge::parse(&server.challenges(now, false)[0]).unwrap()
    }

    #[test]
    fn server_accepts_good_credentials_once_per_count() {
        let mut server = server();
        let challenges = server.challenges(1000, false);
        assert!(challenges[0].contains("SHA-256") && challenges[1].contains("MD5"));
        let mut md5_first = DigestServer::new("gateway", [7; 32], 300).with_algorithms(vec![Algorithm::Md5]);
        assert_eq!(md5_first.challenges(1000, false).len(), 1);
        let mut client = DigestClient::default();
        assert_eq!(client.on_challenges(challenges.iter().map(String::as_str)), Ok(ChallengeOutcome::Retry));
        let auth = client.authorization("alice", "pw", "REGISTER", "sip:gateway", "c1").unwrap();
        let response = DigestResponse::parse(&auth).unwrap();
        assert_eq!(response.algorithm, Algorithm::Sha256, "SHA-256 preferred");
        let stored = ha1(Algorithm::Sha256, "alice", "gateway", "pw");
        assert_eq!(server.verify(1001, "REGISTER", &response, &stored), Ok(()));
        // The same message again is a replay; the next count is fine.
        assert_eq!(server.verify(1002, "REGISTER", &response, &stored), Err(VerifyError::Replay(1)));
        let auth2 = client.authorization("alice", "pw", "REGISTER", "sip:gateway", "c2").unwrap();
        assert!(auth2.contains("nc=00000002"));
        assert_eq!(server.verify(1003, "REGISTER", &DigestResponse::parse(&auth2).unwrap(), &stored), Ok(()));
    }

    #[test]
    fn server_refuses_bad_foreign_and_stale() {
        let mut server = server();
        let challenge = sha_challenge(&mut server, 1000);
        let stored = ha1(Algorithm::Sha256, "alice", "gateway", "pw");

        let wrong =
            DigestResponse::parse(&challenge.answer("alice", "nope", "REGISTER", "sip:g", 1, "c")).unwrap();
        assert_eq!(server.verify(1001, "REGISTER", &wrong, &stored), Err(VerifyError::BadResponse));

        let mut other = DigestServer::new("gateway", [8; 32], 300);
        let forged = sha_challenge(&mut other, 1000);
        let forged =
            DigestResponse::parse(&forged.answer("alice", "pw", "REGISTER", "sip:g", 1, "c")).unwrap();
        assert_eq!(server.verify(1001, "REGISTER", &forged, &stored), Err(VerifyError::ForeignNonce));

        let old =
            DigestResponse::parse(&challenge.answer("alice", "pw", "REGISTER", "sip:g", 1, "c")).unwrap();
        assert_eq!(server.verify(1000 + 301, "REGISTER", &old, &stored), Err(VerifyError::Stale));

        let mut tampered = old.clone();
        tampered.nonce = format!("{:016x}{}", 5000, &old.nonce[16..]);
        // A nonce whose issue time was moved no longer carries a valid HMAC.
        assert_eq!(server.verify(1001, "REGISTER", &tampered, &stored), Err(VerifyError::ForeignNonce));
        let method_changed = server.verify(1001, "INVITE", &old, &stored);
        assert_eq!(method_changed, Err(VerifyError::BadResponse));
    }

    #[test]
    fn client_tells_wrong_password_from_stale_nonce() {
        let mut server = server();
        let mut client = DigestClient::default();
        let first = server.challenges(1000, false);
        assert_eq!(client.on_challenges(first.iter().map(String::as_str)), Ok(ChallengeOutcome::Retry));
        client.authorization("alice", "pw", "REGISTER", "sip:g", "c").unwrap();
        // The same nonce again: our answer was refused.
        assert_eq!(client.on_challenges(first.iter().map(String::as_str)), Ok(ChallengeOutcome::Rejected));
        // A stale challenge with the same nonce is a retry; a new nonce is a retry.
        let stale: Vec<String> = first.iter().map(|c| format!("{c}, stale=true")).collect();
        assert_eq!(client.on_challenges(stale.iter().map(String::as_str)), Ok(ChallengeOutcome::Retry));
        client.authorization("alice", "pw", "REGISTER", "sip:g", "c").unwrap();
        let fresh = server.challenges(1100, false);
        assert_eq!(client.on_challenges(fresh.iter().map(String::as_str)), Ok(ChallengeOutcome::Retry));
    }

    #[test]
    fn every_challenge_has_a_fresh_nonce() {
        let mut server = server();
        let a = sha_challenge(&mut server, 1000);
        let b = sha_challenge(&mut server, 1000);
        assert_ne!(a.nonce, b.nonce, "same second, different nonces");
        // A client that answers each nonce with nc=1 (libre) is accepted each time.
        let stored = ha1(Algorithm::Sha256, "alice", "gateway", "pw");
        for c in [a, b] {
            let r = DigestResponse::parse(&c.answer("alice", "pw", "REGISTER", "sip:g", 1, "c")).unwrap();
            assert_eq!(server.verify(1001, "REGISTER", &r, &stored), Ok(()));
        }
    }

    #[test]
    fn nonces_beyond_the_replay_window_are_stale() {
        let mut server = server();
        let old = sha_challenge(&mut server, 1000);
        server.serial += NONCE_WINDOW; // as if a window's worth of nonces had been issued since
        let r = DigestResponse::parse(&old.answer("alice", "pw", "REGISTER", "sip:g", 1, "c")).unwrap();
        let stored = ha1(Algorithm::Sha256, "alice", "gateway", "pw");
        assert_eq!(server.verify(1001, "REGISTER", &r, &stored), Err(VerifyError::Stale));
        let fresh = sha_challenge(&mut server, 1001);
        let r = DigestResponse::parse(&fresh.answer("alice", "pw", "REGISTER", "sip:g", 1, "c")).unwrap();
        assert_eq!(server.verify(1002, "REGISTER", &r, &stored), Ok(()));
    }

    #[test]
    fn malformed_auth_headers_are_errors_not_panics() {
        for bad in [
            "",
            "Basic realm=\"x\"",
            "Digest",
            "Digest realm",
            "Digest realm=\"unterminated",
            "Digest nonce=\"n\"",
            "Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512-256",
            "Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\"",
            "Digest =x",
        ] {
            assert!(Challenge::parse(bad).is_err(), "{bad:?}");
            assert!(DigestResponse::parse(bad).is_err(), "{bad:?}");
        }
        let escaped = Challenge::parse(r#"Digest realm="a \"b\" c", nonce=n1"#).unwrap();
        assert_eq!(escaped.realm, "a \"b\" c");
        assert_eq!(Challenge::parse(&escaped.to_header_value()).unwrap(), escaped);
    }
}
