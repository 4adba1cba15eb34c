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
    let text = include_str!("../../../ops/gateway.example.toml");
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
    let (key, message) =
        key_error("[http]\ntls_certificate = \"/etc/hostname\"\ntls_private_key = \"/nonexistent/k.pem\"\n");
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
    let (key, message) =
        key_error("[http]\napi_token = \"same-token-0123456789\"\nread_token = \"same-token-0123456789\"\n");
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
    let (key, _) = key_error(&good.replace("username = \"+1555\"", "username = \"+1 555\""));
    assert_eq!(key, "trunk[0].username", "a space cannot go into the AOR");
    let (key, _) =
        key_error(&good.replace("username = \"+1555\"", "username = \"+1555\"\ndomain = \"bad domain\""));
    assert_eq!(key, "trunk[0].domain");
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

#[test]
fn video_values_are_checked_and_name_their_key() {
    assert_eq!(key_error("[video]\nwidth = 1281\n").0, "video.width");
    assert_eq!(key_error("[video]\nframe_rate = 0\n").0, "video.frame_rate");
    assert_eq!(key_error("[video]\nlayout = \"mosaic\"\n").0, "video.layout");
    // The low tier may not be larger than the canvas, unless it is off.
    let (key, message) = key_error("[video]\nwidth = 320\nheight = 180\n");
    assert_eq!(key, "video.low.width");
    assert!(message.contains("video.low.enabled = false"), "{message}");
    parse("[video]\nwidth = 320\nheight = 180\n[video.low]\nenabled = false\n").unwrap();
    let config = parse("[video]\nlayout = \"speaker-strip\"\n[video.low]\nframe_rate = 10\n").unwrap();
    assert_eq!(config.video.layout, VideoLayout::SpeakerStrip);
    assert_eq!(config.video.low.frame_rate, 10);
}
