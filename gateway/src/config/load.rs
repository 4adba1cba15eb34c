//! Reading the configuration: the file, then the environment over it, then the checks that
//! name the key at fault.

use super::*;

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
        self.validate_sip()?;
        self.validate_http()?;
        self.validate_rtp()?;
        self.validate_limits()?;
        self.validate_conference()?;
        self.validate_video()?;
        self.validate_database()?;
        for (i, trunk) in self.trunks.iter().enumerate() {
            self.validate_trunk(i, trunk)?;
        }
        self.validate_log()
    }

    /// The SIP listeners, their TLS files, the realm, the timers and digest algorithms.
    fn validate_sip(&self) -> Result<(), ConfigError> {
        if self.sip.udp.is_empty() && self.sip.tcp.is_empty() {
            return key("sip.udp", "no SIP listener: give at least one UDP or TCP address".into());
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
        Ok(())
    }

    /// The HTTP listener, its TLS files and the tokens.
    fn validate_http(&self) -> Result<(), ConfigError> {
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

    /// The RTP port range and timeouts.
    fn validate_rtp(&self) -> Result<(), ConfigError> {
        if self.rtp.relearn_after_ms < 500 {
            return key(
                "rtp.relearn_after_ms",
                "expected at least 500: shorter lets a stranger take over a pause".into(),
            );
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
        if self.rtp.workers > 1024 {
            return key(
                "rtp.workers",
                format!("expected 0 (one per core) to 1024, got {}", self.rtp.workers),
            );
        }
        if self.rtp.timeout_secs == 0 {
            return key("rtp.timeout_secs", "expected at least 1".into());
        }
        Ok(())
    }

    /// The limits on what the network can make the gateway hold.
    fn validate_limits(&self) -> Result<(), ConfigError> {
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
        if self.webrtc.max_pages == 0 {
            return key("webrtc.max_pages", "expected at least 1".into());
        }
        Ok(())
    }

    /// The conference defaults: mix rate, room size, PIN entry, session timers.
    fn validate_conference(&self) -> Result<(), ConfigError> {
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
        Ok(())
    }

    /// The canvas, its rate and bitrate.
    fn validate_video(&self) -> Result<(), ConfigError> {
        let v = &self.video;
        if !(128..=1920).contains(&v.width) || v.width % 2 == 1 {
            return key("video.width", format!("expected an even width of 128-1920, got {}", v.width));
        }
        if !(96..=1088).contains(&v.height) || v.height % 2 == 1 {
            return key("video.height", format!("expected an even height of 96-1088, got {}", v.height));
        }
        if !(1..=60).contains(&v.frame_rate) {
            return key("video.frame_rate", format!("expected 1-60, got {}", v.frame_rate));
        }
        if !(64..=20_000).contains(&v.bitrate_kbps) {
            return key("video.bitrate_kbps", format!("expected 64-20000, got {}", v.bitrate_kbps));
        }
        if !(64..=20_000).contains(&v.max_receive_kbps) {
            return key("video.max_receive_kbps", format!("expected 64-20000, got {}", v.max_receive_kbps));
        }
        if !(100..=10_000).contains(&v.keyframe_interval_ms) {
            return key(
                "video.keyframe_interval_ms",
                format!("expected 100-10000, got {}", v.keyframe_interval_ms),
            );
        }
        if v.workers > 1024 {
            return key("video.workers", format!("expected 0 (one per core) to 1024, got {}", v.workers));
        }
        let low = &v.low;
        if !low.enabled {
            return Ok(());
        }
        if !(32..=v.width).contains(&low.width) || low.width % 2 == 1 {
            return key(
                "video.low.width",
                format!(
                    "expected an even width of 32 to video.width, got {} (or video.low.enabled = false)",
                    low.width
                ),
            );
        }
        if !(32..=v.height).contains(&low.height) || low.height % 2 == 1 {
            return key(
                "video.low.height",
                format!(
                    "expected an even height of 32 to video.height, got {} (or video.low.enabled = false)",
                    low.height
                ),
            );
        }
        if !(1..=v.frame_rate).contains(&low.frame_rate) {
            return key(
                "video.low.frame_rate",
                format!("expected 1 to video.frame_rate, got {}", low.frame_rate),
            );
        }
        if !(32..=v.bitrate_kbps).contains(&low.bitrate_kbps) {
            return key(
                "video.low.bitrate_kbps",
                format!("expected 32 to video.bitrate_kbps, got {}", low.bitrate_kbps),
            );
        }
        Ok(())
    }

    /// The database URL and pool.
    fn validate_database(&self) -> Result<(), ConfigError> {
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
        Ok(())
    }

    /// The `i`th `[[trunk]]` table.
    fn validate_trunk(&self, i: usize, trunk: &TrunkConfig) -> Result<(), ConfigError> {
        let k = |field: &str| format!("trunk[{i}].{field}");
        if trunk.name.is_empty() || self.trunks[..i].iter().any(|t| t.name == trunk.name) {
            return key(&k("name"), format!("expected a unique, non-empty name, got `{}`", trunk.name));
        }
        // The proxy was parsed with the file (`SipUri`). The user part goes into URIs.
        if !crate::storage::is_user_part(&trunk.username) {
            return key(&k("username"), format!("`{}` cannot be the user part of a SIP URI", trunk.username));
        }
        if trunk.transport == TrunkTransport::Tls && self.sip.tls.is_empty() {
            return key(&k("transport"), "\"tls\" needs a TLS listener in sip.tls (for the Contact)".into());
        }
        if let Some(ca) = &trunk.tls_ca_file {
            if !ca.is_file() {
                return key(&k("tls_ca_file"), format!("no such file: {}", ca.display()));
            }
        }
        if trunk.transport == TrunkTransport::Tcp && self.sip.tcp.is_empty() {
            return key(&k("transport"), "\"tcp\" needs a TCP listener in sip.tcp (for the Contact)".into());
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
        Ok(())
    }

    /// The log filter.
    fn validate_log(&self) -> Result<(), ConfigError> {
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return key("log.level", format!("`{}` is not a tracing filter", self.log.level));
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

/// The error naming `key`.
fn key(key: &str, message: String) -> Result<(), ConfigError> {
    Err(ConfigError::Key { key: key.into(), message })
}
