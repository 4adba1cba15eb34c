//! Kamailio (Debian `kamailio`) as a carrier's registrar, started from a config in
//! `tests/kamailio/` with its placeholders filled in.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::{free_port, require_program, wait_until};

pub struct Kamailio {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    template: String,
    password: String,
    child: Option<Child>,
}

impl Kamailio {
    /// Prepares `tests/kamailio/<name>.cfg` on a free loopback port; call [`Kamailio::start`].
    pub fn new(name: &str, password: &str) -> anyhow::Result<Kamailio> {
        require_program("kamailio");
        let path = format!("{}/kamailio/{name}.cfg", env!("CARGO_MANIFEST_DIR"));
        let template = std::fs::read_to_string(&path).with_context(|| path.clone())?;
        let dir = tempfile::tempdir()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        Ok(Kamailio { dir, addr, template, password: password.into(), child: None })
    }

    fn pid_file(&self) -> std::path::PathBuf {
        self.dir.path().join("kamailio.pid")
    }

    /// Starts it and waits until it answers OPTIONS.
    pub fn start(&mut self) -> anyhow::Result<()> {
        let run = self.dir.path().display().to_string();
        let config = self
            .template
            .replace("@@PORT@@", &self.addr.port().to_string())
            .replace("@@RUNDIR@@", &run)
            .replace("@@PASSWORD@@", &self.password);
        let cfg = self.dir.path().join("kamailio.cfg");
        std::fs::write(&cfg, config)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("kamailio.log"))?;
        let child = Command::new("kamailio")
            .args([
                "-f",
                &cfg.display().to_string(),
                "-P",
                &self.pid_file().display().to_string(),
                "-Y",
                &run,
            ])
            .args(["-E", "-DD"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning kamailio")?;
        self.child = Some(child);
        // A loaded machine (the whole suite running) can take several seconds to start it.
        let up = wait_until(Duration::from_secs(20), || self.answers_options());
        if !up {
            bail!("kamailio not answering on {}:\n{}", self.addr, self.log());
        }
        Ok(())
    }

    /// Stops it (SIGTERM to the main process, which stops its children) and waits for it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let exited = wait_until(Duration::from_secs(10), || child.try_wait().ok().flatten().is_some());
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
        }
        wait_until(Duration::from_secs(5), || !self.answers_options());
        // The main process exits before its workers do; a worker still holding the SIP socket
        // would take the packets meant for the next instance on this port.
        let addr = self.addr;
        wait_until(Duration::from_secs(10), || std::net::UdpSocket::bind(addr).is_ok());
    }

    fn answers_options(&self) -> bool {
        let out = Command::new("sipsak").args(["-s", &format!("sip:ping@{}", self.addr)]).output();
        out.is_ok_and(|o| o.status.success())
    }

    /// `kamcmd ul.dump`: the registrar's bindings.
    pub fn bindings(&self) -> String {
        let ctl = format!("unix:{}/ctl", self.dir.path().display());
        Command::new("kamcmd")
            .args(["-s", &ctl, "ul.dump"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kamailio.log")).unwrap_or_default()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.stop();
    }
}
