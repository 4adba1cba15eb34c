//! The gateway's spine, end to end: start-up on defaults, SIP OPTIONS over UDP and TCP answered
//! for an independent client (sipsak), bad input answered with 400, health and metrics, the room
//! CLI on SQLite and PostgreSQL, config errors that name the key, clean shutdown.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::{cli, http_get, postgres_admin_url, require_program, udp_exchange, Gateway};

/// sipsak sends OPTIONS and exits 0 only on a 2xx final response.
fn sipsak_options(gw: &Gateway, transport: &str) -> String {
    require_program("sipsak");
    let out = Command::new("sipsak")
        .args(["-v", "-E", transport, "-s", &format!("sip:probe@{}", gw.sip)])
        .output()
        .expect("run sipsak");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "sipsak over {transport} failed ({}):\n{text}\n{}", out.status, gw.log());
    text
}

#[test]
fn defaults_answer_options_over_udp_and_tcp_and_create_the_database() {
    let gw = Gateway::start_defaults().expect("gateway starts with no config file");
    for transport in ["udp", "tcp"] {
        let text = sipsak_options(&gw, transport);
        assert!(text.contains("SIP/2.0 200 OK"), "{text}");
        assert!(text.contains("Allow: INVITE"), "{text}");
    }
    // The default database is an SQLite file in the working directory, with the schema.
    assert!(gw.dir.path().join("gateway.db").exists());
    let out = cli(gw.dir.path(), &["room", "list"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("NUMBER"));

    let (status, body) = http_get(gw.http, "/healthz").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains(r#""status":"ok""#) && body.contains(r#""database":"ok""#), "{body}");
    let (status, metrics) = http_get(gw.http, "/metrics").unwrap();
    assert_eq!(status, 200);
    for transport in ["udp", "tcp"] {
        let line = format!(r#"gateway_sip_requests_total{{transport="{transport}",method="OPTIONS"}}"#);
        assert!(metrics.contains(&line), "{line} missing from:\n{metrics}");
    }
}

const BAD_CSEQ: &str = "OPTIONS sip:probe@127.0.0.1 SIP/2.0\r\n\
    Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKbad1;rport\r\n\
    From: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:probe@127.0.0.1>\r\n\
    Call-ID: bad-cseq-1\r\nCSeq: seven OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";

const GOOD: &str = "OPTIONS sip:probe@127.0.0.1 SIP/2.0\r\n\
    Via: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKgood1\r\n\
    From: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:probe@127.0.0.1>\r\n\
    Call-ID: good-1\r\nCSeq: 8 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";

#[test]
fn malformed_requests_get_400_and_garbage_is_dropped() {
    let gw = Gateway::start("").unwrap();
    let wait = Duration::from_secs(3);

    let reply = udp_exchange(gw.sip, BAD_CSEQ.as_bytes(), wait).unwrap().expect("a 400 reply");
    assert!(reply.starts_with("SIP/2.0 400 Malformed CSeq Header\r\n"), "{reply}");
    assert!(reply.contains("Call-ID: bad-cseq-1\r\n"), "{reply}");

    let truncated =
        BAD_CSEQ.replace("CSeq: seven", "CSeq: 7").replace("Content-Length: 0", "Content-Length: 50");
    let reply = udp_exchange(gw.sip, truncated.as_bytes(), wait).unwrap().expect("a 400 reply");
    assert!(reply.starts_with("SIP/2.0 400 Content-Length Mismatch\r\n"), "{reply}");

    // Nothing to answer: binary garbage and a request without Call-ID.
    let no_call_id = BAD_CSEQ.replace("Call-ID: bad-cseq-1\r\n", "");
    for junk in [&[0xde, 0xad, 0xbe, 0xef, 0x00, 0xff][..], no_call_id.as_bytes()] {
        let reply = udp_exchange(gw.sip, junk, Duration::from_millis(500)).unwrap();
        assert_eq!(reply, None);
    }
    // … and the gateway still answers.
    sipsak_options(&gw, "udp");

    // Over TCP, a 400 leaves the connection usable for the next request.
    let mut tcp = TcpStream::connect(gw.sip).unwrap();
    tcp.set_read_timeout(Some(wait)).unwrap();
    let bad_tcp = BAD_CSEQ.replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    tcp.write_all(format!("{bad_tcp}\r\n\r\n{GOOD}").as_bytes()).unwrap();
    let replies = read_until(&mut tcp, "Call-ID: good-1", wait);
    assert!(replies.starts_with("SIP/2.0 400 Malformed CSeq Header\r\n"), "{replies}");
    assert!(replies.contains("\r\n\r\nSIP/2.0 200 OK\r\n"), "{replies}");
    // The CRLFCRLF keep-alive between them was answered with a CRLF pong (RFC 5626 §4.4.1).
    assert!(replies.contains("Content-Length: 0\r\n\r\n\r\nSIP/2.0 200 OK"), "{replies:?}");

    let (_, metrics) = http_get(gw.http, "/metrics").unwrap();
    assert!(metrics.contains(r#"gateway_sip_bad_requests_total{transport="udp"} 2"#), "{metrics}");
    assert!(metrics.contains(r#"gateway_sip_dropped_total{transport="udp"} 2"#), "{metrics}");
}

fn read_until(stream: &mut TcpStream, needle: &str, wait: Duration) -> String {
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(needle) && Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn sigterm_stops_cleanly_with_exit_0() {
    let mut gw = Gateway::start("").unwrap();
    sipsak_options(&gw, "tcp");
    let status = gw.terminate().unwrap();
    assert!(status.success(), "exit status {status}");
}

fn room_cli_round_trip(dir: &std::path::Path, database: &str) {
    let db = ["--database", database];
    let run = |args: &[&str]| {
        let all: Vec<&str> = args.iter().chain(db.iter()).copied().collect();
        let out = cli(dir, &all);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), stdout, stderr)
    };
    let (ok, _, err) = run(&["room", "add", "--number", "1000", "--pin", "4321", "--name", "Weekly"]);
    assert!(ok, "{err}");
    let (ok, _, err) =
        run(&["room", "add", "--number", "2000", "--moderator-pin", "999", "--max-participants", "5"]);
    assert!(ok, "{err}");
    let (ok, list, err) = run(&["room", "list"]);
    assert!(ok, "{err}");
    let line = list.lines().find(|l| l.starts_with("1000")).unwrap_or_else(|| panic!("{list}"));
    assert!(line.contains("Weekly") && line.contains("4321"), "{line}");
    assert!(list.lines().any(|l| l.starts_with("2000") && l.contains("999") && l.contains('5')), "{list}");

    // Bad input: a clear error and nothing written.
    let (ok, _, err) = run(&["room", "add", "--number", "1000"]);
    assert!(!ok && err.contains("room `1000` already exists"), "{err}");
    let (ok, _, err) = run(&["room", "add", "--number", "3000", "--pin", "12ab"]);
    assert!(!ok && err.contains("invalid pin"), "{err}");
    let (ok, list, _) = run(&["room", "list", "--json"]);
    assert!(ok);
    let rooms: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(rooms.as_array().map(Vec::len), Some(2), "{list}");

    let (ok, _, err) = run(&["room", "remove", "2000"]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&["room", "remove", "2000"]);
    assert!(!ok && err.contains("not found"), "{err}");

    let (ok, _, err) = run(&["user", "add", "alice", "--password", "wonderland"]);
    assert!(ok, "{err}");
    let (ok, users, _) = run(&["user", "list"]);
    assert!(ok && users.contains("alice\tgateway"), "{users}");

    // Many at once from a file: all or none.
    std::fs::write(dir.join("users.txt"), "# provisioning\nbob secret-1\n\ncarol secret-2\n").unwrap();
    let (ok, out, err) = run(&["user", "import", "users.txt"]);
    assert!(ok && out.contains("2 users added"), "{out}{err}");
    std::fs::write(dir.join("bad.txt"), "dave secret-3\nalice again-4\n").unwrap();
    let (ok, _, err) = run(&["user", "import", "bad.txt"]);
    assert!(!ok && err.contains("user `alice` already exists"), "{err}");
    std::fs::write(dir.join("odd.txt"), "erin\n").unwrap();
    let (ok, _, err) = run(&["user", "import", "odd.txt"]);
    assert!(!ok && err.contains("line 1: expected `name password`"), "{err}");
    let (_, users, _) = run(&["user", "list"]);
    let names: Vec<&str> = users.lines().filter_map(|l| l.split('\t').next()).collect();
    assert_eq!(names, ["alice", "bob", "carol"], "{users}");
}

#[test]
fn room_cli_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    room_cli_round_trip(dir.path(), "sqlite://rooms.db");
    assert!(dir.path().join("rooms.db").exists());
}

#[test]
fn room_cli_on_postgres() {
    let Some(admin) = postgres_admin_url() else { return };
    require_program("psql");
    let name = format!("gw_e2e_{}", std::process::id());
    let psql = |sql: &str| {
        let out = Command::new("psql").args([&admin, "-v", "ON_ERROR_STOP=1", "-c", sql]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    psql(&format!("CREATE DATABASE {name}"));
    let (base, _) = admin.rsplit_once('/').unwrap();
    let dir = tempfile::tempdir().unwrap();
    room_cli_round_trip(dir.path(), &format!("{base}/{name}"));
    psql(&format!("DROP DATABASE {name} WITH (FORCE)"));
}

#[test]
fn config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, expected) in [
        ("[sip]\nrelam = \"x\"\n", "config key `sip.relam`: unknown field `relam`"),
        ("[rtp]\nport_min = 70000\n", "config key `rtp.port_min`"),
        ("[sip]\nudp = [\"127.0.0.1:99999\"]\n", "config key `sip.udp[0]`"),
        ("[rtp]\nport_min = 30000\nport_max = 20000\n", "config key `rtp.port_max`"),
        ("[database]\nurl = \"mysql://x\"\n", "config key `database.url`"),
        ("[video]\nlayout = \"presenter\"\n", "config key `video.layout`: `presenter` names a participant"),
    ] {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, text).unwrap();
        for args in [vec!["check-config", "bad.toml"], vec!["run", "--config", "bad.toml"]] {
            let out = cli(dir.path(), &args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} accepted {text:?}");
            assert!(stderr.contains(expected), "{args:?} on {text:?}: {stderr}");
        }
    }
    // Nothing was started or created by a refused start-up.
    assert!(!dir.path().join("gateway.db").exists());
    let out = cli(dir.path(), &["check-config", "missing.toml"]);
    assert!(!out.status.success(), "a missing file is an error");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../ops/gateway.example.toml");
    let out = cli(dir.path(), &["check-config", example]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn port_in_use_fails_start_up_naming_the_address() {
    let gw = Gateway::start("").unwrap();
    let second = Command::new(e2e::gateway_bin())
        .args(["run"])
        .current_dir(gw.dir.path())
        .env("GATEWAY_SIP_UDP", gw.sip.to_string())
        .env("GATEWAY_SIP_TCP", "")
        .env("GATEWAY_HTTP_LISTEN", format!("127.0.0.1:{}", e2e::free_port()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(stderr.contains(&format!("cannot listen for SIP on udp {}", gw.sip)), "{stderr}");
}
