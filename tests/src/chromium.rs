//! Headless Chromium driven through chromedriver's WebDriver HTTP API (plain HTTP, no
//! Selenium): a fake microphone playing a WAV file, loopback ICE allowed, no mDNS names.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::{free_port, http_request, wait_until};

pub struct Chromium {
    driver: Child,
    addr: std::net::SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

impl Chromium {
    /// Starts chromedriver and a browser whose microphone plays `microphone` (a WAV file);
    /// with `None`, a browser with no microphone at all.
    pub fn start(microphone: Option<&Path>) -> anyhow::Result<Chromium> {
        Chromium::start_with(microphone, &[])
    }

    /// As [`Chromium::start`], with more command-line switches for the browser.
    pub fn start_with(microphone: Option<&Path>, switches: &[&str]) -> anyhow::Result<Chromium> {
        crate::require_program("chromedriver");
        let profile = tempfile::tempdir()?;
        let port = free_port();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning chromedriver")?;
        let ready = wait_until(Duration::from_secs(20), || {
            http_request(addr, "GET", "/status", None, None).is_ok_and(|(code, body)| {
                code == 200 && serde_json::from_str::<Value>(&body).is_ok_and(|v| v["value"]["ready"] == true)
            })
        });
        let mut chromium = Chromium { driver, addr, session: String::new(), _profile: profile };
        if !ready {
            bail!("chromedriver not ready on {addr}");
        }
        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            format!("--user-data-dir={}", chromium._profile.path().display()),
            "--use-fake-ui-for-media-stream".into(),
            "--autoplay-policy=no-user-gesture-required".into(),
            "--allow-loopback-in-peer-connection".into(),
            "--disable-features=WebRtcHideLocalIpsWithMdns".into(),
        ];
        args.extend(switches.iter().map(|s| s.to_string()));
        if let Some(microphone) = microphone {
            args.push("--use-fake-device-for-media-stream".into());
            args.push(format!("--use-file-for-fake-audio-capture={}", microphone.display()));
        }
        let capabilities = json!({
            "capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
            }}
        });
        let value = chromium.call("POST", "/session", Some(capabilities))?;
        chromium.session = value["sessionId"].as_str().context("no session id")?.to_string();
        Ok(chromium)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let body = body.map(|b| b.to_string());
        let (code, text) = http_request(self.addr, method, path, None, body.as_deref())?;
        let value: Value = serde_json::from_str(&text).with_context(|| format!("WebDriver said: {text}"))?;
        if code != 200 {
            bail!("WebDriver {method} {path}: {code} {}", value["value"]);
        }
        Ok(value["value"].clone())
    }

    pub fn navigate(&self, url: &str) -> anyhow::Result<()> {
        self.call("POST", &format!("/session/{}/url", self.session), Some(json!({ "url": url })))?;
        Ok(())
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page; its return.
    pub fn execute(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        let body = json!({ "script": script, "args": args });
        self.call("POST", &format!("/session/{}/execute/sync", self.session), Some(body))
    }

    /// Waits until `script` returns something other than `null` or `false`; returns it.
    pub fn wait_for(&self, script: &str, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.execute(script, json!([]))?;
            if !value.is_null() && value != Value::Bool(false) {
                return Ok(value);
            }
            if Instant::now() > deadline {
                bail!("page never satisfied `{script}`");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
