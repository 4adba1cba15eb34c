//! baresip (Debian `baresip-core`) as a desk phone, driven over its `ctrl_tcp` interface:
//! JSON commands in netstrings, and a stream of events (REGISTER_OK, CALL_ESTABLISHED, …).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

use crate::{free_port, require_program};

/// Options for one phone.
#[derive(Debug, Clone, Default)]
pub struct PhoneOptions {
    /// WAV file the phone sends as its microphone (`aufile`).
    pub audio_source: Option<std::path::PathBuf>,
    /// Extra config lines.
    pub extra_config: Vec<String>,
    /// Record each call's audio with the `sndfile` module: what the phone sent (`*-enc.wav`)
    /// and what it decoded from the network (`*-dec.wav`), in the phone's directory.
    pub record: bool,
    /// The address it listens on for SIP and RTP (default 127.0.0.1).
    pub ip: Option<std::net::IpAddr>,
}

/// A running baresip instance with its control connection.
pub struct Baresip {
    pub dir: tempfile::TempDir,
    pub sip: SocketAddr,
    child: Child,
    ctrl: TcpStream,
    buf: Vec<u8>,
    /// Every event received so far.
    pub events: Vec<Value>,
    next_token: u64,
}

impl Baresip {
    /// Starts a phone. Its ports are picked free but not reserved, so a parallel test can take
    /// one first: a start that fails that way is retried with new ports.
    pub fn start(options: &PhoneOptions) -> anyhow::Result<Baresip> {
        let mut last = None;
        for _ in 0..3 {
            match Baresip::try_start(options) {
                Ok(phone) => return Ok(phone),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("three attempts"))
    }

    fn try_start(options: &PhoneOptions) -> anyhow::Result<Baresip> {
        require_program("baresip");
        let dir = tempfile::tempdir()?;
        // baresip takes SIP+1 for TLS: find a port whose neighbour is free too.
        let sip_port = loop {
            let p = free_port();
            if p < 65_000 && std::net::UdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
                break p;
            }
        };
        let ctrl_port = free_port();
        let ip = options.ip.unwrap_or([127, 0, 0, 1].into());
        let rtp = free_port() & !1;
        let mut config = vec![
            format!("sip_listen {ip}:{sip_port}"),
            format!("net_interface {ip}"),
            format!("rtp_ports {rtp}-{}", rtp + 20),
            "module_path /usr/lib/baresip/modules".into(),
            // As in the config baresip writes for a new user: a device UUID, which it then
            // sends as `+sip.instance` (RFC 5626) in every REGISTER's Contact.
            "module uuid.so".into(),
            "module ctrl_tcp.so".into(),
            format!("ctrl_tcp_listen 127.0.0.1:{ctrl_port}"),
            "module menu.so".into(),
            "module g711.so".into(),
            "module g722.so".into(),
        ];
        if let Some(wav) = &options.audio_source {
            config.push("module aufile.so".into());
            config.push(format!("audio_source aufile,{}", wav.display()));
        }
        if options.record {
            config.push("module sndfile.so".into());
            config.push(format!("snd_path {}", dir.path().display()));
        }
        config.extend(options.extra_config.iter().cloned());
        std::fs::write(dir.path().join("config"), config.join("\n") + "\n")?;
        let log = std::fs::File::create(dir.path().join("baresip.log"))?;
        let child = Command::new("baresip")
            .args(["-f", &dir.path().display().to_string()])
            // Snapshots are written where it runs.
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning baresip")?;
        let ctrl_addr = SocketAddr::from(([127, 0, 0, 1], ctrl_port));
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut child = child;
        let ctrl = loop {
            match TcpStream::connect(ctrl_addr) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline && child.try_wait()?.is_none() => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = std::fs::read_to_string(dir.path().join("baresip.log")).unwrap_or_default();
                    bail!("baresip control port never opened: {e}\n{log}");
                }
            }
        };
        ctrl.set_read_timeout(Some(Duration::from_millis(200)))?;
        let sip = SocketAddr::new(ip, sip_port);
        Ok(Baresip { dir, sip, child, ctrl, buf: Vec::new(), events: Vec::new(), next_token: 1 })
    }

    /// Sends a command and returns its response's `data`.
    pub fn command(&mut self, command: &str, params: &str) -> anyhow::Result<String> {
        let token = self.next_token.to_string();
        self.next_token += 1;
        let body = serde_json::json!({ "command": command, "params": params, "token": token }).to_string();
        self.ctrl.write_all(format!("{}:{body},", body.len()).as_bytes())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for message in self.read_messages()? {
                if message.get("response").is_some() && message["token"] == token.as_str() {
                    if message["ok"] != true {
                        bail!("baresip {command} failed: {}", message["data"]);
                    }
                    return Ok(message["data"].as_str().unwrap_or_default().to_string());
                }
            }
            if Instant::now() > deadline {
                bail!("no response to {command} within 10 s");
            }
        }
    }

    /// Waits for an event whose `type` is `kind` (counting ones already received after `from`).
    pub fn wait_event(&mut self, kind: &str, from: usize, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.events.iter().skip(from).find(|e| e["type"] == kind) {
                return Ok(e.clone());
            }
            if Instant::now() > deadline {
                bail!("no {kind} event within {timeout:?}; events: {:?}\n{}", self.events, self.log());
            }
            self.read_messages()?;
        }
    }

    /// Adds an account (`<sip:user@host:port>;auth_pass=…`); registration starts at once.
    pub fn add_account(&mut self, account: &str) -> anyhow::Result<()> {
        self.command("uanew", account).map(|_| ())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("baresip.log")).unwrap_or_default()
    }

    /// Asks baresip to quit (it un-registers first) and waits for it to exit.
    pub fn quit(&mut self) -> anyhow::Result<()> {
        let _ = self.command("quit", "");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("baresip did not quit")
    }

    /// The process id, to stop and continue it (a phone whose network disappears).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `sndfile` recordings whose names end with `suffix` (`dec.wav`, `enc.wav`).
    pub fn recordings(&self, suffix: &str) -> Vec<std::path::PathBuf> {
        let mut found: Vec<_> = std::fs::read_dir(self.dir.path())
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        found.retain(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(suffix)));
        found.sort();
        found
    }

    /// Reads what is available (up to the read timeout) and returns complete messages; events
    /// are also kept in `self.events`.
    fn read_messages(&mut self) -> anyhow::Result<Vec<Value>> {
        let mut chunk = [0u8; 8192];
        match self.ctrl.read(&mut chunk) {
            Ok(0) => bail!("baresip closed its control connection"),
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => return Err(e.into()),
        }
        let mut out = Vec::new();
        // Netstrings: <length>:<bytes>,
        while let Some(colon) = self.buf.iter().position(|&b| b == b':') {
            let len: usize = std::str::from_utf8(&self.buf[..colon])?.trim().parse()?;
            if self.buf.len() < colon + 1 + len + 1 {
                break;
            }
            let value: Value = serde_json::from_slice(&self.buf[colon + 1..colon + 1 + len])?;
            self.buf.drain(..colon + 1 + len + 1);
            if value.get("event").is_some() {
                self.events.push(value.clone());
            }
            out.push(value);
        }
        Ok(out)
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
