//! What the load generators in `src/bin` share: their command lines (`--flag value` pairs)
//! and what they read of the gateway from `/proc`.

use std::net::SocketAddr;
use std::str::FromStr;

/// The `--flag value` pairs of the command line after its first `skip` words, each handed
/// to `set`, which says whether it knows the flag.
pub fn parse_flags(
    skip: usize,
    mut set: impl FnMut(&str, &str) -> Result<bool, String>,
) -> Result<(), String> {
    let mut args = std::env::args().skip(skip);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        if !set(&flag, &value)? {
            return Err(format!("unknown option {flag}"));
        }
    }
    Ok(())
}

/// Where a SIP load generator calls, and as whom: users PREFIX0… with one password.
pub struct Target {
    pub gateway: SocketAddr,
    pub room: String,
    pub users: usize,
    pub prefix: String,
    pub password: String,
}

impl Target {
    /// The defaults, with the users' prefix and password as the script creates them.
    pub fn new(users: usize, prefix: &str, password: &str) -> Target {
        Target {
            gateway: SocketAddr::from(([127, 0, 0, 1], 5060)),
            room: "1000".into(),
            users,
            prefix: prefix.into(),
            password: password.into(),
        }
    }

    /// Takes `--gateway`, `--room`, `--users`, `--prefix` and `--password`; false for other
    /// flags.
    pub fn set(&mut self, flag: &str, v: &str) -> Result<bool, String> {
        match flag {
            "--gateway" => self.gateway = value(flag, v)?,
            "--room" => self.room = v.into(),
            "--users" => self.users = value(flag, v)?,
            "--prefix" => self.prefix = v.into(),
            "--password" => self.password = v.into(),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The `i`th of the users, round.
    pub fn user(&self, i: usize) -> String {
        format!("{}{}", self.prefix, i % self.users.max(1))
    }
}

/// `value` for `flag`, or an error naming both.
pub fn value<T: FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value.parse().map_err(|_| format!("bad value for {flag}: {value}"))
}

/// The options, or their error on stderr and exit status 2.
pub fn or_exit<T>(options: Result<T, String>) -> T {
    options.unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    })
}

/// User and system CPU of a process (`pid`, or `self`), in seconds.
pub fn cpu_seconds(pid: &str) -> f64 {
    stat_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
}

/// Each thread of `pid` whose name starts with `prefix`, with its CPU in seconds, by name.
pub fn thread_cpu(pid: u32, prefix: &str) -> Vec<(String, f64)> {
    let mut threads: Vec<(String, f64)> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            let name = stat.split_once('(')?.1.split_once(')')?.0.to_string();
            name.starts_with(prefix).then(|| (name, stat_cpu(&stat)))
        })
        .collect();
    threads.sort_by(|a, b| a.0.cmp(&b.0));
    threads
}

/// User and system CPU from a `stat` line, in seconds.
fn stat_cpu(stat: &str) -> f64 {
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name and state.
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Open descriptors of a process.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}
