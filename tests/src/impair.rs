//! A lossy, jittery network between two network namespaces the test process makes for itself:
//! the gateway's and the phones'. It does what `tc netem delay 100ms 100ms loss 20%` does, in
//! user space over a pair of TUN devices (this machine's kernel has no `sch_netem`): each UDP
//! datagram, either way, is dropped with a probability or held for a random time, so datagrams
//! also overtake each other. Everything else (the phones' control connections) crosses at once.
//!
//! Namespaces belong to threads: [`Link::enter_gateway`] and [`Link::enter_phones`] move the
//! calling thread, and the processes it starts afterwards run where it is. Needs root (or
//! `CAP_NET_ADMIN`) and `ip` from iproute2.

use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The gateway's end of the link.
pub const GATEWAY_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1));
/// The phones' end.
pub const PHONES_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2));

/// `_IOW('T', 202, int)`, from `<linux/if_tun.h>`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// Datagrams held at once, at most; more are dropped (a bound for the test's own memory).
const MAX_HELD: usize = 10_000;

/// What the link did, both directions together.
#[derive(Debug, Default)]
pub struct LinkStats {
    pub udp_forwarded: AtomicU64,
    pub udp_dropped: AtomicU64,
    pub other_forwarded: AtomicU64,
}

/// The two namespaces and the thread carrying datagrams between them.
pub struct Link {
    home: OwnedFd,
    gateway: OwnedFd,
    phones: OwnedFd,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub stats: Arc<LinkStats>,
}

impl Link {
    /// Makes both namespaces (each with its loopback up) and starts the link: `loss` is the
    /// probability a datagram is dropped, each one kept is held for a uniformly random time
    /// below `max_delay`. `seed` makes a run repeatable. Leaves the calling thread in the
    /// gateway's namespace.
    pub fn new(loss: f64, max_delay: Duration, seed: u64) -> anyhow::Result<Link> {
        let home = File::open("/proc/thread-self/ns/net").context("opening this thread's namespace")?.into();
        let gateway_end = enter_new_namespace("tun-gw", GATEWAY_IP, PHONES_IP)?;
        let gateway = current_namespace()?;
        let phones_end = enter_new_namespace("tun-ph", PHONES_IP, GATEWAY_IP)?;
        let phones = current_namespace()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(LinkStats::default());
        let thread = {
            let (stop, stats) = (stop.clone(), stats.clone());
            let impairment = Impairment { loss, max_delay, rng: seed | 1 };
            std::thread::spawn(move || carry(gateway_end, phones_end, impairment, &stop, &stats))
        };
        let link = Link { home, gateway, phones, stop, thread: Some(thread), stats };
        link.enter_gateway();
        Ok(link)
    }

    /// Moves the calling thread into the gateway's namespace.
    pub fn enter_gateway(&self) {
        set_namespace(&self.gateway);
    }

    /// Moves the calling thread into the phones' namespace.
    pub fn enter_phones(&self) {
        set_namespace(&self.phones);
    }

    /// The share of UDP datagrams dropped so far.
    pub fn udp_loss(&self) -> f64 {
        let dropped = self.stats.udp_dropped.load(Ordering::Relaxed) as f64;
        let forwarded = self.stats.udp_forwarded.load(Ordering::Relaxed) as f64;
        dropped / (dropped + forwarded).max(1.0)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        set_namespace(&self.home);
    }
}

fn current_namespace() -> anyhow::Result<OwnedFd> {
    Ok(File::open("/proc/thread-self/ns/net").context("opening this thread's namespace")?.into())
}

fn set_namespace(ns: &OwnedFd) {
    // SAFETY: `ns` is an open namespace file; setns changes only the calling thread.
    let rc = unsafe { libc::setns(ns.as_fd().as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

/// Moves the calling thread into a new network namespace with its loopback up and a TUN
/// device `name` from `local` to `peer`; returns the device.
fn enter_new_namespace(name: &str, local: IpAddr, peer: IpAddr) -> anyhow::Result<File> {
    // SAFETY: unshare with CLONE_NEWNET affects only the calling thread's namespaces.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        bail!("a network namespace needs root or CAP_NET_ADMIN: {}", std::io::Error::last_os_error());
    }
    let tun = open_tun(name)?;
    ip(&["link", "set", "lo", "up"])?;
    ip(&["addr", "add", &local.to_string(), "peer", &peer.to_string(), "dev", name])?;
    ip(&["link", "set", name, "up"])?;
    Ok(tun)
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output().context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A TUN device (IP packets, no packet-information prefix) in the calling thread's namespace.
fn open_tun(name: &str) -> anyhow::Result<File> {
    let file = File::options().read(true).write(true).open("/dev/net/tun").context("opening /dev/net/tun")?;
    // struct ifreq: the name, then the flags.
    let mut request = [0u8; 40];
    request[..name.len()].copy_from_slice(name.as_bytes());
    let flags = (libc::IFF_TUN | libc::IFF_NO_PI) as i16;
    request[16..18].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq` (40 bytes) at the pointer.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, request.as_mut_ptr()) };
    if rc != 0 {
        bail!("TUNSETIFF {name}: {}", std::io::Error::last_os_error());
    }
    Ok(file)
}

struct Impairment {
    loss: f64,
    max_delay: Duration,
    /// xorshift64 state.
    rng: u64,
}

impl Impairment {
    fn uniform(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A datagram on its way: when it leaves, and to which end (0: the gateway's, 1: the phones').
#[derive(PartialEq, Eq)]
struct Held {
    at: Instant,
    order: u64,
    to: usize,
    packet: Vec<u8>,
}

impl Ord for Held {
    fn cmp(&self, other: &Held) -> std::cmp::Ordering {
        // Earliest first out of the max-heap.
        (other.at, other.order).cmp(&(self.at, self.order))
    }
}

impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Held) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

fn carry(gateway: File, phones: File, mut impairment: Impairment, stop: &AtomicBool, stats: &LinkStats) {
    let mut ends = [gateway, phones];
    let mut held = BinaryHeap::new();
    let mut order = 0u64;
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        while held.peek().is_some_and(|h: &Held| h.at <= now) {
            let Some(h) = held.pop() else { break };
            let _ = ends[h.to].write(&h.packet);
        }
        let wait = held.peek().map_or(Duration::from_millis(10), |h| h.at.saturating_duration_since(now));
        let timeout = wait.as_millis().clamp(1, 10) as i32;
        let mut fds =
            ends.each_ref().map(|f| libc::pollfd { fd: f.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        // SAFETY: two valid pollfd structs for two open descriptors.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) };
        if ready <= 0 {
            continue;
        }
        for from in 0..2 {
            if fds[from].revents & libc::POLLIN == 0 {
                continue;
            }
            let Ok(n) = ends[from].read(&mut buf) else { continue };
            let packet = &buf[..n];
            let to = 1 - from;
            // IPv4, protocol 17.
            let udp = n >= 20 && packet[0] >> 4 == 4 && packet[9] == 17;
            if !udp {
                stats.other_forwarded.fetch_add(1, Ordering::Relaxed);
                let _ = ends[to].write(packet);
                continue;
            }
            if impairment.uniform() < impairment.loss || held.len() >= MAX_HELD {
                stats.udp_dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            stats.udp_forwarded.fetch_add(1, Ordering::Relaxed);
            let delay = impairment.max_delay.mul_f64(impairment.uniform());
            order += 1;
            held.push(Held { at: Instant::now() + delay, order, to, packet: packet.to_vec() });
        }
    }
}
