//! Configuration: TOML on disk, built-in defaults, environment overrides.
//!
//! Every key is documented in `ops/gateway.example.toml`. Unknown keys and bad values stop
//! start-up with the dotted path of the key (`rtp.port_min`) and what was expected.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Environment variables that override the file (and the defaults).
pub const ENV_DATABASE_URL: &str = "GATEWAY_DATABASE_URL";
pub const ENV_SIP_UDP: &str = "GATEWAY_SIP_UDP";
pub const ENV_SIP_TCP: &str = "GATEWAY_SIP_TCP";
pub const ENV_HTTP_LISTEN: &str = "GATEWAY_HTTP_LISTEN";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("config file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Key { key: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: &'static str, message: String },
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub sip: SipConfig,
    pub http: HttpConfig,
    pub rtp: RtpConfig,
    pub database: DatabaseConfig,
    pub log: LogConfig,
    pub conference: ConferenceConfig,
    pub prompts: PromptsConfig,
    pub webrtc: WebrtcConfig,
    pub limits: LimitsConfig,
    /// Upstream SIP trunks and MCUs (`[[trunk]]` tables).
    #[serde(rename = "trunk")]
    pub trunks: Vec<TrunkConfig>,
}

/// Transports a trunk can use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrunkTransport {
    #[default]
    Udp,
    Tcp,
    Tls,
}

/// A trunk to a carrier or an MCU.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    /// Unique name, used in the API, metrics and logs.
    pub name: String,
    /// Registrar/proxy URI: `sip:host[:port]`.
    pub proxy: String,
    #[serde(default)]
    pub transport: TrunkTransport,
    /// User part of our address of record (From/To), often the number.
    pub username: String,
    /// Digest username, when the carrier wants an account id rather than the number.
    pub auth_username: Option<String>,
    pub password: Option<String>,
    /// Answer challenges only for this realm.
    pub realm: Option<String>,
    /// Host part of the address of record; the proxy's host when absent.
    pub domain: Option<String>,
    /// Register at all (IP-authenticated trunks don't).
    #[serde(default = "default_true")]
    pub register: bool,
    /// Requested registration expiry, seconds.
    #[serde(default = "default_trunk_expires")]
    pub expires: u32,
    /// PEM certificates a TLS trunk's server certificate must chain to (default: the public
    /// web PKI roots).
    pub tls_ca_file: Option<PathBuf>,
    /// Seconds between OPTIONS pings to the proxy (0: none). The trunk shows as reachable or
    /// not in the API and metrics.
    #[serde(default)]
    pub options_interval_secs: u32,
    /// The From user of calls out through this trunk (default: `username`).
    pub caller_id: Option<String>,
    /// Also assert the caller-ID in a header the carrier trusts: `pai`
    /// (P-Asserted-Identity, RFC 3325) or `ppi` (P-Preferred-Identity).
    #[serde(default)]
    pub identity_header: IdentityHeader,
    /// Where the trunk's calls come from: `IP` or `IP:PORT`. INVITEs from these skip digest
    /// authentication; every other caller must authenticate as a user.
    #[serde(default)]
    pub inbound_sources: Vec<TrustedSource>,
}

/// The network-asserted identity header sent on calls out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityHeader {
    #[default]
    None,
    Pai,
    Ppi,
}

/// A source address trusted for inbound calls: any port of an IP, or one IP and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum TrustedSource {
    Ip(IpAddr),
    Addr(SocketAddr),
}

impl TrustedSource {
    pub fn matches(self, src: SocketAddr) -> bool {
        match self {
            TrustedSource::Ip(ip) => src.ip() == ip,
            TrustedSource::Addr(addr) => src == addr,
        }
    }
}

impl TryFrom<String> for TrustedSource {
    type Error = String;

    fn try_from(text: String) -> Result<TrustedSource, String> {
        let text = text.trim();
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(TrustedSource::Addr(addr));
        }
        text.parse::<IpAddr>()
            .map(TrustedSource::Ip)
            .map_err(|_| format!("expected IP or IP:PORT, got `{text}`"))
    }
}

fn default_true() -> bool {
    true
}

fn default_trunk_expires() -> u32 {
    300
}

impl TrunkConfig {
    /// True when an INVITE from `src` comes from this trunk.
    pub fn trusts(&self, src: SocketAddr) -> bool {
        self.inbound_sources.iter().any(|s| s.matches(src))
    }

    /// The digest username: `auth_username`, else `username`.
    pub fn auth_user(&self) -> &str {
        self.auth_username.as_deref().unwrap_or(&self.username)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// UDP listeners.
    pub udp: Vec<SocketAddr>,
    /// TCP listeners.
    pub tcp: Vec<SocketAddr>,
    /// Addresses to listen on for SIP over TLS (RFC 3261 §26.2); needs a certificate and key.
    pub tls: Vec<SocketAddr>,
    /// PEM certificate chain and private key of the TLS listener.
    pub tls_certificate: Option<PathBuf>,
    pub tls_private_key: Option<PathBuf>,
    /// Digest realm for desk phones; stored with each user's HA1, so changing it invalidates them.
    pub realm: String,
    /// Address put in Contact and SDP when the listeners are bound to a wildcard or sit behind NAT.
    pub public_address: Option<IpAddr>,
    /// Server and User-Agent header value.
    pub user_agent: String,
    /// Digest algorithms offered to phones, most preferred first (`MD5`, `SHA-256`).
    pub digest_algorithms: Vec<String>,
    /// RFC 3261 timer T1 (round-trip estimate), T2 and T4, in milliseconds.
    pub t1_ms: u64,
    pub t2_ms: u64,
    pub t4_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// REST API, health and metrics listener.
    pub listen: SocketAddr,
    /// The admin bearer token: every API call, the only one that changes things or sees PINs.
    /// Without it, mutating calls are refused.
    pub api_token: Option<String>,
    /// A read-only bearer token: rooms (without PINs), conferences, call records, trunks.
    pub read_token: Option<String>,
    /// When set, `/metrics` needs this bearer token (or the admin token); open otherwise.
    pub metrics_token: Option<String>,
    /// Serve HTTPS with this PEM certificate chain and key (browsers allow the microphone
    /// only to pages over HTTPS, or from localhost). Both or neither.
    pub tls_certificate: Option<PathBuf>,
    pub tls_private_key: Option<PathBuf>,
    /// Reverse proxies (nginx, a load balancer) whose `X-Forwarded-For` names the browser:
    /// wrong PINs and call records then count the browser's address, not the proxy's.
    pub trusted_proxies: Vec<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtpConfig {
    /// Address media sockets bind to.
    pub address: IpAddr,
    pub port_min: u16,
    pub port_max: u16,
    /// A call whose peer sends no RTP for this long (and is not on hold) ends with BYE.
    pub timeout_secs: u32,
    /// A call on hold this long ends with BYE (`hold-timeout`); 0: never.
    pub hold_timeout_secs: u32,
    /// SRTP with SDES keys (RFC 4568) for calls in.
    pub srtp: SrtpMode,
    /// Media source security: a leg takes RTP and RTCP only from the address it learnt (the
    /// SDP's, or a run of sequential packets from one source); false follows whoever sent last.
    pub strict_source: bool,
    /// How long the learnt source must be silent before another may replace it (a phone that
    /// moved), in milliseconds.
    pub relearn_after_ms: u32,
}

/// Whether calls in may, or must, use SRTP keyed in their SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SrtpMode {
    /// `RTP/SAVP` offers are refused (488).
    Off,
    /// `RTP/SAVP` offers get SRTP, `RTP/AVP` ones plain RTP.
    Optional,
    /// Plain `RTP/AVP` offers are refused (488); a call without an offer is offered SRTP.
    Required,
}

/// How conferences and their IVR behave.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConferenceConfig {
    /// Sample rate of every conference's mix: 16000 (wideband, cheapest) or 48000 (fullband,
    /// for Opus participants).
    pub mix_rate: u32,
    /// Participants per room when the room sets no limit of its own.
    pub max_participants: u32,
    /// Wrong PINs before the goodbye prompt and BYE.
    pub pin_attempts: u32,
    /// Wrong PINs from one source address within `pin_block_secs` before its calls to rooms
    /// with a PIN are refused (403) for that long.
    pub pin_failures_per_source: u32,
    /// Wrong PINs for one room from everyone together within `pin_block_secs` before the room
    /// refuses PIN callers (403) for that long: guessing from many addresses. 0: no room limit.
    pub pin_failures_per_room: u32,
    pub pin_block_secs: u32,
    /// Seconds to wait for a PIN digit before the attempt counts as wrong.
    pub pin_digit_timeout_secs: u32,
    /// Session-Expires asked of phones (RFC 4028), seconds; at least 90.
    pub session_expires_secs: u32,
    /// The longest session interval granted to a phone that asks for more (RFC 4028 §9).
    pub max_session_expires_secs: u32,
}

impl Default for ConferenceConfig {
    fn default() -> ConferenceConfig {
        ConferenceConfig {
            mix_rate: 16000,
            max_participants: 100,
            pin_attempts: 3,
            pin_failures_per_source: 10,
            pin_failures_per_room: 100,
            pin_block_secs: 600,
            pin_digit_timeout_secs: 15,
            session_expires_secs: 1800,
            max_session_expires_secs: 7200,
        }
    }
}

/// Browsers joining rooms from the page the HTTP server serves.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebrtcConfig {
    /// Serve the join page (`/`, `/join/{room}`) and its WebSocket (`/ws`).
    pub enabled: bool,
    /// Addresses browsers' peer connections bind, each an ICE host candidate; empty means the
    /// `[rtp] address` (`0.0.0.0`: every interface but loopback). Ports come from the RTP range.
    pub addresses: Vec<IpAddr>,
    /// Behind a 1:1 NAT: the public address, offered as a candidate beside the host ones.
    pub public_address: Option<IpAddr>,
    /// Join pages connected at once (each holds a WebSocket); more are refused with 503.
    pub max_pages: usize,
    /// Join pages connected at once from one address.
    pub max_pages_per_source: usize,
    /// Origins (`https://meet.example.com`) whose pages may open the join WebSocket besides
    /// the gateway's own (the request's Host); a browser on any other page is refused (403).
    pub allowed_origins: Vec<String>,
}

impl Default for WebrtcConfig {
    fn default() -> WebrtcConfig {
        WebrtcConfig {
            enabled: true,
            addresses: Vec::new(),
            public_address: None,
            max_pages: 1000,
            max_pages_per_source: 20,
            allowed_origins: Vec::new(),
        }
    }
}

/// Bounds on what the network can make the gateway hold or do (it runs on the public
/// internet). Trunks' addresses (`inbound_sources`, proxies) are exempt from the per-source
/// request rate.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// SIP TCP/TLS connections open at once; more are closed at accept.
    pub connections: usize,
    /// SIP TCP/TLS connections one address may hold open.
    pub connections_per_source: usize,
    /// A connection that sends nothing (not even a keep-alive) for this long is closed.
    pub connection_idle_secs: u64,
    /// A message begun on a connection must be complete within this long (slow senders).
    pub message_secs: u64,
    /// SIP requests per second one address may send (burst: twice that); more are dropped
    /// unanswered before parsing, like Kamailio's pike. 0: no limit.
    pub requests_per_source: u32,
    /// REGISTERs and new INVITEs waiting for their database look-ups at once; more get 503.
    pub pending_requests: usize,
    /// Server transactions alive at once; a new request past it gets a stateless 503.
    pub server_transactions: usize,
    /// Contacts one user may have registered at once (more: `403 Too Many Contacts`).
    pub bindings_per_user: usize,
    /// Digest failures (unknown user, wrong password) a minute from one address, and for one
    /// user from anywhere; past either, attempts are refused (403) before any look-up until
    /// the minute refills. 0: not throttled.
    pub auth_failures_per_source: u32,
    pub auth_failures_per_user: u32,
}

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig {
            connections: 4096,
            connections_per_source: 32,
            connection_idle_secs: 300,
            message_secs: 10,
            requests_per_source: 100,
            pending_requests: 1024,
            server_transactions: 20_000,
            bindings_per_user: 10,
            auth_failures_per_source: 20,
            auth_failures_per_user: 30,
        }
    }
}

/// WAV files replacing the built-in voice prompts (any rate, mono or stereo, 16-bit).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromptsConfig {
    pub enter_pin: Option<PathBuf>,
    pub wrong_pin: Option<PathBuf>,
    pub goodbye: Option<PathBuf>,
    pub first_participant: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://FILE` (embedded, the default) or `postgres://USER:PASS@HOST/DB`.
    pub url: String,
    pub max_connections: u32,
    /// This gateway's name in a database several gateways share (the host name by default):
    /// at start it closes, as `lost`, the call records it left open when it last stopped.
    pub node: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter: `info`, `gateway=debug,sqlx=warn`, …
    pub level: String,
}

impl Default for SipConfig {
    fn default() -> SipConfig {
        let any: SocketAddr = ([0, 0, 0, 0], 5060).into();
        SipConfig {
            udp: vec![any],
            tcp: vec![any],
            tls: Vec::new(),
            tls_certificate: None,
            tls_private_key: None,
            realm: "gateway".into(),
            public_address: None,
            user_agent: format!("gateway/{}", env!("CARGO_PKG_VERSION")),
            digest_algorithms: vec!["MD5".into()],
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            listen: ([127, 0, 0, 1], 8080).into(),
            api_token: None,
            read_token: None,
            metrics_token: None,
            tls_certificate: None,
            tls_private_key: None,
            trusted_proxies: Vec::new(),
        }
    }
}

impl Default for RtpConfig {
    fn default() -> RtpConfig {
        RtpConfig {
            address: [0, 0, 0, 0].into(),
            port_min: 20000,
            port_max: 29999,
            timeout_secs: 30,
            hold_timeout_secs: 3600,
            srtp: SrtpMode::Optional,
            strict_source: true,
            relearn_after_ms: 2000,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> DatabaseConfig {
        DatabaseConfig { url: "sqlite://gateway.db".into(), max_connections: 8, node: None }
    }
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig { format: LogFormat::Human, level: "info".into() }
    }
}

impl Config {
    /// Reads `path` if given (defaults otherwise), applies the environment, and validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|error| ConfigError::Read { path: path.into(), error })?;
                Config::parse(&text, path)?
            }
            None => Config::default(),
        };
        config.apply_env(|var| std::env::var(var).ok())?;
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let deserializer = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let parent = e.path().to_string();
            let message = first_line(e.inner().message());
            // An unknown key at the top level has no path; name the key itself.
            let unknown = message
                .strip_prefix("unknown field `")
                .and_then(|rest| rest.split_once('`'))
                .map(|(field, _)| field.to_string());
            match (unknown, parent.as_str()) {
                (Some(field), "." | "") => ConfigError::Key { key: field, message },
                (Some(field), parent) if !parent.ends_with(field.as_str()) => {
                    ConfigError::Key { key: format!("{parent}.{field}"), message }
                }
                (None, "." | "") => ConfigError::Syntax { path: path.into(), message: e.inner().to_string() },
                (_, _) => ConfigError::Key { key: parent, message },
            }
        })
    }

    /// Applies overrides from the environment; `lookup` is `std::env::var` outside tests.
    pub fn apply_env(&mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(url) = lookup(ENV_DATABASE_URL) {
            self.database.url = url;
        }
        if let Some(list) = lookup(ENV_SIP_UDP) {
            self.sip.udp = parse_addrs(ENV_SIP_UDP, &list)?;
        }
        if let Some(list) = lookup(ENV_SIP_TCP) {
            self.sip.tcp = parse_addrs(ENV_SIP_TCP, &list)?;
        }
        if let Some(addr) = lookup(ENV_HTTP_LISTEN) {
            self.http.listen = addr.trim().parse().map_err(|_| ConfigError::Env {
                var: ENV_HTTP_LISTEN,
                message: format!("`{addr}` is not an address:port"),
            })?;
        }
        Ok(())
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let key = |key: &str, message: String| Err(ConfigError::Key { key: key.into(), message });
        if self.sip.udp.is_empty() && self.sip.tcp.is_empty() {
            return key("sip.udp", "no SIP listener: give at least one UDP or TCP address".into());
        }
        if self.rtp.relearn_after_ms < 500 {
            return key(
                "rtp.relearn_after_ms",
                "expected at least 500: shorter lets a stranger take over a pause".into(),
            );
        }
        for (name, value) in [
            ("webrtc.max_pages_per_source", self.webrtc.max_pages_per_source),
            ("limits.connections", self.limits.connections),
            ("limits.connections_per_source", self.limits.connections_per_source),
            ("limits.pending_requests", self.limits.pending_requests),
            ("limits.server_transactions", self.limits.server_transactions),
            ("limits.bindings_per_user", self.limits.bindings_per_user),
            ("limits.connection_idle_secs", self.limits.connection_idle_secs as usize),
            ("limits.message_secs", self.limits.message_secs as usize),
        ] {
            if value == 0 {
                return key(name, "expected at least 1".into());
            }
        }
        if !self.sip.tls.is_empty() {
            for (name, file) in [
                ("sip.tls_certificate", &self.sip.tls_certificate),
                ("sip.tls_private_key", &self.sip.tls_private_key),
            ] {
                match file {
                    None => return key(name, "a TLS listener (sip.tls) needs a PEM file here".into()),
                    Some(path) if !path.is_file() => {
                        return key(name, format!("no such file: {}", path.display()));
                    }
                    Some(_) => {}
                }
            }
        }
        for (name, list) in
            [("sip.udp", &self.sip.udp), ("sip.tcp", &self.sip.tcp), ("sip.tls", &self.sip.tls)]
        {
            if let Some((i, _)) = list.iter().enumerate().find(|(_, a)| a.port() == 0) {
                return key(&format!("{name}[{i}]"), "port must be 1-65535".into());
            }
        }
        if self.http.listen.port() == 0 {
            return key("http.listen", "port must be 1-65535".into());
        }
        let (certificate, private_key) = (&self.http.tls_certificate, &self.http.tls_private_key);
        for (name, file, other) in [
            ("http.tls_certificate", certificate, private_key),
            ("http.tls_private_key", private_key, certificate),
        ] {
            match (file, other) {
                (None, Some(_)) => return key(name, "HTTPS needs both a certificate and a key".into()),
                (Some(path), _) if !path.is_file() => {
                    return key(name, format!("no such file: {}", path.display()));
                }
                _ => {}
            }
        }
        if self.webrtc.max_pages == 0 {
            return key("webrtc.max_pages", "expected at least 1".into());
        }
        if self.rtp.port_min == 0 || self.rtp.port_min % 2 == 1 {
            return key("rtp.port_min", format!("expected an even port above 0, got {}", self.rtp.port_min));
        }
        if self.rtp.port_max <= self.rtp.port_min {
            return key(
                "rtp.port_max",
                format!(
                    "expected a port above rtp.port_min ({}), got {}",
                    self.rtp.port_min, self.rtp.port_max
                ),
            );
        }
        if self.rtp.timeout_secs == 0 {
            return key("rtp.timeout_secs", "expected at least 1".into());
        }
        let c = &self.conference;
        if !matches!(c.mix_rate, 16000 | 48000) {
            return key("conference.mix_rate", format!("expected 16000 or 48000, got {}", c.mix_rate));
        }
        if c.max_participants == 0 {
            return key("conference.max_participants", "expected at least 1".into());
        }
        if !(1..=10).contains(&c.pin_attempts) {
            return key("conference.pin_attempts", format!("expected 1-10, got {}", c.pin_attempts));
        }
        if c.pin_failures_per_source == 0 {
            return key("conference.pin_failures_per_source", "expected at least 1".into());
        }
        if c.pin_digit_timeout_secs == 0 {
            return key("conference.pin_digit_timeout_secs", "expected at least 1".into());
        }
        if c.session_expires_secs < 90 {
            return key(
                "conference.session_expires_secs",
                format!("expected at least 90 (RFC 4028), got {}", c.session_expires_secs),
            );
        }
        if self.sip.realm.trim().is_empty() || self.sip.realm.contains('"') {
            return key("sip.realm", "expected a non-empty realm without quotes".into());
        }
        if !(50..=5000).contains(&self.sip.t1_ms) {
            return key("sip.t1_ms", format!("expected 50-5000, got {}", self.sip.t1_ms));
        }
        if self.sip.t2_ms < self.sip.t1_ms || self.sip.t2_ms > 60_000 {
            return key("sip.t2_ms", format!("expected sip.t1_ms-60000, got {}", self.sip.t2_ms));
        }
        if !(100..=60_000).contains(&self.sip.t4_ms) {
            return key("sip.t4_ms", format!("expected 100-60000, got {}", self.sip.t4_ms));
        }
        if self.sip.digest_algorithms.is_empty() {
            return key("sip.digest_algorithms", "expected at least one of MD5, SHA-256".into());
        }
        for (i, a) in self.sip.digest_algorithms.iter().enumerate() {
            if sip_stack::digest::Algorithm::from_token(a).is_none() {
                return key(
                    &format!("sip.digest_algorithms[{i}]"),
                    format!("expected MD5 or SHA-256, got `{a}`"),
                );
            }
        }
        if self.database.max_connections == 0 {
            return key("database.max_connections", "expected at least 1".into());
        }
        if !(self.database.url.starts_with("sqlite:")
            || self.database.url.starts_with("postgres://")
            || self.database.url.starts_with("postgresql://"))
        {
            return key(
                "database.url",
                format!("expected sqlite://FILE or postgres://…, got `{}`", self.database.url),
            );
        }
        for (i, trunk) in self.trunks.iter().enumerate() {
            let k = |field: &str| format!("trunk[{i}].{field}");
            if trunk.name.is_empty() || self.trunks[..i].iter().any(|t| t.name == trunk.name) {
                return key(&k("name"), format!("expected a unique, non-empty name, got `{}`", trunk.name));
            }
            match rsip::Uri::try_from(trunk.proxy.as_str()) {
                Ok(uri) if matches!(uri.scheme, Some(rsip::Scheme::Sip)) => {}
                _ => return key(&k("proxy"), format!("expected sip:host[:port], got `{}`", trunk.proxy)),
            }
            if trunk.transport == TrunkTransport::Tls && self.sip.tls.is_empty() {
                return key(
                    &k("transport"),
                    "\"tls\" needs a TLS listener in sip.tls (for the Contact)".into(),
                );
            }
            if let Some(ca) = &trunk.tls_ca_file {
                if !ca.is_file() {
                    return key(&k("tls_ca_file"), format!("no such file: {}", ca.display()));
                }
            }
            if trunk.transport == TrunkTransport::Tcp && self.sip.tcp.is_empty() {
                return key(
                    &k("transport"),
                    "\"tcp\" needs a TCP listener in sip.tcp (for the Contact)".into(),
                );
            }
            if trunk.options_interval_secs != 0 && !(5..=3600).contains(&trunk.options_interval_secs) {
                return key(&k("options_interval_secs"), "expected 0 (off) or 5-3600".into());
            }
            if trunk.caller_id.as_deref().is_some_and(|c| c.is_empty() || c.contains(['@', '<', '>', ' '])) {
                return key(&k("caller_id"), "expected a number or user part (no @, <, > or spaces)".into());
            }
            if trunk.username.is_empty() {
                return key(&k("username"), "expected the user part of the address of record".into());
            }
            if trunk.register && trunk.password.as_deref().unwrap_or("").is_empty() {
                return key(&k("password"), "a registering trunk needs a password".into());
            }
            if !(10..=86_400).contains(&trunk.expires) {
                return key(&k("expires"), format!("expected 10-86400 seconds, got {}", trunk.expires));
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return key("log.level", format!("`{}` is not a tracing filter", self.log.level));
        }
        for (name, token) in [
            ("http.api_token", &self.http.api_token),
            ("http.read_token", &self.http.read_token),
            ("http.metrics_token", &self.http.metrics_token),
        ] {
            if matches!(token, Some(t) if t.len() < 16) {
                return key(name, "expected at least 16 characters".into());
            }
        }
        if self.http.read_token.is_some() && self.http.read_token == self.http.api_token {
            return key("http.read_token", "must differ from http.api_token".into());
        }
        Ok(())
    }
}

fn parse_addrs(var: &'static str, list: &str) -> Result<Vec<SocketAddr>, ConfigError> {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim().parse().map_err(|_| ConfigError::Env {
                var,
                message: format!("`{}` is not an address:port", s.trim()),
            })
        })
        .collect()
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let config = Config::parse(text, Path::new("test.toml"))?;
        config.validate()?;
        Ok(config)
    }

    fn key_error(text: &str) -> (String, String) {
        match parse(text) {
            Err(ConfigError::Key { key, message }) => (key, message),
            other => panic!("expected a key error, got {other:?}"),
        }
    }

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn example_file_parses() {
        let text = include_str!("../../ops/gateway.example.toml");
        parse(text).expect("the example config is valid");
    }

    #[test]
    fn typo_names_the_key() {
        let (key, message) = key_error("[sip]\nrelam = \"x\"\n");
        assert_eq!(key, "sip.relam");
        assert!(message.contains("unknown field `relam`, expected one of"), "{message}");
        let (key, _) = key_error("[databse]\nurl = \"x\"\n");
        assert_eq!(key, "databse");
        assert!(matches!(parse("[sip\n"), Err(ConfigError::Syntax { .. })));
    }

    #[test]
    fn out_of_range_port_names_the_key() {
        let (key, message) = key_error("[rtp]\nport_min = 70000\n");
        assert_eq!(key, "rtp.port_min");
        assert!(message.contains("70000"), "{message}");
        let (key, _) = key_error("[sip]\nudp = [\"127.0.0.1:5060\", \"127.0.0.1:99999\"]\n");
        assert_eq!(key, "sip.udp[1]");
        let (key, _) = key_error("[rtp]\nport_min = 30000\nport_max = 20000\n");
        assert_eq!(key, "rtp.port_max");
        let (key, _) = key_error("[http]\nlisten = \"127.0.0.1:0\"\n");
        assert_eq!(key, "http.listen");
        let (key, _) = key_error("[sip]\ndigest_algorithms = [\"MD5\", \"SHA-1\"]\n");
        assert_eq!(key, "sip.digest_algorithms[1]");
    }

    #[test]
    fn https_needs_both_files_and_names_the_missing_one() {
        let (key, message) = key_error("[http]\ntls_private_key = \"/etc/hostname\"\n");
        assert_eq!(key, "http.tls_certificate");
        assert!(message.contains("both"), "{message}");
        let (key, message) = key_error(
            "[http]\ntls_certificate = \"/etc/hostname\"\ntls_private_key = \"/nonexistent/k.pem\"\n",
        );
        assert_eq!(key, "http.tls_private_key");
        assert!(message.contains("/nonexistent/k.pem"), "{message}");
        let (key, _) = key_error("[http]\ntrusted_proxies = [\"nginx\"]\n");
        assert_eq!(key, "http.trusted_proxies[0]");
        let (key, _) = key_error("[webrtc]\nmax_pages = 0\n");
        assert_eq!(key, "webrtc.max_pages");
        let (key, _) = key_error("[limits]\nconnections_per_source = 0\n");
        assert_eq!(key, "limits.connections_per_source");
        let (key, _) = key_error("[limits]\nconections = 10\n");
        assert_eq!(key, "limits.conections");
        let (key, message) = key_error(
            "[http]\napi_token = \"same-token-0123456789\"\nread_token = \"same-token-0123456789\"\n",
        );
        assert_eq!((key.as_str(), message.as_str()), ("http.read_token", "must differ from http.api_token"));
        let (key, message) = key_error("[rtp]\nsrtp = \"maybe\"\n");
        assert_eq!(key, "rtp.srtp");
        assert!(message.contains("optional"), "{message}");
    }

    #[test]
    fn a_tls_listener_needs_its_certificate_and_key() {
        let (key, message) = key_error("[sip]\ntls = [\"127.0.0.1:5061\"]\n");
        assert_eq!(key, "sip.tls_certificate");
        assert!(message.contains("PEM"), "{message}");
        let (key, message) = key_error(
            "[sip]\ntls = [\"127.0.0.1:5061\"]\ntls_certificate = \"/nonexistent/c.pem\"\ntls_private_key = \"k\"\n",
        );
        assert_eq!(key, "sip.tls_certificate");
        assert!(message.contains("/nonexistent/c.pem"), "{message}");
        let trunk = "[[trunk]]\nname = \"t\"\nproxy = \"sip:127.0.0.1\"\nusername = \"u\"\npassword = \"p\"\ntransport = \"tls\"\n";
        let (key, _) = key_error(trunk);
        assert_eq!(key, "trunk[0].transport", "a TLS trunk needs a TLS listener for its Contact");
    }

    #[test]
    fn trunks_are_checked() {
        let good = "[[trunk]]\nname = \"carrier\"\nproxy = \"sip:127.0.0.1:5080\"\nusername = \"+1555\"\nauth_username = \"acct-42\"\npassword = \"s\"\n";
        let config = parse(good).unwrap();
        assert_eq!(config.trunks[0].auth_user(), "acct-42");
        assert_eq!(config.trunks[0].expires, 300);
        assert!(config.trunks[0].register);
        let (key, _) = key_error(&good.replace("password = \"s\"\n", ""));
        assert_eq!(key, "trunk[0].password");
        let (key, _) = key_error(&good.replace("sip:127.0.0.1:5080", "http://x"));
        assert_eq!(key, "trunk[0].proxy");
        let (key, _) = key_error(&format!("{good}{good}"));
        assert_eq!(key, "trunk[1].name");
        let (key, _) = key_error(&good.replace("username = \"+1555\"", "usrname = \"+1555\""));
        assert_eq!(key, "trunk[0].usrname");

        let trusted = format!("{good}inbound_sources = [\"192.0.2.1\", \"192.0.2.2:5060\"]\n");
        let trunk = &parse(&trusted).unwrap().trunks[0];
        assert!(trunk.trusts("192.0.2.1:7000".parse().unwrap()), "any port of a bare IP");
        assert!(trunk.trusts("192.0.2.2:5060".parse().unwrap()));
        assert!(!trunk.trusts("192.0.2.2:5061".parse().unwrap()), "only that port");
        assert!(!trunk.trusts("192.0.2.3:5060".parse().unwrap()));
        let presented =
            parse(&format!("{good}caller_id = \"+15550001111\"\nidentity_header = \"ppi\"\n")).unwrap();
        assert_eq!(presented.trunks[0].identity_header, IdentityHeader::Ppi);
        let (key, _) = key_error(&format!("{good}identity_header = \"x-identity\"\n"));
        assert_eq!(key, "trunk[0].identity_header");
        let (key, _) = key_error(&format!("{good}options_interval_secs = 2\n"));
        assert_eq!(key, "trunk[0].options_interval_secs");
        let (key, _) = key_error(&format!("{good}caller_id = \"a@b\"\n"));
        assert_eq!(key, "trunk[0].caller_id");
        let (key, message) = key_error(&format!("{good}inbound_sources = [\"192.0.2.1\", \"carrier\"]\n"));
        assert_eq!(key, "trunk[0].inbound_sources[1]");
        assert!(message.contains("expected IP or IP:PORT"), "{message}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let (key, message) = key_error("[database]\nmax_connections = \"many\"\n");
        assert_eq!(key, "database.max_connections");
        assert!(message.contains("expected"), "{message}");
        let (key, _) = key_error("[log]\nformat = \"xml\"\n");
        assert_eq!(key, "log.format");
    }

    #[test]
    fn environment_overrides() {
        let mut config = Config::default();
        config
            .apply_env(|var| match var {
                ENV_DATABASE_URL => Some("postgres://u@127.0.0.1/db".into()),
                ENV_SIP_UDP => Some("127.0.0.1:5070, 127.0.0.2:5070".into()),
                ENV_HTTP_LISTEN => Some("127.0.0.1:9000".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(config.database.url, "postgres://u@127.0.0.1/db");
        assert_eq!(config.sip.udp.len(), 2);
        assert_eq!(config.sip.tcp, SipConfig::default().tcp);
        assert_eq!(config.http.listen.port(), 9000);
        let err = Config::default().apply_env(|v| (v == ENV_SIP_TCP).then(|| "nope".into()));
        assert!(matches!(err, Err(ConfigError::Env { var: ENV_SIP_TCP, .. })));
    }
}
