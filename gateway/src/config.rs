//! Configuration: TOML on disk, built-in defaults, environment overrides.
//!
//! Every key is documented in `ops/gateway.example.toml`. Unknown keys and bad values stop
//! start-up with the dotted path of the key (`rtp.port_min`) and what was expected.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ids::TrunkName;

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
    pub video: VideoConfig,
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
    pub name: TrunkName,
    /// Registrar/proxy URI: `sip:host[:port]`.
    pub proxy: SipUri,
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
    pub domain: Option<SipDomain>,
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

/// A `sip:` URI, parsed once when the configuration is read.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct SipUri(rsip::Uri);

impl SipUri {
    pub fn uri(&self) -> &rsip::Uri {
        &self.0
    }
}

impl TryFrom<String> for SipUri {
    type Error = String;

    fn try_from(text: String) -> Result<SipUri, String> {
        match rsip::Uri::try_from(text.trim()) {
            Ok(uri) if matches!(uri.scheme, Some(rsip::Scheme::Sip)) => Ok(SipUri(uri)),
            _ => Err(format!("expected sip:host[:port], got `{text}`")),
        }
    }
}

impl std::fmt::Display for SipUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The host (and port) of a SIP domain, parsed once when the configuration is read.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct SipDomain(rsip::HostWithPort);

impl SipDomain {
    pub fn host_with_port(&self) -> &rsip::HostWithPort {
        &self.0
    }
}

impl TryFrom<String> for SipDomain {
    type Error = String;

    fn try_from(text: String) -> Result<SipDomain, String> {
        let host_chars = |c: char| c.is_ascii_alphanumeric() || "-.:[]".contains(c);
        let bad = || format!("`{text}` is not a SIP domain");
        if text.is_empty() || !text.chars().all(host_chars) {
            return Err(bad());
        }
        rsip::HostWithPort::try_from(text.as_str()).map(SipDomain).map_err(|_| bad())
    }
}

impl std::fmt::Display for SipDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
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
    /// Media worker threads; 0: one per available core.
    pub workers: usize,
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

/// Video calls: each room's composed picture, encoded once for all its viewers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VideoConfig {
    /// Answer `m=video` (H.264) and send the room's picture; false refuses video lines
    /// (port 0) and calls stay audio.
    pub enabled: bool,
    /// The room's canvas, in pixels (even), and its frame rate.
    pub width: u32,
    pub height: u32,
    pub frame_rate: u32,
    /// The shared encoder's bitrate, kbit/s.
    pub bitrate_kbps: u32,
    /// What phones are asked to send at most (`b=AS`), kbit/s.
    pub max_receive_kbps: u32,
    /// Rooms' layout until the API sets another (not `presenter`: that names a participant).
    #[serde(deserialize_with = "room_layout")]
    pub layout: VideoLayout,
    /// How a camera whose shape differs from its tile fills it.
    pub fit: VideoFit,
    /// Participants without a camera (audio-only phones, browsers) get a tile with their name
    /// in rooms with video; false shows cameras only.
    pub name_tiles: bool,
    /// Names drawn over cameras' tiles too (a camera hidden by video-mute always shows its
    /// name).
    pub show_names: bool,
    /// The fewest milliseconds between two keyframes made on viewers' requests.
    pub keyframe_interval_ms: u32,
    /// Video worker threads (apart from the audio ones); 0: one per available core.
    pub workers: usize,
    /// The tier for weak receivers.
    pub low: LowTierConfig,
}

/// The second encoding of a room's picture, for viewers that cannot take the canvas (their
/// H.264 level, their bandwidth, their REMB/TMMBR) or lose packets.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LowTierConfig {
    pub enabled: bool,
    pub width: u32,
    pub height: u32,
    pub frame_rate: u32,
    pub bitrate_kbps: u32,
}

impl Default for LowTierConfig {
    fn default() -> LowTierConfig {
        LowTierConfig { enabled: true, width: 640, height: 360, frame_rate: 15, bitrate_kbps: 500 }
    }
}

impl Default for VideoConfig {
    fn default() -> VideoConfig {
        VideoConfig {
            enabled: true,
            width: 1280,
            height: 720,
            frame_rate: 30,
            bitrate_kbps: 1500,
            max_receive_kbps: 2500,
            layout: VideoLayout::Grid,
            fit: VideoFit::Crop,
            name_tiles: true,
            show_names: true,
            keyframe_interval_ms: 500,
            workers: 0,
            low: LowTierConfig::default(),
        }
    }
}

/// How a room's canvas is divided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VideoLayout {
    /// The active speaker alone.
    Speaker,
    /// Everyone with video in a 2×2, 3×3 or 4×4 grid, by their number.
    Grid,
    /// The active speaker large, four others in a strip below.
    SpeakerStrip,
    /// As `speaker-strip` with a participant the API names large whoever talks.
    Presenter,
}

impl VideoLayout {
    /// Its name in the config, the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            VideoLayout::Speaker => "speaker",
            VideoLayout::Grid => "grid",
            VideoLayout::SpeakerStrip => "speaker-strip",
            VideoLayout::Presenter => "presenter",
        }
    }

    pub fn from_name(name: &str) -> Option<VideoLayout> {
        [VideoLayout::Speaker, VideoLayout::Grid, VideoLayout::SpeakerStrip, VideoLayout::Presenter]
            .into_iter()
            .find(|layout| layout.as_str() == name)
    }
}

fn room_layout<'de, D: serde::Deserializer<'de>>(d: D) -> Result<VideoLayout, D::Error> {
    match VideoLayout::deserialize(d)? {
        VideoLayout::Presenter => Err(serde::de::Error::custom(
            "`presenter` names a participant: the conference API sets it (PATCH /api/v1/conferences/{room})",
        )),
        layout => Ok(layout),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoFit {
    /// Filling the tile, the overflow cut off.
    Crop,
    /// Whole, with bars.
    Letterbox,
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
    /// Server transactions not yet answered at once; a new request past it gets a stateless
    /// 503. Answered ones that stay to absorb retransmissions (32 s over UDP) are bounded at
    /// four times this, the oldest ending early past that (challenges first).
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
            workers: 0,
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

mod load;
#[cfg(test)]
mod tests;
