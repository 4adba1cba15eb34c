//! Helpers for end-to-end tests: run the real `gateway` binary on loopback ports and drive it
//! with real peers.
//!
//! Nothing here sleeps to "give it time": every wait polls for an observable event and gives up
//! at a deadline.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

pub mod baresip;
pub mod chromium;
pub mod impair;
pub mod kamailio;
pub mod load;
pub mod room;
pub mod sipua;

/// The `gateway` binary built next to this test (`cargo build -p gateway` puts it there), or
/// `GATEWAY_BIN`.
pub fn gateway_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("GATEWAY_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test> → target/debug/gateway
    let bin = exe.parent().and_then(Path::parent).expect("target dir").join("gateway");
    assert!(bin.exists(), "{} missing: run `cargo build -p gateway` first", bin.display());
    bin
}

/// A loopback port free for both UDP and TCP at the time of the call.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
        let port = udp.local_addr().expect("local addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP after 100 tries");
}

/// Runs the CLI to completion.
pub fn cli(dir: &Path, args: &[&str]) -> Output {
    Command::new(gateway_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("GATEWAY_DATABASE_URL")
        .output()
        .expect("run gateway")
}

/// A running gateway process in its own working directory; killed when dropped.
pub struct Gateway {
    pub dir: tempfile::TempDir,
    pub sip: SocketAddr,
    pub http: SocketAddr,
    child: Option<Child>,
}

impl Gateway {
    /// Starts `gateway run` with SIP (UDP and TCP) and HTTP on free loopback ports, and the rest
    /// of the configuration from `extra_toml`. Returns once `/healthz` answers.
    pub fn start(extra_toml: &str) -> anyhow::Result<Gateway> {
        Gateway::start_with("", extra_toml)
    }

    /// Like [`Gateway::start`], with `sip_keys` added to the `[sip]` table.
    pub fn start_with(sip_keys: &str, extra_toml: &str) -> anyhow::Result<Gateway> {
        let (sip, _) = Gateway::addresses();
        Gateway::start_at(sip, sip_keys, extra_toml)
    }

    /// Like [`Gateway::start_with`], with SIP (UDP and TCP) on `sip`.
    pub fn start_at(sip: SocketAddr, sip_keys: &str, extra_toml: &str) -> anyhow::Result<Gateway> {
        let dir = tempfile::tempdir()?;
        let (_, http) = Gateway::addresses();
        let config = format!(
            "[sip]\nudp = [\"{sip}\"]\ntcp = [\"{sip}\"]\n{sip_keys}\n[http]\nlisten = \"{http}\"\n\
             api_token = \"{API_TOKEN}\"\nread_token = \"{READ_TOKEN}\"\n{extra_toml}"
        );
        std::fs::write(dir.path().join("gateway.toml"), config)?;
        let args = ["run", "--config", "gateway.toml"];
        Gateway::spawn(dir, sip, http, &args, &[])
    }

    /// Starts `gateway run` with no config file at all: only the listen addresses come from the
    /// environment, so parallel tests do not collide on the default ports.
    pub fn start_defaults() -> anyhow::Result<Gateway> {
        let dir = tempfile::tempdir()?;
        let (sip, http) = Gateway::addresses();
        let env = [
            ("GATEWAY_SIP_UDP", sip.to_string()),
            ("GATEWAY_SIP_TCP", sip.to_string()),
            ("GATEWAY_HTTP_LISTEN", http.to_string()),
        ];
        Gateway::spawn(dir, sip, http, &["run"], &env)
    }

    fn addresses() -> (SocketAddr, SocketAddr) {
        let sip = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        (sip, http)
    }

    fn spawn(
        dir: tempfile::TempDir,
        sip: SocketAddr,
        http: SocketAddr,
        args: &[&str],
        env: &[(&str, String)],
    ) -> anyhow::Result<Gateway> {
        let child = Gateway::process(dir.path(), args, env)?;
        let mut gw = Gateway { dir, sip, http, child: Some(child) };
        gw.wait_ready(0)?;
        Ok(gw)
    }

    /// Starts the binary in `dir`, its log appended to `gateway.log` there.
    fn process(dir: &Path, args: &[&str], env: &[(&str, String)]) -> anyhow::Result<Child> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("gateway.log"))?;
        Command::new(gateway_bin())
            .args(args)
            .current_dir(dir)
            .env_remove("GATEWAY_DATABASE_URL")
            .env("GATEWAY_LOG", "debug,sqlx=warn")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawning gateway")
    }

    /// Waits (at most 20 s) until the gateway answers `/healthz` or logs that it is ready.
    /// Only the log past byte `earlier` counts: a restart appends to the log of the last run.
    fn wait_ready(&mut self, earlier: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // Over HTTPS (which this client does not speak) the log says when it is ready.
            if let Ok((200, _)) = http_get(self.http, "/healthz") {
                return Ok(());
            }
            if self.log().get(earlier..).is_some_and(|new| new.contains("gateway ready")) {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("gateway exited with {status} during start-up:\n{}", self.log());
            }
            if Instant::now() > deadline {
                bail!("gateway not healthy after 20 s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the gateway again in the same directory with the same config file (after
    /// [`Gateway::kill`] or [`Gateway::terminate`]); the log goes on in the same file.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let earlier = self.log().len();
        self.child = Some(Gateway::process(self.dir.path(), &["run", "--config", "gateway.toml"], &[])?);
        self.wait_ready(earlier)
    }

    /// Runs a CLI command against this gateway's config (and database); returns its stdout and
    /// fails the test when it fails.
    pub fn admin(&self, args: &[&str]) -> Vec<u8> {
        let mut full = vec!["--config", "gateway.toml"];
        full.extend_from_slice(args);
        let out = cli(self.dir.path(), &full);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    /// What the gateway has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    /// Kills the process outright (SIGKILL), as a crash or a power cut would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGHUP: the gateway reads its config file again.
    pub fn reload(&self) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
        assert!(status.success());
    }

    /// Sends SIGTERM and waits (at most 20 s) for the exit status.
    pub fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        let mut child = self.child.take().context("already stopped")?;
        let pid = child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("gateway still running 20 s after SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `done` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The admin API token of every [`Gateway`] started with a config file.
pub const API_TOKEN: &str = "test-token-0123456789abcdef";

/// The read-only API token of every [`Gateway`] started with a config file.
pub const READ_TOKEN: &str = "read-token-0123456789abcdef";

/// A plain HTTP/1.1 GET with the admin token; returns the status code and body.
pub fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    http_request(addr, "GET", path, Some(API_TOKEN), None)
}

/// The sum of the `/metrics` series whose line starts with `series` (a name, or a name with
/// its labels); 0 when there is none.
pub fn metric(gw: &Gateway, series: &str) -> f64 {
    let (_, text) = http_get(gw.http, "/metrics").unwrap();
    text.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// An HTTP/1.1 request with an optional bearer token and JSON body; returns the status code
/// and body.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    json: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = json.unwrap_or("");
    if json.is_some() {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    write!(stream, "{head}\r\n{body}")?;
    // Read by Content-Length: some servers (chromedriver) keep the connection open anyway.
    let mut response = Vec::new();
    let mut chunk = [0u8; 8192];
    let (status, body_start, length) = loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            bail!("connection closed before the response head");
        }
        response.extend_from_slice(&chunk[..n]);
        let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let head = String::from_utf8_lossy(&response[..end]).to_string();
        let status: u16 =
            head.split(' ').nth(1).and_then(|s| s.parse().ok()).context("no HTTP status line")?;
        let length = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok()).flatten()
        });
        break (status, end + 4, length);
    };
    match length {
        Some(length) => {
            while response.len() < body_start + length {
                let n = stream.read(&mut chunk)?;
                if n == 0 {
                    break;
                }
                response.extend_from_slice(&chunk[..n]);
            }
        }
        None => {
            stream.read_to_end(&mut response)?;
        }
    }
    let body = String::from_utf8_lossy(&response[body_start..]).to_string();
    Ok((status, body))
}

/// Writes `seconds` of a sine tone at `frequency` as a mono 16-bit WAV file at `rate`.
pub fn write_tone_wav(path: &Path, rate: u32, frequency: f64, seconds: u32) -> anyhow::Result<()> {
    write_sine_wav(path, rate, frequency, 0.3, seconds)
}

/// [`write_tone_wav`] at `amplitude` (of full scale, 0 to 1).
pub fn write_sine_wav(
    path: &Path,
    rate: u32,
    frequency: f64,
    amplitude: f64,
    seconds: u32,
) -> anyhow::Result<()> {
    let mut pcm = vec![0i16; (rate * seconds) as usize];
    mixer::tone::Sine::new(rate, frequency, amplitude).fill(&mut pcm);
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec)?;
    for s in pcm {
        writer.write_sample(s)?;
    }
    writer.finalize()?;
    Ok(())
}

/// A mono 16-bit WAV file: its rate and samples (the first channel of several).
pub fn read_wav(path: &Path) -> anyhow::Result<(u32, Vec<i16>)> {
    let mut reader = hound::WavReader::open(path).with_context(|| format!("opening {}", path.display()))?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels.max(1));
    let samples: Vec<i16> = reader.samples::<i16>().step_by(channels).collect::<Result<_, _>>()?;
    Ok((spec.sample_rate, samples))
}

/// Sends one datagram from a fresh socket and returns the first reply within `wait`, if any.
pub fn udp_exchange(to: SocketAddr, message: &[u8], wait: Duration) -> anyhow::Result<Option<String>> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(wait))?;
    socket.send_to(message, to)?;
    let mut buf = vec![0u8; 65_535];
    match socket.recv_from(&mut buf) {
        Ok((n, _)) => Ok(Some(String::from_utf8_lossy(&buf[..n]).into_owned())),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Fails with a clear message when a peer program the tests need is not installed
/// (`ops/test.sh` installs them all).
pub fn require_program(name: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(name).is_file()))
        .unwrap_or(false);
    assert!(found, "`{name}` is not installed: run ops/test.sh, which installs the test peers");
}

/// The PostgreSQL server URL for tests (an admin database such as `postgres`), if one is
/// configured. With `GATEWAY_REQUIRE_POSTGRES` set, its absence is a failure.
pub fn postgres_admin_url() -> Option<String> {
    match std::env::var("GATEWAY_TEST_POSTGRES_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var("GATEWAY_REQUIRE_POSTGRES").is_ok() => {
            panic!("GATEWAY_REQUIRE_POSTGRES is set but GATEWAY_TEST_POSTGRES_URL is not")
        }
        Err(_) => {
            eprintln!("GATEWAY_TEST_POSTGRES_URL not set: PostgreSQL part skipped");
            None
        }
    }
}
